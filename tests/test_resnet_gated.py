"""Gated timm ResNets: exact parameter counts, where each placement puts its gate, gates in other timm families,
registration and errors. (Forward/backward/fx of every registered model: tests/test_models.py.)"""
from typing import List, Tuple

import pytest
import timm
import torch
from torch import nn
from timm.models._efficientnet_blocks import SqueezeExcite as TimmSqueezeExcite
from timm.models.resnet import BasicBlock, Bottleneck, ResNet, downsample_conv

from conftest import TORCHSCRIPT_DEPRECATION, randomize_bn_
from timm_recal.layers import SE_PROFILES, BoosterGate, NoSqueezeExcite, SqueezeExcite, get_gate
from timm_recal.models import resnet_gated
from timm_recal.models.resnet_blocks import (
    IdentityGateBasicBlock, IdentityGateBottleneck, MidGateBottleneck, PostGateBasicBlock, PostGateBottleneck,
    PreGateBasicBlock, PreGateBottleneck, placement_block,
)


def _n(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# --- exact parameter counts ----------------------------------------------------------------------------------
@pytest.mark.parametrize('name,count', [
    ('resnet50', 25_557_032),       # timm's own, for reference
    ('seresnet50', 28_088_024),
    ('ab_resnet50', 25_602_344),    # + 3C per block
    ('abplus_resnet50', 45_706_792),  # + C^2 + 2C per block
])
def test_param_count_resnet50(name, count):
    assert _n(timm.create_model(name)) == count


def _resnet50_blocks() -> List[Tuple[int, int, int]]:
    """(in, 3x3 width, out) channels of every ResNet-50 block, from He et al.'s table (64-128-256-512 x4)."""
    blocks, prev = [], 64
    for width, depth in zip((64, 128, 256, 512), (3, 4, 6, 3)):
        for _ in range(depth):
            blocks.append((prev, width, 4 * width))
            prev = 4 * width
    return blocks


def _se_params(c: int, r: int = 16) -> int:
    return 2 * c * (c // r) + c // r + c  # two FCs with bias


@pytest.mark.parametrize('name,which', [
    ('se_pre_resnet50', 0), ('se3x3_resnet50', 1), ('se_post_resnet50', 2), ('se_id_resnet50', 2),
    ('nosqueeze_resnet50', 2),
])
def test_param_count_placements(name, which):
    """SE on the block input (PRE), on the 3x3 width (SE-3x3) or on the block output (POST, Identity, NoSqueeze)."""
    expected = 25_557_032 + sum(_se_params(chs[which]) for chs in _resnet50_blocks())
    assert _n(timm.create_model(name)) == expected
    if which == 2:
        assert expected == 28_088_024  # the same gates as timm's seresnet50, only elsewhere


@pytest.mark.parametrize('prefix,extra', [('ab', lambda c: 3 * c), ('abplus', lambda c: c * c + 2 * c)])
def test_booster_params_per_block_resnet18(prefix, extra):
    base, gated = timm.create_model('resnet18'), timm.create_model(f'{prefix}_resnet18')
    base_blocks = [m for m in base.modules() if isinstance(m, BasicBlock)]
    gated_blocks = [m for m in gated.modules() if isinstance(m, BasicBlock)]
    assert len(gated_blocks) == len(base_blocks) == 8
    for b, g in zip(base_blocks, gated_blocks):
        c = g.bn2.num_features
        assert isinstance(g.se, BoosterGate) and _n(g.se) == extra(c)
        assert _n(g) - _n(b) == extra(c)
    assert _n(gated) - _n(base) == sum(extra(b.bn2.num_features) for b in base_blocks)


@pytest.mark.parametrize('name', ['wide_resnet18_2', 'ab_wide_resnet18_2'])
def test_wide_resnet18_2_widths(name):
    m = timm.create_model(name)
    assert [m.get_submodule(f'layer{i}')[-1].bn2.num_features for i in range(1, 5)] == [128, 256, 512, 1024]
    assert all(type(b) is BasicBlock for b in m.modules() if isinstance(b, BasicBlock))
    assert m.num_features == 1024 and m.fc.in_features == 1024


def test_wide_resnet18_2_is_the_plain_baseline():
    """The baseline is the AB net without its gates: same tensors but the gates', no gate modules, no weights."""
    plain, ab = timm.create_model('wide_resnet18_2'), timm.create_model('ab_wide_resnet18_2')
    assert all(b.se is None for b in plain.modules() if isinstance(b, BasicBlock))
    assert set(plain.state_dict()) == {k for k in ab.state_dict() if '.se.' not in k}
    assert _n(ab) - _n(plain) == sum(3 * b.bn2.num_features for b in ab.modules() if isinstance(b, BasicBlock))
    assert not timm.models.get_pretrained_cfg('wide_resnet18_2').has_weights
    with pytest.raises(ValueError, match='wide_resnet18_2 has no pretrained weights: timm publishes no'):
        timm.create_model('wide_resnet18_2', pretrained=True)
    with pytest.raises(ValueError, match='has no gate to configure'):
        timm.create_model('wide_resnet18_2', gate_args=dict(gate_layer='tanh'))


# --- placements: the gate sees exactly the tensor the paper's Fig. 5 says ------------------------------------
class Recorder(nn.Module):
    """A stand-in gate: scales channel c by a distinct factor and remembers its input."""

    def __init__(self, channels: int, device=None, dtype=None):
        super().__init__()
        self.channels = channels
        self.register_buffer('scale', torch.linspace(0.5, 1.5, channels, device=device, dtype=dtype).view(1, -1, 1, 1))
        self.seen = None

    def forward(self, x):
        self.seen = x.detach().clone()
        return x * self.scale


def _residual(b: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The block's residual branch written out from the paper (eval mode: no drop-block, no anti-aliasing)."""
    if isinstance(b, Bottleneck):
        return b.bn3(b.conv3(b.act2(b.bn2(b.conv2(b.act1(b.bn1(b.conv1(x))))))))
    return b.bn2(b.conv2(b.act1(b.bn1(b.conv1(x)))))


def _shortcut(b: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return x if b.downsample is None else b.downsample(x)


def _make_block(cls, downsample: bool) -> nn.Module:
    """A small block of ``cls``: 16 -> 16 channels without a downsample, 8 -> 16 (stride 2) with one."""
    planes = 16 // cls.expansion
    inplanes = 8 if downsample else 16
    ds = downsample_conv(inplanes, 16, 1, stride=2) if downsample else None
    torch.manual_seed(0)
    block = cls(inplanes, planes, 2 if downsample else 1, ds, attn_layer=Recorder).eval()
    randomize_bn_(block)
    return block


def _expected(block: nn.Module, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(what the gate should see, what the block should output) for the block's placement."""
    g, relu = block.se.scale, torch.relu
    if isinstance(block, (PreGateBasicBlock, PreGateBottleneck)):
        return x, relu(_residual(block, x * g) + _shortcut(block, x))
    if isinstance(block, (PostGateBasicBlock, PostGateBottleneck)):
        out = relu(_residual(block, x) + _shortcut(block, x))
        return out, out * g
    if isinstance(block, (IdentityGateBasicBlock, IdentityGateBottleneck)):
        s = _shortcut(block, x)
        return s, relu(_residual(block, x) + s * g)
    if isinstance(block, MidGateBottleneck):
        b = block
        mid = b.act2(b.bn2(b.conv2(b.act1(b.bn1(b.conv1(x))))))
        return mid, relu(b.bn3(b.conv3(mid * g)) + _shortcut(b, x))
    r = _residual(block, x)  # timm's standard placement
    return r, relu(r * g + _shortcut(block, x))


@pytest.mark.parametrize('downsample', [False, True], ids=['same', 'downsample'])
@pytest.mark.parametrize('cls', [
    BasicBlock, Bottleneck, PreGateBasicBlock, PreGateBottleneck, PostGateBasicBlock, PostGateBottleneck,
    IdentityGateBasicBlock, IdentityGateBottleneck, MidGateBottleneck,
])
def test_placement(cls, downsample):
    block = _make_block(cls, downsample)
    x = torch.randn(2, block.conv1.in_channels, 8, 8)
    with torch.no_grad():
        out = block(x.clone())
        seen, expected = _expected(block, x)
    assert block.se.channels == seen.shape[1]
    torch.testing.assert_close(block.se.seen, seen)
    torch.testing.assert_close(out, expected)


def test_mid_gate_uses_3x3_width():
    """SE-3x3 gates the narrow 3x3 conv, not the 4x wider block output (Hu et al.: fewer parameters)."""
    m = timm.create_model('se3x3_resnet50')
    b = m.layer3[0]
    assert isinstance(b, MidGateBottleneck) and b.se.channels == b.conv2.out_channels == 256
    assert b.bn3.num_features == 1024


@pytest.mark.parametrize('name,cls', [
    ('se_pre_resnet50', PreGateBottleneck), ('se_post_resnet50', PostGateBottleneck),
    ('se_id_resnet50', IdentityGateBottleneck), ('se3x3_resnet50', MidGateBottleneck),
    ('ab_resnet50', Bottleneck), ('ab_resnet18', BasicBlock),
])
def test_models_use_placement_blocks(name, cls):
    m = timm.create_model(name)
    assert isinstance(m, ResNet)
    blocks = [b for b in m.modules() if isinstance(b, (BasicBlock, Bottleneck))]
    assert blocks and all(type(b) is cls for b in blocks)


@pytest.mark.filterwarnings(TORCHSCRIPT_DEPRECATION)
@pytest.mark.parametrize('cls', [PreGateBasicBlock, PostGateBasicBlock, IdentityGateBasicBlock,
                                 PreGateBottleneck, PostGateBottleneck, IdentityGateBottleneck, MidGateBottleneck])
def test_placement_resnet_fx_torchscript_and_api(cls):
    """A timm ResNet of each placement block (BasicBlock ones included, which no registered model uses) traces with
    torch.fx, scripts with TorchScript, runs features_only and resets its head."""
    from timm.models._features_fx import FeatureGraphNet
    kw = dict(block=cls, layers=(1, 1, 1, 1), channels=(8, 8, 16, 16), block_args=dict(attn_layer=get_gate('ab')))
    torch.manual_seed(0)
    model = ResNet(num_classes=5, **kw).eval()
    randomize_bn_(model)
    x = torch.randn(2, 3, 32, 32)
    traced = torch.fx.symbolic_trace(model)
    torch.testing.assert_close(traced(x), model(x))
    torch.testing.assert_close(torch.jit.script(model)(x), model(x))
    feats = FeatureGraphNet(model, out_indices=(1, 4))(x)
    assert [f.shape[1] for f in feats] == [8 * cls.expansion, 16 * cls.expansion]
    model.reset_classifier(0)
    assert model(x).shape == (2, 16 * cls.expansion)


# --- our gates in other timm families ------------------------------------------------------------------------
def test_ab_in_efficientnet_b0():
    model = timm.create_model('efficientnet_b0', se_layer=get_gate('ab'), num_classes=10)
    ses = [m.se for m in model.modules() if hasattr(m, 'se') and not isinstance(m.se, nn.Identity)]
    assert len(ses) == 16 and all(isinstance(s, BoosterGate) for s in ses)
    assert not any(isinstance(m, TimmSqueezeExcite) for m in model.modules())  # timm's own SE replaced
    x = torch.randn(2, 3, 32, 32)
    model(x).square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for s in ses for p in s.parameters())


def test_se_in_byobnet():
    from timm.models.byobnet import BottleneckBlock, ByobNet
    model = timm.create_model('resnet32ts', attn_layer=get_gate('se'), num_classes=10)
    assert isinstance(model, ByobNet)
    blocks = [m for m in model.modules() if isinstance(m, BottleneckBlock)]
    gates = [m for m in model.modules() if isinstance(m, SqueezeExcite)]
    assert blocks and len(gates) == len(blocks)  # one gate per bottleneck block
    assert all(isinstance(b.attn, SqueezeExcite) for b in blocks)
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    assert all(p.grad is not None for g in gates for p in g.parameters())


# --- registration, cfgs and errors ---------------------------------------------------------------------------
REQUIRED = (
    [f'{p}_resnet50' for p in ('ab', 'abplus', 'se_pre', 'se_post', 'se_id', 'se3x3', 'nosqueeze')]
    + [f'{p}_{b}' for p in ('ab', 'abplus') for b in ('resnet18', 'resnet34', 'resnet101', 'resnet152',
                                                      'resnext50_32x4d', 'resnext101_32x4d', 'wide_resnet18_2')]
    + [f'{p}_resnet18' for p in ('se', 'slowsq', 'slowex', 'slowsqex', 'bump')]
    + ['wide_resnet18_2']  # the plain baseline of the WRN-18-2 rows (timm lacks it)
)


def test_required_models_registered_by_us():
    registered = set(timm.list_models())
    for name in REQUIRED:
        assert name in registered, name
        assert timm.models.model_entrypoint(name).__module__ == resnet_gated.__name__
    assert set(resnet_gated.model_args) == set(REQUIRED)
    for timm_name in ('resnet18', 'resnet50', 'seresnet50', 'resnext50_32x4d'):  # timm's own, untouched
        assert timm.models.model_entrypoint(timm_name).__module__ == 'timm.models.resnet'


@pytest.mark.parametrize('name', sorted(REQUIRED))
def test_imagenet_default_cfg(name):
    cfg = timm.models.get_pretrained_cfg(name)
    assert cfg.first_conv == 'conv1' and cfg.classifier == 'fc' and cfg.num_classes == 1000
    assert cfg.input_size == (3, 224, 224) and cfg.pool_size == (7, 7) and cfg.license
    assert cfg.mean == timm.data.IMAGENET_DEFAULT_MEAN and cfg.std == timm.data.IMAGENET_DEFAULT_STD


@pytest.mark.parametrize('prefix', ['se', 'slowsq', 'slowex', 'slowsqex', 'bump'])
def test_se_profiles_resnet18(prefix):
    """Mahendran's excitation widths at r = 16: hidden widths are multiples of C/16 (C = 64 in layer1)."""
    gate = timm.create_model(f'{prefix}_resnet18').layer1[0].se
    assert type(gate) is SqueezeExcite
    assert gate.widths == (64, *[4 * m for m in SE_PROFILES[prefix]], 64)


def test_gate_types():
    assert type(timm.create_model('nosqueeze_resnet50').layer1[0].se) is NoSqueezeExcite
    ab, abplus = timm.create_model('ab_resnet18').layer2[0].se, timm.create_model('abplus_resnet18').layer2[0].se
    assert ab.mix.groups == 128 and abplus.mix.groups == 1 and ab.norm is not None


def test_cardinality_and_base_width():
    m = timm.create_model('ab_resnext50_32x4d')
    b = m.layer1[0]
    assert b.conv2.groups == 32 and b.conv2.out_channels == 128  # 32 groups x 4 channels
    assert _n(m) == _n(timm.create_model('resnext50_32x4d')) + sum(
        3 * x.bn3.num_features for x in m.modules() if isinstance(x, Bottleneck))


def test_unknown_gate_name():
    with pytest.raises(ValueError, match=r"unknown gate 'abb'.*did you mean.*\bab\b"):
        get_gate('abb')


def test_gate_comes_from_the_name():
    with pytest.raises(ValueError, match='gate is given by the model name'):
        timm.create_model('ab_resnet18', block_args=dict(attn_layer=get_gate('se')))


def test_attn_reduction_and_gate_args():
    m = timm.create_model('se_resnet18', attn_reduction=8, gate_args=dict(gate_layer='tanh'))
    gate = m.layer1[0].se
    assert gate.widths == (64, 8, 64)
    x = torch.linspace(-3, 3, 7)
    torch.testing.assert_close(gate.gate(x), torch.tanh(x))
    assert timm.create_model('ab_resnet18', attn_reduction=8).layer1[0].se.mix.groups == 64  # AB: no reduction
    with pytest.raises(ValueError, match='reduction ratio r=1000 is larger than the number of channels'):
        timm.create_model('se_resnet18', attn_reduction=1000)


def test_gate_args_reduction_is_a_deprecated_alias():
    with pytest.warns(FutureWarning, match=r'gate_args=dict\(reduction=...\) is deprecated, use attn_reduction='):
        m = timm.create_model('se_resnet18', gate_args=dict(reduction=8))
    assert m.layer1[0].se.widths == (64, 8, 64)


def test_placement_errors():
    with pytest.raises(ValueError, match="'3x3' placement needs a Bottleneck"):
        placement_block(BasicBlock, '3x3')
    with pytest.raises(ValueError, match="unknown gate placement 'middle'"):
        placement_block(Bottleneck, 'middle')
    with pytest.raises(ValueError, match="'pre' placement needs a gate"):
        PreGateBottleneck(64, 16)
    assert placement_block(Bottleneck, 'standard') is Bottleneck


@pytest.mark.parametrize('name', ['se_resnet18', 'se_pre_resnet50', 'ab_resnet18'])
def test_act_layer_that_names_no_activation_is_refused_in_one_line(name):
    # timm's ResNet read '' as "no activation" and then called it: TypeError 'NoneType' object is not callable
    with pytest.raises(ValueError, match=f"{name}: act_layer '' names no activation") as e:
        timm.create_model(name, act_layer='', device='meta')
    assert '\n' not in str(e.value)
    with pytest.raises(ValueError, match=f"{name}: act_layer 'relu7' is not an activation timm knows"):
        timm.create_model(name, act_layer='relu7', device='meta')
    assert isinstance(timm.create_model(name, act_layer='silu', device='meta').act1, nn.SiLU)
