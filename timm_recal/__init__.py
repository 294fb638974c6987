"""timm-recal: channel-recalibration CNNs as a timm plugin.

``import timm_recal`` registers every model with timm (``timm.create_model('ab_resnet50')``) and exposes the
gates in ``timm_recal.layers``.
"""
from .version import __version__
from . import layers
from . import models
from .layers import get_gate, list_gates

__all__ = ['__version__', 'get_gate', 'list_gates', 'layers', 'models']
