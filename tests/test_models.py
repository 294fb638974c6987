"""Every registered timm-recal model against timm's model contract, one property per test so that a failing test
id names the broken property: attributes, forward, backward, default cfg, classifier reset, torch.fx, TorchScript,
forward_intermediates / prune_intermediate_layers and creation kwargs. Inputs are 32x32 (every model takes them;
the ImageNet nets end at 1x1) with batch 1 or 2, which keeps the whole registry fast on a CPU."""
import copy
import inspect

import pytest
import timm
import torch
from torch import nn

import timm_recal.models
from conftest import TORCHSCRIPT_DEPRECATION, randomize_bn_
from timm_recal.models import cifar_resnet, cnn3, resnet_gated, shufflenetv2
from timm_recal.registry import recal_models, representative_models

MODELS = recal_models()
IMG = 32


def _create(name: str, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, **kwargs).eval()


def _x(batch: int = 2, chans: int = 3) -> torch.Tensor:
    return torch.randn(batch, chans, IMG, IMG, generator=torch.Generator().manual_seed(1))


def _randomized(name: str, **kwargs) -> nn.Module:
    """Eval model with random BN statistics and affines, so that equality checks compare non-trivial functions
    (timm zero-initialises the last BN of each residual block)."""
    model = _create(name, **kwargs)
    randomize_bn_(model)
    return model


# --- the registry ---------------------------------------------------------------------------------------------
def test_registry_is_populated():
    assert len(MODELS) > 100
    assert {'se_shufflenetv2', 'shufflenetv2_cifar', 'wide_resnet18_2', 'cnn3', 'resnet20_cifar'} <= set(MODELS)
    assert 'resnet50' not in MODELS  # timm's own bases are never re-registered


@pytest.mark.parametrize('module', [shufflenetv2, cifar_resnet, cnn3, resnet_gated], ids=lambda m: m.__name__)
def test_one_documented_entrypoint_per_variant(module):
    """Each variant of a model file's table is a function of its own, found by ``grep "def <name>"``, whose
    docstring names the paper and setting."""
    assert set(module.model_args) == set(timm.list_models(module=module.__name__.split('.')[-1]))
    source = inspect.getsource(module)
    docs = []
    for name in module.model_args:
        fn = getattr(module, name)
        assert fn is timm.models.model_entrypoint(name) and fn.__name__ == name
        in_package = getattr(timm_recal.models, name)
        assert in_package is fn or inspect.ismodule(in_package)  # ``cnn3``, ``shufflenetv2``: the file of that name
        assert f'\ndef {name}(pretrained: bool = False, **kwargs)' in source
        assert fn.__doc__ and any(w in fn.__doc__ for w in ('et al.', ' & ', 'Mahendran')), name  # the paper
        docs.append(fn.__doc__)
    assert len(set(docs)) == len(docs), 'every variant says what it is'


def test_representative_models_cover_every_gate_and_family():
    reps = representative_models()
    assert set(reps) <= set(MODELS) and len(reps) == len(set(reps))
    assert {'se_shufflenetv2_x0_5_cifar', 'sle_shufflenetv2_x0_5', 'ab_resnet18', 'se3x3_resnet50', 'cnn3',
            'abplus_wrn16_8_cifar', 'resnet20_cifar', 'wide_resnet18_2'} <= set(reps)
    assert 'ab_resnet152' not in reps and 'se_shufflenetv2_cifar' not in reps  # the smallest of each group


_NO_REDUCTION_GATE = ['shufflenetv2_x0_5_cifar', 'sle_shufflenetv2_x0_5_cifar', 'resnet20_cifar', 'cnn3',
                      'wide_resnet18_2']


@pytest.mark.parametrize('name', sorted(set(representative_models(MODELS)) | set(_NO_REDUCTION_GATE)))
def test_attn_reduction_is_refused_where_no_gate_takes_it(name):
    """``attn_reduction`` configures the SE / AB gates; a model without one (plain nets, and SLE, which has no
    reduction ratio) refuses it as ``wide_resnet18_2`` does, instead of building the plain net silently."""
    from timm_recal.layers import BoosterGate, NoSqueezeExcite, SqueezeExcite
    gates = [m for m in _meta(name).modules() if isinstance(m, (SqueezeExcite, NoSqueezeExcite, BoosterGate))]
    assert not (gates and name in _NO_REDUCTION_GATE)
    if gates:
        _meta(name, attn_reduction=8)
    else:
        with pytest.raises(ValueError, match='has no gate to configure'):
            _meta(name, attn_reduction=8)


