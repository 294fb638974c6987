"""Training configuration: the option names of timm's train.py, so one YAML file drives both trainers.

``load_config`` reads a YAML file whose keys are train.py argparse dests (``lr``, ``batch_size``, ``opt``,
``sched``, ``model_kwargs``, ``device_modules``, ...), fills in the defaults below and applies command-line
overrides. Keys train.py has but this trainer ignores are kept (and reported), never silently invented.
"""
import argparse
import os
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional, Sequence

__all__ = ['TrainConfig', 'load_config', 'IGNORED_KEYS']

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
    batch_size: int = 128
    validation_batch_size: Optional[int] = None
    epochs: int = 100
    opt: str = 'sgd'
    lr: Optional[float] = 0.1
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
    warmup_epochs: int = 0
    warmup_lr: float = 1e-5
    warmup_prefix: bool = False
    min_lr: float = 0.0
    cooldown_epochs: int = 0
    smoothing: float = 0.0
    drop: float = 0.0
    drop_path: Optional[float] = None
    hflip: float = 0.5
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
    kwargs = {k: v for k, v in values.items() if k in _FIELDS}
    if kwargs.get('model_kwargs') is None:
        kwargs['model_kwargs'] = {}
    cfg = TrainConfig(**kwargs)
    if cfg.aug not in ('auto', 'cifar', 'timm'):
        raise ValueError(f"aug must be 'auto', 'cifar' or 'timm', got {cfg.aug!r}")
    return cfg


def as_namespace(cfg: TrainConfig) -> argparse.Namespace:
    """timm's CheckpointSaver stores ``args`` in every checkpoint; give it the config."""
    return argparse.Namespace(**{f.name: getattr(cfg, f.name) for f in fields(cfg)})
