"""ShuffleNet V2 (Ma et al., "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design",
ECCV 2018), which timm lacks, with recalibration gates:

* SE / SLE on CIFAR-10: Wang & Yuan, "Investigating the effectiveness of feature recalibration networks on
  image classification". Their text says 0.5x but their code builds 1.0x; ``se_shufflenetv2_cifar`` and
  ``sle_shufflenetv2_cifar`` reproduce the code exactly (1,493,204 / 3,743,934 parameters).
* AB / AB-Plus (Singh et al., "Accuracy Booster") at the same eight positions as SE.

Gate positions (SE, AB, AB-Plus): after the stem (r=1), after the first and after the last unit of each stage
(r = 4, 8, 16 for stages 2, 3, 4), after the final 1x1 conv (r=16). SLE gates stage 2 with the stem output,
stage 3 with the (gated) stage 2 output and stage 4 with the (gated) stage 3 output.

CIFAR variants (``*_cifar``) use a 3x3 stride-1 stem and no max-pool, for 32x32 inputs.
"""
from collections import OrderedDict
from functools import partial
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn
from timm.layers import ClassifierHead, LayerType
from timm.models import checkpoint_seq, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices  # no public export in timm 1.0.31

from ..layers import SkipLayerExcitation, get_gate
from ..layers._helpers import check_positive_int
from ._common import (
    ClassifierHeadMixin, build_model, HUB_ORG, check_drop_rate, check_io, check_widths, cifar_cfg, imagenet_cfg,
    init_conv_weights_, warn_renamed_kwarg,
)

__all__ = ['ShuffleNetV2', 'ShuffleUnit']


@torch.jit.unused
def _is_eager_channels_last(x: torch.Tensor) -> bool:
    """An eager (not traced, compiled or FX-proxied) map laid out channels_last (and not also contiguous)."""
    if isinstance(x, torch.fx.Proxy) or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return False
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


