"""timm ResNet blocks that put the recalibration gate somewhere other than timm's standard position.

Hu et al., "Squeeze-and-Excitation Networks" (TPAMI), Fig. 5 and Tables XIV-XV, study where the gate goes in a
residual unit. timm's own ``BasicBlock`` / ``Bottleneck`` with ``attn_layer=`` already give the *standard*
placement (gate on the residual branch, before the sum); the subclasses here give the others:

* SE-PRE (``'pre'``): gate on the block input, before the residual unit; the identity path takes the un-gated
  input.
* SE-POST (``'post'``): gate after the sum with the identity and after the final ReLU.
* SE-Identity (``'identity'``): gate on the identity branch, in parallel to the residual unit (after the
  downsample projection when the block has one).
* SE-3x3 (``'3x3'``, Bottleneck only): gate inside the residual unit, right after the 3x3 conv + BN + ReLU,
  on its (narrower) channels.

They are subclasses of timm's classes (never a fork): the convs, norms and names are timm's, so the weights of a
timm ResNet load into them. The gate is built from ``attn_layer`` (what ``ResNet(block_args=...)`` passes) and
lives in ``self.se`` like timm's, whatever the placement. ``norm_before_gate`` names the BatchNorm that directly
precedes the gate (None where there is none); the warm start (``_warm_start.py``) needs one.
"""
from typing import Callable, Dict, Optional, Tuple, Type

import torch
from torch import nn
from timm.models.resnet import BasicBlock, Bottleneck

__all__ = [
    'PLACEMENTS', 'placement_block',
    'PreGateBasicBlock', 'PreGateBottleneck', 'PostGateBasicBlock', 'PostGateBottleneck',
    'IdentityGateBasicBlock', 'IdentityGateBottleneck', 'MidGateBottleneck',
]

#: Where a gate can sit in a residual block; ``'standard'`` is timm's own ``attn_layer`` position.
PLACEMENTS: Tuple[str, ...] = ('standard', 'pre', 'post', 'identity', '3x3')


