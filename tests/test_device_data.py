"""The device-resident data path: its cache (keyed, rebuilt, refused when cut off or too large) and its batches,
exact to the JPEG path's CIFAR augmentation (torchvision RandomCrop(32, padding=4) + RandomHorizontalFlip,
ToTensor, Normalize)."""
import os

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import functional as F

from timm_recal.training import image_cache
from timm_recal.training.device_loader import DeviceImageLoader, normalize, pad_crop_flip
from timm_recal.training.image_cache import check_fits, load_or_build, plan_cache

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.247, 0.2435, 0.2616)


def _jpeg_folder(root, per_class=3, classes=('b_cat', 'a_dog', 'c10', 'c9'), size=32, seed=0):
    """A tiny ImageFolder of random JPEGs (class names that natural sort orders differently from plain sort)."""
    rng = np.random.default_rng(seed)
    for split in ('train', 'test'):
        for cls in classes:
            os.makedirs(os.path.join(root, split, cls), exist_ok=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(os.path.join(root, split, cls, f'{i}.jpg'), quality=75)
    return str(root)


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    return _jpeg_folder(tmp_path_factory.mktemp('imgs'))


@pytest.fixture(scope='module')
def train_cache(folder, tmp_path_factory):
    plan = plan_cache(folder, 'train', str(tmp_path_factory.mktemp('cache')), img_size=32)
    return plan, load_or_build(plan, torch.device('cpu'), log=lambda m: None)


def _jpeg_path(folder, split, transform):
    """What the JPEG path feeds: timm's dataset, in order, through ``transform``."""
    from timm.data import create_dataset
    ds = create_dataset('', root=folder, split=split, is_training=False)
    ds.transform = transform
    return torch.stack([ds[i][0] for i in range(len(ds))]), torch.tensor([ds[i][1] for i in range(len(ds))])


def test_cache_pixels_and_labels_are_the_jpeg_paths(folder, train_cache):
    """Identity augmentation: the un-augmented device batches equal ToTensor+Normalize of PIL's decode, bit for bit,
    with timm's labels (natural sort of the class folders)."""
    _, cache = train_cache
    loader = DeviceImageLoader(cache.images, cache.labels, 5, MEAN, STD, train=False)
    x = torch.cat([b for b, _ in loader])
    y = torch.cat([t for _, t in loader])
    ref_x, ref_y = _jpeg_path(folder, 'train', T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)]))
    assert torch.equal(y, ref_y)
    assert cache.class_to_idx == {'a_dog': 0, 'b_cat': 1, 'c9': 2, 'c10': 3}
    assert torch.equal(x, ref_x)  # exact: same decode, same float32 ops
    assert x.is_contiguous(memory_format=torch.channels_last)


def test_pad_crop_flip_matches_torchvision_at_every_offset(train_cache):
    """Each (top, left, flip) of the 9 x 9 x 2 the augmentation draws from gives torchvision's pixels."""
    _, cache = train_cache
    img = cache.images[:1]
    pil = Image.fromarray(img[0].numpy())
    tops, lefts, flips = zip(*[(i, j, f) for i in range(9) for j in range(9) for f in (False, True)])
    offsets = torch.tensor(list(zip(tops, lefts)))
    ours = pad_crop_flip(img.expand(len(tops), -1, -1, -1), 4, offsets, torch.tensor(flips))
    for k, (i, j, f) in enumerate(zip(tops, lefts, flips)):
        ref = F.crop(F.pad(pil, 4, fill=0, padding_mode='constant'), i, j, 32, 32)
        ref = F.hflip(ref) if f else ref
        assert torch.equal(ours[k].permute(1, 2, 0), torch.from_numpy(np.array(ref))), (i, j, f)
    x = normalize(ours, torch.tensor(MEAN), torch.tensor(STD))
    assert torch.equal(x[0], T.Normalize(MEAN, STD)(T.ToTensor()(F.crop(F.pad(pil, 4), 0, 0, 32, 32))))


