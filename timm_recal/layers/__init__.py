"""Recalibration gates (SE family, Accuracy Booster family, Skip-Layer Excitation)."""
from .booster import BoosterGate
from .gates import GATES, get_gate, list_gates
from .skip_excite import SkipLayerExcitation
from .squeeze_excite import SE_PROFILES, NoSqueezeExcite, SqueezeExcite

__all__ = [
    'BoosterGate', 'GATES', 'get_gate', 'list_gates', 'SkipLayerExcitation', 'SE_PROFILES',
    'NoSqueezeExcite', 'SqueezeExcite',
]
