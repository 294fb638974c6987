"""Gates: shapes, exact parameter counts, widths of the SE profiles, constant init, errors."""
import re
import warnings
from functools import partial

import numpy as np
import pytest
import torch
from torch import nn

from timm_recal.layers import BoosterGate, SkipLayerExcitation, SqueezeExcite, get_gate, list_gates


def _n(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _make(name: str, c: int = 32):
    return get_gate(name)(c, **({'feat_size': 8} if name == 'gdw_wavg' else {}))


@pytest.mark.parametrize('name', list_gates())
def test_gate_shape_and_grad(name):
    torch.manual_seed(0)
    gate = _make(name).train()
    x = torch.randn(2, 32, 8, 8, requires_grad=True)
    y = gate(x)
    assert y.shape == x.shape
    y.square().mean().backward()
    assert torch.isfinite(x.grad).all()
    for pname, p in gate.named_parameters():
        assert p.grad is not None, pname


@pytest.mark.parametrize('name', list_gates())
def test_gate_timm_signature(name):
    """Every keyword timm's builders hand an attention / SE layer is accepted (ResNet: device/dtype; ByobNet
    attn_kwargs: rd_ratio, rd_divisor; EfficientNet / MobileNetV3: rd_ratio, act_layer), as are rd_channels and
    gate_layer of timm's own SE."""
    gate = get_gate(name)(16, act_layer=nn.SiLU, rd_ratio=0.25, rd_divisor=1, device='cpu', dtype=torch.float64,
                          **({'feat_size': 4} if name == 'gdw_wavg' else {}))
    assert all(p.dtype == torch.float64 for p in gate.parameters())
    get_gate(name)(16, rd_channels=4, gate_layer='sigmoid', **({'feat_size': 4} if name == 'gdw_wavg' else {}))


@pytest.mark.parametrize('name', list_gates())
@pytest.mark.parametrize('typo', ['spatial_kernal', 'reductoin', 'rd_ration', 'norm_layer'])
def test_gate_rejects_unknown_keywords(name, typo):
    """A misspelt setting must not build another ablation silently (``spatial_kernal=7`` once gave no conv)."""
    with pytest.raises(TypeError, match=typo):
        get_gate(name)(16, **{typo: 7}, **({'feat_size': 4} if name == 'gdw_wavg' else {}))


def test_se_maps_timm_reduction_keywords():
    """rd_ratio is 1 / r, rd_channels the hidden width, rd_divisor rounds it as timm's SEModule does."""
    assert SqueezeExcite(64, rd_ratio=0.25).widths == SqueezeExcite(64, reduction=4).widths == (64, 16, 64)
    assert SqueezeExcite(64, reduction=4, rd_channels=10).widths == (64, 10, 64)
    assert SqueezeExcite(40, reduction=16, rd_divisor=8).widths == (40, 8, 40)  # 40 // 16 = 2, rounded up to 8
    assert get_gate('slowsq')(64, rd_ratio=1 / 8).widths == (64, 16, 8, 64)
    with pytest.raises(ValueError, match='rd_ratio must be positive'):
        SqueezeExcite(64, rd_ratio=0)


@pytest.mark.parametrize('name,widths', [
    ('se', (64, 4, 64)), ('slowsq', (64, 8, 4, 64)), ('slowex', (64, 4, 8, 64)),
    ('slowsqex', (64, 8, 4, 8, 64)), ('bump', (64, 4, 4, 64)),
])
def test_se_profiles(name, widths):
    gate = get_gate(name)(64)
    assert gate.widths == widths
    convs = [m for m in gate.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == list(zip(widths[:-1], widths[1:]))
    assert _n(gate) == sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))


def test_se_ablations():
    x = torch.randn(2, 16, 5, 5)
    se_max = get_gate('se_max')(16, reduction=4)
    ref = se_max.fc(x.amax((2, 3), keepdim=True)).sigmoid() * x
    torch.testing.assert_close(se_max(x), ref)
    tanh = get_gate('se_tanh')(16, reduction=4)
    torch.testing.assert_close(tanh(x), tanh.fc(x.mean((2, 3), keepdim=True)).tanh() * x)
    assert all(m.bias is None for m in get_gate('se_nobias')(16).modules() if isinstance(m, nn.Conv2d))
    nosq = get_gate('nosqueeze')(16, reduction=4)
    torch.testing.assert_close(nosq(x), nosq.fc(x).sigmoid() * x)  # per-position, no pooling


