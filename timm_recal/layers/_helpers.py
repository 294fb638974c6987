"""Small helpers shared by the recalibration gates: the reduced width of a squeeze MLP, argument checks."""
from typing import Optional

import torch
from torch import nn
from timm.layers import LayerType, create_act_layer, make_divisible

__all__ = ['create_gate_act', 'reduced_channels', 'check_groups', 'assert_batch_for_norm', 'is_sigmoid']


def create_gate_act(gate_layer: LayerType, name: str) -> nn.Module:
    """The gate nonlinearity (``'sigmoid'``, ``'tanh'``, ``'relu'``, a class or partial); a gate needs one."""
    act = create_act_layer(gate_layer)
    if act is None:
        raise ValueError(f"{name}: gate_layer {gate_layer!r} does not name an activation")
    return act


def reduced_channels(
        channels: int,
        reduction: Optional[float],
        name: str,
        rd_ratio: Optional[float] = None,
        rd_channels: Optional[int] = None,
        rd_divisor: Optional[int] = None,
) -> int:
    """Hidden width of a squeeze MLP, with a readable error for impossible settings.

    Our ``reduction`` r gives C // r (the papers' setting). timm's spellings mean the same and win over r:
    ``rd_channels`` is the width itself, ``rd_ratio`` is 1 / r, and ``rd_divisor`` rounds
    the width to a multiple of it as timm's ``SEModule`` does (``make_divisible(..., round_limit=0)``).
    """
    if channels < 1:
        raise ValueError(f"{name}: channels must be positive, got {channels}")
    if rd_channels is not None:
        if rd_channels < 1:
            raise ValueError(f"{name}: rd_channels must be positive, got {rd_channels}")
        return int(rd_channels)
    if rd_ratio is not None:
        if rd_ratio <= 0:
            raise ValueError(f"{name}: rd_ratio must be positive, got {rd_ratio}")
        reduction = 1.0 / rd_ratio
    if reduction is None or reduction <= 0:
        raise ValueError(f"{name}: reduction ratio r must be positive, got {reduction}")
    hidden = channels // reduction
    if rd_divisor is not None:
        return make_divisible(hidden, rd_divisor, round_limit=0.)
    if hidden < 1:
        raise ValueError(
            f"{name}: reduction ratio r={reduction} is larger than the number of channels C={channels}; "
            f"choose r <= C")
    return int(hidden)


def check_groups(channels: int, groups: int, name: str) -> None:
    if groups < 1 or channels % groups != 0:
        raise ValueError(f"{name}: groups={groups} must divide the number of channels C={channels}")


def assert_batch_for_norm(x: torch.Tensor, training: bool, name: str) -> None:
    """A BatchNorm over pooled (N, C, 1, 1) statistics has nothing to normalize when N == 1.

    ``torch._assert`` is wrapped by torch.fx, so symbolic tracing keeps working.
    """
    if training:
        torch._assert(
            x.shape[0] > 1,
            f"{name}: the BatchNorm inside this gate needs batch size >= 2 in train mode "
            f"(got batch size 1); call model.eval() for single-image inference or use a larger batch",
        )


def is_sigmoid(module: nn.Module) -> bool:
    """True if ``module`` computes the logistic sigmoid (torch's, timm's or a custom class)."""
    probe = torch.tensor([-2.0, 0.0, 3.0])
    with torch.no_grad():
        try:
            return bool(torch.allclose(module(probe.clone()), torch.sigmoid(probe)))
        except Exception:
            return False
