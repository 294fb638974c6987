"""Skip-Layer Excitation (SLE): Liu et al., "Towards Faster and Stabilized GAN Training for High-fidelity
Few-shot Image Synthesis" (FastGAN), used between classifier stages by Wang & Yuan, "Investigating the
effectiveness of feature recalibration networks on image classification".

An earlier (larger, shallower) map gates the channels of a later one: AdaptiveAvgPool(4x4) -> 4x4 conv without
bias (C_in -> C_out, leaving 1x1) -> SiLU -> 1x1 conv without bias -> sigmoid -> scale the later output.
"""
from typing import Tuple, Union

import torch
from torch import nn
from timm.layers import LayerType

from ._helpers import check_map_size, create_gate_act, create_hidden_act

__all__ = ['SkipLayerExcitation']


class SkipLayerExcitation(nn.Module):
    def __init__(
            self,
            in_chs: int,
            out_chs: int,
            pool_size: Union[int, Tuple[int, int]] = 4,
            act_layer: LayerType = nn.SiLU,
            gate_layer: LayerType = 'sigmoid',
            device=None,
            dtype=None,
    ):
        super().__init__()
        name = type(self).__name__
        if in_chs < 1 or out_chs < 1:
            raise ValueError(f"{name}: channels must be positive, got {in_chs} -> {out_chs}")
        check_map_size(pool_size, 'pool_size', name)
        dd = dict(device=device, dtype=dtype)
        self.out_chs = out_chs
        # A static message: torch._assert needs it before the check, and tracing must not format a Proxy.
        self._late_chs_msg = (f"{name}: x_late must have out_chs={out_chs} channels, the width of the gate; a map "
                              f"with another channel count would be broadcast against it")
        self.pool = nn.AdaptiveAvgPool2d(pool_size)
        self.conv1 = nn.Conv2d(in_chs, out_chs, pool_size, bias=False, **dd)
        self.act = create_hidden_act(act_layer, name)
        self.conv2 = nn.Conv2d(out_chs, out_chs, 1, bias=False, **dd)
        self.gate = create_gate_act(gate_layer, name)

    def forward(self, x_early: torch.Tensor, x_late: torch.Tensor) -> torch.Tensor:
        # torch._assert, not ``if ...: raise``: torch.fx wraps it, TorchScript compiles it and torch.export /
        # torch.compile evaluate it once on the static channel count, so the check costs nothing in a graph.
        # torch.jit.trace (the legacy ONNX exporter) would only warn that it freezes the check as a constant.
        if not torch.jit.is_tracing():
            torch._assert(x_late.shape[1] == self.out_chs, self._late_chs_msg)
        s = self.conv2(self.act(self.conv1(self.pool(x_early))))
        return x_late * self.gate(s)
