"""The 3-layer CIFAR-10 CNN of Mahendran, "Variations of squeeze and excitation networks" (Sec. 2, Table 1),
with the SE gate or one of its excitation-profile variants (slow squeeze, slow excite, both, bump).

The paper's figure of the net is lost; the text gives three conv layers and says a module is tested by
"replacing the 2nd conv layer with the module". Here: three layers of 3x3 conv (padding 1, bias, no BN) ->
ReLU -> 2x2 max-pool with 32, 64 and 128 channels (32 -> 16 -> 8 -> 4 px), global average pool, FC.

Gate position: after conv 2's ReLU, before its pool (``attn_stage=1``). Read as in SE-Inception (Hu et al.),
the 2nd layer becomes "conv + gate" and the gate recalibrates that layer's non-linear output. Putting it
before the pool lets the squeeze average the full 16x16 map; for a positive per-channel gate the scaling
itself commutes with max-pooling, so only the squeeze statistics depend on this choice.

Reduction ratio r = 16 (``attn_reduction``; Hu et al.'s default, also used for the variants): on 64 channels
the hidden widths are SE 64-4-64, slow squeeze 64-8-4-64, slow excite 64-4-8-64, both 64-8-4-8-64,
bump 64-4-4-64.

Weights start from PyTorch's default init (``conv_init='torch'``): the paper's recipe (Adadelta, lr 1.0, step
decay 0.7, batch 64) is PyTorch's MNIST example, which keeps the default init.
"""
import numbers
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn
from timm.layers import ClassifierHead, LayerType, create_act_layer
from timm.models import checkpoint_seq, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices  # no public export in timm 1.0.31

from ..layers import get_gate
from ._common import (
    ClassifierHeadMixin, build_model, check_drop_rate, check_io, check_widths, cifar_cfg, init_conv_weights_,
    resolve_act_layer,
)

__all__ = ['CNN3']


