"""Warm start: ``pretrained=True`` loads timm's base weights (here: random ones written into an offline Hub cache
under the real repo id) and the gated model computes the base model exactly, yet every gate can learn."""
import copy

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn
from timm.models.resnet import ResNet

from hub_cache import offline_hub, save_state_dict, seed_hub_cache
from timm_recal.layers import get_gate
from timm_recal.models import resnet_gated
from timm_recal.models._warm_start import constant_gate, gate_sites, warm_start_state_dict
from timm_recal.models.resnet_blocks import PreGateBasicBlock


def _random_base(name: str) -> nn.Module:
    """A timm base model with every BN's affine and running stats randomized (timm zero-inits the last BN of
    each block, which would make gated == base trivially true)."""
    torch.manual_seed(0)
    model = timm.create_model(name)
    with torch.no_grad():
        for bn in model.modules():
            if isinstance(bn, nn.BatchNorm2d):
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.normal_(0, 0.2)
                bn.running_mean.normal_(0, 0.2)
                bn.running_var.uniform_(0.5, 1.5)
    return model.eval()


class _Bases(dict):
    """Random base models, each written on first use into the offline Hub cache as its warm-start source."""

    def __init__(self, cache):
        super().__init__()
        self.cache = cache

    def __missing__(self, base: str) -> nn.Module:
        model = _random_base(base)
        file = save_state_dict(model.state_dict(), self.cache / f'{base}.safetensors')
        seed_hub_cache(self.cache, f'timm/{base}.{resnet_gated.BASES[base].warm_from}', {'model.safetensors': file})
        self[base] = model
        return model


@pytest.fixture(scope='module')
def hub(tmp_path_factory):
    """Offline Hub cache; ``hub['resnet50']`` is the random base behind 'timm/resnet50.a1_in1k' there."""
    cache = tmp_path_factory.mktemp('hf_cache')
    with pytest.MonkeyPatch.context() as mp:
        offline_hub(mp, cache)
        yield _Bases(cache)


def _assert_same_function(gated: nn.Module, base: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        ref, out = base(x), gated(x)
    scale = ref.abs().max().item()
    assert scale > 1.0  # a non-trivial base function
    assert (out - ref).abs().max().item() <= 1e-5 * scale


@pytest.mark.parametrize('name', ['ab_resnet18', 'abplus_resnet18', 'se_resnet18', 'slowsqex_resnet18',
                                  'se3x3_resnet50', 'nosqueeze_resnet50'])
def test_warm_start_equals_base(hub, name):
    base = hub[resnet_gated.model_args[name]['base']]
    gated = timm.create_model(name, pretrained=True).eval()
    assert gated.pretrained_cfg['tag'].endswith('_warm')
    _assert_same_function(gated, base, torch.randn(2, 3, 64, 64))


@pytest.mark.parametrize('name', ['ab_resnet18', 'abplus_resnet18', 'se_resnet18', 'se3x3_resnet50'])
def test_warm_start_trains(hub, name):
    """Train mode, batch 2: same loss as the base, finite loss, every gate parameter gets a non-zero gradient."""
    base = hub[resnet_gated.model_args[name]['base']]
    gated = timm.create_model(name, pretrained=True).train()
    x, y = torch.randn(2, 3, 64, 64), torch.tensor([1, 7])
    loss = F.cross_entropy(gated(x), y)
    with torch.no_grad():
        ref = F.cross_entropy(copy.deepcopy(base).train()(x), y)
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss.detach(), ref, rtol=1e-4, atol=1e-5)
    loss.backward()
    gate_params = [(n, p) for n, p in gated.named_parameters() if '.se.' in n]
    assert gate_params
    for n, p in gate_params:
        assert p.grad is not None and torch.isfinite(p.grad).all(), n
        assert p.grad.abs().sum() > 0, n


def test_warm_start_is_the_default_tag(hub):
    """``create_model(name, pretrained=True)`` picks the warm tag, whose weights are the base model's own."""
    base = hub['resnet18']
    model = timm.create_model('ab_resnet18', pretrained=True)
    cfg = model.pretrained_cfg
    assert cfg['tag'] == 'a1_in1k_warm' and cfg['hf_hub_id'] == 'timm/resnet18.a1_in1k'
    assert 'untrained' in cfg['description'] and cfg['notes']
    assert timm.create_model('ab_resnet18.a1_in1k_warm', pretrained=True).pretrained_cfg == cfg
    sd = model.state_dict()
    for k, v in base.state_dict().items():  # every base tensor is loaded (the BN before each gate folded)
        if not k.endswith(('bn2.weight', 'bn2.bias')):
            torch.testing.assert_close(sd[k], v, msg=k)


