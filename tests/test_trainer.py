"""`timm-recal train`: the trainer on a tiny CIFAR-10 ImageFolder (8 train / 2 test images per class) with a
few steps per epoch: summary.csv, checkpoints, exact resume, transforms, lr rule and clear errors."""
import csv
import json
import os

import numpy as np
import pytest
import torch

from train_helpers import TINY_MODEL as MODEL, make_tiny_cifar


@pytest.fixture(scope='module')
def tiny_cifar(tmp_path_factory):
    return make_tiny_cifar(str(tmp_path_factory.mktemp('tiny_cifar')))


def _cfg(data_dir, out, **kw):
    from timm_recal.training.config import load_config
    values = dict(model=MODEL, data_dir=data_dir, output=str(out), epochs=2, batch_size=8, opt='momentum',
                  lr=0.05, weight_decay=1e-4, sched='step', decay_epochs=1, decay_rate=0.5, workers=0,
                  threads=1, max_steps_per_epoch=2, seed=3)
    values.update(kw)
    return load_config(None, values)


def _rows(out):
    with open(os.path.join(out, 'summary.csv'), newline='') as f:
        return list(csv.DictReader(f))


def _ckpt(path):
    return torch.load(path, map_location='cpu', weights_only=False)


def test_two_epochs_write_summary_checkpoints_and_results(tiny_cifar, tmp_path):
    from timm_recal.training.trainer import train
    result = train(_cfg(tiny_cifar, tmp_path))
    rows = _rows(tmp_path)
    assert [int(r['epoch']) for r in rows] == [0, 1]
    assert list(rows[0]) == ['epoch', 'train_loss', 'train_img_per_s', 'eval_loss', 'eval_top1', 'eval_top5', 'lr']
    # the lr each epoch trained with (step schedule: 0.05, then halved), logged as train.py logs it
    assert [float(r['lr']) for r in rows] == pytest.approx([0.05, 0.025])
    top1 = [float(r['eval_top1']) for r in rows]
    assert all(abs(t / 5 - round(t / 5)) < 1e-6 for t in top1), 'accuracy over 20 test images: multiples of 5 %'
    best_epoch = int(np.argmax(top1))  # ties: the earlier epoch stays best
    assert result['best_epoch'] == best_epoch and result['best_top1'] == pytest.approx(max(top1))
    assert _ckpt(tmp_path / 'last.pth.tar')['epoch'] == 1
    best = _ckpt(tmp_path / 'model_best.pth.tar')
    assert best['epoch'] == best_epoch and best['metric'] == pytest.approx(max(top1))
    assert best['arch'] == MODEL
    with open(tmp_path / 'results.json') as f:
        saved = json.load(f)
    assert saved['best_top1'] == pytest.approx(max(top1)) and saved['epochs'] == 2


def test_resume_continues_exactly(tiny_cifar, tmp_path):
    """1 epoch + `resume auto` to 2 epochs == 2 epochs straight: weights bit for bit, the same summary rows."""
    from timm_recal.training.trainer import train
    straight, split = tmp_path / 'straight', tmp_path / 'split'
    train(_cfg(tiny_cifar, straight))
    train(_cfg(tiny_cifar, split, epochs=1))
    assert len(_rows(split)) == 1
    train(_cfg(tiny_cifar, split, epochs=2, resume='auto'))
    a, b = _ckpt(straight / 'last.pth.tar'), _ckpt(split / 'last.pth.tar')
    assert a['epoch'] == b['epoch'] == 1
    for k, v in a['state_dict'].items():
        assert torch.equal(v, b['state_dict'][k]), k
    drop = lambda rows: [{k: v for k, v in r.items() if k != 'train_img_per_s'} for r in rows]  # noqa: E731
    assert drop(_rows(straight)) == drop(_rows(split))


