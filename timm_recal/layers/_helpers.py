"""Small helpers shared by the recalibration gates."""
from typing import Optional, Union

import torch
from torch import nn
from timm.layers import get_act_layer

LayerType = Union[str, type, nn.Module, None]


def make_gate_act(gate_layer: LayerType) -> nn.Module:
    """Instantiate the gate nonlinearity (``'sigmoid'``, ``'tanh'``, ``'relu'``, a class or partial)."""
    if isinstance(gate_layer, nn.Module):
        return gate_layer
    layer = get_act_layer(gate_layer)
    if layer is None:
        raise ValueError(f"gate_layer {gate_layer!r} does not name an activation")
    return layer()


def make_act(act_layer: LayerType, inplace: bool = True) -> nn.Module:
    """Instantiate a hidden activation; timm passes classes, partials or names."""
    layer = get_act_layer(act_layer) if act_layer is not None else nn.ReLU
    try:
        return layer(inplace=inplace)
    except TypeError:
        return layer()


def reduced_channels(channels: int, reduction: Optional[float], rd_channels: Optional[int], name: str) -> int:
    """Hidden width C // r of a squeeze MLP, with a readable error for impossible settings."""
    if channels < 1:
        raise ValueError(f"{name}: channels must be positive, got {channels}")
    if rd_channels is not None:
        if rd_channels < 1:
            raise ValueError(f"{name}: rd_channels must be positive, got {rd_channels}")
        return int(rd_channels)
    if reduction is None or reduction <= 0:
        raise ValueError(f"{name}: reduction ratio r must be positive, got {reduction}")
    hidden = int(channels // reduction)
    if hidden < 1:
        raise ValueError(
            f"{name}: reduction ratio r={reduction} is larger than the number of channels C={channels}; "
            f"choose r <= C")
    return hidden


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