class _GatedBlock:
    """Mixin for a timm ``BasicBlock``/``Bottleneck`` subclass that builds its own gate at ``placement``.

    timm's ``__init__`` runs without a gate (``attn_layer=None``); the gate is then built on the channels this
    placement sees. The forward is split into the residual branch and the join (drop-path, downsample, sum,
    ReLU) so each placement can put the gate between them; ``_BasicBranch`` / ``_BottleneckBranch`` write both
    out for their timm block (a mixin per block type rather than an ``isinstance`` test, which TorchScript
    cannot compile).
    """
    placement: str = ''
    norm_before_gate: Optional[str] = None

    def __init__(
            self,
            inplanes: int,
            planes: int,
            *args,
            attn_layer: Optional[Callable[..., nn.Module]] = None,
            device=None,
            dtype=None,
            **kwargs,
    ):
        super().__init__(inplanes, planes, *args, attn_layer=None, device=device, dtype=dtype, **kwargs)
        if attn_layer is None:
            raise ValueError(
                f"{type(self).__name__}: the {self.placement!r} placement needs a gate; pass attn_layer= "
                f"(e.g. ResNet(block_args=dict(attn_layer=get_gate('se'))))")
        self.se = attn_layer(self._gate_channels(), device=device, dtype=dtype)

    def _gate_channels(self) -> int:
        raise NotImplementedError

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.downsample is None else self.downsample(x)

    def _join(self, residual: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        if self.drop_path is not None:
            residual = self.drop_path(residual)
        return self._act_out(residual + shortcut)


class _BasicBranch:
    """Residual branch and output activation of timm's ``BasicBlock``."""

    def _out_channels(self) -> int:
        return self.bn2.num_features

    def _residual(self, x: torch.Tensor, mid_gate: bool = False) -> torch.Tensor:
        """conv-BN-act-conv-BN (a BasicBlock has no 3x3 between 1x1 convs, so no mid gate)."""
        x = self.aa(self.act1(self.drop_block(self.bn1(self.conv1(x)))))
        return self.bn2(self.conv2(x))

    def _act_out(self, x: torch.Tensor) -> torch.Tensor:
        return self.act2(x)


class _BottleneckBranch:
    """Residual branch and output activation of timm's ``Bottleneck``."""

    def _out_channels(self) -> int:
        return self.bn3.num_features

    def _residual(self, x: torch.Tensor, mid_gate: bool = False) -> torch.Tensor:
        """The residual branch, optionally gated after the 3x3 conv + BN + ReLU (SE-3x3)."""
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.act2(self.drop_block(self.bn2(self.conv2(x))))
        if mid_gate:
            x = self.se(x)
        x = self.aa(x)
        return self.bn3(self.conv3(x))

    def _act_out(self, x: torch.Tensor) -> torch.Tensor:
        return self.act3(x)


class _PreGate(_GatedBlock):
    placement = 'pre'

    def _gate_channels(self) -> int:
        return self.conv1.in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._join(self._residual(self.se(x)), self._shortcut(x))


class _PostGate(_GatedBlock):
    placement = 'post'

    def _gate_channels(self) -> int:
        return self._out_channels()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(self._join(self._residual(x), self._shortcut(x)))


class _IdentityGate(_GatedBlock):
    placement = 'identity'

    def _gate_channels(self) -> int:
        return self._out_channels()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._join(self._residual(x), self.se(self._shortcut(x)))


class PreGateBasicBlock(_PreGate, _BasicBranch, BasicBlock):
    """timm BasicBlock with an SE-PRE gate (on the block input, residual branch only)."""


class PreGateBottleneck(_PreGate, _BottleneckBranch, Bottleneck):
    """timm Bottleneck with an SE-PRE gate (on the block input, residual branch only)."""


class PostGateBasicBlock(_PostGate, _BasicBranch, BasicBlock):
    """timm BasicBlock with an SE-POST gate (after the sum and the final ReLU)."""


class PostGateBottleneck(_PostGate, _BottleneckBranch, Bottleneck):
    """timm Bottleneck with an SE-POST gate (after the sum and the final ReLU)."""


class IdentityGateBasicBlock(_IdentityGate, _BasicBranch, BasicBlock):
    """timm BasicBlock with an SE-Identity gate (on the identity branch, after any downsample)."""


class IdentityGateBottleneck(_IdentityGate, _BottleneckBranch, Bottleneck):
    """timm Bottleneck with an SE-Identity gate (on the identity branch, after any downsample)."""


class MidGateBottleneck(_GatedBlock, _BottleneckBranch, Bottleneck):
    """timm Bottleneck with an SE-3x3 gate: right after the 3x3 conv + BN + ReLU, on its ``width`` channels.

    The gate follows bn2 and a ReLU; ReLU is positively homogeneous, so a positive per-channel gate constant can
    still be folded into bn2 (the warm start relies on it).
    """
    placement = '3x3'
    norm_before_gate = 'bn2'

    def _gate_channels(self) -> int:
        return self.conv2.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._join(self._residual(x, mid_gate=True), self._shortcut(x))


_BLOCKS: Dict[Tuple[str, type], type] = {
    ('pre', BasicBlock): PreGateBasicBlock,
    ('pre', Bottleneck): PreGateBottleneck,
    ('post', BasicBlock): PostGateBasicBlock,
    ('post', Bottleneck): PostGateBottleneck,
    ('identity', BasicBlock): IdentityGateBasicBlock,
    ('identity', Bottleneck): IdentityGateBottleneck,
    ('3x3', Bottleneck): MidGateBottleneck,
}


def placement_block(block: Type[nn.Module], placement: str) -> Type[nn.Module]:
    """The block class that puts the ``attn_layer`` gate at ``placement`` in a timm ``block`` (BasicBlock or
    Bottleneck); ``'standard'`` is timm's block itself."""
    if placement not in PLACEMENTS:
        raise ValueError(f"unknown gate placement {placement!r}; choose one of {', '.join(PLACEMENTS)}")
    if block not in (BasicBlock, Bottleneck):
        raise ValueError(f"gate placements are defined for timm's BasicBlock and Bottleneck, got {block!r}")
    if placement == 'standard':
        return block
    if (placement, block) not in _BLOCKS:
        raise ValueError(
            f"the {placement!r} placement needs a Bottleneck (it gates the 3x3 conv between two 1x1 convs); "
            f"{block.__name__} has no such conv")
    return _BLOCKS[(placement, block)]
