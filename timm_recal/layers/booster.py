"""Accuracy Booster gates: Singh et al., "Accuracy Booster: Performance Boosting using Feature Map
Re-calibration".

AB recalibrates channels with GAP -> 1x1 depthwise conv (no bias, C weights) -> BN -> sigmoid; AB-Plus uses a
full 1x1 conv (C^2 weights); any ``groups`` in between is the paper's group ablation. ``BoosterGate`` also
builds the paper's ablation designs (its Tables 11-14), which only differ in which of these optional steps
run: a k x k spatial conv, the pooling, the 1x1 channel mix and the BN.
"""
import numbers
from typing import Optional, Union

import torch
from torch import nn
from timm.layers import LayerType

from ._helpers import assert_batch_for_norm, check_groups, check_map_size, create_gate_act, is_sigmoid

__all__ = ['BoosterGate']

GroupsType = Union[int, str, None]


def _resolve_groups(channels: int, groups: GroupsType, name: str) -> Optional[int]:
    """``'dw'`` -> C (depthwise), ``'full'`` -> 1, an int -> itself, None -> no conv.

    A float or bool is refused, not truncated: ``2.5`` would otherwise build the G=2 ablation.
    """
    if groups is None:
        return None
    if groups == 'dw':
        return channels
    if groups == 'full':
        return 1
    if isinstance(groups, (str, bool)) or not isinstance(groups, numbers.Integral):
        raise ValueError(f"{name}: groups must be 'dw', 'full' or an int, got {groups!r}")
    check_groups(channels, int(groups), name)
    return int(groups)


class BoosterGate(nn.Module):
    """[k x k conv] -> [pool] -> [1x1 conv, ``mix_groups``] -> [BN] -> gate -> scale.

    Args:
        channels: C.
        mix_groups: groups of the bias-free 1x1 conv after pooling: ``'dw'`` (= C, AB), ``'full'``
            (= 1, AB-Plus), an int G dividing C (group ablation), or None (no conv).
        norm: BatchNorm before the gate.
        pool: ``'avg'`` (GAP), ``'dw_weighted'`` (a depthwise conv whose kernel is the whole
            ``feat_size`` map: a learned per-channel weighted average, design G) or None (per-pixel gate).
        spatial_kernel: k of a k x k conv (padding k // 2) before pooling; 0 for none.
        spatial_groups: groups of that conv, ``'dw'`` or ``'full'``.
        feat_size: the input map size, needed by ``pool='dw_weighted'`` only.
        gate_layer: the gate nonlinearity, ``'sigmoid'`` in the paper.
        reduction, rd_ratio, rd_channels, rd_divisor, act_layer: accepted and without effect. AB has no
            squeeze MLP (nothing to reduce, no hidden activation); a model's ``attn_reduction`` and timm's
            builders (``rd_ratio``, ``act_layer``) hand them to whatever gate they build. Any other keyword is a
            TypeError, so a misspelt ablation setting cannot silently build another design.
    """

    def __init__(
            self,
            channels: int,
            mix_groups: GroupsType = 'dw',
            norm: bool = True,
            pool: Optional[str] = 'avg',
            spatial_kernel: int = 0,
            spatial_groups: GroupsType = 'dw',
            feat_size: Optional[Union[int, tuple]] = None,
            gate_layer: LayerType = 'sigmoid',
            reduction: Optional[float] = None,
            rd_ratio: Optional[float] = None,
            rd_channels: Optional[int] = None,
            rd_divisor: Optional[int] = None,
            act_layer: LayerType = None,
            device=None,
            dtype=None,
    ):
        super().__init__()
        name = type(self).__name__
        if channels < 1:
            raise ValueError(f"{name}: channels must be positive, got {channels}")
        dd = dict(device=device, dtype=dtype)
        self.channels = channels

        self.spatial = None
        if spatial_kernel:
            if spatial_kernel < 1 or spatial_kernel % 2 == 0:
                raise ValueError(f"{name}: spatial_kernel must be an odd positive size, got {spatial_kernel}")
            g = _resolve_groups(channels, spatial_groups, name)
            self.spatial = nn.Conv2d(
                channels, channels, spatial_kernel, padding=spatial_kernel // 2, groups=g, bias=False, **dd)

        if pool not in ('avg', 'dw_weighted', None):
            raise ValueError(f"{name}: pool must be 'avg', 'dw_weighted' or None, got {pool!r}")
        self.pool_type = pool
        self.pool = None
        if pool == 'dw_weighted':
            if feat_size is None:
                raise ValueError(f"{name}: pool='dw_weighted' needs feat_size (the input feature map size)")
            k = check_map_size(feat_size, 'feat_size', name)
            self.pool = nn.Conv2d(channels, channels, k, groups=channels, bias=False, **dd)

        g = _resolve_groups(channels, mix_groups, name)
        self.mix = nn.Conv2d(channels, channels, 1, groups=g, bias=False, **dd) if g is not None else None
        self.norm = nn.BatchNorm2d(channels, **dd) if norm else None
        self.gate = create_gate_act(gate_layer, name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x if self.spatial is None else self.spatial(x)
        if self.pool_type == 'avg':
            s = s.mean((2, 3), keepdim=True)
        elif self.pool is not None:
            s = self.pool(s)
        if self.mix is not None:
            s = self.mix(s)
        if self.norm is not None:
            if self.pool_type is not None:
                assert_batch_for_norm(s, self.training, 'BoosterGate')
            s = self.norm(s)
        return x * self.gate(s)

    @torch.no_grad()
    def constant_init_(self, logit: float = 0.0, scale: float = 1e-4) -> None:
        """Make the gate a constant sigmoid(logit) to float precision while every parameter gets a gradient.

        With a BN in the gate an exactly constant output needs either the conv weight or the BN weight to be
        zero, and then the other one gets no gradient (and a zero-variance BN in train mode amplifies the
        conv's gradient by 1/sqrt(eps)). Instead the BN weight is set to ``scale`` (1e-4) and the conv weight to
        ``scale / fan_in`` (fan_in = C / groups, so a full 1x1 conv sums no more than a depthwise one): the gate
        moves by about ``scale**2`` (1e-8) of its input, below float32 resolution, while every parameter gets a
        finite, non-zero gradient from the first step.
        """
        if self.pool_type != 'avg' or self.mix is None or self.norm is None or self.spatial is not None:
            raise ValueError(
                f"{type(self).__name__}: a constant-gate init is defined for GAP -> 1x1 conv -> BN designs "
                f"(AB, AB-Plus, the group ablation), not for this ablation design")
        if not is_sigmoid(self.gate):
            raise ValueError(f"{type(self).__name__}: a constant-gate init needs a sigmoid gate")
        self.mix.weight.fill_(scale / self.mix.weight.shape[1])
        self.norm.reset_running_stats()
        self.norm.weight.fill_(scale)
        self.norm.bias.fill_(logit)
