"""Gated ResNet / ResNeXt / Wide ResNet built on timm's own ``ResNet``, ``BasicBlock`` and ``Bottleneck``.

Model names are ``<gate>_<base>``: the base is a timm ResNet (or ``wide_resnet18_2``, a BasicBlock ResNet-18
with widths 128/256/512/1024, which timm lacks) and the gate prefix picks the gate and where it sits:

* ``se`` (Hu et al., "Squeeze-and-Excitation Networks", r = 16), ``nosqueeze`` (its no-squeeze ablation),
  ``slowsq`` / ``slowex`` / ``slowsqex`` / ``bump`` (Mahendran, "Variations of squeeze and excitation networks",
  see ``SE_PROFILES``), ``ab`` / ``abplus`` (Singh et al., "Accuracy Booster"): timm's standard placement, on the
  residual branch before the sum (``block_args=dict(attn_layer=gate)``).
* ``se_pre``, ``se_post``, ``se_id``, ``se3x3``: SE at the other placements of Hu et al., Fig. 5 (SE-PRE,
  SE-POST, SE-Identity, SE-3x3), through the block subclasses of ``resnet_blocks.py``.

Pretrained tags ``<base tag>_warm`` (the default tag, e.g. ``ab_resnet50.a1_in1k_warm``) warm-start from timm's
published base weights: every base tensor is loaded, each gate is made a constant g and 1/g is folded into the
BatchNorm before it, so the model computes the base model exactly until it is fine-tuned (``_warm_start.py``).
The gates of these weights are untrained. No warm tag is offered for:

* SE-PRE, SE-POST and SE-Identity (``se_pre_``, ``se_post_``, ``se_id_``): no BatchNorm directly precedes their
  gate, so a constant gate cannot be folded away;
* ``wide_resnet18_2``: timm publishes no weights for it.

``pretrained=True`` on those raises a ValueError that says why.
"""
from typing import Any, Dict, NamedTuple, Optional, Tuple

from torch import nn
from timm.models import (
    build_model_with_cfg, generate_default_cfgs, get_pretrained_cfg, is_model, model_entrypoint,
    resolve_pretrained_cfg,
)
from timm.models.resnet import BasicBlock, Bottleneck, ResNet

from ..layers import get_gate
from ._common import imagenet_cfg, register_variants
from ._warm_start import norm_before_gate, warm_start_state_dict
from .resnet_blocks import placement_block

__all__ = ['GATE_PREFIXES', 'BASES', 'model_args']


class Base(NamedTuple):
    """A timm ResNet base architecture and the timm pretrained tag a warm start loads (None: no weights)."""
    block: type
    layers: Tuple[int, ...]
    args: Dict[str, Any]
    warm_from: Optional[str]


#: a1 / a1h (ResNet strikes back) in1k weights where timm has them; ResNeXt-101 32x4d has none, so Gluon's
#: in1k weights (apache-2.0; timm's default there is the non-commercial, semi-supervised fb_ssl set).
BASES: Dict[str, Base] = {
    'resnet18': Base(BasicBlock, (2, 2, 2, 2), {}, 'a1_in1k'),
    'resnet34': Base(BasicBlock, (3, 4, 6, 3), {}, 'a1_in1k'),
    'resnet50': Base(Bottleneck, (3, 4, 6, 3), {}, 'a1_in1k'),
    'resnet101': Base(Bottleneck, (3, 4, 23, 3), {}, 'a1h_in1k'),
    'resnet152': Base(Bottleneck, (3, 8, 36, 3), {}, 'a1h_in1k'),
    'resnext50_32x4d': Base(Bottleneck, (3, 4, 6, 3), dict(cardinality=32, base_width=4), 'a1h_in1k'),
    'resnext101_32x4d': Base(Bottleneck, (3, 4, 23, 3), dict(cardinality=32, base_width=4), 'gluon_in1k'),
    'wide_resnet18_2': Base(BasicBlock, (2, 2, 2, 2), dict(channels=(128, 256, 512, 1024)), None),
}

#: name prefix -> (gate name in ``timm_recal.layers.GATES``, placement)
GATE_PREFIXES: Dict[str, Tuple[str, str]] = {
    'se': ('se', 'standard'),
    'se_pre': ('se', 'pre'),
    'se_post': ('se', 'post'),
    'se_id': ('se', 'identity'),
    'se3x3': ('se', '3x3'),
    'nosqueeze': ('nosqueeze', 'standard'),
    'slowsq': ('slowsq', 'standard'),
    'slowex': ('slowex', 'standard'),
    'slowsqex': ('slowsqex', 'standard'),
    'bump': ('bump', 'standard'),
    'ab': ('ab', 'standard'),
    'abplus': ('abplus', 'standard'),
}

_BOOSTED = ('resnet18', 'resnet34', 'resnet50', 'resnet101', 'resnet152', 'resnext50_32x4d', 'resnext101_32x4d',
            'wide_resnet18_2')
