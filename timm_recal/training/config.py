"""Training configuration: the option names of timm's train.py, so one YAML file drives both trainers.

``load_config`` reads a YAML file whose keys are train.py argparse dests (``lr``, ``batch_size``, ``opt``,
``sched``, ``model_kwargs``, ``device_modules``, ...), fills in the defaults below and applies command-line
overrides. Keys train.py has but this trainer ignores are kept (and reported), never silently invented.
"""
import argparse
import json
import math
import os
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional, Sequence

__all__ = ['TrainConfig', 'load_config', 'check_config', 'read_yaml', 'resolve_lr', 'recorded_path', 'option_name',
           'IGNORED_KEYS', 'model_architecture']

#: train.py options this trainer accepts in a YAML file but does not act on (logging, distributed, ...).
IGNORED_KEYS = {
    'log_interval', 'recovery_interval', 'pin_mem', 'no_prefetcher', 'log_wandb', 'experiment', 'dist_bn',
    'torchscript', 'fuser', 'local_rank', 'synchronize_step', 'tta', 'use_multi_epochs_loader',
    'no_ddp_bb', 'split_bn', 'eval_metric', 'checkpoint_hist', 'model_dtype', 'dataset_download',
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
    # '' = float16 on CUDA (with loss scaling), bfloat16 on the CPU; train.py's --amp-dtype
    amp_dtype: str = ''
    # torch.compile backend of the model (train.py's --torchcompile); None = eager
    torchcompile: Optional[str] = None
    device: str = 'cpu'
    output: str = ''
    resume: str = ''
    # timm-recal only (command line, not train.py): the exact CIFAR augmentation and CPU threads
    aug: str = 'auto'
    threads: Optional[int] = None
    max_steps_per_epoch: Optional[int] = None
    # where images are decoded and augmented: 'jpeg' (timm's loader, CPU workers) or 'device' (decoded once into
    # a uint8 cache held on the training device, CIFAR augmentation there; small images only)
    data_path: str = 'jpeg'
    data_cache: str = ''  # folder of the device path's cache files ('' = ~/.cache/timm-recal/images)
    torchcompile_mode: Optional[str] = None  # torch.compile mode ('reduce-overhead': CUDA graphs, CUDA only)


_FIELDS = {f.name for f in fields(TrainConfig)}


def model_architecture(spec: Any) -> Optional[str]:
    """The architecture a ``model`` option names: ``ARCH[.TAG]``, ``local-dir:FOLDER`` (its config.json), or
    ``hf-hub:ORG/ARCH.TAG`` (the Hub's timm naming, when ARCH is registered); None where the name does not tell
    (no network is asked). Resume and publish compare architectures, not spellings (``X.cifar10`` is ``X``)."""
    spec = str(spec)
    for prefix in ('hf-hub:', 'hf_hub:'):
        if spec.startswith(prefix):
            import timm
            import timm_recal  # noqa: F401  (registers the architectures)
            name = spec[len(prefix):].rpartition('/')[2].partition('.')[0]
            return name if name and timm.is_model(name) else None
    if spec.startswith('local-dir:'):
        try:
            with open(os.path.join(spec[len('local-dir:'):], 'config.json')) as f:
                cfg = json.load(f)
        except (OSError, ValueError):
            return None
        if not isinstance(cfg, dict):
            return None
        return str(cfg.get('architecture') or '').split('.')[0] or None
    return spec.partition('.')[0] or None


#: ``create_model`` keywords the trainer always passes from an option of its own (``model_kwargs`` may not repeat
#: them); ``num_classes`` and ``drop_path_rate`` are passed only when their options are set, so they may be here
_MODEL_KWARGS_OWNED = {'drop_rate': 'drop', 'pretrained': 'pretrained'}


def _coerce(name: str, value: Any) -> Any:
    """Numbers given as YAML strings (PyYAML reads ``1e-3`` as a string) become numbers, as argparse's ``type``
    makes them in train.py; anything else that is not a number where one is needed is an error."""
    hint = typing.get_type_hints(TrainConfig)[name]
    args = [hint]
    if typing.get_origin(hint) is typing.Union:  # Optional[X]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
    if hint is bool and not isinstance(value, bool):
        raise ValueError(f"training option {name!r} is true or false, got {value!r}")
    if str in args and len(args) == 1 and not isinstance(value, str) and not (value is None and hint is not str):
        # a name or path given as a YAML number (`device: 0`, `opt: 5`) reached str methods as an AttributeError
        raise ValueError(f"training option {name!r} needs a text value (a name or path), got {value!r}")
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


def read_yaml(path: str, what: str = 'config file') -> Any:
    """The parsed YAML of ``path``; a missing file or a syntax error is a one-line error naming the file and line."""
    import yaml
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except yaml.YAMLError as e:
        mark = getattr(e, 'problem_mark', None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ''
        problem = getattr(e, 'problem', None) or str(e).splitlines()[0]
        raise ValueError(f"{path}{where}: not valid YAML ({problem})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text (YAML) file") from None


def load_config(path: Optional[str] = None, overrides: Optional[Dict[str, Any]] = None) -> TrainConfig:
    """Read a train.py-style YAML (``path``), then apply ``overrides`` (None values are skipped)."""
    values: Dict[str, Any] = {}
    if path:
        loaded = read_yaml(path) or {}
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
    if not isinstance(kwargs['model_kwargs'], dict):
        raise ValueError(f"model_kwargs must be a mapping of keyword arguments, got {kwargs['model_kwargs']!r}")
    owned = sorted(set(kwargs['model_kwargs']) & set(_MODEL_KWARGS_OWNED))
    if owned:  # the trainer always passes these from their own options: a copy here was "multiple values" at build
        raise ValueError(f"model_kwargs: {owned[0]} is set by the training option "
                         f"{_MODEL_KWARGS_OWNED[owned[0]]}; give it there, not in model_kwargs")
    modules = kwargs.get('device_modules') or []
    if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
        raise ValueError(f"device_modules must be a list of module names, got {modules!r}")
    cfg = TrainConfig(**kwargs)
    if cfg.aug not in ('auto', 'cifar', 'timm'):
        raise ValueError(f"aug must be 'auto', 'cifar' or 'timm', got {cfg.aug!r}")
    if cfg.data_path not in ('jpeg', 'device'):
        raise ValueError(f"data_path must be 'jpeg' or 'device', got {cfg.data_path!r}")
    if cfg.amp_dtype not in ('', 'float16', 'bfloat16'):
        raise ValueError(f"amp_dtype must be 'float16' or 'bfloat16', got {cfg.amp_dtype!r}")
    if cfg.lr_base_scale not in ('', 'linear', 'sqrt'):
        raise ValueError(f"lr_base_scale must be '', 'linear' or 'sqrt', got {cfg.lr_base_scale!r}")
    return cfg


#: training option -> the command-line flag of `timm-recal train` that sets it (messages name both)
CLI_FLAGS = {
    'model': '--model', 'data_dir': '--data-dir', 'epochs': '--epochs', 'batch_size': '--batch-size', 'lr': '--lr',
    'workers': '--workers', 'device': '--device', 'resume': '--resume', 'threads': '--threads', 'aug': '--aug',
    'seed': '--seed', 'max_steps_per_epoch': '--max-steps-per-epoch', 'output': '-o/--output',
    'data_path': '--data-path', 'data_cache': '--data-cache', 'torchcompile': '--torchcompile',
    'torchcompile_mode': '--torchcompile-mode', 'amp_dtype': '--amp-dtype',
}


def option_name(key: str) -> str:
    """How the user sets ``key``: the YAML key and the flag (``batch_size (--batch-size)``), or the key alone."""
    flag = CLI_FLAGS.get(key)
    if key in ('output', 'resume'):
        return flag
    return f"{key} ({flag})" if flag else key


def _check_range(cfg: TrainConfig, key: str, low: float, high: Optional[float] = None, optional: bool = False,
                 low_open: bool = False, high_open: bool = True) -> None:
    value = getattr(cfg, key)
    if value is None and optional:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low)
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        lo = f"> {_fmt(low)}" if low_open else f">= {_fmt(low)}"
        hi = '' if high is None else f" and {'<' if high_open else '<='} {_fmt(high)}"
        raise ValueError(f"{option_name(key)} must be {lo}{hi}, got {value!r}")


_INTERPOLATIONS = ('nearest', 'bilinear', 'bicubic', 'box', 'hamming', 'lanczos')


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f'{x:g}'


def _check_numbers(cfg: TrainConfig, key: str, lengths: Sequence[int], low: Optional[float] = None,
                   high: Optional[float] = None, positive: bool = False) -> None:
    """A list option (mean, std, scale, ratio, opt_betas): unset, or ``lengths`` numbers within the bounds."""
    value = getattr(cfg, key)
    if value is None:
        return
    ok = isinstance(value, (list, tuple)) and len(value) in lengths and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        and (low is None or v >= low) and (high is None or v <= high) and (not positive or v > 0) for v in value)
    if ok and key in ('scale', 'ratio'):
        ok = value[0] <= value[1]
    if not ok:
        within = f" in [{_fmt(low)}, {_fmt(high)}]" if low is not None and high is not None else ''
        order = ' (low <= high)' if key in ('scale', 'ratio') else ''
        raise ValueError(f"{key} must be a list of {' or '.join(map(str, lengths))}{' positive' if positive else ''} "
                         f"numbers{within}{order}, got {value!r}")