@pytest.mark.parametrize('groups,extra', [('dw', lambda c: 3 * c), ('full', lambda c: c * c + 2 * c),
                                          (4, lambda c: c * c // 4 + 2 * c)])
def test_booster_params(groups, extra):
    c = 64
    assert _n(BoosterGate(c, mix_groups=groups)) == extra(c)


def test_booster_ab_is_gap_dw_bn_sigmoid():
    torch.manual_seed(0)
    gate = get_gate('ab')(8).eval()
    gate.norm.running_mean.uniform_(-1, 1)
    gate.norm.running_var.uniform_(0.5, 2)
    x = torch.randn(3, 8, 6, 6)
    s = x.mean((2, 3))
    w = gate.mix.weight.flatten()
    bn = gate.norm
    ref = torch.sigmoid((s * w - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias)
    torch.testing.assert_close(gate(x), x * ref[:, :, None, None])


def test_booster_ablation_designs():
    c = 16
    assert _n(get_gate('gap_sigmoid')(c)) == 0
    assert _n(get_gate('gap_bn_sigmoid')(c)) == 2 * c
    assert _n(get_gate('gdw_wavg')(c, feat_size=7)) == 49 * c
    assert _n(get_gate('pixel_dw7')(c)) == 49 * c
    assert _n(get_gate('pixel3')(c)) == 9 * c * c
    assert _n(get_gate('pixel_dw9_bn')(c)) == 81 * c + 2 * c
    assert _n(get_gate('dw7_gap_sigmoid')(c)) == 49 * c
    assert _n(get_gate('dw7_ab')(c)) == 49 * c + 3 * c
    assert _n(get_gate('dw7_abplus')(c)) == 49 * c + c * c + 2 * c
    # per-pixel gates keep the spatial map in the gate
    gate = get_gate('pixel_dw3')(c)
    x = torch.randn(2, c, 6, 6)
    torch.testing.assert_close(gate(x), x * torch.sigmoid(gate.spatial(x)))


def test_skip_layer_excitation_is_pool_conv_silu_conv_sigmoid():
    sle = SkipLayerExcitation(24, 116)
    assert _n(sle) == 16 * 24 * 116 + 116 * 116
    early, late = torch.randn(2, 24, 32, 32), torch.randn(2, 116, 16, 16)
    s = torch.sigmoid(sle.conv2(torch.nn.functional.silu(sle.conv1(torch.nn.functional.adaptive_avg_pool2d(early, 4)))))
    torch.testing.assert_close(sle(early, late), late * s)


@pytest.mark.parametrize('name', ['se', 'slowsq', 'slowex', 'slowsqex', 'bump', 'nosqueeze', 'ab', 'abplus', 'ab_g4'])
def test_constant_init(name):
    torch.manual_seed(0)
    gate = get_gate(name)(32, reduction=4)
    gate.constant_init_(0.0)
    gate.eval()
    x = torch.randn(4, 32, 6, 6) * 3 + 1
    torch.testing.assert_close(gate(x), 0.5 * x, rtol=1e-6, atol=1e-6)
    gate.train()
    gate(torch.randn(4, 32, 6, 6)).square().sum().backward()
    for pname, p in gate.named_parameters():
        assert torch.isfinite(p.grad).all(), pname
        assert (p.grad != 0).any(), f'{name}: {pname} gets no gradient'


def test_constant_init_refuses_unsupported():
    with pytest.raises(ValueError, match='sigmoid'):
        get_gate('se_tanh')(32).constant_init_()
    with pytest.raises(ValueError, match='ablation design'):
        get_gate('pixel_dw3')(32).constant_init_()


def test_batch1_train_error_and_fx():
    gate = get_gate('ab')(8).train()
    with pytest.raises(AssertionError, match='batch size >= 2'):
        gate(torch.randn(1, 8, 4, 4))
    gate.eval()(torch.randn(1, 8, 4, 4))  # fine in eval
    traced = torch.fx.symbolic_trace(gate.train())
    x = torch.randn(2, 8, 4, 4)
    torch.testing.assert_close(traced(x), gate(x))


def test_gate_setting_errors_name_the_fix():
    with pytest.raises(ValueError, match='did you mean abplus'):
        get_gate('abplsu')
    with pytest.raises(ValueError, match='larger than the number of channels'):
        get_gate('se')(8, reduction=16)
    with pytest.raises(ValueError, match='must divide'):
        get_gate('ab_g4')(30)
    with pytest.raises(ValueError, match='feat_size'):
        get_gate('gdw_wavg')(8)
    with pytest.raises(ValueError, match="'avg' or 'max'"):
        SqueezeExcite(16, pool_type='median')


@pytest.mark.parametrize('rd_mults,match', [
    ((), 'rd_mults needs at least one hidden width'),  # once a single C -> C FC: no bottleneck, another design
    ((0,), 'every rd_mults multiplier must be positive'),  # once width 1
    ((-1,), 'every rd_mults multiplier must be positive'),
    ((2, 0), 'every rd_mults multiplier must be positive'),
    ((float('nan'),), 'every rd_mults multiplier must be positive'),
    ((0.1,), 'rounds to 0 channels'),  # 64 // 16 = 4 hidden, x 0.1 rounds to 0: once clamped to width 1
])
def test_se_refuses_rd_mults_without_a_positive_bottleneck(rd_mults, match):
    """Every SE design has a bottleneck of positive width (``SE_PROFILES``); none is silently replaced by another."""
    with pytest.raises(ValueError, match=match):
        SqueezeExcite(64, rd_mults=rd_mults)
    with pytest.raises(ValueError, match=match):
        get_gate('nosqueeze')(64, rd_mults=rd_mults)


@pytest.mark.parametrize('kwargs,error,match', [
    (dict(rd_divisor=-8), ValueError, 'rd_divisor must be a positive integer, got -8'),  # once width 1
    (dict(rd_divisor=0), ValueError, 'rd_divisor must be a positive integer, got 0'),  # once ZeroDivisionError
    (dict(rd_divisor=2.5), TypeError, 'rd_divisor must be a positive integer'),
    (dict(reduction=float('nan')), ValueError, 'reduction ratio r must be positive and finite, got nan'),
    (dict(reduction=float('inf')), ValueError, 'reduction ratio r must be positive and finite, got inf'),
    (dict(reduction=-4), ValueError, 'reduction ratio r must be positive'),
    (dict(rd_ratio=float('nan')), ValueError, 'rd_ratio must be positive and finite, got nan'),
    (dict(rd_ratio=float('inf')), ValueError, 'rd_ratio must be positive and finite, got inf'),
])
def test_se_reduction_settings_must_be_positive_and_finite(kwargs, error, match):
    with pytest.raises(error, match=match):
        SqueezeExcite(64, **kwargs)


@pytest.mark.parametrize('rd_channels,error', [
    (2.5, TypeError), (8.0, TypeError), (True, TypeError), (float('nan'), TypeError), ('8', TypeError),
    (0, ValueError), (-4, ValueError),
])
def test_se_rd_channels_must_be_a_positive_int(rd_channels, error):
    """``rd_channels=2.5`` was truncated to a hidden width of 2 (True to 1, NaN a bare int() error). timm's own
    ``SEModule`` takes an int width only (its Conv2d refuses 8.0 too), so a float is refused, integral or not."""
    for build in (SqueezeExcite, get_gate('nosqueeze'), get_gate('slowsq')):
        with pytest.raises(error, match=r'rd_channels \(the hidden width\) must be a positive integer, got '
                                        + re.escape(repr(rd_channels))):
            build(64, rd_channels=rd_channels)
    assert SqueezeExcite(64, rd_channels=8).widths == (64, 8, 64)
    assert SqueezeExcite(64, rd_channels=np.int64(8)).widths == (64, 8, 64)


@pytest.mark.parametrize('groups', [2.5, 2.0, True])
def test_booster_refuses_non_integer_groups(groups):
    """``mix_groups=2.5`` was truncated to the G=2 ablation; a bool was G=1 (AB-Plus)."""
    with pytest.raises(ValueError, match=f"groups must be 'dw', 'full' or an int, got {groups}"):
        BoosterGate(64, mix_groups=groups)
    with pytest.raises(ValueError, match=f"groups must be 'dw', 'full' or an int, got {groups}"):
        BoosterGate(64, spatial_kernel=3, spatial_groups=groups)


@pytest.mark.parametrize('size', [0, -3, (4, 0), (4,)])
def test_map_sizes_are_refused_at_construction(size):
    """A zero-sized kernel built and only failed at the first forward, inside oneDNN."""
    with pytest.raises(ValueError, match='feat_size must be'):
        BoosterGate(8, pool='dw_weighted', feat_size=size)
    with pytest.raises(ValueError, match='pool_size must be'):
        SkipLayerExcitation(4, 4, pool_size=size)
    with pytest.raises(TypeError, match='pool_size must be a positive integer'):
        SkipLayerExcitation(4, 4, pool_size=2.5)
    assert BoosterGate(8, pool='dw_weighted', feat_size=(3, 5)).pool.kernel_size == (3, 5)
    assert SkipLayerExcitation(4, 4, pool_size=(2, 2))(torch.randn(2, 4, 8, 8), torch.randn(2, 4, 4, 4)).shape == (
        2, 4, 4, 4)


def test_sle_refuses_a_late_map_of_another_width():
    """A 1-channel ``x_late`` was broadcast to the gate's 8 channels. The check holds eager, traced by torch.fx and
    scripted, and leaves nothing in an exported graph (the channel count is static there)."""
    sle = SkipLayerExcitation(4, 8).eval()
    early, late, bad = torch.randn(2, 4, 16, 16), torch.randn(2, 8, 8, 8), torch.randn(2, 1, 8, 8)
    with pytest.raises(AssertionError, match='x_late must have out_chs=8 channels'):
        sle(early, bad)
    with pytest.raises(AssertionError, match='x_late must have out_chs=8 channels'):
        torch.fx.symbolic_trace(sle)(early, bad)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FutureWarning)  # torch.jit.script is deprecated
        scripted = torch.jit.script(sle)
    with pytest.raises(torch.jit.Error, match='x_late must have out_chs=8 channels'):
        scripted(early, bad)
    torch.testing.assert_close(scripted(early, late), sle(early, late))
    program = torch.export.export(sle, (early, late))
    assert not [n for n in program.graph.nodes if 'assert' in str(n.target)]
    torch.testing.assert_close(program.module()(early, late), sle(early, late))


@pytest.mark.parametrize('act_layer', [None, ''])
def test_gates_need_a_hidden_activation(act_layer):
    """timm reads None as "no activation"; between two FCs that is a linear bottleneck no paper has, and it built
    a gate that failed at forward ("'NoneType' object is not callable")."""
    for build in (SqueezeExcite, get_gate('nosqueeze'), get_gate('slowsq'), partial(SkipLayerExcitation, 64)):
        with pytest.raises(ValueError, match='act_layer .* does not name an activation'):
            build(64, act_layer=act_layer)
    BoosterGate(64, act_layer=act_layer)  # AB has no hidden layer: accepted without effect, as documented


def test_gates_in_stock_timm_models():
    import timm
    torch.manual_seed(0)
    model = timm.create_model('efficientnet_b0', se_layer=get_gate('ab'), num_classes=10).eval()
    gates = [m for m in model.modules() if isinstance(m, BoosterGate)]
    assert len(gates) == 16  # one per MBConv block
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 10)
    base = timm.create_model('efficientnet_b0', num_classes=10)
    # AB swaps each SE (C -> C*se_ratio -> C FCs) for 3C parameters on the expanded channels
    expanded = [g.channels for g in gates]
    se_params = sum(p.numel() for n, p in base.named_parameters() if '.se.' in n)
    n_model = sum(p.numel() for p in model.parameters())
    n_base = sum(p.numel() for p in base.parameters())
    assert n_model == n_base - se_params + 3 * sum(expanded)
    resnet = timm.create_model('resnet18', block_args=dict(attn_layer=get_gate('slowex')), num_classes=5)
    assert resnet(torch.randn(2, 3, 32, 32)).shape == (2, 5)
