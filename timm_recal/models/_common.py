"""Pieces shared by the model files: default cfgs, weight init, timm's classifier API, deprecated kwargs."""
import math
import numbers
import re
import warnings
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import torch
from torch import nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import LayerType, get_act_layer, get_norm_layer
from timm.models import build_model_with_cfg, resolve_pretrained_cfg

from ..errors import RecalError
from ..layers._helpers import check_positive_int

__all__ = ['CIFAR10_MEAN', 'CIFAR10_STD', 'HUB_ORG', 'imagenet_cfg', 'cifar_cfg', 'init_conv_weights_',
           'warn_renamed_kwarg', 'ClassifierHeadMixin', 'resolve_act_layer', 'resolve_norm_layer',
           'check_widths', 'check_io', 'check_drop_rate', 'build_model', 'PretrainedWeightsError']

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

#: The Hub organisation of the trained weights (``hf_hub_id`` of the ``.cifar10`` tags).
HUB_ORG = 'timm-recal'


def imagenet_cfg(url: str = '', **kwargs) -> Dict[str, Any]:
    return {
        'url': url, 'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7),
        'crop_pct': 0.875, 'interpolation': 'bilinear', 'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'stem.conv', 'classifier': 'head.fc', 'license': 'apache-2.0', **kwargs,
    }


def cifar_cfg(url: str = '', **kwargs) -> Dict[str, Any]:
    """CIFAR models see the whole 32x32 image: no resize, crop_pct 1.0, CIFAR-10 statistics."""
    return {
        'url': url, 'num_classes': 10, 'input_size': (3, 32, 32), 'pool_size': (4, 4),
        'crop_pct': 1.0, 'crop_mode': 'center', 'interpolation': 'bilinear',
        'mean': CIFAR10_MEAN, 'std': CIFAR10_STD,
        'first_conv': 'stem.conv', 'classifier': 'head.fc', 'license': 'apache-2.0', **kwargs,
    }


class PretrainedWeightsError(RecalError):
    """``pretrained=True`` could not load the weights; the message names them and says what to do. A
    ``RuntimeError`` (via ``RecalError``), as timm's own "No pretrained weights exist" and PyTorch's state dict
    errors are."""


def _weights_location(variant: str, kwargs: Dict[str, Any]) -> str:
    """Where ``pretrained=True`` loads ``variant``'s weights from, as a user names it (``local-dir:FOLDER``,
    ``hf-hub:ORG/NAME``, a file or URL), resolved as timm's ``load_pretrained`` does."""
    try:
        cfg = resolve_pretrained_cfg(variant, kwargs.get('pretrained_cfg'), kwargs.get('pretrained_cfg_overlay'))
        cfg = cfg.to_dict() if hasattr(cfg, 'to_dict') else dict(cfg)
    except Exception:  # noqa: BLE001  (only a better message depends on it)
        return variant
    if cfg.get('source') == 'local-dir' and cfg.get('file'):
        return f"local-dir:{cfg['file']}"
    if cfg.get('state_dict') is not None:
        return 'the given state_dict'
    if cfg.get('file'):
        return str(cfg['file'])
    if cfg.get('hf_hub_id'):
        return f"hf-hub:{cfg['hf_hub_id']}"
    return str(cfg.get('url') or variant)


def _few(keys: Sequence[str]) -> str:
    return ', '.join(keys[:3]) + (f' (+{len(keys) - 3})' if len(keys) > 3 else '')


def _load_mismatch(text: str) -> str:
    """PyTorch's many-line ``load_state_dict`` error (every key, quoted) as counts and the first few keys."""
    parts = []
    for label, pattern in (('missing', r'Missing key\(s\) in state_dict: ([^\n]*)'),
                           ('unexpected', r'Unexpected key\(s\) in state_dict: ([^\n]*)')):
        found = re.search(pattern, text)
        keys = re.findall(r'"([^"]+)"', found.group(1)) if found else []
        if keys:
            parts.append(f'{len(keys)} {label} ({_few(keys)})')
    shapes = re.findall(r'size mismatch for ([^:\s]+):', text)
    if shapes:
        parts.append(f'{len(shapes)} of another shape ({_few(shapes)})')
    return '; '.join(parts) or (text.strip().splitlines() or [''])[0][:200]


def _hub_unreachable_errors() -> Tuple[type, ...]:
    """What huggingface_hub raises for weights that are not cached while the Hub cannot be asked."""
    try:
        from huggingface_hub import errors
    except ImportError:
        return ()
    return tuple(getattr(errors, n) for n in ('LocalEntryNotFoundError', 'OfflineModeIsEnabled') if hasattr(errors, n))


