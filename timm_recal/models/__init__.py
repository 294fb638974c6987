"""timm model entrypoints; importing this package registers every timm-recal model with timm."""
from . import shufflenetv2
from .shufflenetv2 import ShuffleNetV2
