"""Which modules of a network are recalibration gates, and how to read (or zero) their gate values.

One registry (``GATE_TYPES``) says what a gate is: a module that multiplies a feature map by ``self.gate(s)``,
where ``gate`` is its nonlinearity (sigmoid in the papers). That holds for every gate of this plugin (SE and its
ablations, the slow squeeze / slow excite / bump profiles, NoSqueeze, AB, AB-Plus and their ablation designs,
SLE) and for timm's own SE-style modules (``SEModule``, ``EffectiveSEModule``, ``SqueezeExciteCl``, the
EfficientNet/MobileNetV3 ``SqueezeExcite``). The gate value is the output of ``gate``: what the multiply scales
the map by. A forward hook on ``gate`` reads it without editing the model, and one that returns a masked copy
zeroes chosen channels (the map's channels are then multiplied by 0).

``GateProbe`` is that pair of hooks over every gate of a model: per image and channel it records the gate value
averaged over the spatial positions (per-pixel gates have one value per position; channel gates one per
channel), in the order the gates run.
"""
import contextlib
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Tuple, Type

import numpy as np
import torch
from torch import nn

from .errors import DeployError

__all__ = ['GATE_TYPES', 'GateSite', 'gate_types', 'find_gates', 'GateProbe', 'require_gates', 'zeroed_channels']


def gate_types() -> Dict[Type[nn.Module], int]:
    """Gate module class -> the channel axis of its gate tensor (1 for NCHW, -1 for timm's channels-last SE)."""
    from timm.layers import squeeze_excite as timm_se
    from timm.models import _efficientnet_blocks as timm_eff
    from timm_recal.layers import BoosterGate, NoSqueezeExcite, SkipLayerExcitation, SqueezeExcite
    return {SqueezeExcite: 1, NoSqueezeExcite: 1, BoosterGate: 1, SkipLayerExcitation: 1,
            timm_se.SEModule: 1, timm_se.EffectiveSEModule: 1, timm_se.SqueezeExciteCl: -1,
            timm_eff.SqueezeExcite: 1}


#: filled on first use (importing timm's block modules is not free)
GATE_TYPES: Dict[Type[nn.Module], int] = {}


@dataclass
class GateSite:
    """One gate of a model: its module name, module, kind (class name), channel count and channel axis."""
    name: str
    module: nn.Module
    kind: str
    channels: int
    axis: int

    @property
    def act(self) -> nn.Module:
        return self.module.gate


def _channels(module: nn.Module) -> int:
    for attr in ('channels',):
        if isinstance(getattr(module, attr, None), int):
            return int(getattr(module, attr))
    convs = [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    if convs:
        last = convs[-1]
        return int(last.out_channels if isinstance(last, nn.Conv2d) else last.out_features)
    return 0


def find_gates(model: nn.Module) -> List[GateSite]:
    """Every gate of ``model`` (``GATE_TYPES`` with a ``gate`` nonlinearity module), in module order.

    ``GateProbe`` re-sorts them into the order they run on the first batch."""
    if not GATE_TYPES:
        GATE_TYPES.update(gate_types())
    sites = []
    for name, module in model.named_modules():
        axis = next((a for cls, a in GATE_TYPES.items() if type(module) is cls or isinstance(module, cls)), None)
        if axis is None or not isinstance(getattr(module, 'gate', None), nn.Module):
            continue
        sites.append(GateSite(name, module, type(module).__name__, _channels(module), axis))
    return sites


def require_gates(model: nn.Module, what: str) -> List[GateSite]:
    """``find_gates``, or the one-line error for a model without any."""
    sites = find_gates(model)
    if not sites:
        raise DeployError(f'{what} has no recalibration gates (no SE, AB, SLE or timm SE-style module); '
                          'nothing to inspect')
    return sites


class GateProbe:
    """Forward hooks on every gate's nonlinearity: record per-channel gate values, optionally zero channels.

    ``masks[name]`` (a float tensor of the gate's channel count, 0 = zeroed) multiplies that gate's output;
    ``record=False`` only applies masks. After a forward, ``take()`` returns ``{name: [N, C] float32}`` of the
    batches seen since the last call. ``order`` lists the gate names in the order they first ran.
    """

    def __init__(self, model: nn.Module, sites: Optional[List[GateSite]] = None, record: bool = True):
        self.model = model
        self.sites = sites if sites is not None else find_gates(model)
        self.record = record
        self.masks: Dict[str, torch.Tensor] = {}
        self.order: List[str] = []
        self._values: Dict[str, List[np.ndarray]] = {s.name: [] for s in self.sites}
        self._handles: List[torch.utils.hooks.RemovableHandle] = []

    def _hook(self, site: GateSite):
        def hook(module: nn.Module, args: Tuple[torch.Tensor, ...], out: torch.Tensor):
            if site.name not in self.order:
                self.order.append(site.name)
            mask = self.masks.get(site.name)
            if mask is not None:
                shape = [1] * out.ndim
                shape[site.axis] = -1
                out = out * mask.to(out.dtype).view(shape)
            if self.record:
                dims = [d for d in range(out.ndim) if d not in (0, site.axis % out.ndim)]
                per_channel = out.float().mean(dims) if dims else out.float()
                self._values[site.name].append(per_channel.detach().cpu().numpy())
            return out if mask is not None else None
        return hook

    def __enter__(self) -> 'GateProbe':
        self._handles = [s.act.register_forward_hook(self._hook(s)) for s in self.sites]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def take(self) -> Dict[str, np.ndarray]:
        out = {name: np.concatenate(v) for name, v in self._values.items() if v}
        self._values = {s.name: [] for s in self.sites}
        return out

    def ordered_sites(self) -> List[GateSite]:
        """The sites in the order they ran (sites that never ran last, in module order)."""
        by_name = {s.name: s for s in self.sites}
        return [by_name[n] for n in self.order] + [s for s in self.sites if s.name not in self.order]


@contextlib.contextmanager
def zeroed_channels(model: nn.Module, sites: List[GateSite], masks: Dict[str, torch.Tensor]) -> Iterator[None]:
    """``model`` with the channels of ``masks`` zeroed in their gates (hooks removed on exit)."""
    probe = GateProbe(model, sites, record=False)
    probe.masks = masks
    with probe:
        yield
