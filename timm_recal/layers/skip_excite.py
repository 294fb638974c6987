"""Skip-Layer Excitation (SLE): Liu et al., "Towards Faster and Stabilized GAN Training for High-fidelity
Few-shot Image Synthesis" (FastGAN), used between classifier stages by Wang & Yuan, "Investigating the
effectiveness of feature recalibration networks on image classification".

An earlier (larger, shallower) map gates the channels of a later one: AdaptiveAvgPool(4x4) -> 4x4 conv without
bias (C_in -> C_out, leaving 1x1) -> SiLU -> 1x1 conv without bias -> sigmoid -> scale the later output.
"""
import torch
from torch import nn
from timm.layers import LayerType, create_act_layer

from ._helpers import create_gate_act

__all__ = ['SkipLayerExcitation']


class SkipLayerExcitation(nn.Module):
    def __init__(
            self,
            in_chs: int,
            out_chs: int,
            pool_size: int = 4,
            act_layer: LayerType = nn.SiLU,
            gate_layer: LayerType = 'sigmoid',
            device=None,
            dtype=None,
    ):
        super().__init__()
        if in_chs < 1 or out_chs < 1:
            raise ValueError(f"SkipLayerExcitation: channels must be positive, got {in_chs} -> {out_chs}")
        dd = dict(device=device, dtype=dtype)
        self.pool = nn.AdaptiveAvgPool2d(pool_size)
        self.conv1 = nn.Conv2d(in_chs, out_chs, pool_size, bias=False, **dd)
        self.act = create_act_layer(act_layer, inplace=True)
        self.conv2 = nn.Conv2d(out_chs, out_chs, 1, bias=False, **dd)
        self.gate = create_gate_act(gate_layer, 'SkipLayerExcitation')

    def forward(self, x_early: torch.Tensor, x_late: torch.Tensor) -> torch.Tensor:
        s = self.conv2(self.act(self.conv1(self.pool(x_early))))
        return x_late * self.gate(s)