def build_model(model_cls: type, variant: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """timm's ``build_model_with_cfg``, with a failed weights load said in one line that names the weights and what
    to do: uncached Hub weights while offline (huggingface_hub says only "check your connection", naming neither
    the model nor the repo) and weights of another model (PyTorch lists every missing and unexpected key)."""
    try:
        return build_model_with_cfg(model_cls, variant, pretrained, **kwargs)
    except Exception as e:
        if not pretrained:
            raise
        where = _weights_location(variant, kwargs)
        offline = _hub_unreachable_errors()
        if offline and isinstance(e, offline):
            # our own trained weights come as save_for_hf folders (weights/<arch>.<tag>); timm's as single files
            ours = where.startswith(f'hf-hub:{HUB_ORG}/')
            local = ("load a save_for_hf folder of them with timm.create_model('local-dir:FOLDER', pretrained=True)"
                     if ours else "give a downloaded copy with pretrained_cfg_overlay=dict(file=PATH)")
            raise PretrainedWeightsError(
                f"{variant}: pretrained weights {where} are not in the local Hugging Face cache and the Hub cannot "
                f"be reached (offline: HF_HUB_OFFLINE=1, or no network); download them once with network access, "
                f"{local}, or use pretrained=False") from None
        if isinstance(e, RuntimeError) and 'Error(s) in loading state_dict' in str(e):
            raise PretrainedWeightsError(
                f"{variant}: the weights of {where} do not fit it (keys: {_load_mismatch(str(e))}); they are "
                f"another model's, or of another configuration") from None
        raise


def warn_renamed_kwarg(old: str, new: str, owner: str) -> None:
    """A deprecated keyword still works for now, and says which one replaces it."""
    warnings.warn(f"{owner}: {old} is deprecated, use {new} (the same setting on every timm-recal model)",
                  FutureWarning, stacklevel=3)


def _resolve_layer(value: LayerType, get: Callable[[LayerType], Any], owner: str, what: str, kind: str,
                   example: str) -> Callable[..., nn.Module]:
    """timm's ``get_act_layer`` / ``get_norm_layer`` (``get``) of ``value``, refusing in one line an unknown name
    (a bare KeyError) and what timm reads as "none" (``''``, None): the model was built and only its first forward
    failed, with ``'NoneType' object is not callable``."""
    try:
        layer = get(value)
    except KeyError:
        raise ValueError(f"{owner}: {what} {value!r} is not {kind} timm knows (e.g. {example})") from None
    if layer is None:
        raise ValueError(f"{owner}: {what} {value!r} names no {kind.split(' ', 1)[1]}; this model needs one "
                         f"(e.g. {example})")
    return layer


def resolve_act_layer(act_layer: LayerType, owner: str, what: str = 'act_layer') -> Callable[..., nn.Module]:
    """The activation class of ``act_layer``; "no activation" and unknown names refused (``_resolve_layer``)."""
    return _resolve_layer(act_layer, get_act_layer, owner, what, 'an activation', "'relu', 'silu', nn.ReLU")


def resolve_norm_layer(norm_layer: LayerType, owner: str) -> Callable[..., nn.Module]:
    """The norm class of ``norm_layer``; "no norm" and unknown names refused (``_resolve_layer``)."""
    return _resolve_layer(norm_layer, get_norm_layer, owner, 'norm_layer', 'a norm layer',
                          "'batchnorm2d', nn.BatchNorm2d")


def check_widths(values: Any, what: str, owner: str) -> Tuple[int, ...]:
    """A sequence of positive ints (channel widths, blocks per stage). A float reached torch as an unclear
    "out_channels must be divisible by groups", a 0 built a model that failed at its first forward, and a bool
    (``True``) silently built a width or depth of 1."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"{owner}: {what} must be a sequence of positive integers, got {values!r}")
    return tuple(check_positive_int(v, f"{what}[{i}]", owner) for i, v in enumerate(values))


def check_io(in_chans: Any, num_classes: Any, owner: str) -> None:
    """``in_chans`` a positive int (0 built a model no input fits); ``num_classes`` an int. As in timm,
    ``num_classes <= 0`` means no classifier (features only) and is accepted; a float or bool is not."""
    check_positive_int(in_chans, 'in_chans', owner)
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral):
        raise TypeError(f"{owner}: num_classes must be an integer (0 for no classifier), got {num_classes!r}")


def check_drop_rate(rate: Any, owner: str, what: str = 'drop_rate', high_open: bool = False) -> None:
    """A dropout probability in [0, 1] as torch (and timm) accept it, or [0, 1) with ``high_open``; NaN was
    passed to ``nn.Dropout`` silently."""
    ok = isinstance(rate, numbers.Real) and not isinstance(rate, bool) and math.isfinite(rate) \
        and 0. <= rate and (rate < 1. if high_open else rate <= 1.)
    if not ok:
        raise ValueError(f"{owner}: {what} must be in [0, 1{')' if high_open else ']'}, got {rate!r}")


def init_conv_weights_(model: nn.Module, mode: str = 'kaiming_fan_out') -> None:
    """Conv init selectable as a model kwarg (``conv_init=``) so training recipes need no custom code.

    ``'kaiming_fan_out'``: He normal init, fan_out, ReLU gain (Wang & Yuan; torchvision ResNet);
    ``'kaiming_fan_in'``; ``'torch'`` keeps PyTorch's default (Kaiming uniform, a=sqrt(5)).
    BatchNorm starts at weight 1, bias 0 in every mode.
    """
    if mode not in ('kaiming_fan_out', 'kaiming_fan_in', 'torch'):
        raise ValueError(f"conv_init must be 'kaiming_fan_out', 'kaiming_fan_in' or 'torch', got {mode!r}")
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and mode != 'torch':
            nn.init.kaiming_normal_(m.weight, mode=mode.split('_', 1)[1], nonlinearity='relu')
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class ClassifierHeadMixin:
    """timm's classifier API for models whose head is a ``timm.layers.ClassifierHead`` at ``self.head``."""

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self, name_only: bool = False) -> Union[str, nn.Module]:
        return 'head.fc' if name_only else self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """A new classifier on the model's device and dtype, in its training mode (timm's contract: after
        ``model.to(...)``, a head built with torch's defaults would sit on the CPU in float32)."""
        like = next(self.parameters(), None)
        self.num_classes = num_classes
        self.head.reset(num_classes, global_pool)  # timm < 1.0.31's reset takes no device/dtype
        if like is not None:
            self.head.to(device=like.device, dtype=like.dtype)
        self.head.train(self.training)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)
