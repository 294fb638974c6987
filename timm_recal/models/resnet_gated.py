"""Gated ResNet / ResNeXt / Wide ResNet built on timm's own ``ResNet``, ``BasicBlock`` and ``Bottleneck``.

Model names are ``<gate>_<base>``: the base is a timm ResNet (or ``wide_resnet18_2``, a BasicBlock ResNet-18
with widths 128/256/512/1024, which timm lacks and which is registered plain as well, the baseline of
Singh et al.'s WRN-18-2 rows) and the gate prefix picks the gate and where it sits:

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

from timm.models import (
    generate_default_cfgs, get_pretrained_cfg, is_model, model_entrypoint, register_model,
    resolve_pretrained_cfg,
)
from timm.models.resnet import BasicBlock, Bottleneck, ResNet

from ..layers import get_gate
from ._common import build_model, imagenet_cfg, resolve_act_layer, warn_renamed_kwarg
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

#: variant name -> dict(base, gate, placement); gate None: a plain base that timm lacks
model_args: Dict[str, Dict[str, Optional[str]]] = {
    f'{prefix}_{base}': dict(base=base, gate=GATE_PREFIXES[prefix][0], placement=GATE_PREFIXES[prefix][1])
    for prefix, bases in _VARIANTS.items() for base in bases
}
model_args['wide_resnet18_2'] = dict(base='wide_resnet18_2', gate=None, placement='standard')


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
    if v['gate'] is None:
        return f"timm publishes no {v['base']} weights"
    if BASES[v['base']].warm_from is None or (source and not get_pretrained_cfg(variant).has_weights):
        return f"timm publishes no {v['base']} weights to warm-start from"
    if source is None:
        return (f"the {v['placement']!r} gate placement has no BatchNorm right before the gate, so {v['base']} "
                f"weights cannot be loaded with the gate folded away (warm start needs the standard or SE-3x3 "
                f"placement)")
    return "the pretrained_cfg given names no weights"


def _create_resnet_gated(variant: str, pretrained: bool = False, attn_reduction: Optional[float] = None,
                         **kwargs) -> ResNet:
    """Build ``variant`` as a timm ``ResNet``.

    ``attn_reduction`` is the gate's reduction ratio r (SE family; AB / AB-Plus have none), as on every timm-recal
    model. ``gate_args`` (dict) go to the gate as well (e.g. ``gate_layer``; ``reduction`` there is the deprecated
    old spelling of ``attn_reduction``); other ``block_args`` pass through to the blocks, but the gate itself
    comes from the model name.
    """
    v = model_args[variant]
    base = BASES[v['base']]
    if 'act_layer' in kwargs:  # timm's ResNet reads '' / None as "no activation", then calls it (TypeError)
        resolve_act_layer(kwargs['act_layer'], variant)
    block_args = dict(kwargs.pop('block_args', None) or {})
    gate_args = dict(kwargs.pop('gate_args', None) or {})
    if 'reduction' in gate_args:
        warn_renamed_kwarg('gate_args=dict(reduction=...)', 'attn_reduction=', variant)
        attn_reduction = gate_args.pop('reduction')
    if attn_reduction is not None:
        gate_args['reduction'] = attn_reduction
    if v['gate'] is not None:
        if 'attn_layer' in block_args:
            raise ValueError(
                f"{variant}: the gate is given by the model name; use attn_reduction= or gate_args=dict(...) to "
                f"configure it")
        block_args['attn_layer'] = get_gate(v['gate'], **gate_args)
    elif gate_args:
        raise ValueError(f"{variant} has no gate to configure, got {', '.join(gate_args)}")
    if pretrained:
        cfg = resolve_pretrained_cfg(
            variant, kwargs.get('pretrained_cfg'), kwargs.get('pretrained_cfg_overlay'))
        if not (cfg.has_weights or cfg.state_dict is not None):
            raise ValueError(
                f"{variant} has no pretrained weights: {_no_weights_reason(variant)}. Use pretrained=False, or "
                f"give weights with pretrained_cfg_overlay=dict(file=...).")
    model_kwargs = dict(block=_block(variant), layers=base.layers, **base.args)
    model_kwargs.update(kwargs)
    return build_model(
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


@register_model
def ab_resnet18(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-18 (timm) with Accuracy Booster gates (Singh et al.); ``pretrained=True`` warm-starts from timm's
    ``resnet18.a1_in1k``.
    """
    return _create_resnet_gated('ab_resnet18', pretrained, **kwargs)


