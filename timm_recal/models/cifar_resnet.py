"""CIFAR ResNets and Wide ResNets (timm has none), with recalibration gates on every residual branch.

* ``resnet{20,56,110}_cifar``: He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016), Sec. 4.2:
  3x3 stem conv (16), three stages of n post-activation basic blocks (16/32/64 channels, depth 6n + 2),
  global average pool, FC. The shortcut of the downsampling blocks is a kwarg: ``shortcut='A'`` (default;
  subsampled identity padded with zero channels, parameter-free, as the paper's CIFAR nets of its Table 6:
  0.27M / 0.85M / 1.7M parameters) or ``'B'`` (1x1 conv + BN projection).
* ``resnet164_cifar``: He et al., "Identity Mappings in Deep Residual Networks" (ECCV 2016): pre-activation
  bottleneck blocks, 18 per stage, bottleneck widths 16/32/64, outputs 64/128/256 (depth 9n + 2). With
  ``num_classes=100`` it has the standard 1,726,388 parameters (1,703,258 with 10 classes).
* ``wrn16_8_cifar``, ``wrn22_10_cifar``: Zagoruyko & Komodakis, "Wide Residual Networks" (BMVC 2016):
  pre-activation basic blocks, widths 16k/32k/64k (depth 6n + 4), optional dropout between the two convs
  (``block_drop_rate``; the paper uses 0.3).

Pre-activation blocks project the shortcut with a bias-free 1x1 conv when the shape changes, fed from the
block's shared pre-activation (BN-ReLU) as in both papers' code; the nets end with BN-ReLU before pooling.

Gates (``se_``, ``ab_``, ``abplus_`` prefixes, or any ``attn_layer`` known to ``timm_recal.layers.get_gate``)
sit on the residual branch before the sum, on C = the block's output channels, as Singh et al.
("Accuracy Booster", Fig. 2, Tables 5, 6 and 15) place them. Per block AB adds 3C parameters (C depthwise
weights + BN), AB-Plus C^2 + 2C, SE (r = 16, bias) 2 C (C // 16) + C // 16 + C.
"""
import numbers
from collections import OrderedDict
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn
from timm.layers import ClassifierHead, DropPath, LayerType, create_act_layer
from timm.models import checkpoint_seq, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices  # no public export in timm 1.0.31

from ..layers import get_gate
from ..layers._helpers import check_positive_int
from ._common import (
    ClassifierHeadMixin, build_model, check_drop_rate, check_io, check_widths, cifar_cfg, init_conv_weights_,
    resolve_act_layer, resolve_norm_layer,
)

__all__ = ['CifarResNet', 'BasicBlock', 'PreActBlock', 'PadShortcut']

BLOCKS = ('basic', 'preact_basic', 'preact_bottleneck')
_SHORTCUTS = {'basic': ('A', 'B'), 'preact_basic': ('conv',), 'preact_bottleneck': ('conv',)}