def test_plain_shufflenetv2_needs_no_per_position_reductions():
    """Without a gate the per-position reductions are not looked at, so any number of stages builds."""
    net = shufflenetv2.ShuffleNetV2(stage_chs=(8, 16), stage_units=(1, 1), head_chs=32, device='meta')
    assert len(net.stages) == 2
    with pytest.raises(ValueError, match='Skip-Layer Excitation has no reduction ratio'):
        shufflenetv2.ShuffleNetV2(sle=True, attn_reduction=(1, 4, 8, 16, 16), device='meta')


# --- the model contract, model by model -------------------------------------------------------------------------
@pytest.mark.parametrize('name', MODELS)
def test_model_attribute_contract(name):
    """The attributes timm expects of every model, with ``in_chans`` matching the default cfg's input size."""
    model = timm.create_model(name, device='meta')
    cfg = model.pretrained_cfg
    for attr in ('num_classes', 'num_features', 'head_hidden_size', 'in_chans'):
        assert isinstance(getattr(model, attr), int), attr
    assert model.in_chans == cfg['input_size'][0] == 3
    assert model.num_classes == cfg['num_classes']
    assert model.get_submodule(cfg['first_conv']).in_channels == model.in_chans
    assert model.get_classifier(name_only=True) == cfg['classifier']
    assert model.get_submodule(model.get_classifier(name_only=True)) is model.get_classifier()
    assert model.feature_info[-1]['num_chs'] == model.num_features
    assert timm.create_model(name, device='meta', in_chans=1).in_chans == 1


@pytest.mark.parametrize('name', MODELS)
def test_model_forward(name):
    model = _create(name)
    with torch.no_grad():
        out = model(_x(1))
    assert out.shape == (1, model.num_classes) and torch.isfinite(out).all()


