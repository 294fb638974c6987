"""ShuffleNetV2: the exact Wang & Yuan CIFAR trio, gate positions, SLE wiring."""
import pytest
import timm
import torch

import timm_recal  # noqa: F401
from timm_recal.layers import BoosterGate, SkipLayerExcitation, SqueezeExcite


def _n(m) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize('name,params,macs', [
    ('shufflenetv2_cifar', 1_263_854, 46_128_266),
    ('se_shufflenetv2_cifar', 1_493_204, 46_502_774),
    ('sle_shufflenetv2_cifar', 3_743_934, 48_677_466),
])
def test_wang_yuan_trio_exact(name, params, macs):
    model = timm.create_model(name).eval()
    assert model.num_classes == 10
    assert _n(model) == params
    ptflops = pytest.importorskip('ptflops')
    counted, _ = ptflops.get_model_complexity_info(
        model, (3, 32, 32), as_strings=False, print_per_layer_stat=False, verbose=False, backend='pytorch',
        backend_specific_config={'count_functional': False})
    assert abs(counted - macs) / macs < 0.01, counted


def test_base_matches_shufflenet_widths():
    model = timm.create_model('shufflenetv2_cifar')
    assert [len(s) for s in model.stages] == [4, 8, 4]
    assert [s[0].branch2[-1].conv.out_channels * 2 for s in model.stages] == [116, 232, 464]
    assert model.num_features == 1024
    assert all(m.bias is None for m in model.modules() if isinstance(m, torch.nn.Conv2d))


def test_se_positions_and_reductions():
    model = timm.create_model('se_shufflenetv2_cifar')
    gates = [(n, m) for n, m in model.named_modules() if isinstance(m, SqueezeExcite)]
    assert [n for n, _ in gates] == [
        'stem_attn', 'stages.0.0.attn', 'stages.0.3.attn', 'stages.1.0.attn', 'stages.1.7.attn',
        'stages.2.0.attn', 'stages.2.3.attn', 'head_attn']
    assert [g.widths for _, g in gates] == [
        (24, 24, 24), (116, 29, 116), (116, 29, 116), (232, 29, 232), (232, 29, 232), (464, 29, 464),
        (464, 29, 464), (1024, 64, 1024)]


@pytest.mark.parametrize('prefix,extra', [('ab_', lambda c: 3 * c), ('abplus_', lambda c: c * c + 2 * c)])
def test_booster_positions(prefix, extra):
    base, model = timm.create_model('shufflenetv2_cifar'), timm.create_model(f'{prefix}shufflenetv2_cifar')
    gates = [m for m in model.modules() if isinstance(m, BoosterGate)]
    assert len(gates) == 8
    assert _n(model) - _n(base) == sum(extra(g.channels) for g in gates)


def test_sle_wiring_uses_gated_outputs():
    model = timm.create_model('sle_shufflenetv2_x0_5_cifar').eval()
    seen = []
    for sle in model.sle:
        sle.register_forward_hook(lambda m, inp, out: seen.append((inp[0].shape[1], inp[1].shape[1], out)))
    feats = model.forward_intermediates(torch.randn(2, 3, 32, 32), intermediates_only=True)
    assert [(a, b) for a, b, _ in seen] == [(24, 48), (48, 96), (96, 192)]
    # stage outputs returned are the SLE-gated ones, and each SLE is fed the previous gated output
    for i, (_, _, out) in enumerate(seen):
        torch.testing.assert_close(feats[i + 1], out)
    assert all(isinstance(m, SkipLayerExcitation) for m in model.sle)


def test_imagenet_variant_shapes():
    model = timm.create_model('shufflenetv2_x0_5').eval()
    assert model.pretrained_cfg['input_size'] == (3, 224, 224)
    feats = model.forward_intermediates(torch.randn(1, 3, 64, 64), intermediates_only=True)
    assert [f.shape[-1] for f in feats] == [16, 8, 4, 2, 2]
    assert [i['reduction'] for i in model.feature_info] == [4, 8, 16, 32, 32]
    assert timm.create_model('shufflenetv2').num_features == 1024
    assert timm.create_model('shufflenetv2_x2_0').num_features == 2048


def test_conv_init_kwarg():
    torch.manual_seed(0)
    model = timm.create_model('shufflenetv2_x0_5_cifar', conv_init='kaiming_fan_out')
    w = model.stem.conv.weight
    expected_std = (2.0 / (w.shape[0] * w.shape[2] * w.shape[3])) ** 0.5
    assert abs(w.std().item() - expected_std) / expected_std < 0.2
    with pytest.raises(ValueError, match='conv_init'):
        timm.create_model('shufflenetv2_x0_5_cifar', conv_init='xavier')


def test_attn_reduction_one_or_per_position_and_deprecated_alias():
    gates = lambda m: [g.widths[1] for g in m.modules() if isinstance(g, SqueezeExcite)]  # noqa: E731
    assert gates(timm.create_model('se_shufflenetv2_x0_5_cifar', attn_reduction=4)) == [6, 12, 12, 24, 24, 48, 48, 256]
    per_position = (2, 4, 8, 16, 32)
    assert gates(timm.create_model('se_shufflenetv2_x0_5_cifar', attn_reduction=per_position)) == [
        12, 12, 12, 12, 12, 12, 12, 32]
    with pytest.warns(FutureWarning, match='attn_reductions= is deprecated, use attn_reduction='):
        old = timm.create_model('se_shufflenetv2_x0_5_cifar', attn_reductions=per_position)
    assert gates(old) == gates(timm.create_model('se_shufflenetv2_x0_5_cifar', attn_reduction=per_position))
    with pytest.raises(ValueError, match='attn_reduction needs one value or 5'):
        timm.create_model('se_shufflenetv2_x0_5_cifar', attn_reduction=(1, 2))


