"""Training configuration: the option names of timm's train.py, so one YAML file drives both trainers.

``load_config`` reads a YAML file whose keys are train.py argparse dests (``lr``, ``batch_size``, ``opt``,
``sched``, ``model_kwargs``, ``device_modules``, ...), fills in the defaults below and applies command-line
overrides. Keys train.py has but this trainer ignores are kept (and reported), never silently invented.
"""
import argparse
import os
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional, Sequence

__all__ = ['TrainConfig', 'load_config', 'resolve_lr', 'IGNORED_KEYS']

#: train.py options this trainer accepts in a YAML file but does not act on (logging, distributed, ...).
IGNORED_KEYS = {
    'log_interval', 'recovery_interval', 'pin_mem', 'no_prefetcher', 'log_wandb', 'experiment', 'dist_bn',
    'torchscript', 'torchcompile', 'fuser', 'local_rank', 'synchronize_step', 'tta', 'use_multi_epochs_loader',
    'no_ddp_bb', 'split_bn', 'eval_metric', 'checkpoint_hist', 'amp_dtype', 'model_dtype', 'dataset_download',
    'class_map', 'input_img_mode', 'input_key', 'target_key', 'dataset_trust_remote_code', 'train_num_samples',
    'val_num_samples', 'pretrained_path', 'resume_opt', 'no_resume_opt', 'save_images', 'worker_seeding',
}


@dataclass
class TrainConfig:
    model: str = 'shufflenetv2_x0_5_cifar'
    data_dir: Optional[str] = None
    dataset: str = ''
    train_split: str = 'train'
    val_split: str = 'test'
    num_classes: Optional[int] = None
    pretrained: bool = False
    model_kwargs: Dict[str, Any] = field(default_factory=dict)
    device_modules: List[str] = field(default_factory=list)
    img_size: Optional[int] = None
    # data config overrides (None / '' = the model's pretrained cfg), as in train.py
    mean: Optional[Sequence[float]] = None
    std: Optional[Sequence[float]] = None
    crop_pct: Optional[float] = None
    interpolation: str = ''
    batch_size: int = 128
    validation_batch_size: Optional[int] = None
    epochs: int = 100
    opt: str = 'sgd'
    # lr None: lr = lr_base * (global batch / lr_base_size) ** (1 or 0.5), train.py's rule (see resolve_lr)
    lr: Optional[float] = None
    lr_base: float = 0.1
    lr_base_size: int = 256
    lr_base_scale: str = ''
    momentum: float = 0.9
    weight_decay: float = 1e-4
    opt_betas: Optional[Sequence[float]] = None
    opt_eps: Optional[float] = None
    clip_grad: Optional[float] = None
    sched: str = 'cosine'
    sched_on_updates: bool = False
    decay_milestones: Sequence[int] = (90, 180, 270)
    decay_epochs: float = 90
    decay_rate: float = 0.1
    patience_epochs: int = 10
    warmup_epochs: int = 0
    warmup_lr: float = 1e-5
    warmup_prefix: bool = False
    min_lr: float = 0.0
    cooldown_epochs: int = 0
    lr_cycle_mul: float = 1.0
    lr_cycle_decay: float = 0.5
    lr_cycle_limit: int = 1
    smoothing: float = 0.0
    drop: float = 0.0
    drop_path: Optional[float] = None
    hflip: float = 0.5
    color_jitter: float = 0.4
    train_interpolation: str = 'random'
    scale: Sequence[float] = (0.08, 1.0)
    ratio: Sequence[float] = (3. / 4., 4. / 3.)
    no_aug: bool = False
    seed: int = 42
    workers: int = 2
    channels_last: bool = False
    amp: bool = False
    device: str = 'cpu'
    output: str = ''
    resume: str = ''
    # timm-recal only (command line, not train.py): the exact CIFAR augmentation and CPU threads
    aug: str = 'auto'
    threads: Optional[int] = None
    max_steps_per_epoch: Optional[int] = None


_FIELDS = {f.name for f in fields(TrainConfig)}


