"""Warm start of a gated ResNet from its base model's published weights.

A gate that outputs a constant g (per channel) right after a BatchNorm can be folded away: scaling that BN's
weight and bias by 1/g makes ``gate(BN(x))`` equal the base ``BN(x)``. So a gated model loads every tensor of
the base checkpoint, its gates are made constant with their ``constant_init_(logit)`` (every gate parameter still
gets a gradient) and 1/g goes into the BN before each gate: before any fine-tuning the gated network computes the
base network's function exactly (up to float rounding), in eval and in train mode.

g is measured, not assumed: the constant-initialised gate is run in eval mode on a ones tensor. The folding holds
where a BatchNorm directly precedes the gate, possibly through a ReLU (ReLU is positively homogeneous and g > 0):
timm's standard placement (bn3 of a Bottleneck, bn2 of a BasicBlock) and SE-3x3 (bn2). SE-PRE, SE-POST and
SE-Identity have no BN right before their gate, so they cannot be warm-started.
"""
import copy
from typing import Dict, List, Optional, Tuple, Union

import torch
from torch import nn
from timm.models.resnet import BasicBlock, Bottleneck

__all__ = ['WARM_START_LOGIT', 'norm_before_gate', 'gate_sites', 'constant_gate', 'warm_start_state_dict']

#: Gates start at sigmoid(0) = 0.5, where the sigmoid is steepest (the largest gradient to learn from).
WARM_START_LOGIT = 0.0

_UNSET = object()
_TIMM_BLOCKS = {Bottleneck: 'bn3', BasicBlock: 'bn2'}  # timm's standard placement: gate after the last BN


def norm_before_gate(block: Union[nn.Module, type]) -> Optional[str]:
    """Name (inside the block) of the BatchNorm directly before the block's gate, or None where there is none.

    timm's own BasicBlock/Bottleneck gate the output of their last BN; the placement subclasses declare it in a
    ``norm_before_gate`` class attribute. Any other block is not known to have one.
    """
    declared = getattr(block, 'norm_before_gate', _UNSET)
    if declared is not _UNSET:
        return declared
    cls = block if isinstance(block, type) else type(block)
    return _TIMM_BLOCKS.get(cls)


def gate_sites(model: nn.Module) -> List[Tuple[str, str]]:
    """``(gate, norm)`` module names of every gated residual block of a timm ResNet, for folding.

    Raises ValueError if the model has no gates or a gate without a BatchNorm right before it.
    """
    sites = []
    for name, m in model.named_modules():
        if not isinstance(m, (BasicBlock, Bottleneck)) or getattr(m, 'se', None) is None:
            continue
        norm = norm_before_gate(m)
        if norm is None:
            raise ValueError(
                f"{name}: a {type(m).__name__} has no BatchNorm right before its gate "
                f"(placement {getattr(m, 'placement', '?')!r}), so base weights cannot be folded into it; "
                f"warm start works for the standard and SE-3x3 placements only")
        bn = m.get_submodule(norm)
        if not isinstance(bn, nn.modules.batchnorm._BatchNorm) or not bn.affine:
            raise ValueError(f"{name}.{norm}: warm start folds the gate into an affine BatchNorm, got {bn}")
        prefix = f'{name}.' if name else ''
        sites.append((f'{prefix}se', f'{prefix}{norm}'))
    if not sites:
        raise ValueError(f"{type(model).__name__} has no gated residual blocks to warm-start")
    return sites


@torch.no_grad()
def constant_gate(gate: nn.Module, channels: int, logit: float = WARM_START_LOGIT
                  ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """A constant-initialised copy of ``gate``: its per-channel output g (C,) and its state dict.

    g is the copy's eval-mode output on a ones tensor (the gate scales its input, so gate(1) = g).
    """
    if not hasattr(gate, 'constant_init_'):
        raise ValueError(
            f"{type(gate).__name__} has no constant_init_(), so it cannot be made a constant for a warm start")
    probe = copy.deepcopy(gate)
    probe.constant_init_(logit)
    probe.eval()
    ref = next(iter(probe.parameters()), None)
    kw = dict(device=ref.device, dtype=ref.dtype) if ref is not None else {}
    g = probe(torch.ones(1, channels, 1, 1, **kw)).flatten()
    if g.numel() != channels or not bool(torch.isfinite(g).all()) or not bool((g > 0).all()):
        raise ValueError(
            f"{type(gate).__name__}: the constant gate must be finite and positive on each of {channels} channels "
            f"to be folded into a BatchNorm, got {g}")
    return g, probe.state_dict()


def warm_start_state_dict(
        state_dict: Dict[str, torch.Tensor],
        model: nn.Module,
        logit: float = WARM_START_LOGIT,
) -> Dict[str, torch.Tensor]:
    """timm ``pretrained_filter_fn``: turn a base ResNet state dict into the gated model's (gates added, 1/g folded).

    A state dict that already holds every gate tensor (a trained gated checkpoint, e.g. ``local-dir:``) passes
    through unchanged, whatever the placement.
    """
    if model.state_dict().keys() <= state_dict.keys():
        return state_dict
    sites = gate_sites(model)
    gate_keys = {f'{g}.{k}' for g, _ in sites for k in model.get_submodule(g).state_dict()}
    present = gate_keys & state_dict.keys()
    if present == gate_keys:
        return state_dict
    if present:
        missing = sorted(gate_keys - present)
        raise ValueError(
            f"checkpoint holds some gate tensors but not all ({len(missing)} missing, e.g. {missing[0]}); "
            f"expected either a base (ungated) or a complete gated checkpoint")

    out = dict(state_dict)
    for gate_name, norm_name in sites:
        w_key, b_key = f'{norm_name}.weight', f'{norm_name}.bias'
        if w_key not in out or b_key not in out:
            raise ValueError(f"base checkpoint lacks {w_key} / {b_key}, the BatchNorm before gate {gate_name}")
        w, b = out[w_key], out[b_key]
        g, gate_state = constant_gate(model.get_submodule(gate_name), w.numel(), logit)
        g = g.to(device=w.device, dtype=torch.float32)
        out[w_key] = (w.float() / g).to(w.dtype)
        out[b_key] = (b.float() / g).to(b.dtype)
        out.update({f'{gate_name}.{k}': v.to(w.device) for k, v in gate_state.items()})
    return out
