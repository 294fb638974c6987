"""Registry of recalibration gates by name, so models and configs can say ``attn_layer='ab'``.

Every entry is a class or ``functools.partial`` with timm's attention-layer signature
(``channels`` first, then keyword settings, ``device``/``dtype``), so it plugs into any timm model that
takes ``attn_layer`` (ResNet, ByobNet) or ``se_layer`` (EfficientNet, MobileNetV3).
"""
import difflib
from functools import partial
from typing import Callable, Dict, List, Union

from torch import nn

from .booster import BoosterGate
from .squeeze_excite import SE_PROFILES, NoSqueezeExcite, SqueezeExcite

__all__ = ['get_gate', 'list_gates', 'GATES']


def _pixel(k: int, groups: str, norm: bool = False):
    return partial(BoosterGate, pool=None, mix_groups=None, norm=norm, spatial_kernel=k, spatial_groups=groups)


GATES: Dict[str, Callable[..., nn.Module]] = {
    # Hu et al.: SE and its squeeze / excitation / bias ablations
    'se': SqueezeExcite,
    'se_max': partial(SqueezeExcite, pool_type='max'),
    'se_tanh': partial(SqueezeExcite, gate_layer='tanh'),
    'se_relu': partial(SqueezeExcite, gate_layer='relu'),
    'se_nobias': partial(SqueezeExcite, bias=False),
    'nosqueeze': NoSqueezeExcite,
    # Mahendran: excitation-width profiles
    **{name: partial(SqueezeExcite, rd_mults=mults) for name, mults in SE_PROFILES.items() if name != 'se'},
    # Singh et al.: AB, AB-Plus and the group ablation
    'ab': partial(BoosterGate, mix_groups='dw'),
    'abplus': partial(BoosterGate, mix_groups='full'),
    **{f'ab_g{g}': partial(BoosterGate, mix_groups=g) for g in (2, 4, 8, 16)},
    # Singh et al., Table 11: the averaging ablations (E, F, G)
    'gap_sigmoid': partial(BoosterGate, mix_groups=None, norm=False),
    'gap_bn_sigmoid': partial(BoosterGate, mix_groups=None, norm=True),
    'gdw_wavg': partial(BoosterGate, pool='dw_weighted', mix_groups=None, norm=False),
    # Tables 12-13: fine-grained per-pixel gates (I-L; 9x9 and +BN for ImageNet)
    **{f'pixel{k}': _pixel(k, 'full') for k in (3, 7, 9)},
    **{f'pixel_dw{k}': _pixel(k, 'dw') for k in (3, 7, 9)},
    **{f'pixel_dw{k}_bn': _pixel(k, 'dw', norm=True) for k in (3, 9)},
    # Table 14: fine-grained + channel-wise (M, N, O)
    'dw7_gap_sigmoid': partial(BoosterGate, spatial_kernel=7, mix_groups=None, norm=False),
    'dw7_ab': partial(BoosterGate, spatial_kernel=7, mix_groups='dw'),
    'dw7_abplus': partial(BoosterGate, spatial_kernel=7, mix_groups='full'),
}


def list_gates() -> List[str]:
    return sorted(GATES)


def get_gate(gate: Union[str, Callable[..., nn.Module], None], **kwargs) -> Union[Callable[..., nn.Module], None]:
    """Resolve a gate name (or pass a class/partial through), binding ``kwargs`` as defaults.

    Raises ValueError naming the closest known gates for an unknown name.
    """
    if gate is None or gate == '':
        return None
    if isinstance(gate, str):
        key = gate.lower()
        if key not in GATES:
            close = difflib.get_close_matches(key, GATES, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; known gates: {', '.join(list_gates())}"
            raise ValueError(f"unknown gate {gate!r}{hint}")
        gate = GATES[key]
    return partial(gate, **kwargs) if kwargs else gate