def test_warm_start_features_only(hub):
    base_sd = hub['resnet18'].state_dict()
    feats = timm.create_model('ab_resnet18', pretrained=True, features_only=True).eval()
    ref = timm.create_model('resnet18', features_only=True, pretrained_cfg_overlay=dict(state_dict=base_sd),
                            pretrained=True).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(feats(x), ref(x)):
            assert (a - b).abs().max() <= 1e-5 * b.abs().max()


def test_folding(hub):
    """1/g goes exactly into the BN before each gate; g is the constant gate's measured output (0.5)."""
    base_sd = hub['resnet18'].state_dict()
    model = timm.create_model('se_resnet18')
    sd = warm_start_state_dict(base_sd, model)
    sites = gate_sites(model)
    assert len(sites) == 8 and sites[0] == ('layer1.0.se', 'layer1.0.bn2')
    for gate, norm in sites:
        g, _ = constant_gate(model.get_submodule(gate), base_sd[f'{norm}.weight'].numel())
        torch.testing.assert_close(g, torch.full_like(g, 0.5))
        torch.testing.assert_close(sd[f'{norm}.weight'], base_sd[f'{norm}.weight'] / g)
        torch.testing.assert_close(sd[f'{norm}.bias'], base_sd[f'{norm}.bias'] / g)
        assert f'{gate}.fc.0.weight' in sd


def test_gated_checkpoint_passes_through():
    """A complete gated checkpoint (e.g. fine-tuned weights) loads unchanged through the same filter."""
    torch.manual_seed(1)
    trained = timm.create_model('ab_resnet18')
    sd = trained.state_dict()
    assert warm_start_state_dict(sd, trained) is sd
    loaded = timm.create_model('ab_resnet18', pretrained=True, pretrained_cfg_overlay=dict(state_dict=sd))
    for k, v in loaded.state_dict().items():
        torch.testing.assert_close(v, sd[k], msg=k)
    partial = {k: v for k, v in sd.items() if k != 'layer1.0.se.mix.weight'}
    with pytest.raises(ValueError, match='some gate tensors but not all'):
        warm_start_state_dict(partial, trained)


@pytest.mark.parametrize('name,why', [
    ('se_pre_resnet50', "the 'pre' gate placement has no BatchNorm right before the gate"),
    ('se_post_resnet50', "the 'post' gate placement has no BatchNorm"),
    ('se_id_resnet50', "the 'identity' gate placement has no BatchNorm"),
    ('ab_wide_resnet18_2', 'timm publishes no wide_resnet18_2 weights'),
])
def test_no_warm_start_error(name, why):
    assert not timm.models.get_pretrained_cfg(name).has_weights
    with pytest.raises(ValueError, match=f'{name} has no pretrained weights: {why}'):
        timm.create_model(name, pretrained=True)


def test_fold_needs_a_norm_before_the_gate():
    model = ResNet(PreGateBasicBlock, (1, 1, 1, 1), block_args=dict(attn_layer=get_gate('se')))
    with pytest.raises(ValueError, match="layer1.0: a PreGateBasicBlock has no BatchNorm right before its gate"):
        warm_start_state_dict(timm.create_model('resnet18').state_dict(), model)


@pytest.mark.parametrize('name', sorted(resnet_gated.model_args))
def test_warm_tags_point_to_real_base_weights(name):
    """Every warm tag loads a base tag timm publishes; SE-PRE/POST/Identity and wide_resnet18_2 have none."""
    tags = timm.list_pretrained(f'{name}.*')
    v = resnet_gated.model_args[name]
    if v['placement'] in ('pre', 'post', 'identity') or v['base'] == 'wide_resnet18_2':
        assert tags == []
        return
    assert len(tags) == 1 and tags[0].endswith('_warm')
    source = f"{v['base']}.{tags[0].split('.', 1)[1][:-len('_warm')]}"
    assert source in timm.list_pretrained(v['base'] + '.*')
    assert timm.models.get_pretrained_cfg(tags[0]).hf_hub_id == timm.models.get_pretrained_cfg(source).hf_hub_id
    assert timm.models.get_pretrained_cfg(tags[0]).hf_hub_id == f'timm/{source}'
