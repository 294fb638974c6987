"""Shared pieces of the training tests: a tiny CIFAR-10 ImageFolder."""
import os
import shutil

from conftest import SHARED_DATA

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_CIFAR10 = str(SHARED_DATA / 'cifar10')
#: the model the training tests train (small, 32x32, committed with the plugin)
TINY_MODEL = 'shufflenetv2_x0_5_cifar'


def make_tiny_cifar(root: str, train_per_class: int = 8, test_per_class: int = 2) -> str:
    """``root/{train,test}/<class>/*.jpg``: the first images of each class of the shared CIFAR-10 copy, or of
    the package's 5-per-class samples (4 train, 1 test) where that copy is absent."""
    if os.path.isdir(SHARED_CIFAR10):
        sources = {'train': (os.path.join(SHARED_CIFAR10, 'train'), 0, train_per_class),
                   'test': (os.path.join(SHARED_CIFAR10, 'test'), 0, test_per_class)}
    else:
        samples = os.path.join(REPO, 'timm_recal', 'assets', 'cifar10_samples')
        sources = {'train': (samples, 0, 4), 'test': (samples, 4, 5)}
    for split, (src, lo, hi) in sources.items():
        for cls in sorted(os.listdir(src)):
            os.makedirs(os.path.join(root, split, cls), exist_ok=True)
            for name in sorted(os.listdir(os.path.join(src, cls)))[lo:hi]:
                shutil.copy(os.path.join(src, cls, name), os.path.join(root, split, cls, name))
    return str(root)
