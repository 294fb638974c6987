"""A CPU-friendly trainer built from timm's library parts (``create_dataset``, ``create_optimizer_v2``,
``create_scheduler_v2``, ``CheckpointSaver``, ``resume_checkpoint``, ``update_summary``).

It reads the same YAML files as timm's train.py and adds what train.py lacks for the CIFAR recipes of our
papers: the exact CIFAR augmentation (4-pixel zero padding + random 32x32 crop + horizontal flip).
"""
import csv
import glob
import io
import logging
import math
import os
import shutil
import sys
import time
from contextlib import nullcontext
from typing import Any, Dict, Optional

import torch
from torch import nn

from ..class_folders import few, indices_by_name, not_in
from ..outputs import atomic_output, check_not_terminated, created_parents, temp_name, write_json, write_text
from ..pause_points import pause_point
from .config import TrainConfig, as_namespace, check_config, model_architecture, option_name, resolve_lr

__all__ = ['train', 'build_transforms', 'build_loaders', 'compiled_step_model', 'evaluate', 'TrainingDiverged', 'RUN_FILES']

#: files of a run folder that `train` writes (a fresh run into an old folder replaces them all)
RUN_FILES = ('summary.csv', 'results.json', 'failed.json', 'last.pth.tar', 'model_best.pth.tar',
             'checkpoint-*.pth.tar', 'tmp.pth.tar')


class TrainingDiverged(FloatingPointError, RuntimeError):
    """The loss became non-finite (a too-large lr). A RuntimeError too, so the CLI prints it as one line."""

_logger = logging.getLogger(__name__)
#: on CUDA the loss is read (a device sync) every this many steps; on the CPU every step
_SYNC_EVERY = 50