_VARIANTS: Dict[str, Tuple[str, ...]] = {
    'ab': _BOOSTED,
    'abplus': _BOOSTED,
    **{p: ('resnet50',) for p in ('se_pre', 'se_post', 'se_id', 'se3x3', 'nosqueeze')},
    **{p: ('resnet18',) for p in ('se', 'slowsq', 'slowex', 'slowsqex', 'bump')},
}

#: variant name -> dict(base, gate, placement)
model_args: Dict[str, Dict[str, str]] = {
    f'{prefix}_{base}': dict(base=base, gate=GATE_PREFIXES[prefix][0], placement=GATE_PREFIXES[prefix][1])
    for prefix, bases in _VARIANTS.items() for base in bases
}


def _block(variant: str) -> type:
    v = model_args[variant]
    return placement_block(BASES[v['base']].block, v['placement'])


def _warm_source(variant: str) -> Optional[str]:
    """``base.tag`` whose published weights this variant warm-starts from, or None."""
    v = model_args[variant]
    tag = BASES[v['base']].warm_from
    if tag is None or norm_before_gate(_block(variant)) is None:
        return None
    return f"{v['base']}.{tag}"


def _cfg(**kwargs) -> Dict[str, Any]:
    return imagenet_cfg(first_conv='conv1', classifier='fc', **kwargs)


def _warm_cfg(variant: str, source: str) -> Optional[Dict[str, Any]]:
    """The base tag's own data config and weights, described honestly; None if timm lacks that tag."""
    base_cfg = get_pretrained_cfg(source)
    if base_cfg is None or not base_cfg.hf_hub_id:
        return None
    cfg = base_cfg.to_dict(remove_source=True)
    for key in ('architecture', 'tag', 'custom_load', 'paper_ids', 'paper_name', 'description', 'notes'):
        cfg.pop(key, None)
    cfg.update(
        hf_hub_id=base_cfg.hf_hub_id,
        description=(
            f"{variant} warm-started from {base_cfg.hf_hub_id}: the base weights, each gate a constant "
            f"and its inverse folded into the preceding BatchNorm, so it computes {source} exactly. "
            f"The gates are untrained: fine-tune before reporting gated accuracy."),
        notes=('gates untrained (constant init); model output equals the base model until fine-tuned',),
    )
    return cfg


def _cfgs() -> Dict[str, Dict[str, Any]]:
    cfgs = {}
    for name in model_args:
        source = _warm_source(name)
        warm = _warm_cfg(name, source) if source else None
        if warm is not None:
            cfgs[f"{name}.{source.split('.', 1)[1]}_warm"] = warm
        else:
            cfgs[name] = _cfg()
    return cfgs


default_cfgs = generate_default_cfgs(_cfgs())


def _no_weights_reason(variant: str) -> str:
    v = model_args[variant]
    source = _warm_source(variant)
    if BASES[v['base']].warm_from is None or (source and not get_pretrained_cfg(variant).has_weights):
        return f"timm publishes no {v['base']} weights to warm-start from"
    if source is None:
        return (f"the {v['placement']!r} gate placement has no BatchNorm right before the gate, so {v['base']} "
                f"weights cannot be loaded with the gate folded away (warm start needs the standard or SE-3x3 "
                f"placement)")
    return "the pretrained_cfg given names no weights"


def _create_resnet_gated(variant: str, pretrained: bool = False, **kwargs) -> ResNet:
    """Build ``variant`` as a timm ``ResNet``.

    ``gate_args`` (dict) are passed to the gate (e.g. ``reduction``); other ``block_args`` pass through to the
    blocks, but the gate itself comes from the model name.
    """
    v = model_args[variant]
    base = BASES[v['base']]
    block_args = dict(kwargs.pop('block_args', None) or {})
    if 'attn_layer' in block_args:
        raise ValueError(f"{variant}: the gate is given by the model name; use gate_args=dict(...) to configure it")
    block_args['attn_layer'] = get_gate(v['gate'], **(kwargs.pop('gate_args', None) or {}))
    if pretrained:
        cfg = resolve_pretrained_cfg(
            variant, kwargs.get('pretrained_cfg'), kwargs.get('pretrained_cfg_overlay'))
        if not (cfg.has_weights or cfg.state_dict is not None):
            raise ValueError(
                f"{variant} has no pretrained weights: {_no_weights_reason(variant)}. Use pretrained=False, or "
                f"give weights with pretrained_cfg_overlay=dict(file=...).")
    model_kwargs = dict(block=_block(variant), layers=base.layers, **base.args)
    model_kwargs.update(kwargs)
    return build_model_with_cfg(
        ResNet, variant, pretrained,
        pretrained_filter_fn=warm_start_state_dict,
        block_args=block_args,
        **model_kwargs,
    )


def _check_names() -> None:
    """timm's own models (resnet50, seresnet50, ...) are never re-registered."""
    clash = [n for n in model_args if is_model(n) and model_entrypoint(n).__module__ != __name__]
    if clash:
        raise RuntimeError(f"timm already registers {', '.join(clash)}; timm-recal must not overwrite it")


_check_names()
register_variants(
    model_args, _create_resnet_gated, __name__,
    doc='Gated timm ResNet ``{name}`` (gate and placement from its name; see the module docstring).')