def _coerce(name: str, value: Any) -> Any:
    """Numbers given as YAML strings (PyYAML reads ``1e-3`` as a string) become numbers, as argparse's ``type``
    makes them in train.py; anything else that is not a number where one is needed is an error."""
    hint = typing.get_type_hints(TrainConfig)[name]
    args = [hint]
    if typing.get_origin(hint) is typing.Union:  # Optional[X]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
    kind = args[0] if len(args) == 1 and args[0] in (int, float) else None
    if kind is None or value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and not (kind is int and isinstance(value, float) and not value.is_integer()):
        return kind(value)
    if isinstance(value, str):
        try:
            return kind(value) if kind is float else int(value)
        except ValueError:
            pass
    raise ValueError(f"training option {name!r} needs a{'n integer' if kind is int else ' number'}, got {value!r}")


def load_config(path: Optional[str] = None, overrides: Optional[Dict[str, Any]] = None) -> TrainConfig:
    """Read a train.py-style YAML (``path``), then apply ``overrides`` (None values are skipped)."""
    values: Dict[str, Any] = {}
    if path:
        import yaml
        if not os.path.isfile(path):
            raise FileNotFoundError(f"config file not found: {path}")
        with open(path) as f:
            loaded = yaml.safe_load(f) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: a training config must be a YAML mapping of train.py options")
        values.update(loaded)
    for k, v in (overrides or {}).items():
        if v is not None:
            values[k] = v
    if 'data' in values and 'data_dir' not in values:  # train.py's deprecated positional
        values['data_dir'] = values.pop('data')
    unknown = sorted(k for k in values if k not in _FIELDS and k not in IGNORED_KEYS)
    if unknown:
        raise ValueError(f"unknown training option(s): {', '.join(unknown)} (keys are timm train.py option names)")
    kwargs = {k: _coerce(k, v) for k, v in values.items() if k in _FIELDS}
    if kwargs.get('model_kwargs') is None:
        kwargs['model_kwargs'] = {}
    cfg = TrainConfig(**kwargs)
    if cfg.aug not in ('auto', 'cifar', 'timm'):
        raise ValueError(f"aug must be 'auto', 'cifar' or 'timm', got {cfg.aug!r}")
    if cfg.lr_base_scale not in ('', 'linear', 'sqrt'):
        raise ValueError(f"lr_base_scale must be '', 'linear' or 'sqrt', got {cfg.lr_base_scale!r}")
    return cfg


def resolve_lr(cfg: TrainConfig, world_size: int = 1, grad_accum_steps: int = 1) -> float:
    """The learning rate train.py trains with: ``lr`` if set, else ``lr_base`` scaled to the global batch.

    train.py's rule: global batch = ``batch_size`` (per process) x ``world_size`` x ``grad_accum_steps``;
    ratio = global batch / ``lr_base_size``, square-rooted when ``lr_base_scale`` is 'sqrt' (the default
    for optimizers whose name contains 'ada' or 'lamb'), used as is for 'linear' (the default otherwise).
    So ``lr_base: 0.6, lr_base_size: 1024, lr_base_scale: linear`` trains at 0.6 on 8 processes of 128.
    """
    if cfg.lr:  # train.py tests truthiness: lr 0 also falls back to lr_base
        return float(cfg.lr)
    if world_size < 1 or grad_accum_steps < 1:
        raise ValueError(f"world_size and grad_accum_steps must be >= 1, got {world_size}, {grad_accum_steps}")
    ratio = cfg.batch_size * world_size * grad_accum_steps / cfg.lr_base_size
    scale = cfg.lr_base_scale or ('sqrt' if any(o in cfg.opt.lower() for o in ('ada', 'lamb')) else 'linear')
    return float(cfg.lr_base) * (ratio ** 0.5 if scale == 'sqrt' else ratio)


def as_namespace(cfg: TrainConfig) -> argparse.Namespace:
    """timm's CheckpointSaver stores ``args`` in every checkpoint; give it the config."""
    return argparse.Namespace(**{f.name: getattr(cfg, f.name) for f in fields(cfg)})
