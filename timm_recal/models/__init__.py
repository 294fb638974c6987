"""timm model entrypoints; importing this package registers every timm-recal model with timm.

Each variant is a documented function in its model file (``shufflenetv2.se_shufflenetv2_cifar``); it is also
reachable here by name, so ``help(timm_recal.models.se_shufflenetv2_cifar)`` says what the variant is.
"""
from . import shufflenetv2
from .shufflenetv2 import ShuffleNetV2
from . import cifar_resnet
from .cifar_resnet import CifarResNet
from . import cnn3
from .cnn3 import CNN3
from . import resnet_gated

_MODEL_FILES = (shufflenetv2, cifar_resnet, cnn3, resnet_gated)


def __getattr__(name: str):
    for module in _MODEL_FILES:
        if name in module.model_args:
            return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
