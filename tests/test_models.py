"""Every registered timm-recal model, timm's way: forward, backward, cfg, classifier API, features, fx."""
import pytest
import timm
import torch
from torch import nn

from timm_recal.registry import recal_models

MODELS = recal_models()


def _input_size(model: nn.Module) -> int:
    """Small inputs keep the suite fast: 32 px for CIFAR-style nets, 64 px for ImageNet ones."""
    return 32 if model.pretrained_cfg['input_size'][-1] <= 32 else 64


def _get(model: nn.Module, path: str) -> nn.Module:
    return model.get_submodule(path)


def test_registry_is_populated():
    assert len(MODELS) > 50
    assert 'se_shufflenetv2' in MODELS and 'shufflenetv2_cifar' in MODELS
    assert 'resnet50' not in MODELS  # timm's own bases are never re-registered


@pytest.mark.parametrize('name', MODELS)
def test_model_api(name):
    torch.manual_seed(0)
    model = timm.create_model(name).eval()
    cfg = model.pretrained_cfg
    s = _input_size(model)

    # forward: eval, batch 1, finite
    with torch.no_grad():
        out = model(torch.randn(1, 3, s, s))
    assert out.shape == (1, model.num_classes) and torch.isfinite(out).all()

    # default cfg is consistent with the model
    assert cfg['num_classes'] == model.num_classes
    assert len(cfg['mean']) == len(cfg['std']) == 3 and cfg['input_size'][0] == 3
    first = _get(model, cfg['first_conv'])
    assert isinstance(first, nn.Conv2d) and first.in_channels == 3
    assert _get(model, cfg['classifier']) is model.get_classifier()
    assert model.get_classifier().out_features == model.num_classes
    assert cfg.get('license')
    with torch.no_grad():
        feat = model.forward_features(torch.randn(1, 3, s, s))
    assert feat.shape[1] == model.num_features
    stride = model.feature_info[-1]['reduction']
    assert tuple(cfg['pool_size']) == tuple(d // stride for d in cfg['input_size'][1:])  # at the default size
    assert tuple(feat.shape[-2:]) == (s // stride, s // stride)
    assert model.forward_head(feat, pre_logits=True).shape == (1, model.num_features)

    # backward: train, batch 2, every parameter receives a gradient
    model.train()
    model(torch.randn(2, 3, s, s)).logsumexp(-1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f'no gradient for {missing[:5]}'

    # classifier reset
    model.reset_classifier(7)
    model.eval()
    assert model(torch.randn(2, 3, s, s)).shape == (2, 7)
    model.reset_classifier(0)
    assert model(torch.randn(2, 3, s, s)).shape == (2, model.num_features)

    # torch.fx symbolic trace reproduces the model
    model = timm.create_model(name, num_classes=3).eval()
    traced = torch.fx.symbolic_trace(model)
    x = torch.randn(2, 3, s, s)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x))


@pytest.mark.parametrize('name', MODELS)
def test_create_kwargs(name):
    """num_classes=0, in_chans, drop_rate and features_only, as timm users pass them."""
    model = timm.create_model(name, num_classes=0, in_chans=1, drop_rate=0.2).eval()
    s = _input_size(model)
    assert model(torch.randn(2, 1, s, s)).shape == (2, model.num_features)

    feats_model = timm.create_model(name, features_only=True).eval()
    feats = feats_model(torch.randn(1, 3, s, s))
    info = feats_model.feature_info
    assert [f.shape[1] for f in feats] == info.channels()
    assert [s // f.shape[-1] for f in feats] == info.reduction()


def _representatives(names):
    """The smallest variant of each (gate prefix, family), so CI covers every gate on every family."""
    from timm_recal.registry import model_params
    groups = {}
    for name in names:
        family = ('shufflenetv2_cifar' if 'shufflenetv2' in name and 'cifar' in name else
                  'shufflenetv2' if 'shufflenetv2' in name else 'cnn3' if 'cnn3' in name else
                  'wrn' if 'wrn' in name else 'resnet_cifar' if name.endswith('_cifar') else 'resnet')
        gate = name.split('_')[0] if '_' in name and name.split('_')[0] in (
            'se', 'sle', 'ab', 'abplus', 'slowsq', 'slowex', 'slowsqex', 'bump', 'nosqueeze', 'se3x3') else ''
        if name.startswith(('se_pre_', 'se_post_', 'se_id_')):
            gate = '_'.join(name.split('_')[:2])
        groups.setdefault((gate, family), []).append(name)
    return sorted(min(v, key=model_params) for v in groups.values())


def _roundtrip(name, tmp_path):
    from timm.models import save_for_hf
    torch.manual_seed(0)
    model = timm.create_model(name).eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    save_for_hf(model, str(tmp_path / name), safe_serialization=True)
    loaded = timm.create_model(f'local-dir:{tmp_path / name}', pretrained=True).eval()
    x = torch.randn(2, 3, _input_size(model), _input_size(model))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


@pytest.mark.parametrize('name', _representatives(MODELS))
def test_save_for_hf_local_dir_roundtrip(name, tmp_path):
    _roundtrip(name, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize('name', MODELS)
def test_save_for_hf_local_dir_roundtrip_full_registry(name, tmp_path):
    _roundtrip(name, tmp_path)