@pytest.mark.parametrize('name', ['shufflenetv2_x0_5_cifar', 'sle_shufflenetv2_x0_5_cifar'])
@pytest.mark.parametrize('keep', [0, 1, 2, 3])
def test_prune_intermediate_layers_keeps_what_the_indices_need(name, keep):
    """Stages after the last requested index go (with their SLE), and the head conv unless index 4 is kept."""
    torch.manual_seed(0)
    model = timm.create_model(name).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = model.forward_intermediates(x, intermediates_only=True)
    assert model.prune_intermediate_layers(indices=[keep], prune_norm=True) == [keep]
    assert len(model.stages) == keep and isinstance(model.conv_head, torch.nn.Identity)
    assert model.sle is None or len(model.sle) == keep
    assert model.num_features == model.feature_info[keep]['num_chs'] and model.num_classes == 0
    with torch.no_grad():
        (feat,) = model.forward_intermediates(x, indices=[keep], intermediates_only=True)
        torch.testing.assert_close(feat, ref[keep])
        assert model(x).shape[:2] == (2, model.num_features)  # unpooled map: the head is reset to pool ''



def test_prune_keeping_the_head_conv_drops_only_the_classifier():
    model = timm.create_model('shufflenetv2_x0_5_cifar')
    assert model.prune_intermediate_layers(indices=2) == [3, 4]
    assert len(model.stages) == 3 and not isinstance(model.conv_head, torch.nn.Identity)
    assert model.num_classes == 0 and model.get_classifier(name_only=True) == 'head.fc'


def test_channel_shuffle_keeps_a_channels_last_map_channels_last():
    from timm_recal.models.shufflenetv2 import channel_shuffle
    x = torch.randn(2, 12, 5, 3)
    reference = x.unflatten(1, (2, -1)).transpose(1, 2).flatten(1, 2)
    for groups, ref in ((2, reference), (3, x.unflatten(1, (3, -1)).transpose(1, 2).flatten(1, 2))):
        out = channel_shuffle(x.contiguous(memory_format=torch.channels_last), groups)
        assert out.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(out, ref)
    assert channel_shuffle(x, 2).is_contiguous() and torch.equal(channel_shuffle(x, 2), reference)


@pytest.mark.parametrize('name', ['shufflenetv2_x0_5_cifar', 'se_shufflenetv2_x0_5_cifar'])
def test_channels_last_training_step_matches_nchw_and_fx_traces(name):
    torch.manual_seed(0)
    model = timm.create_model(name).train().double()  # float64: batch-4 BN makes float32 layouts differ by 1e-2
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    grads = []
    for fmt in (torch.contiguous_format, torch.channels_last):
        model.zero_grad()
        net = model.to(memory_format=fmt)
        net(x.contiguous(memory_format=fmt)).square().sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters()]))
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-9, atol=1e-9)
    from torchvision.models.feature_extraction import create_feature_extractor
    traced = create_feature_extractor(model.eval(), return_nodes=['stages.1'])
    assert traced(x.contiguous(memory_format=torch.channels_last))['stages.1'].shape[0] == 4


@pytest.mark.parametrize('kwargs,error,match', [
    # an odd width built, then failed at the first forward ("expected input[...] to have 233 channels")
    (dict(stage_chs=(116, 233, 464)), ValueError, r'stage_chs must be even .* got 233 in \(116, 233, 464\)'),
    (dict(stage_chs=(116.0, 232, 464)), TypeError, r'stage_chs\[0\] must be a positive integer, got 116.0'),
    # 0 units: a stage that did not downsample, silently another net with wrong feature_info reductions
    (dict(stage_units=(0, 8, 4)), ValueError, r'stage_units\[0\] must be a positive integer, got 0'),
    (dict(stage_units=(4, 8.5, 4)), TypeError, r'stage_units\[1\] must be a positive integer, got 8.5'),
    (dict(stem_chs=0), ValueError, 'stem_chs must be a positive integer, got 0'),
    (dict(head_chs=0), ValueError, 'head_chs must be a positive integer, got 0'),
    (dict(in_chans=0), ValueError, 'in_chans must be a positive integer, got 0'),
    # NaN reached nn.Dropout silently; 1.5 gave torch's message without the argument's name
    (dict(drop_rate=float('nan')), ValueError, r'ShuffleNetV2: drop_rate must be in \[0, 1\], got nan'),
    (dict(drop_rate=1.5), ValueError, r'ShuffleNetV2: drop_rate must be in \[0, 1\], got 1.5'),
])
def test_bad_constructor_args_refused_in_one_line(kwargs, error, match):
    with pytest.raises(error, match=match) as e:
        timm.create_model('se_shufflenetv2_cifar', device='meta', **kwargs)
    assert '\n' not in str(e.value)


def test_what_timm_accepts_is_accepted():
    """drop_rate 1.0 and num_classes -1 (no classifier) build in timm's own models, so they build here."""
    m = timm.create_model('shufflenetv2_x0_5_cifar', drop_rate=1.0, num_classes=-1).eval()
    assert m(torch.randn(1, 3, 32, 32)).shape == (1, 1024)