class CNN3(ClassifierHeadMixin, nn.Module):
    """Plain conv -> ReLU -> [gate] -> max-pool layers, global pool, FC.

    Args:
        widths: output channels of the conv layers.
        attn_layer: gate name/class (``'se'``, ``'slowsq'``, ``'slowex'``, ``'slowsqex'``, ``'bump'``, ...) or
            None for the plain net.
        attn_stage: index of the conv layer the gate follows; None (default) is 1, the 2nd conv, as in the paper.
            Refused without ``attn_layer``, like ``attn_reduction``: there is no gate it could place.
        attn_reduction: reduction ratio r of the gate; None (default) is r = 16. Refused without ``attn_layer``:
            there is no gate it could configure.
        drop_rate: dropout before the classifier.
        conv_init: ``'torch'`` (default), ``'kaiming_fan_out'`` or ``'kaiming_fan_in'``.
    """

    def __init__(
            self,
            widths: Sequence[int] = (32, 64, 128),
            num_classes: int = 10,
            in_chans: int = 3,
            global_pool: str = 'avg',
            drop_rate: float = 0.,
            attn_layer: LayerType = None,
            attn_stage: Optional[int] = None,
            attn_reduction: Optional[float] = None,
            act_layer: LayerType = nn.ReLU,
            conv_init: str = 'torch',
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        name = type(self).__name__
        widths = check_widths(widths, 'widths', name)
        if not widths:
            raise ValueError(f"{name}: widths needs at least one conv layer")
        check_io(in_chans, num_classes, name)
        check_drop_rate(drop_rate, name, high_open=True)
        gate = get_gate(attn_layer)
        if gate is None:
            given = [k for k, v in (('attn_stage', attn_stage), ('attn_reduction', attn_reduction)) if v is not None]
            if given:
                raise ValueError(f"{name} has no gate to configure, got {' and '.join(given)}; give attn_layer= "
                                 f"(e.g. 'se') to add one")
        attn_stage = 1 if attn_stage is None else attn_stage
        # a float or bool matched no layer index (1.5: no gate at all) or the wrong one (True: layer 1)
        if isinstance(attn_stage, bool) or not isinstance(attn_stage, numbers.Integral) \
                or not 0 <= attn_stage < len(widths):
            raise ValueError(f"{name}: attn_stage must index one of the {len(widths)} conv layers "
                             f"(an int 0..{len(widths) - 1}), got {attn_stage!r}")
        attn_reduction = 16 if attn_reduction is None else attn_reduction
        act_layer = resolve_act_layer(act_layer, name)
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.grad_checkpointing = False

        stages, prev = [], in_chans
        self.feature_info = []
        for i, chs in enumerate(widths):
            attn = gate(chs, reduction=attn_reduction, **dd) if gate is not None and i == attn_stage else nn.Identity()
            stages.append(nn.Sequential(OrderedDict(
                conv=nn.Conv2d(prev, chs, 3, padding=1, **dd),
                act=create_act_layer(act_layer, inplace=True),
                attn=attn,
                pool=nn.MaxPool2d(2),
            )))
            self.feature_info.append(dict(num_chs=chs, reduction=2 ** (i + 1), module=f'stages.{i}'))
            prev = chs
        self.stages = nn.Sequential(*stages)
        self.num_features = self.head_hidden_size = prev
        self.head = ClassifierHead(prev, num_classes, pool_type=global_pool, drop_rate=drop_rate, **dd)

        init_conv_weights_(self, conv_init)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        return dict(stem=r'^stages\.0', blocks=r'^stages\.(\d+)')

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Outputs of the conv layers (after their pools); ``norm`` has nothing to apply (no final norm)."""
        if output_fmt != 'NCHW':
            raise ValueError(f"{type(self).__name__} only supports output_fmt='NCHW', got {output_fmt!r}")
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        stages = self.stages if torch.jit.is_scripting() or not stop_early else self.stages[:max_index + 1]
        intermediates = []
        for i, stage in enumerate(stages):
            x = stage(x)
            if i in take_indices:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        prune_end = max_index < len(self.stages) - 1
        self.stages = self.stages[:max_index + 1]
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]['num_chs']
        if prune_head or prune_end:
            self.reset_classifier(0, '')
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.stages, x)
        return self.stages(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# --- variants as data --------------------------------------------------------------------------------------
#: Table 1 of the paper, row by row: variant -> gate (None = "Default").
_GATES = {'': None, 'se_': 'se', 'slowsq_': 'slowsq', 'slowex_': 'slowex', 'slowsqex_': 'slowsqex', 'bump_': 'bump'}
model_args: Dict[str, Dict[str, Any]] = {f'{prefix}cnn3': dict(attn_layer=gate) for prefix, gate in _GATES.items()}

# No trained weights; the 4x4 final map of a 32x32 input is the pool size.
default_cfgs = generate_default_cfgs(
    {name: cifar_cfg(first_conv='stages.0.conv', pool_size=(4, 4)) for name in model_args})


def _create_cnn3(variant: str, pretrained: bool = False, **kwargs) -> CNN3:
    return build_model(
        CNN3, variant, pretrained,
        feature_cfg=dict(feature_cls='getter', out_indices=(0, 1, 2)),
        **dict(model_args[variant.split('.')[0]], **kwargs),
    )


@register_model
def cnn3(pretrained: bool = False, **kwargs) -> CNN3:
    """Mahendran's 3-layer CIFAR-10 CNN ("Variations of squeeze and excitation networks"), plain ("Default" row of
    Table 1).
    """
    return _create_cnn3('cnn3', pretrained, **kwargs)


@register_model
def se_cnn3(pretrained: bool = False, **kwargs) -> CNN3:
    """Mahendran's 3-layer CIFAR-10 CNN ("Variations of squeeze and excitation networks"), with SE after conv 2 (r =
    16).
    """
    return _create_cnn3('se_cnn3', pretrained, **kwargs)


@register_model
def slowsq_cnn3(pretrained: bool = False, **kwargs) -> CNN3:
    """Mahendran's 3-layer CIFAR-10 CNN ("Variations of squeeze and excitation networks"), with the slow-squeeze SE
    variant after conv 2.
    """
    return _create_cnn3('slowsq_cnn3', pretrained, **kwargs)


@register_model
def slowex_cnn3(pretrained: bool = False, **kwargs) -> CNN3:
    """Mahendran's 3-layer CIFAR-10 CNN ("Variations of squeeze and excitation networks"), with the slow-excite SE
    variant after conv 2.
    """
    return _create_cnn3('slowex_cnn3', pretrained, **kwargs)


@register_model
def slowsqex_cnn3(pretrained: bool = False, **kwargs) -> CNN3:
    """Mahendran's 3-layer CIFAR-10 CNN ("Variations of squeeze and excitation networks"), with the slow-squeeze +
    slow-excite SE variant after conv 2.
    """
    return _create_cnn3('slowsqex_cnn3', pretrained, **kwargs)


@register_model
def bump_cnn3(pretrained: bool = False, **kwargs) -> CNN3:
    """Mahendran's 3-layer CIFAR-10 CNN ("Variations of squeeze and excitation networks"), with the bump SE variant
    after conv 2.
    """
    return _create_cnn3('bump_cnn3', pretrained, **kwargs)