@torch.jit.unused
def _channel_shuffle_nhwc(x: torch.Tensor, groups: int) -> torch.Tensor:
    nhwc = x.permute(0, 2, 3, 1).unflatten(3, (groups, -1)).transpose(3, 4).flatten(3, 4)
    return nhwc.permute(0, 3, 1, 2)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of ``groups`` groups, keeping a channels_last map channels_last.

    The NCHW formulation copies a channels_last map into NCHW, and every later layer of the unit then works on
    mixed layouts (eager channels_last training of the CIFAR net ran about 20% slower). Traced, scripted and
    compiled graphs keep the NCHW formulation: shape-free, so torch.fx and a dynamic ONNX batch axis stay happy,
    and inductor picks its own layouts."""
    if not torch.jit.is_scripting():
        if _is_eager_channels_last(x):
            return _channel_shuffle_nhwc(x, groups)
    return x.unflatten(1, (groups, -1)).transpose(1, 2).flatten(1, 2)


def _conv_bn(in_chs: int, out_chs: int, kernel_size: int, stride: int = 1, groups: int = 1,
             act: bool = True, dd: Optional[dict] = None) -> nn.Sequential:
    dd = dd or {}
    layers = OrderedDict(
        conv=nn.Conv2d(in_chs, out_chs, kernel_size, stride, kernel_size // 2, groups=groups, bias=False, **dd),
        bn=nn.BatchNorm2d(out_chs, **dd),
    )
    if act:
        layers['act'] = nn.ReLU(inplace=True)
    return nn.Sequential(layers)


class ShuffleUnit(nn.Module):
    """ShuffleNet V2 unit: channel split (stride 1) or two downsampling branches (stride 2), concat, shuffle,
    then an optional gate on the unit output."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, attn_layer: LayerType = None, device=None,
                 dtype=None):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        if stride not in (1, 2):
            raise ValueError(f"ShuffleUnit: stride must be 1 or 2, got {stride}")
        if stride == 1 and in_chs != out_chs:
            raise ValueError("ShuffleUnit: a stride-1 unit keeps its width (in_chs == out_chs)")
        if out_chs % 2:
            raise ValueError(f"ShuffleUnit: out_chs must be even (two halves of out_chs // 2), got {out_chs}")
        mid = out_chs // 2
        self.stride = stride
        if stride > 1:
            self.branch1 = nn.Sequential(
                _conv_bn(in_chs, in_chs, 3, stride, groups=in_chs, act=False, dd=dd),
                _conv_bn(in_chs, mid, 1, dd=dd),
            )
        else:
            self.branch1 = None
        self.branch2 = nn.Sequential(
            _conv_bn(in_chs if stride > 1 else mid, mid, 1, dd=dd),
            _conv_bn(mid, mid, 3, stride, groups=mid, act=False, dd=dd),
            _conv_bn(mid, mid, 1, dd=dd),
        )
        self.attn = attn_layer(out_chs, **dd) if attn_layer is not None else nn.Identity()

    def concat(self, x: torch.Tensor) -> torch.Tensor:
        """The branches' outputs side by side, before the shuffle (compiled graphs gate this map: the deploy
        stage's ``compile_fusion`` moves the gate before the shuffle)."""
        if self.branch1 is None:
            halves = x.chunk(2, dim=1)
            return torch.cat((halves[0], self.branch2(halves[1])), dim=1)
        return torch.cat((self.branch1(x), self.branch2(x)), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(channel_shuffle(self.concat(x), 2))


class ShuffleNetV2(ClassifierHeadMixin, nn.Module):
    """ShuffleNet V2 with optional SE-style gates at eight positions, or SLE between stages.

    Args:
        stage_chs: output widths of stages 2-4 (even: a unit splits its channels in two halves).
        stage_units: units per stage (the first one downsamples).
        head_chs: width of the final 1x1 conv (1024, or 2048 for 2.0x).
        cifar_stem: 3x3 stride-1 stem without max-pool (32x32 inputs).
        attn_layer: gate name/class placed after the stem, after the first and last unit of each stage and
            after the head conv; None for none.
        attn_reduction: the reduction ratio r passed to the gate, one for all positions or one per position
            (stem, stage 2, 3, 4, head); None (default) is the papers' (1, 4, 8, 16, 16). AB / AB-Plus have no
            reduction and ignore it; without ``attn_layer`` (plain and SLE nets) it is refused, as there is no
            gate it could configure. ``attn_reductions`` is its deprecated old name.
        sle: add Skip-Layer Excitation stem->2, 2->3, 3->4.
        conv_init: ``'kaiming_fan_out'`` (default), ``'kaiming_fan_in'`` or ``'torch'``.
    """

    def __init__(
            self,
            stage_chs: Sequence[int] = (116, 232, 464),
            stage_units: Sequence[int] = (4, 8, 4),
            stem_chs: int = 24,
            head_chs: int = 1024,
            num_classes: int = 1000,
            in_chans: int = 3,
            cifar_stem: bool = False,
            global_pool: str = 'avg',
            drop_rate: float = 0.,
            attn_layer: LayerType = None,
            attn_reduction: Union[float, Sequence[float], None] = None,
            sle: bool = False,
            conv_init: str = 'kaiming_fan_out',
            attn_reductions: Optional[Sequence[float]] = None,
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        name = type(self).__name__
        stage_chs = check_widths(stage_chs, 'stage_chs', name)
        stage_units = check_widths(stage_units, 'stage_units', name)
        if len(stage_chs) != len(stage_units):
            raise ValueError("ShuffleNetV2: stage_chs and stage_units must have the same length")
        # a unit splits its output into two halves of out_chs // 2: an odd width built, then failed at the forward
        odd = [c for c in stage_chs if c % 2]
        if odd:
            raise ValueError(f"{name}: stage_chs must be even (each unit splits its channels into two halves), got "
                             f"{odd[0]} in {stage_chs}")
        stem_chs = check_positive_int(stem_chs, 'stem_chs', name)
        head_chs = check_positive_int(head_chs, 'head_chs', name)
        check_io(in_chans, num_classes, name)
        check_drop_rate(drop_rate, name)
        if attn_reductions is not None:
            warn_renamed_kwarg('attn_reductions=', 'attn_reduction=', 'ShuffleNetV2')
            attn_reduction = attn_reductions
        gate = get_gate(attn_layer)
        if gate is None:
            if attn_reduction is not None:
                sle_note = ' (Skip-Layer Excitation has no reduction ratio)' if sle else ''
                raise ValueError(f"ShuffleNetV2 has no gate to configure, got attn_reduction{sle_note}; give "
                                 f"attn_layer= (e.g. 'se') to add one")
        else:
            if attn_reduction is None:
                attn_reduction = (1, 4, 8, 16, 16)
            if isinstance(attn_reduction, (int, float)):
                attn_reduction = (attn_reduction,) * (len(stage_chs) + 2)
            if len(attn_reduction) != len(stage_chs) + 2:
                raise ValueError(f"ShuffleNetV2: attn_reduction needs one value or {len(stage_chs) + 2} "
                                 f"(stem, stages, head), got {tuple(attn_reduction)}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.grad_checkpointing = False

        def make_gate(i: int):
            return partial(gate, reduction=attn_reduction[i]) if gate is not None else None

        stem_stride = 1 if cifar_stem else 4
        self.stem = _conv_bn(in_chans, stem_chs, 3, 1 if cifar_stem else 2, dd=dd)
        self.stem_pool = nn.Identity() if cifar_stem else nn.MaxPool2d(3, 2, 1)
        self.stem_attn = make_gate(0)(stem_chs, **dd) if gate is not None else nn.Identity()
        self.feature_info = [dict(num_chs=stem_chs, reduction=stem_stride, module='stem_attn')]

        stages = []
        prev, stride = stem_chs, stem_stride
        for i, (chs, units) in enumerate(zip(stage_chs, stage_units)):
            stride *= 2
            blocks = []
            for j in range(units):
                gated = gate is not None and (j == 0 or j == units - 1)
                blocks.append(ShuffleUnit(prev, chs, 2 if j == 0 else 1, make_gate(i + 1) if gated else None, **dd))
                prev = chs
            stages.append(nn.Sequential(*blocks))
            self.feature_info.append(dict(num_chs=chs, reduction=stride, module=f'stages.{i}'))
        self.stages = nn.Sequential(*stages)

        self.sle = None
        if sle:
            widths = [stem_chs] + list(stage_chs)
            self.sle = nn.ModuleList([SkipLayerExcitation(a, b, **dd) for a, b in zip(widths[:-1], widths[1:])])

        self.num_features = self.head_hidden_size = head_chs
        self.conv_head = _conv_bn(prev, head_chs, 1, dd=dd)
        self.head_attn = make_gate(len(stage_chs) + 1)(head_chs, **dd) if gate is not None else nn.Identity()
        self.feature_info.append(dict(num_chs=head_chs, reduction=stride, module='head_attn'))
        self.head = ClassifierHead(head_chs, num_classes, pool_type=global_pool, drop_rate=drop_rate, **dd)

        init_conv_weights_(self, conv_init)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        return dict(
            stem=r'^stem',
            blocks=r'^stages\.(\d+)' if coarse else r'^stages\.(\d+)\.(\d+)',
        )

    def _stages(self, x: torch.Tensor, stop: Optional[int] = None) -> List[torch.Tensor]:
        """Run stem and stages, returning [stem, stage2, ...] outputs (SLE applied); ``stop`` ends early.

        Written for TorchScript, which unrolls loops over modules: no ``break``, and stage i finds its SLE by
        enumerating ``self.sle`` (a ModuleList cannot be indexed with a loop variable).
        """
        x = self.stem_attn(self.stem_pool(self.stem(x)))
        outs = [x]
        for i, stage in enumerate(self.stages):
            if stop is None or i < stop:
                if self.grad_checkpointing and not torch.jit.is_scripting():
                    y = checkpoint_seq(stage, outs[-1])
                else:
                    y = stage(outs[-1])
                if self.sle is not None:
                    for j, sle in enumerate(self.sle):
                        if j == i:
                            y = sle(outs[-1], y)
                outs.append(y)
        return outs

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Features of stem, each stage and the gated head conv (indices 0..len(stages)+1)."""
        if output_fmt != 'NCHW':
            raise ValueError('ShuffleNetV2 only supports output_fmt="NCHW"')
        num = len(self.feature_info)  # stem, stages, head conv; fixed, also after pruning
        take_indices, max_index = feature_take_indices(num, indices)
        stop = max_index if stop_early else None
        outs = self._stages(x, stop=stop)
        need_head = not stop_early or max_index == num - 1
        if need_head:
            x = self.head_attn(self.conv_head(outs[-1]))
            outs.append(x)
        intermediates = [outs[i] for i in take_indices]
        if intermediates_only:
            return intermediates
        return outs[-1], intermediates

    def prune_intermediate_layers(self, indices: Union[int, List[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> List[int]:
        """Drop the stages (with their SLE), the head conv and the classifier the requested features do not need.

        ShuffleNetV2 has no final norm layer apart from the head conv's own BN (feature index
        ``len(stages) + 1``, kept while that index is requested), so ``prune_norm`` has nothing to remove.
        """
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        prune_end = max_index < len(self.feature_info) - 1
        self.stages = self.stages[:max_index]
        if self.sle is not None:
            self.sle = self.sle[:max_index]
        if prune_end:
            self.conv_head = nn.Identity()
            self.head_attn = nn.Identity()
            self.num_features = self.head_hidden_size = self.feature_info[max_index]['num_chs']
        if prune_head or prune_end:
            self.reset_classifier(0, '')
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self._stages(x)[-1]
        return self.head_attn(self.conv_head(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# --- variants as data --------------------------------------------------------------------------------------
_WIDTHS = {
    'x0_5': ((48, 96, 192), 1024),
    'x1_0': ((116, 232, 464), 1024),
    'x1_5': ((176, 352, 704), 1024),
    'x2_0': ((244, 488, 976), 2048),
}
_GATES = {'': {}, 'se_': dict(attn_layer='se'), 'ab_': dict(attn_layer='ab'),
          'abplus_': dict(attn_layer='abplus'), 'sle_': dict(sle=True)}


def _variant_table() -> Dict[str, Dict[str, Any]]:
    table = {}
    for prefix, gate_args in _GATES.items():
        for width, (chs, head) in _WIDTHS.items():
            for cifar in (False, True):
                args = dict(stage_chs=chs, head_chs=head, cifar_stem=cifar, **gate_args)
                suffix = '_cifar' if cifar else ''
                table[f'{prefix}shufflenetv2_{width}{suffix}'] = args
                if width == 'x1_0':  # the unqualified name is the 1.0x net
                    table[f'{prefix}shufflenetv2{suffix}'] = args
    return table


model_args = _variant_table()

#: Variants with trained CIFAR-10 weights in weights/ (their ``.cifar10`` tags name Hub repos of ``HUB_ORG``).
#: A 1.0x net may be listed by either of its names (``shufflenetv2_cifar`` or ``shufflenetv2_x1_0_cifar``, the
#: name its weights folder carries): both names get the tag, pointing to that folder's repo. Only weights that
#: exist are listed (benchmarks/gpu/train_table.sh writes the 1.0x folders).
TRAINED_CIFAR10: Tuple[str, ...] = (
    'shufflenetv2_x0_5_cifar', 'se_shufflenetv2_x0_5_cifar', 'sle_shufflenetv2_x0_5_cifar', 'ab_shufflenetv2_x0_5_cifar')


def _same_net(name: str) -> Tuple[str, ...]:
    """``name`` and its alias: the unqualified name is the 1.0x net (``se_shufflenetv2_cifar`` =
    ``se_shufflenetv2_x1_0_cifar``)."""
    for prefix in _GATES:
        for suffix in ('', '_cifar'):
            short, full = f'{prefix}shufflenetv2{suffix}', f'{prefix}shufflenetv2_x1_0{suffix}'
            if name in (short, full):
                return short, full
    return (name,)


def _cfgs(trained: Tuple[str, ...] = TRAINED_CIFAR10) -> Dict[str, Dict[str, Any]]:
    repo_of = {alias: f'{HUB_ORG}/{name}.cifar10' for name in trained for alias in _same_net(name)}
    cfgs = {}
    for name, args in model_args.items():
        base = cifar_cfg if args['cifar_stem'] else imagenet_cfg
        if name in repo_of:
            cfgs[f'{name}.cifar10'] = base(hf_hub_id=repo_of[name])
        cfgs[name] = base()
    return cfgs


default_cfgs = generate_default_cfgs(_cfgs())


def _create_shufflenetv2(variant: str, pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    args = dict(model_args[variant.split('.')[0]])
    if args['cifar_stem']:
        kwargs.setdefault('num_classes', 10)
    return build_model(
        ShuffleNetV2, variant, pretrained,
        feature_cfg=dict(feature_cls='getter', out_indices=(0, 1, 2, 3, 4)),
        **dict(args, **kwargs),
    )


@register_model
def shufflenetv2_x0_5(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 0.5x (Ma et al. 2018)."""
    return _create_shufflenetv2('shufflenetv2_x0_5', pretrained, **kwargs)


@register_model
def shufflenetv2_x0_5_cifar(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 0.5x (Ma et al. 2018), CIFAR stem for 32x32 inputs; trained CIFAR-10 weights: tag ``.cifar10``."""
    return _create_shufflenetv2('shufflenetv2_x0_5_cifar', pretrained, **kwargs)


@register_model
def shufflenetv2_x1_0(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 1.0x (Ma et al. 2018)."""
    return _create_shufflenetv2('shufflenetv2_x1_0', pretrained, **kwargs)


@register_model
def shufflenetv2(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 1.0x (Ma et al. 2018) (same net as ``shufflenetv2_x1_0``)."""
    return _create_shufflenetv2('shufflenetv2', pretrained, **kwargs)


@register_model
def shufflenetv2_x1_0_cifar(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 1.0x (Ma et al. 2018), CIFAR stem for 32x32 inputs."""
    return _create_shufflenetv2('shufflenetv2_x1_0_cifar', pretrained, **kwargs)


@register_model
def shufflenetv2_cifar(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 1.0x (Ma et al. 2018), CIFAR stem for 32x32 inputs (same net as ``shufflenetv2_x1_0_cifar``):
    Wang & Yuan's baseline (1,263,854 parameters).
    """
    return _create_shufflenetv2('shufflenetv2_cifar', pretrained, **kwargs)


@register_model
def shufflenetv2_x1_5(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 1.5x (Ma et al. 2018)."""
    return _create_shufflenetv2('shufflenetv2_x1_5', pretrained, **kwargs)


@register_model
def shufflenetv2_x1_5_cifar(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 1.5x (Ma et al. 2018), CIFAR stem for 32x32 inputs."""
    return _create_shufflenetv2('shufflenetv2_x1_5_cifar', pretrained, **kwargs)


@register_model
def shufflenetv2_x2_0(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 2.0x (Ma et al. 2018)."""
    return _create_shufflenetv2('shufflenetv2_x2_0', pretrained, **kwargs)


@register_model
def shufflenetv2_x2_0_cifar(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 2.0x (Ma et al. 2018), CIFAR stem for 32x32 inputs."""
    return _create_shufflenetv2('shufflenetv2_x2_0_cifar', pretrained, **kwargs)


@register_model
def se_shufflenetv2_x0_5(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 0.5x (Ma et al. 2018) with SE gates at eight positions (Wang & Yuan)."""
    return _create_shufflenetv2('se_shufflenetv2_x0_5', pretrained, **kwargs)


@register_model
def se_shufflenetv2_x0_5_cifar(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 0.5x (Ma et al. 2018) with SE gates at eight positions (Wang & Yuan), CIFAR stem for 32x32 inputs;
    trained CIFAR-10 weights: tag ``.cifar10``.
    """
    return _create_shufflenetv2('se_shufflenetv2_x0_5_cifar', pretrained, **kwargs)


@register_model
def se_shufflenetv2_x1_0(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 1.0x (Ma et al. 2018) with SE gates at eight positions (Wang & Yuan)."""
    return _create_shufflenetv2('se_shufflenetv2_x1_0', pretrained, **kwargs)


@register_model
def se_shufflenetv2(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 1.0x (Ma et al. 2018) with SE gates at eight positions (Wang & Yuan) (same net as
    ``se_shufflenetv2_x1_0``).
    """
    return _create_shufflenetv2('se_shufflenetv2', pretrained, **kwargs)


@register_model
def se_shufflenetv2_x1_0_cifar(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 1.0x (Ma et al. 2018) with SE gates at eight positions (Wang & Yuan), CIFAR stem for 32x32 inputs.
    """
    return _create_shufflenetv2('se_shufflenetv2_x1_0_cifar', pretrained, **kwargs)


@register_model
def se_shufflenetv2_cifar(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 1.0x (Ma et al. 2018) with SE gates at eight positions (Wang & Yuan), CIFAR stem for 32x32 inputs
    (same net as ``se_shufflenetv2_x1_0_cifar``): Wang & Yuan's SE net (1,493,204 parameters).
    """
    return _create_shufflenetv2('se_shufflenetv2_cifar', pretrained, **kwargs)


@register_model
def se_shufflenetv2_x1_5(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 1.5x (Ma et al. 2018) with SE gates at eight positions (Wang & Yuan)."""
    return _create_shufflenetv2('se_shufflenetv2_x1_5', pretrained, **kwargs)


@register_model
def se_shufflenetv2_x1_5_cifar(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 1.5x (Ma et al. 2018) with SE gates at eight positions (Wang & Yuan), CIFAR stem for 32x32 inputs.
    """
    return _create_shufflenetv2('se_shufflenetv2_x1_5_cifar', pretrained, **kwargs)


@register_model
def se_shufflenetv2_x2_0(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 2.0x (Ma et al. 2018) with SE gates at eight positions (Wang & Yuan)."""
    return _create_shufflenetv2('se_shufflenetv2_x2_0', pretrained, **kwargs)


@register_model
def se_shufflenetv2_x2_0_cifar(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 2.0x (Ma et al. 2018) with SE gates at eight positions (Wang & Yuan), CIFAR stem for 32x32 inputs.
    """
    return _create_shufflenetv2('se_shufflenetv2_x2_0_cifar', pretrained, **kwargs)


@register_model
def ab_shufflenetv2_x0_5(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 0.5x (Ma et al. 2018) with Accuracy Booster gates at the eight SE positions (Singh et al.)."""
    return _create_shufflenetv2('ab_shufflenetv2_x0_5', pretrained, **kwargs)


@register_model
def ab_shufflenetv2_x0_5_cifar(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 0.5x (Ma et al. 2018) with Accuracy Booster gates at the eight SE positions (Singh et al.), CIFAR
    stem for 32x32 inputs; trained CIFAR-10 weights: tag ``.cifar10``.
    """
    return _create_shufflenetv2('ab_shufflenetv2_x0_5_cifar', pretrained, **kwargs)


@register_model
def ab_shufflenetv2_x1_0(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 1.0x (Ma et al. 2018) with Accuracy Booster gates at the eight SE positions (Singh et al.)."""
    return _create_shufflenetv2('ab_shufflenetv2_x1_0', pretrained, **kwargs)


@register_model
def ab_shufflenetv2(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 1.0x (Ma et al. 2018) with Accuracy Booster gates at the eight SE positions (Singh et al.) (same
    net as ``ab_shufflenetv2_x1_0``).
    """
    return _create_shufflenetv2('ab_shufflenetv2', pretrained, **kwargs)


@register_model
def ab_shufflenetv2_x1_0_cifar(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 1.0x (Ma et al. 2018) with Accuracy Booster gates at the eight SE positions (Singh et al.), CIFAR
    stem for 32x32 inputs.
    """
    return _create_shufflenetv2('ab_shufflenetv2_x1_0_cifar', pretrained, **kwargs)


@register_model
def ab_shufflenetv2_cifar(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 1.0x (Ma et al. 2018) with Accuracy Booster gates at the eight SE positions (Singh et al.), CIFAR
    stem for 32x32 inputs (same net as ``ab_shufflenetv2_x1_0_cifar``).
    """
    return _create_shufflenetv2('ab_shufflenetv2_cifar', pretrained, **kwargs)


@register_model
def ab_shufflenetv2_x1_5(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 1.5x (Ma et al. 2018) with Accuracy Booster gates at the eight SE positions (Singh et al.)."""
    return _create_shufflenetv2('ab_shufflenetv2_x1_5', pretrained, **kwargs)


@register_model
def ab_shufflenetv2_x1_5_cifar(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 1.5x (Ma et al. 2018) with Accuracy Booster gates at the eight SE positions (Singh et al.), CIFAR
    stem for 32x32 inputs.
    """
    return _create_shufflenetv2('ab_shufflenetv2_x1_5_cifar', pretrained, **kwargs)


@register_model
def ab_shufflenetv2_x2_0(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 2.0x (Ma et al. 2018) with Accuracy Booster gates at the eight SE positions (Singh et al.)."""
    return _create_shufflenetv2('ab_shufflenetv2_x2_0', pretrained, **kwargs)


@register_model
def ab_shufflenetv2_x2_0_cifar(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 2.0x (Ma et al. 2018) with Accuracy Booster gates at the eight SE positions (Singh et al.), CIFAR
    stem for 32x32 inputs.
    """
    return _create_shufflenetv2('ab_shufflenetv2_x2_0_cifar', pretrained, **kwargs)


@register_model
def abplus_shufflenetv2_x0_5(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 0.5x (Ma et al. 2018) with AB-Plus gates at the eight SE positions (Singh et al.)."""
    return _create_shufflenetv2('abplus_shufflenetv2_x0_5', pretrained, **kwargs)


@register_model
def abplus_shufflenetv2_x0_5_cifar(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 0.5x (Ma et al. 2018) with AB-Plus gates at the eight SE positions (Singh et al.), CIFAR stem for
    32x32 inputs.
    """
    return _create_shufflenetv2('abplus_shufflenetv2_x0_5_cifar', pretrained, **kwargs)


@register_model
def abplus_shufflenetv2_x1_0(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 1.0x (Ma et al. 2018) with AB-Plus gates at the eight SE positions (Singh et al.)."""
    return _create_shufflenetv2('abplus_shufflenetv2_x1_0', pretrained, **kwargs)


@register_model
def abplus_shufflenetv2(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 1.0x (Ma et al. 2018) with AB-Plus gates at the eight SE positions (Singh et al.) (same net as
    ``abplus_shufflenetv2_x1_0``).
    """
    return _create_shufflenetv2('abplus_shufflenetv2', pretrained, **kwargs)


@register_model
def abplus_shufflenetv2_x1_0_cifar(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 1.0x (Ma et al. 2018) with AB-Plus gates at the eight SE positions (Singh et al.), CIFAR stem for
    32x32 inputs.
    """
    return _create_shufflenetv2('abplus_shufflenetv2_x1_0_cifar', pretrained, **kwargs)


@register_model
def abplus_shufflenetv2_cifar(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 1.0x (Ma et al. 2018) with AB-Plus gates at the eight SE positions (Singh et al.), CIFAR stem for
    32x32 inputs (same net as ``abplus_shufflenetv2_x1_0_cifar``).
    """
    return _create_shufflenetv2('abplus_shufflenetv2_cifar', pretrained, **kwargs)


@register_model
def abplus_shufflenetv2_x1_5(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 1.5x (Ma et al. 2018) with AB-Plus gates at the eight SE positions (Singh et al.)."""
    return _create_shufflenetv2('abplus_shufflenetv2_x1_5', pretrained, **kwargs)


@register_model
def abplus_shufflenetv2_x1_5_cifar(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 1.5x (Ma et al. 2018) with AB-Plus gates at the eight SE positions (Singh et al.), CIFAR stem for
    32x32 inputs.
    """
    return _create_shufflenetv2('abplus_shufflenetv2_x1_5_cifar', pretrained, **kwargs)


@register_model
def abplus_shufflenetv2_x2_0(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 2.0x (Ma et al. 2018) with AB-Plus gates at the eight SE positions (Singh et al.)."""
    return _create_shufflenetv2('abplus_shufflenetv2_x2_0', pretrained, **kwargs)


@register_model
def abplus_shufflenetv2_x2_0_cifar(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 2.0x (Ma et al. 2018) with AB-Plus gates at the eight SE positions (Singh et al.), CIFAR stem for
    32x32 inputs.
    """
    return _create_shufflenetv2('abplus_shufflenetv2_x2_0_cifar', pretrained, **kwargs)


@register_model
def sle_shufflenetv2_x0_5(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 0.5x (Ma et al. 2018) with Skip-Layer Excitation between stages (Wang & Yuan)."""
    return _create_shufflenetv2('sle_shufflenetv2_x0_5', pretrained, **kwargs)


@register_model
def sle_shufflenetv2_x0_5_cifar(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 0.5x (Ma et al. 2018) with Skip-Layer Excitation between stages (Wang & Yuan), CIFAR stem for 32x32
    inputs; trained CIFAR-10 weights: tag ``.cifar10``.
    """
    return _create_shufflenetv2('sle_shufflenetv2_x0_5_cifar', pretrained, **kwargs)


@register_model
def sle_shufflenetv2_x1_0(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 1.0x (Ma et al. 2018) with Skip-Layer Excitation between stages (Wang & Yuan)."""
    return _create_shufflenetv2('sle_shufflenetv2_x1_0', pretrained, **kwargs)


@register_model
def sle_shufflenetv2(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 1.0x (Ma et al. 2018) with Skip-Layer Excitation between stages (Wang & Yuan) (same net as
    ``sle_shufflenetv2_x1_0``).
    """
    return _create_shufflenetv2('sle_shufflenetv2', pretrained, **kwargs)


@register_model
def sle_shufflenetv2_x1_0_cifar(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 1.0x (Ma et al. 2018) with Skip-Layer Excitation between stages (Wang & Yuan), CIFAR stem for 32x32
    inputs.
    """
    return _create_shufflenetv2('sle_shufflenetv2_x1_0_cifar', pretrained, **kwargs)


@register_model
def sle_shufflenetv2_cifar(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 1.0x (Ma et al. 2018) with Skip-Layer Excitation between stages (Wang & Yuan), CIFAR stem for 32x32
    inputs (same net as ``sle_shufflenetv2_x1_0_cifar``): Wang & Yuan's SLE net (3,743,934 parameters).
    """
    return _create_shufflenetv2('sle_shufflenetv2_cifar', pretrained, **kwargs)


@register_model
def sle_shufflenetv2_x1_5(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 1.5x (Ma et al. 2018) with Skip-Layer Excitation between stages (Wang & Yuan)."""
    return _create_shufflenetv2('sle_shufflenetv2_x1_5', pretrained, **kwargs)


@register_model
def sle_shufflenetv2_x1_5_cifar(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 1.5x (Ma et al. 2018) with Skip-Layer Excitation between stages (Wang & Yuan), CIFAR stem for 32x32
    inputs.
    """
    return _create_shufflenetv2('sle_shufflenetv2_x1_5_cifar', pretrained, **kwargs)


@register_model
def sle_shufflenetv2_x2_0(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 2.0x (Ma et al. 2018) with Skip-Layer Excitation between stages (Wang & Yuan)."""
    return _create_shufflenetv2('sle_shufflenetv2_x2_0', pretrained, **kwargs)


@register_model
def sle_shufflenetv2_x2_0_cifar(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 2.0x (Ma et al. 2018) with Skip-Layer Excitation between stages (Wang & Yuan), CIFAR stem for 32x32
    inputs.
    """
    return _create_shufflenetv2('sle_shufflenetv2_x2_0_cifar', pretrained, **kwargs)

