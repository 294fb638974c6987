"""The 3-layer CNN of Mahendran: structure, gate widths and position, features, errors."""
import pytest
import torch
from torch import nn

import timm
import timm_recal  # noqa: F401  (registers the models)
from timm_recal.layers import SqueezeExcite
from timm_recal.models.cnn3 import CNN3

VARIANTS = {  # variant -> hidden widths of the gate MLP on 64 channels, r = 16
    'se_cnn3': (64, 4, 64),
    'slowsq_cnn3': (64, 8, 4, 64),
    'slowex_cnn3': (64, 4, 8, 64),
    'slowsqex_cnn3': (64, 8, 4, 8, 64),
    'bump_cnn3': (64, 4, 4, 64),
}


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def x32(n: int = 2, c: int = 3) -> torch.Tensor:
    return torch.randn(n, c, 32, 32, generator=torch.Generator().manual_seed(0))


def test_plain_structure_and_size():
    m = timm.create_model('cnn3')
    convs = [mod for mod in m.modules() if isinstance(mod, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (3, 32, (3, 3), (1, 1)), (32, 64, (3, 3), (1, 1)), (64, 128, (3, 3), (1, 1))]
    assert sum(isinstance(mod, nn.MaxPool2d) for mod in m.modules()) == 3
    assert not any(isinstance(mod, nn.BatchNorm2d) for mod in m.modules())
    # 3x3 convs with bias + FC 128 -> 10
    expected = sum(9 * cin * cout + cout for cin, cout in ((3, 32), (32, 64), (64, 128))) + 128 * 10 + 10
    assert n_params(m) == expected == 94_538
    assert m.forward_features(x32()).shape == (2, 128, 4, 4)
    assert m(x32()).shape == (2, 10)


@pytest.mark.parametrize('name,widths', VARIANTS.items())
def test_gate_widths_and_cost(name, widths):
    m = timm.create_model(name)
    gates = [mod for mod in m.modules() if isinstance(mod, SqueezeExcite)]
    assert len(gates) == 1 and gates[0] is m.stages[1].attn
    assert gates[0].widths == widths
    mlp = sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))  # 1x1 convs with bias
    assert n_params(m) - n_params(timm.create_model('cnn3')) == mlp


@pytest.mark.parametrize('name', VARIANTS)
def test_gate_follows_conv2_relu_before_its_pool(name):
    m = timm.create_model(name).eval()
    stage = m.stages[1]
    assert list(dict(stage.named_children())) == ['conv', 'act', 'attn', 'pool']
    seen = {}
    stage.act.register_forward_hook(lambda mod, inp, out: seen.update(act=out.clone()))
    stage.attn.register_forward_hook(lambda mod, inp, out: seen.update(attn_in=inp[0].clone(), attn_out=out.clone()))
    stage.pool.register_forward_pre_hook(lambda mod, inp: seen.update(pool_in=inp[0].clone()))
    m(x32())
    assert seen['attn_in'].shape == (2, 64, 16, 16)  # full resolution of conv 2: before the pool
    assert torch.equal(seen['attn_in'], seen['act']) and seen['attn_in'].min() >= 0  # after the ReLU
    assert torch.equal(seen['pool_in'], seen['attn_out'])
    assert not torch.allclose(seen['attn_out'], seen['attn_in'])  # the gate does recalibrate
    assert all(isinstance(m.stages[i].attn, nn.Identity) for i in (0, 2))


def test_attn_stage_and_reduction_kwargs():
    m = timm.create_model('se_cnn3', attn_stage=2, attn_reduction=8)
    assert isinstance(m.stages[1].attn, nn.Identity)
    assert m.stages[2].attn.widths == (128, 16, 128)


def test_features_only_and_intermediates():
    f = timm.create_model('bump_cnn3', features_only=True)
    assert f.feature_info.channels() == [32, 64, 128] and f.feature_info.reduction() == [2, 4, 8]
    assert [o.shape for o in f(x32())] == [(2, 32, 16, 16), (2, 64, 8, 8), (2, 128, 4, 4)]
    f = timm.create_model('bump_cnn3', features_only=True, out_indices=(1,))
    assert len(f.model.stages) == 2 and [o.shape for o in f(x32())] == [(2, 64, 8, 8)]
    m = timm.create_model('slowsq_cnn3').eval()
    final, inter = m.forward_intermediates(x32())
    assert torch.equal(final, m.forward_features(x32())) and len(inter) == 3
    with pytest.raises(ValueError, match='NCHW'):
        m.forward_intermediates(x32(), output_fmt='NHWC')


