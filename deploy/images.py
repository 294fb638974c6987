"""Real images for parity, validation and INT8 calibration, through the model's own timm preprocessing.

``data_dir=None`` means the samples bundled in the package (``timm_recal/assets``): the CIFAR-10 set (50 images)
for 32x32 or CIFAR-10 models, the ImageNet set (12 images) otherwise. A folder is read as an ImageFolder
(``DIR/<class>/<image>``; a flat folder of images is read unlabelled, label -1). Labels are the sorted folder
Labels come from the folder names: every folder name must be one of the model's class labels, and maps to that
class index, so a subset folder (``imagenet-1k-samples`` with a few synsets, CIFAR-10 with a few classes) gets
the true indices. A 1000-class model without labels uses the ImageNet-1k synsets (``timm.data.ImageNetInfo``).
Folders whose names are not the model's labels (``class_1..class_10``, synsets against a CIFAR-10 model) are
never silently taken in folder order: they count as unlabelled (``label_mode == 'unmatched'``, which
``validate`` refuses with both label sets named) unless ``folder_order`` says the sorted folder order is the
class order (``--folder-order``).
"""
import os
import random
from importlib import resources
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from timm_recal.class_folders import few, indices_by_name

from .errors import DeployError

__all__ = ['CIFAR10_CLASSES', 'IMG_EXTENSIONS', 'bundled_samples_dir', 'scan_images', 'ImageFolderDataset',
           'make_transform', 'make_dataset', 'make_loader', 'spread_indices', 'collect_logits', 'split_indices']

CIFAR10_CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck')
IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.ppm', '.tif', '.tiff')


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS) and not name.startswith('.')


def bundled_samples_dir(data_config: Dict[str, Any]) -> str:
    """Folder of the bundled samples that suit ``data_config`` (CIFAR-10 for 32 px / CIFAR-10 labels)."""
    size = tuple(data_config.get('input_size') or (3, 224, 224))
    labels = tuple(data_config.get('class_labels') or ())
    name = 'cifar10_samples' if max(size[-2:]) <= 32 or labels == CIFAR10_CLASSES else 'imagenet_samples'
    root = resources.files('timm_recal.assets').joinpath(name)
    path = os.fspath(root) if isinstance(root, os.PathLike) else str(root)
    if not os.path.isdir(path):
        raise DeployError(f'bundled sample images not found at {path}; reinstall timm-recal')
    return path


def scan_images(root: str) -> Tuple[List[Tuple[str, int]], List[str]]:
    """``(samples, classes)`` of an ImageFolder: ``samples`` are ``(path, folder_index)`` sorted by class then
    file; a flat folder gives ``classes == []`` and index -1.

    The walk is timm's (``find_images_and_targets``, natural sort); hidden files are dropped, and images beside
    class folders are ignored, as ImageFolder does.
    """
    from timm.data.readers.reader_image_folder import find_images_and_targets
    if not root or not os.path.isdir(root):
        raise DeployError(f'data folder not found: {root}')
    found, class_to_idx = find_images_and_targets(root, types=IMG_EXTENSIONS)
    found = [(p, i) for p, i in found if _is_image(os.path.basename(p))]
    labels = {i: c for c, i in class_to_idx.items()}
    classes = sorted({labels[i] for _, i in found if labels[i]}, key=lambda c: class_to_idx[c])
    if classes:
        index = {c: k for k, c in enumerate(classes)}
        samples = sorted(((p, index[labels[i]]) for p, i in found if labels[i]), key=lambda s: s[1])
    else:
        samples = [(p, -1) for p, _ in found if os.path.dirname(p) == os.path.normpath(root)]
    if not samples:
        raise DeployError(f'no images found in {root} (expected {root}/<class>/<image>.jpg, '
                          f"extensions {', '.join(IMG_EXTENSIONS)})")
    return samples, classes


def _class_index(classes: Sequence[str], data_config: Dict[str, Any],
                 folder_order: bool = False) -> Tuple[List[int], str, Optional[str]]:
    """Map folder index -> model class index; say how (``labels``, ``synsets``, ``folder`` or ``unmatched``) and,
    for ``unmatched``, why."""
    labels = list(data_config.get('class_labels') or [])
    if not labels and data_config.get('num_classes') == 1000:
        from timm.data import ImageNetInfo
        labels, mode = list(ImageNetInfo().label_names()), 'synsets'
    else:
        mode = 'labels'
    by_name = indices_by_name(classes, labels)
    if by_name is not None:
        return by_name, mode, None
    if not classes or folder_order:
        return list(range(len(classes))), 'folder', None
    about = (f"the model's labels ({few(labels)})" if labels else
             f"a model without label names ({data_config.get('num_classes')} classes)")
    why = (f'the class folders ({few(classes)}) do not match {about}; pass --folder-order if the sorted folder '
           'order is the class order')
    return list(range(len(classes))), 'unmatched', why


def make_transform(data_config: Dict[str, Any]):
    """timm's eval transform (resize, center crop, normalize) for a data config."""
    from timm.data import create_transform
    keys = ('input_size', 'interpolation', 'mean', 'std', 'crop_pct', 'crop_mode')
    return create_transform(**{k: data_config[k] for k in keys if data_config.get(k) is not None},
                            is_training=False)