def check_config(cfg: TrainConfig, need_data: bool = True) -> None:
    """Refuse, before anything is built or written, a config that cannot train (the trainer's first step).

    Checks value ranges, the model name (after importing ``device_modules``), the device, the resume checkpoint's
    existence, the output path and, with ``need_data``, the data folder and its split folders. The optimizer and
    scheduler names are checked by building them for a one-parameter model (cheap, and exactly timm's rules).
    """
    for key in ('epochs', 'batch_size', 'lr_base_size'):
        _check_range(cfg, key, 1)
    for key in ('validation_batch_size', 'threads', 'max_steps_per_epoch', 'img_size', 'num_classes'):
        _check_range(cfg, key, 1, optional=True)
    try:
        _check_range(cfg, 'lr', 0, optional=True, low_open=True)
    except ValueError as e:
        raise ValueError(f"{e} (leave lr unset to scale lr_base with the batch size)") from None
    _check_range(cfg, 'lr_base', 0, low_open=True)
    for key in ('workers', 'momentum', 'weight_decay', 'warmup_epochs', 'cooldown_epochs', 'min_lr', 'warmup_lr',
                'decay_rate', 'lr_cycle_mul', 'lr_cycle_decay', 'patience_epochs', 'decay_epochs'):
        _check_range(cfg, key, 0)
    _check_range(cfg, 'lr_cycle_limit', 1)
    for key in ('smoothing', 'drop'):
        _check_range(cfg, key, 0, 1)
    _check_range(cfg, 'drop_path', 0, 1, optional=True)
    _check_range(cfg, 'hflip', 0, 1, high_open=False)
    _check_range(cfg, 'clip_grad', 0, optional=True, low_open=True)
    _check_range(cfg, 'seed', 0, 2 ** 32)
    _check_range(cfg, 'crop_pct', 0, optional=True, low_open=True)
    _check_numbers(cfg, 'mean', (1, 3))
    _check_numbers(cfg, 'std', (1, 3), positive=True)
    _check_numbers(cfg, 'scale', (2,), 0, 1, positive=True)
    _check_numbers(cfg, 'ratio', (2,), positive=True)
    _check_numbers(cfg, 'opt_betas', (2,), 0, 1)
    milestones = cfg.decay_milestones
    if not isinstance(milestones, (list, tuple)) or not all(
            isinstance(m, int) and not isinstance(m, bool) and m >= 0 for m in milestones):
        raise ValueError(f"decay_milestones must be a list of epoch numbers, got {milestones!r}")
    if any(a > b for a, b in zip(milestones, milestones[1:])):
        # timm's multistep scheduler bisects the list: out of order, it decays at the wrong epochs, silently
        raise ValueError(f"decay_milestones must be in increasing order, got {list(milestones)!r}")
    for key, allowed in (('interpolation', _INTERPOLATIONS), ('train_interpolation', _INTERPOLATIONS + ('random',))):
        if getattr(cfg, key) not in ('',) + allowed:
            raise ValueError(f"{key} must be one of {', '.join(allowed)}, got {getattr(cfg, key)!r}")
    if cfg.device not in ('cpu', 'cuda') and not cfg.device.startswith('cuda:'):
        raise ValueError(f"{option_name('device')} must be 'cpu' or 'cuda', got {cfg.device!r}")
    if cfg.data_path == 'device' and cfg.aug == 'timm':
        raise ValueError(f"{option_name('data_path')} device does the CIFAR augmentation only; "
                         f"{option_name('aug')} timm needs {option_name('data_path')} jpeg")
    _check_model(cfg)
    _check_opt_and_sched(cfg)
    if cfg.device.startswith('cuda'):
        import torch
        if not torch.cuda.is_available():
            raise RuntimeError(f"--device {cfg.device} requested but CUDA is not available here; use --device cpu")
    if cfg.resume and cfg.resume != 'auto' and os.path.isdir(cfg.resume):
        raise ValueError(f"--resume: {cfg.resume} is a folder; give a checkpoint file "
                         f"({os.path.join(cfg.resume, 'last.pth.tar')}), or 'auto' to continue the run folder")
    if cfg.resume and cfg.resume != 'auto' and not os.path.isfile(cfg.resume):
        raise FileNotFoundError(f"--resume: checkpoint not found: {cfg.resume} ('auto' continues OUTPUT/last.pth.tar)")
    _check_output(cfg.output)
    if cfg.data_path == 'device' and cfg.data_cache:
        _check_cache_folder(cfg.data_cache)
    if need_data:
        check_data(cfg)