def test_resume_replaces_model_best_only_with_a_better_epoch(tiny_cifar, tmp_path):
    from timm_recal.training.trainer import train
    train(_cfg(tiny_cifar, tmp_path, epochs=1))
    # pretend epoch 0 scored 101 %: no later epoch can beat it
    rows = _rows(tmp_path)
    rows[0]['eval_top1'] = '101.0'
    with open(tmp_path / 'summary.csv', 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    for name in ('last.pth.tar', 'model_best.pth.tar'):
        ck = _ckpt(tmp_path / name)
        ck['metric'] = 101.0
        saver = ck.get('saver')  # newer timm: the saver's history, captured before epoch 0 was ranked
        if saver:
            saver['pending'] = (0, 101.0)
            saver['checkpoint_files'] = [(f, 101.0) for f, _ in saver['checkpoint_files']]
            if saver['best_epoch'] == 0:
                saver['best_metric'] = 101.0
        torch.save(ck, tmp_path / name)
    result = train(_cfg(tiny_cifar, tmp_path, epochs=3, resume='auto'))
    assert [int(r['epoch']) for r in _rows(tmp_path)] == [0, 1, 2], 'summary.csv appended'
    assert _ckpt(tmp_path / 'last.pth.tar')['epoch'] == 2
    assert _ckpt(tmp_path / 'model_best.pth.tar')['epoch'] == 0
    assert result['best_epoch'] == 0 and result['best_top1'] == 101.0


def test_finished_run_resumes_to_nothing_and_fresh_run_restarts_summary(tiny_cifar, tmp_path):
    from timm_recal.training.trainer import train
    train(_cfg(tiny_cifar, tmp_path, epochs=1))
    again = train(_cfg(tiny_cifar, tmp_path, epochs=1, resume='auto'))
    assert len(_rows(tmp_path)) == 1 and again['epochs'] == 1
    train(_cfg(tiny_cifar, tmp_path, epochs=1))  # fresh run into the same folder (the CLI wants --force)
    assert [int(r['epoch']) for r in _rows(tmp_path)] == [0], 'the old run\'s rows are dropped'


def _position_image(size=32):
    """R encodes the row, G the column (multiples of 7, never 0): a pad-and-crop moves them, a resize blends."""
    i, j = np.meshgrid(np.arange(size), np.arange(size), indexing='ij')
    arr = np.stack([7 * (i + 1), 7 * (j + 1), np.full_like(i, 128)], -1).astype(np.uint8)
    from PIL import Image
    return Image.fromarray(arr)


def _pixels(tensor, mean, std):
    return np.rint((tensor.numpy() * np.array(std)[:, None, None] + np.array(mean)[:, None, None]) * 255)


def test_cifar_transform_is_pad4_crop_and_flip():
    from timm.data import resolve_data_config
    from timm_recal.training.config import load_config
    from timm_recal.training.trainer import build_transforms
    import timm
    cfg = load_config(None, {'model': MODEL, 'color_jitter': 0.4})
    dc = resolve_data_config({}, model=timm.create_model(MODEL))
    tf = build_transforms(cfg, dc, is_training=True)
    names = [type(t).__name__ for t in tf.transforms]
    assert names[:2] == ['RandomCrop', 'RandomHorizontalFlip'] and tf.transforms[0].padding == 4
    assert 'ColorJitter' not in names, 'the CIFAR recipe has no colour jitter'
    img, shifts, flips = _position_image(), set(), set()
    torch.manual_seed(0)
    for _ in range(60):
        px = _pixels(tf(img), dc['mean'], dc['std'])
        rows = px[0][:, 16]
        valid = rows[rows > 0]
        assert set(np.unique(px[0])) <= {0.0} | {7.0 * k for k in range(1, 33)}, 'no interpolation'
        assert np.all(np.diff(valid) == 7), 'rows shifted, not rescaled'
        dy = int(valid[0] / 7 - 1) - int(np.argmax(rows > 0))
        assert -4 <= dy <= 4
        shifts.add(dy)
        cols = px[1][16][px[1][16] > 0]
        flips.add(bool(cols[1] < cols[0]))
    assert len(shifts) > 4 and flips == {True, False}
    eval_tf = build_transforms(cfg, dc, is_training=False)
    assert np.array_equal(_pixels(eval_tf(img), dc['mean'], dc['std']), np.asarray(img).transpose(2, 0, 1))


def test_transform_selection_and_train_py_augmentation_options():
    from timm_recal.training.config import load_config
    from timm_recal.training.trainer import build_transforms
    dc32 = {'input_size': (3, 32, 32), 'interpolation': 'bilinear', 'mean': (0.5,) * 3, 'std': (0.25,) * 3,
            'crop_pct': 1.0, 'crop_mode': 'center'}
    dc224 = dict(dc32, input_size=(3, 224, 224), crop_pct=0.875)

    def names(tf):
        return [type(t).__name__ for t in tf.transforms]
    auto = load_config(None, {'color_jitter': 0.0})
    assert names(build_transforms(auto, dc224, True))[0] == 'RandomResizedCropAndInterpolation'
    assert 'ColorJitter' not in names(build_transforms(auto, dc224, True))
    jitter = load_config(None, {})  # train.py's default colour jitter 0.4 applies to timm transforms
    assert 'ColorJitter' in names(build_transforms(jitter, dc224, True))
    timm_small = load_config(None, {'aug': 'timm', 'scale': [0.75, 1.0]})
    rrc = build_transforms(timm_small, dc32, True).transforms[0]
    assert type(rrc).__name__ == 'RandomResizedCropAndInterpolation' and tuple(rrc.scale) == (0.75, 1.0)
    cifar_large = build_transforms(load_config(None, {'aug': 'cifar'}), dc224, True).transforms[0]
    assert type(cifar_large).__name__ == 'RandomCrop' and cifar_large.padding == 28
    evaluation = names(build_transforms(auto, dc224, False))
    assert evaluation[:2] == ['Resize', 'CenterCrop']
    with pytest.raises(ValueError, match='aug'):
        load_config(None, {'aug': 'fancy'})


def test_cli_trains_from_yaml_with_lr_base_amp_channels_last_and_workers(tiny_cifar, tmp_path, capsys):
    from timm_recal.cli import main
    config = tmp_path / 'tiny.yaml'
    config.write_text(
        "device_modules: [timm_recal]\n"
        f"model: {MODEL}\n"
        "num_classes: 10\n"
        "opt: momentum\n"
        "lr_base: 0.4\n"  # lr unset: 0.4 * batch 8 / 32 = 0.1
        "lr_base_size: 32\n"
        "sched: constant\n"
        "weight_decay: 1.0e-4\n"
        "val_split: test\n")
    out = tmp_path / 'run'
    rc = main(['train', '--config', str(config), '--data-dir', tiny_cifar, '-o', str(out), '--epochs', '1',
               '-b', '8', '--max-steps-per-epoch', '1', '--workers', '1', '--threads', '1', '--amp',
               '--channels-last'])
    assert rc == 0
    assert 'best top-1' in capsys.readouterr().out
    rows = _rows(out)
    assert len(rows) == 1 and float(rows[0]['lr']) == pytest.approx(0.1)
    args = _ckpt(out / 'last.pth.tar')['args']
    assert args.amp and args.channels_last and args.workers == 1
    # a non-empty run folder needs --resume auto (continue) or --force
    assert main(['train', '--config', str(config), '--data-dir', tiny_cifar, '-o', str(out)]) == 2
    assert 'exists and is not empty' in capsys.readouterr().err


def test_bad_train_config_and_data_give_one_line_errors(tiny_cifar, tmp_path, capsys):
    from timm_recal.cli import main
    from timm_recal.training.config import load_config
    from timm_recal.training.trainer import train
    bad = tmp_path / 'bad.yaml'
    bad.write_text(f"model: {MODEL}\nlearning_rate: 0.1\n")
    with pytest.raises(ValueError, match='learning_rate'):
        load_config(str(bad))
    assert main(['train', '--config', str(bad), '-o', str(tmp_path / 'o1')]) == 2
    assert 'unknown training option(s): learning_rate' in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match='config file not found'):
        load_config(str(tmp_path / 'missing.yaml'))
    with pytest.raises(ValueError, match="'lr' needs a number"):
        load_config(None, {'lr': 'fast'})
    with pytest.raises(FileNotFoundError, match='data folder not found'):
        train(_cfg(str(tmp_path / 'nowhere'), tmp_path / 'o2'))
    with pytest.raises(FileNotFoundError, match="split folder 'val' not found .*test, train"):
        train(_cfg(tiny_cifar, tmp_path / 'o3', val_split='val'))
    with pytest.raises(ValueError, match='10 classes but the model has 7'):
        train(_cfg(tiny_cifar, tmp_path / 'o4', num_classes=7))
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match='CUDA is not available'):
            train(_cfg(tiny_cifar, tmp_path / 'o5', device='cuda'))