@register_model
def ab_resnet34(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-34 (timm) with Accuracy Booster gates (Singh et al.); ``pretrained=True`` warm-starts from timm's
    ``resnet34.a1_in1k``.
    """
    return _create_resnet_gated('ab_resnet34', pretrained, **kwargs)


@register_model
def ab_resnet50(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-50 (timm) with Accuracy Booster gates (Singh et al.); ``pretrained=True`` warm-starts from timm's
    ``resnet50.a1_in1k``.
    """
    return _create_resnet_gated('ab_resnet50', pretrained, **kwargs)


@register_model
def ab_resnet101(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-101 (timm) with Accuracy Booster gates (Singh et al.); ``pretrained=True`` warm-starts from timm's
    ``resnet101.a1h_in1k``.
    """
    return _create_resnet_gated('ab_resnet101', pretrained, **kwargs)


@register_model
def ab_resnet152(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-152 (timm) with Accuracy Booster gates (Singh et al.); ``pretrained=True`` warm-starts from timm's
    ``resnet152.a1h_in1k``.
    """
    return _create_resnet_gated('ab_resnet152', pretrained, **kwargs)


@register_model
def ab_resnext50_32x4d(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNeXt-50 32x4d (timm) with Accuracy Booster gates (Singh et al.); ``pretrained=True`` warm-starts from timm's
    ``resnext50_32x4d.a1h_in1k``.
    """
    return _create_resnet_gated('ab_resnext50_32x4d', pretrained, **kwargs)


@register_model
def ab_resnext101_32x4d(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNeXt-101 32x4d (timm) with Accuracy Booster gates (Singh et al.); ``pretrained=True`` warm-starts from timm's
    ``resnext101_32x4d.gluon_in1k``.
    """
    return _create_resnet_gated('ab_resnext101_32x4d', pretrained, **kwargs)


@register_model
def ab_wide_resnet18_2(pretrained: bool = False, **kwargs) -> ResNet:
    """Wide ResNet-18-2 (timm) with Accuracy Booster gates (Singh et al.)."""
    return _create_resnet_gated('ab_wide_resnet18_2', pretrained, **kwargs)


@register_model
def abplus_resnet18(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-18 (timm) with AB-Plus gates (Singh et al.); ``pretrained=True`` warm-starts from timm's
    ``resnet18.a1_in1k``.
    """
    return _create_resnet_gated('abplus_resnet18', pretrained, **kwargs)


@register_model
def abplus_resnet34(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-34 (timm) with AB-Plus gates (Singh et al.); ``pretrained=True`` warm-starts from timm's
    ``resnet34.a1_in1k``.
    """
    return _create_resnet_gated('abplus_resnet34', pretrained, **kwargs)


@register_model
def abplus_resnet50(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-50 (timm) with AB-Plus gates (Singh et al.); ``pretrained=True`` warm-starts from timm's
    ``resnet50.a1_in1k``.
    """
    return _create_resnet_gated('abplus_resnet50', pretrained, **kwargs)


@register_model
def abplus_resnet101(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-101 (timm) with AB-Plus gates (Singh et al.); ``pretrained=True`` warm-starts from timm's
    ``resnet101.a1h_in1k``.
    """
    return _create_resnet_gated('abplus_resnet101', pretrained, **kwargs)


@register_model
def abplus_resnet152(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-152 (timm) with AB-Plus gates (Singh et al.); ``pretrained=True`` warm-starts from timm's
    ``resnet152.a1h_in1k``.
    """
    return _create_resnet_gated('abplus_resnet152', pretrained, **kwargs)


@register_model
def abplus_resnext50_32x4d(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNeXt-50 32x4d (timm) with AB-Plus gates (Singh et al.); ``pretrained=True`` warm-starts from timm's
    ``resnext50_32x4d.a1h_in1k``.
    """
    return _create_resnet_gated('abplus_resnext50_32x4d', pretrained, **kwargs)


@register_model
def abplus_resnext101_32x4d(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNeXt-101 32x4d (timm) with AB-Plus gates (Singh et al.); ``pretrained=True`` warm-starts from timm's
    ``resnext101_32x4d.gluon_in1k``.
    """
    return _create_resnet_gated('abplus_resnext101_32x4d', pretrained, **kwargs)


@register_model
def abplus_wide_resnet18_2(pretrained: bool = False, **kwargs) -> ResNet:
    """Wide ResNet-18-2 (timm) with AB-Plus gates (Singh et al.)."""
    return _create_resnet_gated('abplus_wide_resnet18_2', pretrained, **kwargs)


@register_model
def se_pre_resnet50(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-50 (timm) with SE-PRE (Hu et al. 2018, Fig. 5: gate on the block input)."""
    return _create_resnet_gated('se_pre_resnet50', pretrained, **kwargs)


@register_model
def se_post_resnet50(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-50 (timm) with SE-POST (Hu et al. 2018, Fig. 5: gate after the sum)."""
    return _create_resnet_gated('se_post_resnet50', pretrained, **kwargs)


@register_model
def se_id_resnet50(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-50 (timm) with SE-Identity (Hu et al. 2018, Fig. 5: gate on the identity branch)."""
    return _create_resnet_gated('se_id_resnet50', pretrained, **kwargs)


@register_model
def se3x3_resnet50(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-50 (timm) with SE-3x3 (Hu et al. 2018, Fig. 5: gate after the 3x3 conv); ``pretrained=True`` warm-starts
    from timm's ``resnet50.a1_in1k``.
    """
    return _create_resnet_gated('se3x3_resnet50', pretrained, **kwargs)


@register_model
def nosqueeze_resnet50(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-50 (timm) with Hu et al.'s NoSqueeze ablation (no pooling); ``pretrained=True`` warm-starts from timm's
    ``resnet50.a1_in1k``.
    """
    return _create_resnet_gated('nosqueeze_resnet50', pretrained, **kwargs)


@register_model
def se_resnet18(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-18 (timm) with SE (Hu et al. 2018, r = 16) at the standard position; ``pretrained=True`` warm-starts from
    timm's ``resnet18.a1_in1k``.
    """
    return _create_resnet_gated('se_resnet18', pretrained, **kwargs)


@register_model
def slowsq_resnet18(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-18 (timm) with Mahendran's slow-squeeze SE variant; ``pretrained=True`` warm-starts from timm's
    ``resnet18.a1_in1k``.
    """
    return _create_resnet_gated('slowsq_resnet18', pretrained, **kwargs)


@register_model
def slowex_resnet18(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-18 (timm) with Mahendran's slow-excite SE variant; ``pretrained=True`` warm-starts from timm's
    ``resnet18.a1_in1k``.
    """
    return _create_resnet_gated('slowex_resnet18', pretrained, **kwargs)


@register_model
def slowsqex_resnet18(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-18 (timm) with Mahendran's slow-squeeze + slow-excite SE variant; ``pretrained=True`` warm-starts from
    timm's ``resnet18.a1_in1k``.
    """
    return _create_resnet_gated('slowsqex_resnet18', pretrained, **kwargs)


@register_model
def bump_resnet18(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-18 (timm) with Mahendran's bump SE variant; ``pretrained=True`` warm-starts from timm's
    ``resnet18.a1_in1k``.
    """
    return _create_resnet_gated('bump_resnet18', pretrained, **kwargs)


@register_model
def wide_resnet18_2(pretrained: bool = False, **kwargs) -> ResNet:
    """Wide ResNet-18-2: timm's ResNet-18 with widths 128/256/512/1024 (BasicBlock), the plain baseline of
    Singh et al.'s WRN-18-2 rows ("Accuracy Booster"); no pretrained weights.
    """
    return _create_resnet_gated('wide_resnet18_2', pretrained, **kwargs)