def _check_model(cfg: TrainConfig) -> None:
    import difflib
    import importlib
    import timm
    for mod in cfg.device_modules or []:
        try:
            importlib.import_module(mod)
        except ImportError as e:
            raise ValueError(f"device_modules: cannot import {mod!r} ({e})") from None
    import timm_recal  # noqa: F401  (our models must resolve even without device_modules)
    name = cfg.model
    if not isinstance(name, str) or not name:
        raise ValueError(f"model must name a model, got {name!r}")
    if name.startswith(('hf-hub:', 'hf_hub:', 'local-dir:')) or timm.is_model(name):
        return
    close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.75)
    hint = f"; did you mean {', '.join(close)}?" if close else "; `timm-recal models` lists ours"
    raise ValueError(f"unknown model {name!r}{hint}")


def _check_opt_and_sched(cfg: TrainConfig) -> None:
    import torch
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2
    probe = torch.nn.Linear(1, 1)
    try:
        optimizer = create_optimizer_v2(probe, opt=cfg.opt, lr=resolve_lr(cfg), weight_decay=cfg.weight_decay,
                                        momentum=cfg.momentum)
    except (AssertionError, ValueError, KeyError, TypeError) as e:
        reason = str(e).strip() or type(e).__name__
        raise ValueError(f"opt: timm cannot build optimizer {cfg.opt!r} ({reason})") from None
    try:
        create_scheduler_v2(optimizer, sched=cfg.sched, num_epochs=cfg.epochs, decay_epochs=cfg.decay_epochs,
                            decay_milestones=list(cfg.decay_milestones), warmup_epochs=cfg.warmup_epochs,
                            cycle_limit=cfg.lr_cycle_limit, updates_per_epoch=1)
    except (AssertionError, ValueError, KeyError, TypeError) as e:
        reason = str(e).strip() or type(e).__name__
        raise ValueError(f"sched: timm cannot build scheduler {cfg.sched!r} ({reason})") from None


