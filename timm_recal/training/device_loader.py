"""Batches of a decoded image cache, augmented and normalized on the training device.

For small images the per-image work of the JPEG path (decode, pad, crop, flip, ToTensor, Normalize in worker
processes) costs more than the training step on a GPU. ``DeviceImageLoader`` keeps the whole split on the device
as uint8 and builds each batch with two strided copies: the CIFAR augmentation of torchvision's
``RandomCrop(size, padding=pad)`` (zero fill, constant mode, offsets uniform in 0..2*pad) followed by
``RandomHorizontalFlip(p)``, then ``ToTensor`` + ``Normalize`` as the same float32 operations in the same order
(so an un-augmented batch equals the JPEG path's tensors bit for bit).

It is a plain iterable of ``(images, labels)``, so timm's train.py can use it in place of its loader::

    from timm_recal.training.device_loader import DeviceImageLoader
    loader = DeviceImageLoader.from_folder('data/cifar10', 'train', batch_size=64, device='cuda',
                                           mean=(0.4914, 0.4822, 0.4465), std=(0.247, 0.2435, 0.2616))
    for x, y in loader: ...

The random draws come from a generator on the device, seeded at the start of each pass from torch's (CPU) global
generator: ``torch.manual_seed(seed + epoch)`` before a pass fixes its order, crops and flips.
"""
from typing import Iterator, Optional, Sequence, Tuple

import torch

__all__ = ['DeviceImageLoader', 'pad_crop_flip', 'normalize']


def pad_crop_flip(images: torch.Tensor, pad: int, offsets: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """(B, H, W, C) uint8 -> (B, C, H, W) uint8: zero-pad by ``pad``, crop HxW at ``offsets`` (B, 2: top, left) of
    the padded image, then mirror the crops of ``flips`` (B,) bool.

    The crops are read through ``unfold`` windows of the padded batch (one strided copy each way, no index
    tensor per pixel), which also turns the NHWC cache into the NCHW batch."""
    b, h, w, c = images.shape
    padded = images.new_zeros((b, h + 2 * pad, w + 2 * pad, c))
    padded[:, pad:pad + h, pad:pad + w] = images
    batch = torch.arange(b, device=images.device)
    rows = padded.unfold(1, h, 1)[batch, offsets[:, 0]]  # (B, W + 2 pad, C, H): the H rows from `top`
    crops = rows.unfold(1, w, 1)[batch, offsets[:, 1]]  # (B, C, H, W): the W columns from `left`
    return torch.where(flips[:, None, None, None], crops.flip(3), crops)


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
              memory_format: torch.memory_format = torch.channels_last) -> torch.Tensor:
    """(B, C, H, W) uint8 -> float32, torchvision's ``ToTensor`` then ``Normalize``: x / 255, minus mean, over std,
    each rounded to float32 as there."""
    # one uint8 copy into the target layout, then elementwise float ops that keep it (the values do not depend on
    # the layout)
    x = images.contiguous(memory_format=memory_format).to(torch.float32).div_(255)
    return x.sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1))


class DeviceImageLoader:
    """Shuffled, augmented, normalized batches of uint8 images held on one device."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, mean: Sequence[float],
                 std: Sequence[float], train: bool, pad: int = 4, hflip: float = 0.5, augment: bool = True,
                 channels_last: bool = True):
        if images.dim() != 4 or images.dtype != torch.uint8 or images.shape[-1] not in (1, 3):
            raise ValueError(f"images must be (N, H, W, C) uint8, got {tuple(images.shape)} {images.dtype}")
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        self.images, self.labels = images, labels
        self.batch_size, self.train = batch_size, train
        self.pad, self.hflip, self.augment = pad, hflip, augment and train
        dev = images.device
        self.mean = torch.as_tensor(mean, dtype=torch.float32, device=dev)
        self.std = torch.as_tensor(std, dtype=torch.float32, device=dev)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    @classmethod
    def from_folder(cls, root: str, split: str, batch_size: int, device='cuda', mean=(0.485, 0.456, 0.406),
                    std=(0.229, 0.224, 0.225), train: Optional[bool] = None, cache_dir: Optional[str] = None,
                    img_size: Optional[int] = None, **kwargs) -> 'DeviceImageLoader':
        """Read (or build) the split's cache and put it on ``device``; ``train`` defaults to split == 'train'."""
        from .image_cache import check_fits, load_or_build, plan_cache
        plan = plan_cache(root, split, cache_dir, img_size)
        check_fits(plan.nbytes, torch.device(device), f"the {plan.n_images} decoded images of {root!r} ({split})")
        cache = load_or_build(plan, torch.device(device))
        return cls(cache.images, cache.labels, batch_size, mean, std, split == 'train' if train is None else train,
                   **kwargs)

    @property
    def num_images(self) -> int:
        return self.images.shape[0]

    def __len__(self) -> int:
        n = self.num_images
        return n // self.batch_size if self.train else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        dev = self.images.device
        gen = torch.Generator(device=dev)
        gen.manual_seed(int(torch.randint(0, 2 ** 62, (1,)).item()))  # from the global generator: seeded runs repeat
        n = self.num_images
        order = torch.randperm(n, generator=gen, device=dev) if self.train else torch.arange(n, device=dev)
        for step in range(len(self)):
            idx = order[step * self.batch_size:(step + 1) * self.batch_size]
            x = self.images[idx]
            if self.augment:
                offsets = torch.randint(0, 2 * self.pad + 1, (idx.shape[0], 2), generator=gen, device=dev)
                flips = torch.rand(idx.shape[0], generator=gen, device=dev) < self.hflip
                x = pad_crop_flip(x, self.pad, offsets, flips)
            else:
                x = x.permute(0, 3, 1, 2)
            yield normalize(x, self.mean, self.std, self.memory_format), self.labels[idx]
