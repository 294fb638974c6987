"""Squeeze-and-Excitation gates and their variants.

* SE: Hu et al., "Squeeze-and-Excitation Networks" (CVPR 2018 / TPAMI), with the paper's ablations of the
  squeeze operator (average or max pooling), the excitation nonlinearity (sigmoid, tanh, ReLU) and the
  FC bias; NoSqueeze applies the two FCs as 1x1 convolutions on the full map, without pooling.
* "Slow squeeze", "slow excite", both, and "bump": Mahendran, "Variations of squeeze and excitation
  networks". They only change the widths of the excitation MLP, so all of them are ``SqueezeExcite`` with
  a different ``rd_mults`` profile (hidden widths in units of C/r).
"""
from typing import Iterable, Optional, Sequence, Tuple

import torch
from torch import nn
from timm.layers import LayerType

from ._helpers import check_positive_number, create_gate_act, create_hidden_act, is_sigmoid, reduced_channels

__all__ = ['SqueezeExcite', 'NoSqueezeExcite', 'SE_PROFILES']

#: Hidden widths of the excitation MLP in units of C/r, per design.
SE_PROFILES = {
    'se': (1,),                 # C -> C/r -> C
    'slowsq': (2, 1),           # C -> 2C/r -> C/r -> C
    'slowex': (1, 2),           # C -> C/r -> 2C/r -> C
    'slowsqex': (2, 1, 2),      # C -> 2C/r -> C/r -> 2C/r -> C
    'bump': (1, 1),             # C -> C/r -> C/r -> C (a learned FC in the middle)
}


def _hidden_widths(hidden: int, rd_mults: Sequence[float], name: str) -> Tuple[int, ...]:
    """``hidden`` x each multiplier, rounded. Every design has a bottleneck (``()`` would be a single C -> C FC) and
    no hidden layer may round to width 0; both are refused rather than changed into another design."""
    if isinstance(rd_mults, (str, bytes)) or not isinstance(rd_mults, Iterable):
        raise TypeError(f"{name}: rd_mults must be a sequence of positive multipliers, got {rd_mults!r}")
    mults = tuple(rd_mults)
    if not mults:
        raise ValueError(f"{name}: rd_mults needs at least one hidden width (the SE bottleneck is (1,)), got "
                         f"{rd_mults!r}")
    widths = []
    for m in mults:
        width = int(round(hidden * check_positive_number(m, 'every rd_mults multiplier', name)))
        if width < 1:
            raise ValueError(f"{name}: rd_mults multiplier {m} of the hidden width {hidden} rounds to 0 channels; "
                             f"use a larger multiplier or a smaller reduction ratio")
        widths.append(width)
    return tuple(widths)


def _mlp(widths: Sequence[int], bias: bool, act_layer: LayerType, dd: dict, name: str) -> nn.Sequential:
    """1x1 convolutions between consecutive widths, with the hidden activation between them."""
    layers = []
    for i, (cin, cout) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Conv2d(cin, cout, kernel_size=1, bias=bias, **dd))
        if i < len(widths) - 2:
            layers.append(create_hidden_act(act_layer, name))
    return nn.Sequential(*layers)


class _ExciteBase(nn.Module):
    """Shared excitation MLP + gate; subclasses decide how the map is squeezed.

    The keywords are ours plus exactly those timm's builders hand an attention / SE layer (ResNet and ByobNet
    ``attn_layer``, EfficientNet and MobileNetV3 ``se_layer``): ``rd_ratio``, ``rd_channels``, ``rd_divisor``,
    ``act_layer``, ``gate_layer``, ``device``, ``dtype``. ``rd_ratio`` is 1 / ``reduction`` and ``rd_channels``
    the hidden width itself, so timm's settings mean what they mean in timm's own ``SEModule``; any other
    keyword is a TypeError (a typo must not build a different ablation).
    """

    def __init__(
            self,
            channels: int,
            reduction: float = 16,
            rd_mults: Sequence[float] = (1,),
            act_layer: LayerType = nn.ReLU,
            gate_layer: LayerType = 'sigmoid',
            bias: bool = True,
            rd_ratio: Optional[float] = None,
            rd_channels: Optional[int] = None,
            rd_divisor: Optional[int] = None,
            device=None,
            dtype=None,
    ):
        super().__init__()
        name = type(self).__name__
        hidden = reduced_channels(
            channels, reduction, name, rd_ratio=rd_ratio, rd_channels=rd_channels, rd_divisor=rd_divisor)
        widths = (channels,) + _hidden_widths(hidden, rd_mults, name) + (channels,)
        self.channels = channels
        self.widths = widths
        self.fc = _mlp(widths, bias, act_layer, dict(device=device, dtype=dtype), name)
        self.gate = create_gate_act(gate_layer, name)

    def excite(self, s: torch.Tensor) -> torch.Tensor:
        return self.gate(self.fc(s))

    @torch.no_grad()
    def constant_init_(self, logit: float = 0.0) -> None:
        """Make the gate output a constant sigmoid(logit) while every parameter still gets a gradient.

        The first layer's weights are zeroed and every bias is set so each hidden unit outputs 1 (its ReLU
        is active), so the gradient reaches all weights, the first layer's included, from the first step.
        """
        convs = [m for m in self.fc if isinstance(m, nn.Conv2d)]
        if any(c.bias is None for c in convs):
            raise ValueError(f"{type(self).__name__}: a constant-gate init needs FC biases (bias=True)")
        if not is_sigmoid(self.gate):
            raise ValueError(f"{type(self).__name__}: a constant-gate init needs a sigmoid gate")
        convs[0].weight.zero_()
        h = torch.ones(convs[0].out_channels, dtype=convs[0].weight.dtype, device=convs[0].weight.device)
        convs[0].bias.fill_(1.0)
        for conv in convs[1:]:
            w = conv.weight.flatten(1)
            target = torch.ones_like(conv.bias) if conv is not convs[-1] else torch.full_like(conv.bias, logit)
            conv.bias.copy_(target - w @ h)
            h = target


class SqueezeExcite(_ExciteBase):
    """SE gate: squeeze (global avg or max pool) -> MLP (1x1 convs, hidden widths ``rd_mults`` x C/r) -> gate.

    Args:
        channels: C, the channels being recalibrated.
        reduction: r; the hidden width is C // r (timm's ``rd_ratio`` = 1 / r and ``rd_channels`` override it).
        rd_mults: hidden widths in units of C/r; ``(1,)`` is the SE of Hu et al., see ``SE_PROFILES``.
        pool_type: ``'avg'`` or ``'max'`` squeeze.
        gate_layer: ``'sigmoid'`` (paper default), ``'tanh'`` or ``'relu'``.
        bias: FC bias on/off.
    """

    def __init__(self, channels: int, reduction: float = 16, pool_type: str = 'avg', **kwargs):
        if pool_type not in ('avg', 'max'):
            raise ValueError(f"SqueezeExcite: pool_type must be 'avg' or 'max', got {pool_type!r}")
        super().__init__(channels, reduction=reduction, **kwargs)
        self.pool_type = pool_type

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool_type == 'avg':
            s = x.mean((2, 3), keepdim=True)
        else:
            s = x.amax((2, 3), keepdim=True)
        return x * self.excite(s)


class NoSqueezeExcite(_ExciteBase):
    """SE ablation without the squeeze: the two FCs run as 1x1 convolutions on every position of the map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.excite(x)