def test_in_chans_num_classes_drop_rate_and_classifier_reset():
    m = timm.create_model('se_cnn3', in_chans=1, num_classes=5, drop_rate=0.25).eval()
    x = x32(2, 1)
    assert m(x).shape == (2, 5) and m.num_classes == 5 and m.num_features == 128
    assert m.head.drop.p == 0.25
    assert m.forward_head(m.forward_features(x), pre_logits=True).shape == (2, 128)
    m.reset_classifier(3)
    assert m(x).shape == (2, 3) and m.get_classifier().out_features == 3
    cfg = m.pretrained_cfg
    assert cfg['input_size'] == (3, 32, 32) and cfg['num_classes'] == 10 and cfg['pool_size'] == (4, 4)
    assert isinstance(m.get_submodule(cfg['first_conv']), nn.Conv2d)


def test_conv_init():
    # 'torch' (default) keeps PyTorch's init, including its non-zero conv biases; He init zeroes them
    assert timm.create_model('cnn3').stages[0].conv.bias.abs().sum() > 0
    assert timm.create_model('cnn3', conv_init='kaiming_fan_out').stages[0].conv.bias.abs().sum() == 0


@pytest.mark.parametrize('kwargs,match', [
    (dict(attn_layer='se', attn_stage=3), 'attn_stage must index'),
    (dict(attn_layer='se', attn_reduction=128), 'larger than the number of channels'),
    (dict(attn_layer='slow_sq'), 'did you mean'),
    (dict(widths=()), 'at least one conv layer'),
    (dict(drop_rate=1.5), r'drop_rate must be in \[0, 1\)'),
    (dict(conv_init='normal'), 'conv_init must be'),
])
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CNN3(**kwargs)


@pytest.mark.parametrize('name,kwargs,match', [
    # the plain net has no gate: attn_stage (even the default 1) placed nothing and was silently ignored
    ('cnn3', dict(attn_stage=2), "CNN3 has no gate to configure, got attn_stage; give attn_layer="),
    ('cnn3', dict(attn_stage=1), "CNN3 has no gate to configure, got attn_stage; give attn_layer="),
    ('cnn3', dict(attn_stage=0, attn_reduction=8), 'got attn_stage and attn_reduction'),
    # 1.5 matched no layer index (a gated name without a gate); True was layer 1
    ('se_cnn3', dict(attn_stage=1.5), r'attn_stage must index one of the 3 conv layers \(an int 0..2\), got 1.5'),
    ('se_cnn3', dict(attn_stage=True), r'attn_stage must index one of the 3 conv layers \(an int 0..2\), got True'),
    ('se_cnn3', dict(attn_stage=-1), 'attn_stage must index one of the 3 conv layers'),
])
def test_attn_stage_needs_a_gate_and_an_int(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        timm.create_model(name, **kwargs)
    assert isinstance(timm.create_model('se_cnn3', attn_stage=0).stages[0].attn, SqueezeExcite)


@pytest.mark.parametrize('kwargs,error,match', [
    # '' is timm's "no activation": the net built, then its first forward hit 'NoneType' object is not callable
    (dict(act_layer=''), ValueError, "CNN3: act_layer '' names no activation"),
    (dict(act_layer='relu7'), ValueError, "CNN3: act_layer 'relu7' is not an activation timm knows"),
    # a float width reached torch as "out_channels must be divisible by groups"; 0 failed at the first forward
    (dict(widths=(32, 64.5, 128)), TypeError, r'CNN3: widths\[1\] must be a positive integer, got 64.5'),
    (dict(widths=(32, 0, 128)), ValueError, r'CNN3: widths\[1\] must be a positive integer, got 0'),
    (dict(widths=(True, 64, 128)), TypeError, r'CNN3: widths\[0\] must be a positive integer, got True'),
    (dict(widths=64), TypeError, 'CNN3: widths must be a sequence of positive integers'),
    (dict(in_chans=0), ValueError, 'CNN3: in_chans must be a positive integer, got 0'),
    (dict(num_classes=2.5), TypeError, r'CNN3: num_classes must be an integer \(0 for no classifier\), got 2.5'),
])
def test_bad_constructor_args_refused_in_one_line(kwargs, error, match):
    with pytest.raises(error, match=match) as e:
        timm.create_model('se_cnn3', **kwargs)
    assert '\n' not in str(e.value)


def test_what_timm_accepts_is_accepted():
    """As timm's own models: num_classes <= 0 is "no classifier", None kwargs are dropped (default act)."""
    for n in (0, -1):
        assert timm.create_model('cnn3', num_classes=n)(x32()).shape == (2, 128)
    m = timm.create_model('cnn3', act_layer=None, widths=[8, 16])
    assert isinstance(m.stages[0].act, nn.ReLU) and m(x32()).shape == (2, 10)
    assert type(timm.create_model('cnn3', act_layer='gelu').stages[0].act).__name__ == 'GELU'
