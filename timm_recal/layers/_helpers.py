"""Small helpers shared by the recalibration gates: the reduced width of a squeeze MLP, argument checks."""
import math
import numbers
from typing import Any, Optional, Tuple

import torch
from torch import nn
from timm.layers import LayerType, create_act_layer, make_divisible

__all__ = ['create_gate_act', 'create_hidden_act', 'reduced_channels', 'check_positive_number', 'check_positive_int',
           'check_map_size', 'check_groups', 'assert_batch_for_norm', 'is_sigmoid']


def create_gate_act(gate_layer: LayerType, name: str) -> nn.Module:
    """The gate nonlinearity (``'sigmoid'``, ``'tanh'``, ``'relu'``, a class or partial); a gate needs one."""
    act = create_act_layer(gate_layer)
    if act is None:
        raise ValueError(f"{name}: gate_layer {gate_layer!r} does not name an activation")
    return act


def create_hidden_act(act_layer: LayerType, name: str) -> nn.Module:
    """The activation between a gate's layers. timm reads None (or ``''``) as "no activation", but two FCs without
    one between them collapse into one linear map, a design none of the papers has; so it is refused."""
    act = create_act_layer(act_layer, inplace=True)
    if act is None:
        raise ValueError(f"{name}: act_layer {act_layer!r} does not name an activation; the layers of this gate need "
                         f"one between them (e.g. 'relu', nn.ReLU)")
    return act


def check_positive_number(value: Any, what: str, name: str) -> float:
    """A positive finite real number (not a bool): NaN, inf, 0 and negatives reach no meaningful width."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: {what} must be a positive number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name}: {what} must be positive and finite, got {value!r}")
    return value


def check_positive_int(value: Any, what: str, name: str) -> int:
    """A positive integer (not a bool, not a float: a truncated 2.5 would build another design silently)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: {what} must be a positive integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name}: {what} must be a positive integer, got {value!r}")
    return int(value)


def check_map_size(size: Any, what: str, name: str) -> Tuple[int, int]:
    """An int or an (h, w) pair of positive ints; a 0 builds a conv that only fails at the first forward."""
    pair = (size, size) if not isinstance(size, (tuple, list)) else tuple(size)
    if len(pair) != 2:
        raise ValueError(f"{name}: {what} must be an int or an (h, w) pair, got {size!r}")
    h, w = (check_positive_int(v, what, name) for v in pair)
    return h, w


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
        # timm's own SE layers take an int width only (their Conv2d refuses 8.0); a float such as 2.5 was truncated
        return check_positive_int(rd_channels, 'rd_channels (the hidden width)', name)
    if rd_ratio is not None:
        reduction = 1.0 / check_positive_number(rd_ratio, 'rd_ratio', name)
    if reduction is None:
        raise ValueError(f"{name}: reduction ratio r must be positive, got None")
    check_positive_number(reduction, 'reduction ratio r', name)
    hidden = channels // reduction
    if rd_divisor is not None:
        return make_divisible(hidden, check_positive_int(rd_divisor, 'rd_divisor', name), round_limit=0.)
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