def _recover(x):
    """(top, left, flip) of a crop of the coordinate image (channel 0 = row + 1, channel 1 = column + 1)."""
    rows, cols = x[0], x[1]
    k = int((rows[:, 16] > 0).nonzero()[0])
    top = int(rows[k, 16]) - 1 + 4 - k
    inside = (cols[16] > 0).nonzero()[:, 0]
    a, b = int(inside[0]), int(inside[1])
    flip = cols[16, b] < cols[16, a]
    left = (int(cols[16, a]) - 1 + 4 - a) if not flip else (int(cols[16, a]) - 1 + 4 - (31 - a))
    return top, left, bool(flip)


def test_crop_and_flip_distribution_matches_torchvision():
    """Offsets and flips recovered from 3,000 augmentations of each path: the same distribution (chi-square on
    the 9 x 9 x 2 outcomes, and each path uniform / Bernoulli(0.5))."""
    from scipy.stats import chi2_contingency, chisquare
    n = 3000
    coords = torch.zeros(3, 32, 32)
    coords[0] = torch.arange(1, 33, dtype=torch.float32)[:, None]
    coords[1] = torch.arange(1, 33, dtype=torch.float32)[None, :]
    tv = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(0.5)])
    torch.manual_seed(0)
    ref = [_recover(tv(coords)) for _ in range(n)]
    images = coords.permute(1, 2, 0).to(torch.uint8)[None].expand(n, -1, -1, -1).contiguous()
    torch.manual_seed(1)
    loader = DeviceImageLoader(images, torch.zeros(n, dtype=torch.int64), n, (0, 0, 0), (1 / 255,) * 3, train=True)
    (x, _), = list(loader)
    x = x.round()  # (v / 255) / (1 / 255) is v up to float32 rounding
    ours = [_recover(x[k]) for k in range(n)]

    def counts(draws):
        c = np.zeros(162)
        for top, left, flip in draws:
            assert 0 <= top <= 8 and 0 <= left <= 8
            c[(top * 9 + left) * 2 + flip] += 1
        return c
    c_ref, c_ours = counts(ref), counts(ours)
    assert chi2_contingency(np.stack([c_ref, c_ours])).pvalue > 1e-3
    for c in (c_ref, c_ours):
        assert chisquare(c).pvalue > 1e-3
    # the recovery itself is right: a known draw comes back
    assert _recover(F.hflip(F.crop(F.pad(coords, 4), 2, 7, 32, 32))) == (2, 7, True)


def test_seeded_passes_repeat(train_cache):
    _, cache = train_cache
    loader = DeviceImageLoader(cache.images, cache.labels, 4, MEAN, STD, train=True)
    torch.manual_seed(3)
    a = [(x.clone(), y.clone()) for x, y in loader]
    torch.manual_seed(3)
    b = list(loader)
    torch.manual_seed(4)
    c = list(loader)
    assert len(a) == 3  # 12 images, batch 4, drop_last
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    assert not all(torch.equal(xa, xc) for (xa, _), (xc, _) in zip(a, c))


def test_changed_folder_rebuilds_the_cache(tmp_path):
    root = _jpeg_folder(tmp_path / 'd', per_class=2)
    cache_dir = str(tmp_path / 'c')
    first = load_or_build(plan_cache(root, 'train', cache_dir), 'cpu', log=lambda m: None)
    assert first.built
    again = load_or_build(plan_cache(root, 'train', cache_dir), 'cpu', log=lambda m: None)
    assert not again.built and torch.equal(again.images, first.images)
    Image.new('RGB', (32, 32), (200, 10, 10)).save(os.path.join(root, 'train', 'a_dog', '9.jpg'))
    logged = []
    rebuilt = load_or_build(plan_cache(root, 'train', cache_dir), 'cpu', log=logged.append)
    assert rebuilt.built and rebuilt.images.shape[0] == first.images.shape[0] + 1
    assert 'does not match its folder' in logged[0]
    assert os.listdir(cache_dir) == [os.path.basename(rebuilt.path)]  # replaced in place, no temporary left