def _check_output(output: str) -> None:
    from ..outputs import check_writable_folder
    if not output:
        raise ValueError(f"an output folder is required ({option_name('output')})")
    if os.path.exists(output) and not os.path.isdir(output):
        raise ValueError(f"{option_name('output')} {output} is a file; the run folder must be a folder")
    check_writable_folder(output)


def _check_cache_folder(folder: str) -> None:
    """The device path writes its decoded images there after decoding them: a file or a read-only place must be
    refused before that work, not after it."""
    from ..outputs import OutputError, check_writable_folder
    try:
        check_writable_folder(folder)
    except OutputError as e:
        raise ValueError(f"{option_name('data_cache')}: {e}") from None


def check_data(cfg: TrainConfig) -> None:
    """The data folder exists and, for folder data sets, holds the train and validation split folders."""
    if not cfg.data_dir:
        raise ValueError(f"no data folder: pass {CLI_FLAGS['data_dir']} or set data_dir in the config")
    if not os.path.isdir(cfg.data_dir):
        raise FileNotFoundError(f"data folder not found: {cfg.data_dir!r} ({CLI_FLAGS['data_dir']})")
    if not cfg.dataset or cfg.dataset.startswith('folder'):
        for split in (cfg.train_split, cfg.val_split):
            _check_split(cfg.data_dir, split)


def _check_split(data_dir: str, split: str) -> None:
    """timm falls back to the data root when a split folder is missing (then the split folders become the
    classes); a folder data set must have the split (or, for train/validation, one of timm's synonyms)."""
    from timm.data.dataset_factory import _EVAL_SYNONYM, _TRAIN_SYNONYM
    name = split.split('[')[0]
    synonyms = _TRAIN_SYNONYM if name in _TRAIN_SYNONYM else _EVAL_SYNONYM if name in _EVAL_SYNONYM else {}
    if not any(os.path.isdir(os.path.join(data_dir, s)) for s in (name, *synonyms)):
        found = sorted(d for d in os.listdir(data_dir) if os.path.isdir(os.path.join(data_dir, d)))
        raise FileNotFoundError(
            f"split folder {name!r} not found in {data_dir!r} (sub-folders: {', '.join(found) or 'none'}); "
            f"set train_split / val_split")


def recorded_path(path: Optional[str]) -> Optional[str]:
    """A path as records meant for sharing hold it: relative to the working folder when inside it, else only its
    last component, so no home or temp folder leaks into a checkpoint's ``args`` or a results file."""
    if not path or path == 'auto':
        return path
    full = os.path.abspath(path)
    rel = os.path.relpath(full, os.getcwd())
    if rel != os.pardir and not rel.startswith(os.pardir + os.sep):
        return rel
    return os.path.basename(full.rstrip(os.sep)) or full


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
    """timm's CheckpointSaver stores ``args`` in every checkpoint; give it the config, its paths as
    ``recorded_path`` writes them (resuming reads the checkpoint's weights and epoch, never these paths)."""
    values = {f.name: getattr(cfg, f.name) for f in fields(cfg)}
    for key in ('data_dir', 'output', 'resume', 'data_cache'):
        values[key] = recorded_path(values[key])
    return argparse.Namespace(**values)
