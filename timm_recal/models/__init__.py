"""timm model entrypoints; importing this package registers every timm-recal model with timm."""
from . import shufflenetv2
from .shufflenetv2 import ShuffleNetV2
from . import cifar_resnet
from .cifar_resnet import CifarResNet
from . import cnn3
from .cnn3 import CNN3
from . import resnet_gated