class ImageFolderDataset(Dataset):
    """Images of a folder with their model class indices (see the module docstring).

    Not ``timm.data.ImageDataset``: on an unreadable image it silently returns the next one, which would count
    a different sample; here a corrupt image is an error that names the file.
    """

    def __init__(self, root: str, transform, data_config: Optional[Dict[str, Any]] = None,
                 indices: Optional[Sequence[int]] = None, folder_order: bool = False):
        self.root = root
        samples, self.classes = scan_images(root)
        self.class_index, self.label_mode, self.mismatch = _class_index(self.classes, data_config or {},
                                                                        folder_order)
        if indices is not None:
            samples = [samples[i] for i in indices]
        unmatched = self.label_mode == 'unmatched'
        self.samples = [(p, self.class_index[c] if c >= 0 and not unmatched else -1) for p, c in samples]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        from PIL import Image
        path, label = self.samples[i]
        try:
            with Image.open(path) as img:
                img = img.convert('RGB')
        except Exception as e:
            raise DeployError(f'cannot read image {path}: {e}') from None
        return self.transform(img), label

    @property
    def labelled(self) -> bool:
        return bool(self.classes) and self.label_mode != 'unmatched'


def same_folder_by_name(recorded: str, folder: str) -> bool:
    """Whether a folder recorded in a file names ``folder`` when the record does not resolve here: records are
    relative to the working folder they were made in, or a bare folder name (files name no absolute folder)."""
    return os.path.basename(os.path.normpath(recorded)) == os.path.basename(os.path.realpath(folder))


def spread_indices(n: int, limit: Optional[int], seed: int = 0, exclude: Sequence[int] = ()) -> List[int]:
    """``limit`` indices out of ``n`` spread over all classes (a seeded sample, kept in order)."""
    skip = set(exclude)
    pool = [i for i in range(n) if i not in skip]
    if limit is None or limit >= len(pool):
        return pool
    if limit < 1:
        raise DeployError(f'--limit must be >= 1, got {limit}')
    return sorted(random.Random(seed).sample(pool, limit))


def split_indices(n: int, calib_images: int, seed: int = 1) -> Tuple[List[int], List[int]]:
    """Two disjoint index lists over ``n`` images: ``min(calib_images, n // 2)`` to calibrate INT8 on, the rest
    to measure on. Deterministic, so ``parity`` recomputes the split that ``quantize`` recorded."""
    if n < 2:
        raise DeployError(f'{n} image; INT8 needs calibration images disjoint from the measured ones: --calib-data')
    calib = spread_indices(n, min(calib_images, n // 2), seed=seed)
    return calib, spread_indices(n, None, exclude=calib)


def make_dataset(data_dir: Optional[str], data_config: Dict[str, Any], limit: Optional[int] = None,
                 seed: int = 0, indices: Optional[Sequence[int]] = None,
                 folder_order: bool = False) -> ImageFolderDataset:
    """The dataset of ``data_dir`` (bundled samples when None), ``limit`` images spread over the classes."""
    root = bundled_samples_dir(data_config) if data_dir is None else os.fspath(data_dir)
    if indices is None and limit is not None:
        n = len(scan_images(root)[0])
        indices = spread_indices(n, limit, seed)
    return ImageFolderDataset(root, make_transform(data_config), data_config, indices, folder_order)


def make_loader(data_dir: Optional[str], data_config: Dict[str, Any], batch_size: int,
                limit: Optional[int] = None, num_workers: int = 0, seed: int = 0,
                indices: Optional[Sequence[int]] = None, even: bool = False) -> DataLoader:
    """Batches ``(images float32 NCHW, labels int64)`` of ``data_dir`` (bundled samples when None).

    ``data_config`` is a timm data config; its ``num_classes``/``class_labels`` (as returned by
    ``model_io.load_model`` or ``metadata.read_metadata``) select the label mapping. ``loader.dataset`` has
    ``samples``, ``classes`` and ``label_mode``. ``even``: batches of one size, the largest <= ``batch_size``
    that divides the image count (for consumers that stack every batch, as ORT's histogram calibrators do).
    """
    if batch_size < 1:
        raise DeployError(f'batch size must be >= 1, got {batch_size}')
    ds = make_dataset(data_dir, data_config, limit, seed, indices)
    if even and len(ds) % batch_size:
        batch_size = max(d for d in range(1, min(batch_size, len(ds)) + 1) if len(ds) % d == 0)
    return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers)


def _batches(loader: DataLoader):
    """Iterate ``loader``; an error inside a worker process (a corrupt image) becomes its one-line message."""
    it = iter(loader)
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except DeployError as e:
            lines = [ln for ln in str(e).splitlines() if ln.strip()]
            raise DeployError(lines[-1].split('DeployError: ', 1)[-1] if lines else 'data loading failed') from None
        yield batch


def collect_logits(loader: DataLoader, runners: Sequence[Any], progress: bool = False,
                   desc: str = 'images') -> Tuple[List[np.ndarray], np.ndarray]:
    """Logits of every runner (``runtimes.Runner``) on every batch of ``loader``, and the labels."""
    from tqdm import tqdm
    outs: List[List[np.ndarray]] = [[] for _ in runners]
    labels = []
    for images, y in tqdm(_batches(loader), desc=desc, unit='batch', total=len(loader), disable=not progress,
                          leave=False):
        x = images.numpy()
        for out, runner in zip(outs, runners):
            out.append(runner(x))
        labels.append(y.numpy())
    return [np.concatenate(o) for o in outs], np.concatenate(labels)
