"""Decode a small-image ImageFolder once into a uint8 tensor file, so training never decodes a JPEG again.

The cache is one safetensors file per (folder, split): ``images`` (N, H, W, 3) uint8 and ``labels`` (N,) int64,
with the folder's key in its metadata. The key hashes the file list (relative paths, byte sizes, labels) and the
Pillow version (the decoder), so a folder that gains, loses or changes a file, or a new decoder, gets a fresh
cache; a cache file that is shorter than its own header says is refused rather than rebuilt (something cut it
off: a full disk, a copy that did not finish), with one line saying to delete it.

Images are listed and decoded by timm's own ``ImageDataset`` (``create_dataset``: its folder walk, natural-sort
class indices, ``Image.open(...).convert('RGB')``), so pixels and labels are those the JPEG path trains on.
"""
import hashlib
import json
import os
import struct
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import torch

from ..outputs import call_atomically

__all__ = ['ImageCache', 'cache_path', 'folder_key', 'load_or_build', 'plan_cache', 'CachePlan',
           'device_free_bytes', 'check_fits', 'CACHE_FORMAT']

#: bump when the layout of the cache file changes (old files are then rebuilt, not misread)
CACHE_FORMAT = '1'
#: share of the device's free memory the caches of one run may take (the rest is for the model and its batches)
MEMORY_SHARE = 0.5


@dataclass
class ImageCache:
    """Decoded images of one split, on one device."""
    images: torch.Tensor  # (N, H, W, 3) uint8
    labels: torch.Tensor  # (N,) int64
    class_to_idx: Dict[str, int]
    path: str
    built: bool  # decoded by this call (False: read from an existing cache file)


@dataclass
class CachePlan:
    """What a split's cache will hold, known before any pixel is decoded."""
    dataset: Any  # timm ImageDataset, transform None
    path: str
    key: str
    n_images: int
    height: int
    width: int

    @property
    def nbytes(self) -> int:
        return self.n_images * self.height * self.width * 3 + self.n_images * 8


def _dataset(root: str, split: str, name: str = ''):
    from timm.data import create_dataset
    ds = create_dataset(name, root=root, split=split, is_training=False)
    reader = getattr(ds, 'reader', None)
    if not hasattr(reader, 'samples') or not hasattr(reader, 'class_to_idx'):
        raise ValueError(f"the device data path reads image folders; data set {name!r} is not one "
                         f"(use the jpeg data path)")
    if len(ds) == 0:
        raise ValueError(f"no images found in {root!r} (split {split!r})")
    return ds


def folder_key(dataset) -> str:
    """sha256 of the file list (paths relative to the split folder, sizes, labels) and the decoder's version."""
    import PIL
    reader = dataset.reader
    digest = hashlib.sha256(f'format {CACHE_FORMAT}; Pillow {PIL.__version__}\n'.encode())
    for path, label in reader.samples:
        rel = os.path.relpath(path, reader.root)
        digest.update(f'{rel}\t{os.path.getsize(path)}\t{label}\n'.encode())
    return digest.hexdigest()


def cache_path(cache_dir: str, root: str, split: str) -> str:
    """``CACHE_DIR/<folder>-<split>-<hash of its absolute path>.safetensors``: one file per split folder."""
    where = hashlib.sha256(os.path.abspath(os.path.join(root, split)).encode()).hexdigest()[:12]
    name = os.path.basename(os.path.abspath(root).rstrip(os.sep)) or 'data'
    return os.path.join(cache_dir, f'{name}-{split}-{where}.safetensors')


def default_cache_dir() -> str:
    base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    return os.path.join(base, 'timm-recal', 'images')


def plan_cache(root: str, split: str, cache_dir: Optional[str] = None, img_size: Optional[int] = None,
               dataset_name: str = '') -> CachePlan:
    """List the split (no decoding), key it, and read the first image's size: what the cache will hold.

    ``img_size``: the model's input size; the device path feeds whole images, so they must already be that size.
    """
    from PIL import Image
    ds = _dataset(root, split, dataset_name)
    first = ds.reader.samples[0][0]
    with Image.open(first) as im:
        width, height = im.size
    if img_size is not None and (width, height) != (img_size, img_size):
        raise ValueError(f"the device data path feeds whole images, and {first} is {width}x{height}, not the "
                         f"model's {img_size}x{img_size} (use the jpeg data path for large or mixed-size images)")
    path = cache_path(cache_dir or default_cache_dir(), root, split)
    return CachePlan(ds, path, folder_key(ds), len(ds), height, width)


