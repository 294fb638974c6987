"""timm-recal: channel-recalibration CNNs as a timm plugin.

``import timm_recal`` registers every model with timm (``timm.create_model('ab_resnet50')``) and exposes the
gates in ``timm_recal.layers``.
"""
from .pause_points import pause_point as _pause_point
_pause_point('import')  # before torch: tests interrupt the command here

from .version import __version__  # noqa: E402
from . import layers  # noqa: E402
from . import models  # noqa: E402
from .layers import get_gate, list_gates  # noqa: E402

__all__ = ['__version__', 'get_gate', 'list_gates', 'layers', 'models']