def build_transforms(cfg: TrainConfig, data_config: Dict[str, Any], is_training: bool):
    """Exact CIFAR augmentation for small (<= 64 px) inputs, timm's ``create_transform`` otherwise."""
    from torchvision import transforms as T
    from timm.data import create_transform
    size = data_config['input_size'][-1]
    aug = cfg.aug if cfg.aug != 'auto' else ('cifar' if size <= 64 else 'timm')
    if aug == 'cifar':
        ops = []
        if is_training and not cfg.no_aug:
            ops += [T.RandomCrop(size, padding=size // 8), T.RandomHorizontalFlip(cfg.hflip)]
        else:
            ops += [T.Resize(size), T.CenterCrop(size)]
        ops += [T.ToTensor(), T.Normalize(data_config['mean'], data_config['std'])]
        return T.Compose(ops)
    kwargs = dict(data_config)
    if is_training:
        # colour jitter 0: no ColorJitter op at all (train.py adds a no-op one)
        kwargs.update(scale=tuple(cfg.scale), ratio=tuple(cfg.ratio), hflip=cfg.hflip, no_aug=cfg.no_aug,
                      color_jitter=cfg.color_jitter or None,
                      interpolation=cfg.train_interpolation or kwargs['interpolation'])
        kwargs.pop('crop_pct', None)
        kwargs.pop('crop_mode', None)
    return create_transform(**kwargs, is_training=is_training)


def _class_to_idx(ds) -> Optional[Dict[str, int]]:
    """The class folder -> label map of a folder data set (None for other readers)."""
    mapping = getattr(getattr(ds, 'reader', None), 'class_to_idx', None)
    return dict(mapping) if isinstance(mapping, dict) and mapping else None


def _eval_classes_by_name(cfg: TrainConfig, split: str, own: Optional[Dict[str, int]],
                          train_classes: Dict[str, int]) -> Optional[Dict[str, int]]:
    """None when ``own`` (the eval split's folder -> label map) already numbers its classes as the train split
    does; else the train split's map to relabel it with (its folders a subset of the train classes, matched by
    name). A folder that is no train class is refused: its images have no label the model could be scored on."""
    if own is None or own == {c: train_classes.get(c) for c in own}:
        return None
    folders = sorted(own, key=own.get)
    train = sorted(train_classes, key=train_classes.get)
    if indices_by_name(folders, train) is None:
        raise ValueError(f"the {split!r} split of {cfg.data_dir!r} has class folder(s) {few(not_in(folders, train))} "
                         f"that are not classes of the train split ({few(train)}); eval labels are matched to the "
                         f"train classes by name")
    return train_classes


def _loader(cfg: TrainConfig, split: str, transform, batch_size: int, is_training: bool,
            train_classes: Optional[Dict[str, int]] = None):
    """The loader of one split; with ``train_classes`` (an eval split) its labels are the train split's."""
    from timm.data import create_dataset
    ds = create_dataset(cfg.dataset, root=cfg.data_dir, split=split, is_training=is_training)
    remap = _eval_classes_by_name(cfg, split, _class_to_idx(ds), train_classes) if train_classes else None
    if remap is not None:
        ds = create_dataset(cfg.dataset, root=cfg.data_dir, split=split, is_training=is_training, class_map=remap)
    if len(ds) == 0:
        raise ValueError(f"no images found in {cfg.data_dir!r} (split {split!r})")
    _check_batch(cfg, len(ds), batch_size, is_training)
    ds.transform = transform
    return torch.utils.data.DataLoader(
        ds, batch_size=batch_size, shuffle=is_training, drop_last=is_training, num_workers=cfg.workers,
        persistent_workers=cfg.workers > 0, pin_memory=cfg.device.startswith('cuda'))


def _check_batch(cfg: TrainConfig, n_images: int, batch_size: int, is_training: bool) -> None:
    if is_training and n_images < batch_size:
        raise ValueError(f"{option_name('batch_size')} {batch_size} is larger than the {n_images} training images "
                         f"of {cfg.data_dir!r}: no full batch to train on")


def _class_count(loader) -> Optional[int]:
    """Classes of a loader's image folder (timm's reader or the device cache), None if it does not say."""
    reader = getattr(getattr(loader, 'dataset', None), 'reader', None)
    class_to_idx = getattr(loader, 'class_to_idx', None) or getattr(reader, 'class_to_idx', None)
    return len(class_to_idx) if class_to_idx else None


def build_loaders(cfg: TrainConfig, data_config: Dict[str, Any]):
    """(train, eval) loaders of ``cfg.data_path``: timm's JPEG loader, or the device-resident cache."""
    eval_batch = cfg.validation_batch_size or cfg.batch_size
    if cfg.data_path == 'jpeg':
        train_loader = _loader(cfg, cfg.train_split, build_transforms(cfg, data_config, True), cfg.batch_size, True)
        return train_loader, _loader(cfg, cfg.val_split, build_transforms(cfg, data_config, False), eval_batch,
                                     False, _class_to_idx(train_loader.dataset))
    from .device_loader import DeviceImageLoader
    from .image_cache import check_fits, load_or_build, plan_cache
    size = data_config['input_size'][-1]
    aug = cfg.aug if cfg.aug != 'auto' else ('cifar' if size <= 64 else 'timm')
    if aug != 'cifar':
        raise ValueError(f"{option_name('data_path')} device does the CIFAR augmentation of inputs <= 64 px; "
                         f"this model takes {size} px: use {option_name('data_path')} jpeg")
    device = torch.device(cfg.device)
    plans = [plan_cache(cfg.data_dir, split, cfg.data_cache or None, size, cfg.dataset)
             for split in (cfg.train_split, cfg.val_split)]
    _check_batch(cfg, plans[0].n_images, cfg.batch_size, True)
    # the eval folders must be train classes: refused from the folder listing, before anything is decoded or cached
    _eval_classes_by_name(cfg, cfg.val_split, dict(plans[1].dataset.reader.class_to_idx),
                          dict(plans[0].dataset.reader.class_to_idx))
    check_fits(sum(p.nbytes for p in plans), device,
               f"the {sum(p.n_images for p in plans)} decoded images of {cfg.data_dir!r}")
    loaders = []
    for plan, is_training in zip(plans, (True, False)):
        cache = load_or_build(plan, device)
        labels, class_to_idx = cache.labels, cache.class_to_idx
        remap = None if is_training else _eval_classes_by_name(cfg, cfg.val_split, class_to_idx,
                                                               loaders[0].class_to_idx)
        if remap is not None:  # the eval split's labels renumbered as the train split's, by folder name
            lut = torch.empty(max(class_to_idx.values()) + 1, dtype=labels.dtype)
            for name, own in class_to_idx.items():
                lut[own] = remap[name]
            labels, class_to_idx = lut.to(labels.device)[labels], {name: remap[name] for name in class_to_idx}
        loader = DeviceImageLoader(
            cache.images, labels, cfg.batch_size if is_training else eval_batch, data_config['mean'],
            data_config['std'], train=is_training, pad=size // 8, hflip=cfg.hflip, augment=not cfg.no_aug,
            channels_last=cfg.channels_last)
        loader.class_to_idx = class_to_idx
        loaders.append(loader)
    return tuple(loaders)


def _amp_dtype(cfg: TrainConfig) -> torch.dtype:
    if cfg.amp_dtype:
        return getattr(torch, cfg.amp_dtype)
    return torch.float16 if cfg.device.startswith('cuda') else torch.bfloat16


def _autocast(cfg: TrainConfig):
    if not cfg.amp:
        return nullcontext()
    return torch.autocast('cuda' if cfg.device.startswith('cuda') else 'cpu', dtype=_amp_dtype(cfg))


def compiled_step_model(model: nn.Module, cfg: TrainConfig, log=print) -> nn.Module:
    """The module the steps call: ``model`` itself, or ``torch.compile`` of it (same parameters, so the optimizer
    and the checkpoints keep using ``model``). CUDA graphs ('reduce-overhead') need CUDA: on the CPU that mode is
    dropped, with the reason."""
    backend = cfg.torchcompile or ('inductor' if cfg.torchcompile_mode else None)
    if not backend:
        return model
    mode = cfg.torchcompile_mode
    if mode in ('reduce-overhead', 'max-autotune') and not cfg.device.startswith('cuda'):
        log(f"--torchcompile-mode {mode}: CUDA graphs need a CUDA device; compiling for {cfg.device} without them")
        mode = None
    return torch.compile(model, backend=backend, mode=mode)


def _progress(iterable, total: int, desc: str):
    try:
        from tqdm import tqdm
    except ImportError:  # progress is a nicety, not a dependency of the core
        return iterable
    tty = sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, leave=tty, mininterval=0.5 if tty else 30, dynamic_ncols=True)


@torch.no_grad()
def evaluate(model: nn.Module, loader, cfg: TrainConfig) -> Dict[str, float]:
    from timm.utils import accuracy
    model.eval()
    loss_fn = nn.CrossEntropyLoss()
    n, sums = 0, torch.zeros(3, dtype=torch.float64, device=cfg.device)  # loss, top-1, top-5: read once, at the end
    for x, y in _progress(loader, len(loader), 'eval'):
        x, y = x.to(cfg.device), y.to(cfg.device)
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with _autocast(cfg):
            out = model(x)
        top1, top5 = accuracy(out, y, topk=(1, min(5, out.shape[-1])))
        sums += torch.stack([loss_fn(out.float(), y), top1, top5]).double() * x.shape[0]
        n += x.shape[0]
    loss_sum, top1_sum, top5_sum = sums.tolist()
    return {'loss': loss_sum / n, 'top1': top1_sum / n, 'top5': top5_sum / n}


def _restore_summary(path: str, start_epoch: int):
    """Keep the summary rows of epochs before ``start_epoch`` (a crash between the summary row and the checkpoint,
    or a fresh run into an old folder, leaves rows that will be trained again) and return the best kept
    (epoch, top1), so model_best is only replaced by a better epoch after a resume."""
    if not os.path.isfile(path):
        return None, None
    with open(path, newline='') as f:
        reader = csv.DictReader(f)
        fieldnames, rows = reader.fieldnames, list(reader)
    keep = [r for r in rows if int(r['epoch']) < start_epoch]
    if len(keep) != len(rows):
        if keep:
            text = io.StringIO(newline='')
            writer = csv.DictWriter(text, fieldnames=fieldnames)
            writer.writeheader()
            writer.writerows(keep)
            write_text(text.getvalue(), path, force=True)
        else:
            os.remove(path)
    scored = [r for r in keep if r.get('eval_top1')]
    if not scored:
        return None, None
    best = max(scored, key=lambda r: float(r['eval_top1']))
    return int(best['epoch']), float(best['eval_top1'])


def _atomic_saver(*args, **kwargs):
    """timm's CheckpointSaver, writing whole files only.

    timm saves to a fixed ``tmp.pth.tar`` (a kill mid-save leaves a truncated file there), then unlinks ``last``
    before renaming over it and before hard-linking ``model_best``/``checkpoint-N`` (a kill in between leaves the
    run without that file). Here each save goes to a unique temporary name that is removed on failure, the
    renames replace their target in one step, and an interrupted save leaves no ``tmp.pth.tar``.
    """
    from timm.utils import CheckpointSaver

    class AtomicCheckpointSaver(CheckpointSaver):
        def save_checkpoint(self, epoch, metric=None):
            try:
                return super().save_checkpoint(epoch, metric)
            finally:  # interrupted between the save and the rename into `last`: that `last` stays
                staged = os.path.join(self.checkpoint_dir, 'tmp' + self.extension)
                if os.path.lexists(staged):
                    os.unlink(staged)

        def _save(self, save_path, epoch, metric=None):
            with atomic_output(save_path, force=True) as tmp:
                super()._save(tmp, epoch, metric)

        def _replace(self, src, dst):
            os.replace(src, dst)

        def _duplicate(self, src, dst):
            tmp = temp_name(dst)
            try:
                try:
                    os.link(src, tmp)
                except OSError:
                    shutil.copy2(src, tmp)
                os.replace(tmp, dst)
            except BaseException:
                if os.path.lexists(tmp):
                    os.unlink(tmp)
                raise

    return AtomicCheckpointSaver(*args, **kwargs)


def _append_summary(path: str, epoch: int, train_metrics, eval_metrics, lr: float) -> None:
    """timm's ``update_summary`` row appended to a copy, renamed into place: the file is never half a row."""
    from timm.utils import update_summary
    had_rows = os.path.isfile(path) and os.path.getsize(path) > 0
    with atomic_output(path, force=True) as tmp:
        if had_rows:
            shutil.copyfile(path, tmp)
        update_summary(epoch, train_metrics, eval_metrics, tmp, lr=lr, write_header=not had_rows)


def _clear_previous_run(folder: str) -> None:
    """A fresh run into an old run folder (``--force``): the old run's files would describe a run that no longer
    exists (results.json, checkpoint-N of epochs this run may never reach), so they go, once the new run has
    finished its first epoch (a new run stopped before that leaves the old one as it was)."""
    for pattern in RUN_FILES:
        for path in glob.glob(os.path.join(glob.escape(folder), pattern)):
            os.remove(path)


def _why_unreadable(path: str, error: Exception) -> str:
    """Why ``torch.load`` failed, in words: PyTorch's own messages talk about mmap and zip internals."""
    import zipfile
    with open(path, 'rb') as f:
        head = f.read(4)
    if head.startswith(b'PK'):
        if not zipfile.is_zipfile(path):
            return 'truncated or damaged: the file ends before its zip index'
    elif not head.startswith(b'\x80'):
        return 'not a file written by torch.save'
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return first[:200]


def _load_resume(model: nn.Module, cfg: TrainConfig, path: str, optimizer, scaler) -> int:
    """Load ``path`` into model/optimizer; a checkpoint that is no checkpoint, or of another model, is one clear
    line (not PyTorch's pickle or state-dict dump)."""
    from timm.models import resume_checkpoint
    from timm.utils.checkpoint_saver import load_checkpoint_metadata
    try:
        meta = load_checkpoint_metadata(path)
    except Exception as e:  # noqa: BLE001  (truncated, text, pickle-unsafe: all mean "not a checkpoint we can use")
        raise ValueError(f"--resume {path}: not a readable training checkpoint ({_why_unreadable(path, e)})") from None
    if not isinstance(meta, dict) or 'state_dict' not in meta:
        raise ValueError(f"--resume {path}: not a training checkpoint (no state_dict); weights alone cannot resume")
    arch = meta.get('arch')
    ours, theirs = model_architecture(cfg.model), model_architecture(arch) if arch else None
    if ours and theirs and ours != theirs:  # architectures, not spellings: X.cifar10 resumes under X
        raise ValueError(f"--resume {path}: the checkpoint is of model {arch!r}, not {cfg.model!r}")
    try:
        return resume_checkpoint(model, path, optimizer=optimizer, loss_scaler=scaler, log_info=True) or 0
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise ValueError(f"--resume {path}: does not fit the model {cfg.model!r} ({first[:200]})") from None


def train(cfg: TrainConfig) -> Dict[str, Any]:
    """Train ``cfg.model`` and return the final/best metrics; writes summary.csv, checkpoints, results.json.

    Every option is checked and everything is built (model, data, optimizer, resumed state) before the run folder
    is created; a run that fails before its first epoch is saved removes the folders it created. Each file is
    written whole (temporary file + rename), so an interrupted run leaves the last complete epoch, resumable.
    """
    import timm
    from timm.data import resolve_data_config
    from timm.loss import LabelSmoothingCrossEntropy
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2
    from timm.utils import NativeScaler, random_seed

    check_config(cfg)  # imports device_modules and timm_recal too
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    random_seed(cfg.seed, 0)

    model_kwargs = dict(cfg.model_kwargs or {})
    if cfg.num_classes is not None:
        model_kwargs['num_classes'] = cfg.num_classes
    if cfg.drop_path is not None:
        model_kwargs['drop_path_rate'] = cfg.drop_path
    try:
        model = timm.create_model(cfg.model, pretrained=cfg.pretrained, drop_rate=cfg.drop, **model_kwargs)
    except TypeError as e:  # a model_kwargs key the model does not take
        raise ValueError(f"model_kwargs: {cfg.model} cannot be built with {model_kwargs} ({e})") from None
    model.to(cfg.device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    data_args = {'img_size': cfg.img_size, 'mean': cfg.mean, 'std': cfg.std, 'crop_pct': cfg.crop_pct,
                 'interpolation': cfg.interpolation}
    data_config = resolve_data_config(data_args, model=model)

    train_loader, eval_loader = build_loaders(cfg, data_config)
    n_classes = _class_count(train_loader)
    if n_classes is not None and n_classes != model.num_classes:
        raise ValueError(f"{cfg.data_dir} has {n_classes} classes but the model has {model.num_classes}; "
                         f"set num_classes")

    opt_kwargs = {}
    if cfg.opt_betas:
        opt_kwargs['betas'] = tuple(cfg.opt_betas)
    if cfg.opt_eps:
        opt_kwargs['eps'] = cfg.opt_eps
    lr = resolve_lr(cfg)  # one process: global batch = batch_size
    optimizer = create_optimizer_v2(
        model, opt=cfg.opt, lr=lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum, **opt_kwargs)
    updates_per_epoch = len(train_loader)
    if cfg.max_steps_per_epoch:
        updates_per_epoch = min(updates_per_epoch, cfg.max_steps_per_epoch)
    scheduler, num_epochs = create_scheduler_v2(
        optimizer, sched=cfg.sched, num_epochs=cfg.epochs, decay_epochs=cfg.decay_epochs,
        decay_milestones=list(cfg.decay_milestones), cooldown_epochs=cfg.cooldown_epochs,
        decay_rate=cfg.decay_rate, patience_epochs=cfg.patience_epochs, min_lr=cfg.min_lr, warmup_lr=cfg.warmup_lr,
        warmup_epochs=cfg.warmup_epochs, warmup_prefix=cfg.warmup_prefix, cycle_mul=cfg.lr_cycle_mul,
        cycle_decay=cfg.lr_cycle_decay, cycle_limit=cfg.lr_cycle_limit,
        step_on_epochs=not cfg.sched_on_updates, updates_per_epoch=updates_per_epoch)
    scaler = NativeScaler(device='cuda') if cfg.amp and _amp_dtype(cfg) == torch.float16 and \
        cfg.device.startswith('cuda') else None
    loss_fn = LabelSmoothingCrossEntropy(cfg.smoothing) if cfg.smoothing else nn.CrossEntropyLoss()

    start_epoch = 0
    resume = cfg.resume
    if resume == 'auto':
        resume = os.path.join(cfg.output, 'last.pth.tar')
        resume = resume if os.path.isfile(resume) else ''
    if resume:
        start_epoch = _load_resume(model, cfg, resume, optimizer, scaler)
        # a finished run resumed with --resume auto (a sweep re-run) keeps its folder; a named checkpoint that has
        # no epoch left would leave a new run folder with nothing in it
        if start_epoch >= num_epochs and cfg.resume != 'auto':
            raise ValueError(f"--resume {resume}: nothing to train, the checkpoint has finished {start_epoch} of "
                             f"{num_epochs} epochs; raise {option_name('epochs')} to train on")

    # everything is checked and built: from here on the run folder holds this run
    with created_parents(os.path.join(cfg.output, 'summary.csv')):
        return _run_epochs(cfg, model, optimizer, scheduler, scaler, loss_fn, train_loader, eval_loader,
                           updates_per_epoch, num_epochs, start_epoch, resume)


def _run_epochs(cfg, model, optimizer, scheduler, scaler, loss_fn, train_loader, eval_loader, updates_per_epoch,
                num_epochs, start_epoch, resume) -> Dict[str, Any]:
    from timm.utils import random_seed
    saver = _atomic_saver(model, optimizer, args=as_namespace(cfg), amp_scaler=scaler, checkpoint_dir=cfg.output,
                          recovery_dir=cfg.output, decreasing=False, max_history=1)
    summary_csv = os.path.join(cfg.output, 'summary.csv')
    best_in_summary = _restore_summary(summary_csv, start_epoch) if resume else (None, None)
    restored = bool(resume) and hasattr(saver, 'load_state_dict_from_checkpoint') and \
        saver.load_state_dict_from_checkpoint(resume)  # newer timm: the saver's own history travels along
    if not restored:
        saver.best_epoch, saver.best_metric = best_in_summary
    if scheduler is not None and start_epoch > 0:
        if cfg.sched_on_updates:
            scheduler.step_update(start_epoch * updates_per_epoch)
        else:
            scheduler.step(start_epoch)

    step_model = compiled_step_model(model, cfg)
    sync_every = _SYNC_EVERY if cfg.device.startswith('cuda') else 1
    eval_metrics: Dict[str, float] = {}
    for epoch in range(start_epoch, num_epochs):
        t0 = time.time()
        # seed per epoch: shuffling, augmentation and dropout of epoch k do not depend on how the run got there,
        # so a resumed run continues exactly as an uninterrupted one (bit for bit with workers=0; persistent
        # worker processes draw their augmentation seeds once, when they start)
        random_seed(cfg.seed + epoch, 0)
        model.train()
        loss_sum, seen = torch.zeros((), device=cfg.device), 0
        num_updates = epoch * updates_per_epoch
        bar = _progress(train_loader, updates_per_epoch, f'epoch {epoch + 1}/{num_epochs}')
        for step, (x, y) in enumerate(bar):
            check_not_terminated()  # a SIGTERM whose interrupt Python dropped (in a callback) still stops here
            if step >= updates_per_epoch:
                break
            x, y = x.to(cfg.device, non_blocking=True), y.to(cfg.device, non_blocking=True)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with _autocast(cfg):
                loss = loss_fn(step_model(x), y)
            loss_sum += loss.detach().float() * x.shape[0]
            seen += x.shape[0]
            # reading the loss waits for the device: on CUDA only every _SYNC_EVERY steps, so the GPU runs ahead
            last = step + 1 == updates_per_epoch
            if sync_every == 1 or (step + 1) % sync_every == 0 or last:
                total = loss_sum.item()
                if not math.isfinite(total):
                    where = f"step {step + 1}" if sync_every == 1 else f"one of steps {max(step + 2 - sync_every, 1)}-{step + 1}"
                    raise TrainingDiverged(f"loss is {loss.item() if sync_every == 1 else total} at epoch {epoch + 1}, "
                                           f"{where}; lower {option_name('lr')}")
                if hasattr(bar, 'set_postfix'):
                    bar.set_postfix(loss=f'{total / seen:.4f}', lr=f"{optimizer.param_groups[0]['lr']:.2e}",
                                    refresh=False)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler(loss, optimizer, clip_grad=cfg.clip_grad, parameters=model.parameters())
            else:
                loss.backward()
                if cfg.clip_grad:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
                optimizer.step()
            num_updates += 1
            if scheduler is not None:
                scheduler.step_update(num_updates=num_updates)
        loss_sum = loss_sum.item()
        train_metrics = {'loss': loss_sum / max(seen, 1), 'img_per_s': seen / (time.time() - t0)}
        eval_metrics = evaluate(step_model, eval_loader, cfg)
        lrs = [g['lr'] for g in optimizer.param_groups]  # the lr this epoch ended with, as train.py logs it
        if not resume and epoch == start_epoch:  # a fresh run replaces an old one once it has its first epoch
            _clear_previous_run(cfg.output)
        _append_summary(summary_csv, epoch, train_metrics, eval_metrics, lr=sum(lrs) / len(lrs))
        saver.save_checkpoint(epoch, metric=eval_metrics['top1'])
        if scheduler is not None:  # after the checkpoint, as train.py: the saved optimizer holds this epoch's lr
            scheduler.step(epoch + 1, eval_metrics['top1'])
        _logger.info('epoch %d: train loss %.4f, eval top1 %.2f (%.0f s)', epoch + 1, train_metrics['loss'],
                     eval_metrics['top1'], time.time() - t0)
        print(f"epoch {epoch + 1}/{num_epochs}: train loss {train_metrics['loss']:.4f} "
              f"eval top1 {eval_metrics['top1']:.2f} ({time.time() - t0:.0f} s)", flush=True)
        pause_point('train.epoch_end')

    # epoch numbers in results.json are summary.csv's and checkpoint-N's: counted from 0, as timm writes them;
    # messages for people count from 1 (see the `train` command)
    result = {
        'model': cfg.model, 'epochs': num_epochs, 'best_top1': saver.best_metric, 'best_epoch': saver.best_epoch,
        'last': eval_metrics or _last_logged(summary_csv),
        'data_path': cfg.data_path,
        'step': {'device': cfg.device, 'channels_last': cfg.channels_last, 'amp': cfg.amp,
                 'amp_dtype': str(_amp_dtype(cfg)).replace('torch.', '') if cfg.amp else None,
                 'torchcompile': cfg.torchcompile, 'torchcompile_mode': cfg.torchcompile_mode},
    }
    write_json(result, os.path.join(cfg.output, 'results.json'), force=True)
    return result


def _last_logged(summary_csv: str) -> Dict[str, float]:
    """The eval metrics of the last logged epoch (a finished run resumed again trains nothing)."""
    if not os.path.isfile(summary_csv):
        return {}
    with open(summary_csv, newline='') as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {k[len('eval_'):]: float(v) for k, v in rows[-1].items() if k.startswith('eval_') and v}