def device_free_bytes(device: torch.device) -> int:
    """Free memory of ``device``: CUDA's free bytes, or the host's available memory for the CPU."""
    device = torch.device(device)
    if device.type == 'cuda':
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')


def check_fits(nbytes: int, device: torch.device, what: str = 'the decoded images') -> None:
    """Refuse, before decoding, caches that would take more than ``MEMORY_SHARE`` of the device's free memory."""
    free = device_free_bytes(device)
    if nbytes > MEMORY_SHARE * free:
        raise ValueError(f"{what} need {nbytes / 2 ** 30:.2f} GiB on {device}, more than {MEMORY_SHARE:.0%} of its "
                         f"{free / 2 ** 30:.2f} GiB free memory (use the jpeg data path)")


def _read_header(path: str) -> Tuple[Dict[str, Any], int]:
    """The safetensors header of ``path`` and the size the file must have; one-line errors for a cut-off file."""
    size = os.path.getsize(path)
    with open(path, 'rb') as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"image cache {path} is truncated ({size} bytes); delete it to rebuild")
        (n,) = struct.unpack('<Q', head)
        if n > size - 8:
            raise ValueError(f"image cache {path} is truncated (header of {n} bytes, file of {size}); "
                             f"delete it to rebuild")
        try:
            header = json.loads(f.read(n))
        except (ValueError, UnicodeDecodeError):
            raise ValueError(f"image cache {path} is not a safetensors file; delete it to rebuild") from None
    ends = [v['data_offsets'][1] for k, v in header.items() if k != '__metadata__']
    return header, 8 + n + max(ends, default=0)


def _read(path: str, key: str, device: torch.device) -> Optional[ImageCache]:
    """The cache at ``path`` if it was built from the same file list; None if it is stale."""
    header, expected = _read_header(path)
    size = os.path.getsize(path)
    if size < expected:
        raise ValueError(f"image cache {path} is truncated ({size} of {expected} bytes); delete it to rebuild")
    meta = header.get('__metadata__') or {}
    if meta.get('key') != key:
        return None
    from safetensors.torch import load_file
    tensors = load_file(path, device=str(device))
    return ImageCache(tensors['images'], tensors['labels'], json.loads(meta['class_to_idx']), path, built=False)


def _decode(plan: CachePlan, progress: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
    """Every image through timm's ImageDataset (PIL decode, RGB), stacked as (N, H, W, 3) uint8."""
    import numpy as np
    images = torch.empty((plan.n_images, plan.height, plan.width, 3), dtype=torch.uint8)
    labels = torch.empty(plan.n_images, dtype=torch.int64)
    indices = range(plan.n_images)
    if progress:
        from .trainer import _progress
        indices = _progress(indices, plan.n_images, f'decoding {plan.n_images} images')
    for i in indices:
        img, label = plan.dataset[i]
        pixels = np.array(img, dtype=np.uint8)  # a writable copy, as ToTensor takes it
        if pixels.shape != (plan.height, plan.width, 3):
            path = plan.dataset.reader.samples[i][0]
            raise ValueError(f"the device data path needs images of one size: {path} is {img.size[0]}x{img.size[1]}, "
                             f"the first is {plan.width}x{plan.height} (use the jpeg data path)")
        images[i] = torch.from_numpy(pixels)
        labels[i] = label
    return images, labels


def load_or_build(plan: CachePlan, device: torch.device, log=print) -> ImageCache:
    """The split's decoded images on ``device``: read from the cache file when its key matches the folder,
    else decoded and written (atomically, so concurrent runs never read half a file)."""
    device = torch.device(device)
    if os.path.isfile(plan.path):
        cache = _read(plan.path, plan.key, device)
        if cache is not None:
            return cache
        log(f"image cache {plan.path} does not match its folder (files changed): rebuilding")
    images, labels = _decode(plan)
    class_to_idx = dict(plan.dataset.reader.class_to_idx)
    meta = {'key': plan.key, 'format': CACHE_FORMAT, 'class_to_idx': json.dumps(class_to_idx),
            'n_images': str(plan.n_images)}
    from safetensors.torch import save_file
    call_atomically(plan.path, lambda tmp: save_file({'images': images, 'labels': labels}, tmp, metadata=meta),
                    force=True)
    return ImageCache(images.to(device), labels.to(device), class_to_idx, plan.path, built=True)