@pytest.mark.parametrize('name', MODELS)
def test_model_backward(name):
    """Train mode, batch 2: every parameter receives a finite gradient."""
    model = _create(name).train()
    model(_x()).logsumexp(-1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f'no finite gradient for {missing[:5]}'


@pytest.mark.parametrize('name', MODELS)
def test_model_default_cfg(name):
    """The default cfg describes the model: data settings, pool size, features and pre-logits widths."""
    model = _create(name)
    cfg = model.pretrained_cfg
    assert len(cfg['mean']) == len(cfg['std']) == cfg['input_size'][0]
    assert cfg.get('license') and 0 < cfg['crop_pct'] <= 1
    stride = model.feature_info[-1]['reduction']
    assert tuple(cfg['pool_size']) == tuple(d // stride for d in cfg['input_size'][1:])
    with torch.no_grad():
        feat = model.forward_features(_x(1))
        assert feat.shape == (1, model.num_features, IMG // stride, IMG // stride)
        assert model.forward_head(feat, pre_logits=True).shape == (1, model.head_hidden_size)


@pytest.mark.parametrize('name', MODELS)
def test_model_reset_classifier(name):
    model = _create(name)
    model.reset_classifier(7)
    assert model(_x()).shape == (2, 7) and model.num_classes == 7
    model.reset_classifier(0)
    assert model(_x()).shape == (2, model.num_features)



# timm 1.0.31's model contract (its tests/test_models.py holds every timm model to it): a head rebuilt by
# reset_classifier or set_input_size follows the model, not torch's defaults. On the meta device: no weights
# are allocated, so the whole registry costs a fraction of a second per model.
def _meta(name: str, **kwargs) -> nn.Module:
    return timm.create_model(name, device='meta', dtype=torch.float32, **kwargs)


@pytest.mark.parametrize('name', MODELS)
def test_model_head_follows_the_model_device_dtype_mode_and_frozen_state(name):
    """``create_model(device=...)`` puts every tensor there; after ``model.to(meta, float64)``,
    ``reset_classifier(0)`` then ``(2)`` builds the new head on the model's device and dtype and leaves every
    module in the model's training mode; a frozen model stays frozen through ``reset_classifier(0)``,
    ``reset_classifier(0, '')`` and ``set_input_size`` (where a model has it); unknown kwargs are a TypeError."""
    model = _meta(name).eval()
    misplaced = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.device.type != 'meta']
    assert not misplaced, misplaced[:5]
    assert inspect.signature(model.reset_classifier).parameters['global_pool'].default is None
    model.to(device='meta', dtype=torch.float64)
    model.reset_classifier(0)
    model.reset_classifier(2)
    params = list(model.get_classifier().parameters())
    assert params and model.num_classes == 2
    assert {(p.device.type, p.dtype) for p in params} == {('meta', torch.float64)}
    assert not [n for n, m in model.named_modules() if m.training], 'a rebuilt module left eval mode'
    model.train()
    model.reset_classifier(3)
    assert all(m.training for m in model.modules())

    model.requires_grad_(False)
    model.reset_classifier(0)
    model.reset_classifier(0, '')
    if callable(getattr(model, 'set_input_size', None)):
        model.set_input_size(img_size=tuple(2 * s for s in model.default_cfg['input_size'][-2:]))
    assert not [n for n, p in model.named_parameters() if p.requires_grad]
    with pytest.raises(TypeError):
        _meta(name, not_a_model_arg=1)

@pytest.mark.parametrize('name', MODELS)
def test_model_fx_trace(name):
    model = _randomized(name, num_classes=3)
    traced = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        torch.testing.assert_close(traced(_x()), model(_x()))


@pytest.mark.filterwarnings(TORCHSCRIPT_DEPRECATION)
@pytest.mark.parametrize('name', MODELS)
def test_model_torchscript(name):
    """``torch.jit.script`` compiles the model and the scripted forward equals the eager one."""
    model = _randomized(name)
    scripted = torch.jit.script(model)
    with torch.no_grad():
        torch.testing.assert_close(scripted(_x()), model(_x()))


@pytest.mark.parametrize('name', MODELS)
def test_model_forward_intermediates_and_prune(name):
    """Every feature level has the channels and stride ``feature_info`` promises; pruning for a middle level keeps
    that level's output exactly and drops the layers after it."""
    model = _randomized(name)
    x = _x()
    info = model.feature_info
    with torch.no_grad():
        final, feats = model.forward_intermediates(x)
        torch.testing.assert_close(final, model.forward_features(x))
    assert [f.shape[1] for f in feats] == [i['num_chs'] for i in info]
    assert [IMG // f.shape[-1] for f in feats] == [i['reduction'] for i in info]

    keep = len(info) // 2
    pruned = copy.deepcopy(model)
    assert pruned.prune_intermediate_layers([keep], prune_norm=True, prune_head=True) == [keep]
    with torch.no_grad():
        (feat,) = pruned.forward_intermediates(x, indices=[keep], intermediates_only=True)
        torch.testing.assert_close(feat, feats[keep])
        (feat,) = model.forward_intermediates(x, indices=[keep], stop_early=True, intermediates_only=True)
        torch.testing.assert_close(feat, feats[keep])
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())
    assert pruned.num_classes == 0


@pytest.mark.parametrize('name', MODELS)
def test_model_create_kwargs(name):
    """num_classes=0, in_chans, drop_rate and features_only, as timm users pass them."""
    model = _create(name, num_classes=0, in_chans=1, drop_rate=0.2)
    assert model(_x(chans=1)).shape == (2, model.num_features)

    feats_model = _create(name, features_only=True)
    feats = feats_model(_x(1))
    info = feats_model.feature_info
    assert [f.shape[1] for f in feats] == info.channels()
    assert [IMG // f.shape[-1] for f in feats] == info.reduction()


# --- save_for_hf / local-dir: round trip --------------------------------------------------------------------------
def _roundtrip(name, tmp_path):
    from timm.models import save_for_hf
    model = _randomized(name)
    save_for_hf(model, str(tmp_path / name), safe_serialization=True)
    loaded = timm.create_model(f'local-dir:{tmp_path / name}', pretrained=True).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(_x()), model(_x()))


@pytest.mark.parametrize('name', representative_models(MODELS))
def test_save_for_hf_local_dir_roundtrip(name, tmp_path):
    _roundtrip(name, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize('name', MODELS)
def test_save_for_hf_local_dir_roundtrip_full_registry(name, tmp_path):
    _roundtrip(name, tmp_path)