class PadShortcut(nn.Module):
    """He et al.'s option A: subsample the identity by ``stride`` and append zero channels; no parameters."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1):
        super().__init__()
        if out_chs < in_chs:
            raise ValueError(f"PadShortcut: option A can only add channels ({in_chs} -> {out_chs})")
        self.stride = stride
        self.pad = out_chs - in_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, ::self.stride, ::self.stride]
        # static pad widths: traceable by torch.fx and exported to ONNX as a plain Pad
        return F.pad(x, (0, 0, 0, 0, 0, self.pad)) if self.pad else x


def _conv(in_chs: int, out_chs: int, kernel_size: int, stride: int, dd: dict) -> nn.Conv2d:
    return nn.Conv2d(in_chs, out_chs, kernel_size, stride, kernel_size // 2, bias=False, **dd)


def _make_gate(attn_layer: Optional[Callable[..., nn.Module]], chs: int, dd: dict) -> nn.Module:
    return attn_layer(chs, **dd) if attn_layer is not None else nn.Identity()


class BasicBlock(nn.Module):
    """Post-activation basic block (He et al. 2016): conv-BN-ReLU-[dropout]-conv-BN-[gate], + shortcut, ReLU."""

    def __init__(
            self,
            in_chs: int,
            out_chs: int,
            stride: int = 1,
            shortcut: str = 'A',
            drop_rate: float = 0.,
            drop_path_rate: float = 0.,
            attn_layer: Optional[Callable[..., nn.Module]] = None,
            act_layer: LayerType = nn.ReLU,
            norm_layer: Callable[..., nn.Module] = nn.BatchNorm2d,
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.conv1 = _conv(in_chs, out_chs, 3, stride, dd)
        self.bn1 = norm_layer(out_chs, **dd)
        self.act1 = create_act_layer(act_layer, inplace=True)
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.conv2 = _conv(out_chs, out_chs, 3, 1, dd)
        self.bn2 = norm_layer(out_chs, **dd)
        self.attn = _make_gate(attn_layer, out_chs, dd)
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()
        if stride == 1 and in_chs == out_chs:
            self.shortcut = nn.Identity()
        elif shortcut == 'A':
            self.shortcut = PadShortcut(in_chs, out_chs, stride)
        elif shortcut == 'B':
            self.shortcut = nn.Sequential(OrderedDict(
                conv=_conv(in_chs, out_chs, 1, stride, dd), bn=norm_layer(out_chs, **dd)))
        else:
            raise ValueError(f"BasicBlock: shortcut must be 'A' (zero-pad identity) or 'B' (1x1 conv + BN), "
                             f"got {shortcut!r}")
        self.act2 = create_act_layer(act_layer, inplace=True)

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.drop(self.act1(self.bn1(self.conv1(x))))
        out = self.attn(self.bn2(self.conv2(out)))
        return self.act2(self.drop_path(out) + self.shortcut(x))


class PreActBlock(nn.Module):
    """Pre-activation block: BN-ReLU, then the convs of the branch, each after its own BN-ReLU; the gate
    follows the last conv. Dropout (WRN) sits after the BN-ReLU in front of the last conv.

    ``bottleneck=False``: 3x3 -> 3x3 (Wide ResNet); ``bottleneck=True``: 1x1 -> 3x3 -> 1x1 with inner width
    ``out_chs // 4`` (ResNet-164). A shape change projects the pre-activated input with a bias-free 1x1 conv.
    """

    def __init__(
            self,
            in_chs: int,
            out_chs: int,
            stride: int = 1,
            bottleneck: bool = False,
            drop_rate: float = 0.,
            drop_path_rate: float = 0.,
            attn_layer: Optional[Callable[..., nn.Module]] = None,
            act_layer: LayerType = nn.ReLU,
            norm_layer: Callable[..., nn.Module] = nn.BatchNorm2d,
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        if bottleneck:
            if out_chs % 4:
                raise ValueError(f"PreActBlock: a bottleneck block needs out_chs divisible by 4, got {out_chs}")
            mid = out_chs // 4
            convs = [(in_chs, mid, 1, 1), (mid, mid, 3, stride), (mid, out_chs, 1, 1)]
        else:
            convs = [(in_chs, out_chs, 3, stride), (out_chs, out_chs, 3, 1)]
        self.norm1 = norm_layer(in_chs, **dd)
        self.act1 = create_act_layer(act_layer, inplace=True)
        branch = OrderedDict()
        for i, (cin, cout, k, s) in enumerate(convs, start=1):
            if i > 1:
                branch[f'norm{i}'] = norm_layer(cin, **dd)
                branch[f'act{i}'] = create_act_layer(act_layer, inplace=True)
            if i == len(convs):
                branch['drop'] = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
            branch[f'conv{i}'] = _conv(cin, cout, k, s, dd)
        self.branch = nn.Sequential(branch)
        self.attn = _make_gate(attn_layer, out_chs, dd)
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()
        needs_proj = stride != 1 or in_chs != out_chs
        self.proj = _conv(in_chs, out_chs, 1, stride, dd) if needs_proj else None

    def zero_init_last(self) -> None:
        # the branch ends in a conv (no BN): zero it so the block starts as the identity
        nn.init.zeros_(self.branch[-1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.act1(self.norm1(x))
        shortcut = x if self.proj is None else self.proj(pre)
        out = self.attn(self.branch(pre))
        return self.drop_path(out) + shortcut


class CifarResNet(ClassifierHeadMixin, nn.Module):
    """ResNet for 32x32 inputs: 3x3 stem, stages at full, 1/2, 1/4 resolution, global pool, FC.

    Args:
        layers: blocks per stage.
        widths: output channels per stage.
        block: ``'basic'`` (post-activation, He et al. 2016), ``'preact_basic'`` (Wide ResNet) or
            ``'preact_bottleneck'`` (ResNet-164).
        stem_chs: width of the 3x3 stem conv.
        shortcut: downsampling shortcut; ``'A'`` (default) or ``'B'`` for ``'basic'``, ``'conv'`` for the
            pre-activation blocks.
        block_drop_rate: dropout between the convs of each residual branch (WRN; 0.3 in its paper).
        drop_path_rate: stochastic depth, increasing linearly to this rate over the blocks.
        drop_rate: dropout before the classifier.
        attn_layer: gate name/class on each residual branch before the sum; None for none.
        attn_reduction: reduction ratio r handed to the gate (SE family; AB / AB-Plus have none); None (default) is
            Hu et al.'s r = 16. Refused without ``attn_layer``: there is no gate it could configure.
        conv_init: ``'kaiming_fan_out'`` (default), ``'kaiming_fan_in'`` or ``'torch'``.
        zero_init_last: zero the last BN (post-activation) or last conv (pre-activation) of every branch so
            each block starts as the identity; off by default, as in the papers.
    """

    def __init__(
            self,
            layers: Sequence[int] = (3, 3, 3),
            widths: Sequence[int] = (16, 32, 64),
            block: str = 'basic',
            stem_chs: int = 16,
            shortcut: Optional[str] = None,
            num_classes: int = 10,
            in_chans: int = 3,
            global_pool: str = 'avg',
            drop_rate: float = 0.,
            block_drop_rate: float = 0.,
            drop_path_rate: float = 0.,
            attn_layer: LayerType = None,
            attn_reduction: Optional[float] = None,
            act_layer: LayerType = nn.ReLU,
            norm_layer: LayerType = nn.BatchNorm2d,
            conv_init: str = 'kaiming_fan_out',
            zero_init_last: bool = False,
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        name = type(self).__name__
        if block not in BLOCKS:
            raise ValueError(f"{name}: block must be one of {', '.join(BLOCKS)}, got {block!r}")
        shortcut = _SHORTCUTS[block][0] if shortcut is None else shortcut
        if shortcut not in _SHORTCUTS[block]:
            raise ValueError(f"{name}: block {block!r} supports shortcut {' or '.join(map(repr, _SHORTCUTS[block]))}, "
                             f"got {shortcut!r}")
        if isinstance(layers, Sequence) and any(
                isinstance(n, numbers.Integral) and not isinstance(n, bool) and n < 1 for n in layers):
            raise ValueError(f"{name}: every stage needs at least one block, got layers={tuple(layers)}")
        layers = check_widths(layers, 'layers', name)
        widths = check_widths(widths, 'widths', name)
        if len(layers) != len(widths) or not layers:
            raise ValueError(f"{name}: layers and widths need one entry per stage, got {layers} and {widths}")
        stem_chs = check_positive_int(stem_chs, 'stem_chs', name)
        check_io(in_chans, num_classes, name)
        for arg, rate in (('drop_rate', drop_rate), ('block_drop_rate', block_drop_rate),
                          ('drop_path_rate', drop_path_rate)):
            check_drop_rate(rate, name, arg, high_open=True)
        act_layer = resolve_act_layer(act_layer, name)
        norm_layer = resolve_norm_layer(norm_layer, name)
        gate = get_gate(attn_layer)
        if gate is None and attn_reduction is not None:
            raise ValueError(f"{name} has no gate to configure, got attn_reduction; give attn_layer= (e.g. 'se') to "
                             f"add one")
        gate = partial(gate, reduction=16 if attn_reduction is None else attn_reduction) if gate is not None else None
        preact = block != 'basic'

        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.grad_checkpointing = False

        stem = OrderedDict(conv=_conv(in_chans, stem_chs, 3, 1, dd))
        if not preact:  # pre-activation nets normalize inside the first block instead
            stem.update(bn=norm_layer(stem_chs, **dd), act=create_act_layer(act_layer, inplace=True))
        self.stem = nn.Sequential(stem)
        self.feature_info = [dict(num_chs=stem_chs, reduction=1, module='stem')]

        if preact:
            block_fn = partial(PreActBlock, bottleneck=block == 'preact_bottleneck')
        else:
            block_fn = partial(BasicBlock, shortcut=shortcut)
        total, idx = sum(layers), 0
        stages, prev = [], stem_chs
        for i, (n, chs) in enumerate(zip(layers, widths)):
            blocks = []
            for j in range(n):
                dpr = drop_path_rate * idx / max(total - 1, 1)
                blocks.append(block_fn(
                    prev, chs, stride=2 if (i > 0 and j == 0) else 1, drop_rate=block_drop_rate,
                    drop_path_rate=dpr, attn_layer=gate, act_layer=act_layer, norm_layer=norm_layer, **dd))
                prev, idx = chs, idx + 1
            stages.append(nn.Sequential(*blocks))
            self.feature_info.append(dict(num_chs=chs, reduction=2 ** i, module=f'stages.{i}'))
        self.stages = nn.Sequential(*stages)
        # pre-activation nets end with BN-ReLU (the last block's output is un-normalized)
        self.norm = nn.Sequential(OrderedDict(bn=norm_layer(prev, **dd), act=create_act_layer(act_layer, inplace=True))) \
            if preact else nn.Identity()

        self.num_features = self.head_hidden_size = prev
        self.head = ClassifierHead(prev, num_classes, pool_type=global_pool, drop_rate=drop_rate, **dd)

        init_conv_weights_(self, conv_init)
        if zero_init_last:
            for m in self.modules():
                if isinstance(m, (BasicBlock, PreActBlock)):
                    m.zero_init_last()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        return dict(stem=r'^stem', blocks=r'^stages\.(\d+)' if coarse else r'^stages\.(\d+)\.(\d+)')

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Stem (index 0) and stage outputs (1..); ``norm`` applies the final BN-ReLU to the last stage."""
        if output_fmt != 'NCHW':
            raise ValueError(f"{type(self).__name__} only supports output_fmt='NCHW', got {output_fmt!r}")
        take_indices, max_index = feature_take_indices(len(self.stages) + 1, indices)
        last_idx = len(self.stages)
        stages = self.stages if torch.jit.is_scripting() or not stop_early else self.stages[:max_index]
        x = self.stem(x)
        intermediates = [x] if 0 in take_indices else []
        feat_idx = 0
        for feat_idx, stage in enumerate(stages, start=1):
            x = stage(x)
            if feat_idx in take_indices:
                intermediates.append(self.norm(x) if norm and feat_idx == last_idx else x)
        if intermediates_only:
            return intermediates
        if feat_idx == last_idx:
            x = self.norm(x)
        return x, intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        """Drop the stages (and norm / head) that the requested intermediates do not need."""
        take_indices, max_index = feature_take_indices(len(self.stages) + 1, indices)
        prune_end = max_index < len(self.stages)
        self.stages = self.stages[:max_index]
        if prune_norm or prune_end:
            self.norm = nn.Identity()  # sized for the last stage only
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]['num_chs']
        if prune_head or prune_end:
            self.reset_classifier(0, '')
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq(self.stages, x)
        else:
            x = self.stages(x)
        return self.norm(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# --- variants as data --------------------------------------------------------------------------------------
def _resnet(depth: int) -> Dict[str, Any]:
    n, rem = divmod(depth - 2, 6)  # 3 stages x n blocks x 2 convs + stem + FC
    assert rem == 0, depth
    return dict(block='basic', layers=(n,) * 3, widths=(16, 32, 64))


def _preact_bottleneck(depth: int) -> Dict[str, Any]:
    n, rem = divmod(depth - 2, 9)  # 3 stages x n blocks x 3 convs + stem + FC
    assert rem == 0, depth
    return dict(block='preact_bottleneck', layers=(n,) * 3, widths=(64, 128, 256))


def _wrn(depth: int, k: int) -> Dict[str, Any]:
    n, rem = divmod(depth - 4, 6)  # Zagoruyko & Komodakis count the 3 projection convs too
    assert rem == 0, depth
    return dict(block='preact_basic', layers=(n,) * 3, widths=(16 * k, 32 * k, 64 * k))


_ARCHS = {
    'resnet20_cifar': _resnet(20),
    'resnet56_cifar': _resnet(56),
    'resnet110_cifar': _resnet(110),
    'resnet164_cifar': _preact_bottleneck(164),
    'wrn16_8_cifar': _wrn(16, 8),
    'wrn22_10_cifar': _wrn(22, 10),
}
_GATES = {'': {}, 'se_': dict(attn_layer='se'), 'ab_': dict(attn_layer='ab'), 'abplus_': dict(attn_layer='abplus')}

model_args: Dict[str, Dict[str, Any]] = {
    f'{prefix}{arch}': dict(args, **gate_args) for prefix, gate_args in _GATES.items() for arch, args in _ARCHS.items()
}

# No trained weights exist for these nets; the cfgs carry the CIFAR input settings only.
default_cfgs = generate_default_cfgs({name: cifar_cfg(pool_size=(8, 8)) for name in model_args})


def _create_cifar_resnet(variant: str, pretrained: bool = False, **kwargs) -> CifarResNet:
    return build_model(
        CifarResNet, variant, pretrained,
        feature_cfg=dict(feature_cls='getter', out_indices=(0, 1, 2, 3)),
        **dict(model_args[variant.split('.')[0]], **kwargs),
    )


@register_model
def resnet20_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-20 for CIFAR (He et al. 2016, Sec. 4.2)."""
    return _create_cifar_resnet('resnet20_cifar', pretrained, **kwargs)


@register_model
def resnet56_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-56 for CIFAR (He et al. 2016, Sec. 4.2)."""
    return _create_cifar_resnet('resnet56_cifar', pretrained, **kwargs)


@register_model
def resnet110_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-110 for CIFAR (He et al. 2016, Sec. 4.2)."""
    return _create_cifar_resnet('resnet110_cifar', pretrained, **kwargs)


@register_model
def resnet164_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """Pre-activation bottleneck ResNet-164 for CIFAR (He et al., "Identity Mappings", 2016)."""
    return _create_cifar_resnet('resnet164_cifar', pretrained, **kwargs)


@register_model
def wrn16_8_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """Wide ResNet-16-8 for CIFAR (Zagoruyko & Komodakis 2016)."""
    return _create_cifar_resnet('wrn16_8_cifar', pretrained, **kwargs)


@register_model
def wrn22_10_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """Wide ResNet-22-10 for CIFAR (Zagoruyko & Komodakis 2016)."""
    return _create_cifar_resnet('wrn22_10_cifar', pretrained, **kwargs)


@register_model
def se_resnet20_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-20 for CIFAR (He et al. 2016, Sec. 4.2) with SE (Hu et al. 2018, r = 16) on every residual branch."""
    return _create_cifar_resnet('se_resnet20_cifar', pretrained, **kwargs)


@register_model
def se_resnet56_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-56 for CIFAR (He et al. 2016, Sec. 4.2) with SE (Hu et al. 2018, r = 16) on every residual branch."""
    return _create_cifar_resnet('se_resnet56_cifar', pretrained, **kwargs)


@register_model
def se_resnet110_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-110 for CIFAR (He et al. 2016, Sec. 4.2) with SE (Hu et al. 2018, r = 16) on every residual branch."""
    return _create_cifar_resnet('se_resnet110_cifar', pretrained, **kwargs)


@register_model
def se_resnet164_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """Pre-activation bottleneck ResNet-164 for CIFAR (He et al., "Identity Mappings", 2016) with SE (Hu et al. 2018, r
    = 16) on every residual branch.
    """
    return _create_cifar_resnet('se_resnet164_cifar', pretrained, **kwargs)


@register_model
def se_wrn16_8_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """Wide ResNet-16-8 for CIFAR (Zagoruyko & Komodakis 2016) with SE (Hu et al. 2018, r = 16) on every residual
    branch.
    """
    return _create_cifar_resnet('se_wrn16_8_cifar', pretrained, **kwargs)


@register_model
def se_wrn22_10_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """Wide ResNet-22-10 for CIFAR (Zagoruyko & Komodakis 2016) with SE (Hu et al. 2018, r = 16) on every residual
    branch.
    """
    return _create_cifar_resnet('se_wrn22_10_cifar', pretrained, **kwargs)


@register_model
def ab_resnet20_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-20 for CIFAR (He et al. 2016, Sec. 4.2) with Accuracy Booster (Singh et al.) on every residual branch."""
    return _create_cifar_resnet('ab_resnet20_cifar', pretrained, **kwargs)


@register_model
def ab_resnet56_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-56 for CIFAR (He et al. 2016, Sec. 4.2) with Accuracy Booster (Singh et al.) on every residual branch."""
    return _create_cifar_resnet('ab_resnet56_cifar', pretrained, **kwargs)


@register_model
def ab_resnet110_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-110 for CIFAR (He et al. 2016, Sec. 4.2) with Accuracy Booster (Singh et al.) on every residual branch."""
    return _create_cifar_resnet('ab_resnet110_cifar', pretrained, **kwargs)


@register_model
def ab_resnet164_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """Pre-activation bottleneck ResNet-164 for CIFAR (He et al., "Identity Mappings", 2016) with Accuracy Booster
    (Singh et al.) on every residual branch.
    """
    return _create_cifar_resnet('ab_resnet164_cifar', pretrained, **kwargs)


@register_model
def ab_wrn16_8_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """Wide ResNet-16-8 for CIFAR (Zagoruyko & Komodakis 2016) with Accuracy Booster (Singh et al.) on every residual
    branch.
    """
    return _create_cifar_resnet('ab_wrn16_8_cifar', pretrained, **kwargs)


@register_model
def ab_wrn22_10_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """Wide ResNet-22-10 for CIFAR (Zagoruyko & Komodakis 2016) with Accuracy Booster (Singh et al.) on every residual
    branch.
    """
    return _create_cifar_resnet('ab_wrn22_10_cifar', pretrained, **kwargs)


@register_model
def abplus_resnet20_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-20 for CIFAR (He et al. 2016, Sec. 4.2) with AB-Plus (Singh et al.) on every residual branch."""
    return _create_cifar_resnet('abplus_resnet20_cifar', pretrained, **kwargs)


@register_model
def abplus_resnet56_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-56 for CIFAR (He et al. 2016, Sec. 4.2) with AB-Plus (Singh et al.) on every residual branch."""
    return _create_cifar_resnet('abplus_resnet56_cifar', pretrained, **kwargs)


@register_model
def abplus_resnet110_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-110 for CIFAR (He et al. 2016, Sec. 4.2) with AB-Plus (Singh et al.) on every residual branch."""
    return _create_cifar_resnet('abplus_resnet110_cifar', pretrained, **kwargs)


@register_model
def abplus_resnet164_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """Pre-activation bottleneck ResNet-164 for CIFAR (He et al., "Identity Mappings", 2016) with AB-Plus
    (Singh et al.) on every residual branch.
    """
    return _create_cifar_resnet('abplus_resnet164_cifar', pretrained, **kwargs)


@register_model
def abplus_wrn16_8_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """Wide ResNet-16-8 for CIFAR (Zagoruyko & Komodakis 2016) with AB-Plus (Singh et al.) on every residual branch."""
    return _create_cifar_resnet('abplus_wrn16_8_cifar', pretrained, **kwargs)


@register_model
def abplus_wrn22_10_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """Wide ResNet-22-10 for CIFAR (Zagoruyko & Komodakis 2016) with AB-Plus (Singh et al.) on every residual branch."""
    return _create_cifar_resnet('abplus_wrn22_10_cifar', pretrained, **kwargs)