def test_truncated_cache_is_refused_in_one_line(tmp_path):
    root = _jpeg_folder(tmp_path / 'd', per_class=2)
    plan = plan_cache(root, 'train', str(tmp_path / 'c'))
    load_or_build(plan, 'cpu', log=lambda m: None)
    size = os.path.getsize(plan.path)
    with open(plan.path, 'r+b') as f:
        f.truncate(size - 100)
    with pytest.raises(ValueError, match=r'truncated \(.* of .* bytes\); delete it to rebuild') as e:
        load_or_build(plan, 'cpu')
    assert '\n' not in str(e.value)
    with open(plan.path, 'r+b') as f:
        f.truncate(5)
    with pytest.raises(ValueError, match='truncated'):
        load_or_build(plan, 'cpu')


def test_too_large_for_the_device_is_refused_before_decoding(tmp_path, monkeypatch):
    root = _jpeg_folder(tmp_path / 'd', per_class=2)
    monkeypatch.setattr(image_cache, 'device_free_bytes', lambda device: 10_000)
    with pytest.raises(ValueError, match=r'GiB on cpu, more than 50% of its .* free memory \(use the jpeg'):
        DeviceImageLoader.from_folder(root, 'train', 4, device='cpu', cache_dir=str(tmp_path / 'c'))
    assert not os.path.exists(tmp_path / 'c')  # nothing decoded or written


def test_wrong_size_images_are_refused(tmp_path):
    root = _jpeg_folder(tmp_path / 'd', per_class=1, size=40)
    with pytest.raises(ValueError, match=r'40x40, not the model.s 32x32 \(use the jpeg data path'):
        plan_cache(root, 'train', str(tmp_path / 'c'), img_size=32)
    Image.new('RGB', (32, 32)).save(os.path.join(root, 'train', 'a_dog', '1.jpg'))
    with pytest.raises(ValueError, match='needs images of one size'):
        load_or_build(plan_cache(root, 'train', str(tmp_path / 'c')), 'cpu', log=lambda m: None)
    check_fits(1, torch.device('cpu'))  # a small cache fits


def test_trainer_evaluates_the_same_on_both_data_paths(folder, tmp_path):
    """`train`'s loaders: the device path's eval batches give the JPEG path's metrics exactly; its train batches are
    the configured batch size; options it cannot honour are one-line errors."""
    import dataclasses
    import timm
    from timm.data import resolve_data_config
    from timm_recal.training.config import check_config, load_config
    from timm_recal.training.trainer import build_loaders, evaluate
    cfg = load_config(None, dict(model='shufflenetv2_x0_5_cifar', data_dir=folder, num_classes=4, batch_size=4,
                                 workers=0, output=str(tmp_path / 'run'), data_cache=str(tmp_path / 'cache')))
    torch.manual_seed(0)
    model = timm.create_model(cfg.model, num_classes=4).eval()
    data_config = resolve_data_config({'mean': MEAN, 'std': STD}, model=model)
    _, jpeg_eval = build_loaders(cfg, data_config)
    device_train, device_eval = build_loaders(dataclasses.replace(cfg, data_path='device'), data_config)
    assert evaluate(model, device_eval, cfg) == evaluate(model, jpeg_eval, cfg)
    assert len(device_train) == 3 and device_train.class_to_idx == {'a_dog': 0, 'b_cat': 1, 'c9': 2, 'c10': 3}
    with pytest.raises(ValueError, match=r'data_path \(--data-path\) device does the CIFAR augmentation only'):
        check_config(load_config(None, dict(data_path='device', aug='timm', output=str(tmp_path / 'x'))), False)
    with pytest.raises(ValueError, match="data_path must be 'jpeg' or 'device'"):
        load_config(None, dict(data_path='gpu'))
