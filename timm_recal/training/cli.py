"""``timm-recal train``: argument definitions (no heavy imports here) and the command."""
import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import TrainConfig

__all__ = ['add_train_parser', 'add_fast_arguments', 'run_train', 'add_package_parser']

_OVERRIDES = {  # command-line flag -> TrainConfig field
    'model': str, 'data_dir': str, 'epochs': int, 'batch_size': int, 'lr': float, 'workers': int,
    'device': str, 'resume': str, 'threads': int, 'aug': str, 'seed': int, 'max_steps_per_epoch': int,
    'data_path': str, 'data_cache': str, 'torchcompile': str, 'torchcompile_mode': str, 'amp_dtype': str,
}


def add_train_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser('train', help='train a model from a train.py-style YAML config (CPU or CUDA)',
                       description='Train with timm library parts, reading timm train.py YAML configs.')
    p.add_argument('--config', '-c', help='YAML file of timm train.py options (train_configs/...)')
    p.add_argument('-o', '--output', required=True, help='run folder (checkpoints, summary.csv, results.json)')
    p.add_argument('--force', action='store_true', help='train into an existing, non-empty run folder')
    p.add_argument('--model')
    p.add_argument('--data-dir', dest='data_dir')
    p.add_argument('--epochs', type=int, help="epochs of one LR cycle, as timm's train.py counts them: a cycling "
                   'schedule (cosine, tanh, poly) with lr_cycle_limit N trains N cycles of it plus cooldown_epochs, and '
                   'warmup_prefix adds warmup_epochs')
    p.add_argument('--batch-size', '-b', dest='batch_size', type=int)
    p.add_argument('--lr', type=float)
    p.add_argument('--workers', '-j', type=int)
    p.add_argument('--device', choices=['cpu', 'cuda'])
    p.add_argument('--amp', action='store_true', default=None, help='mixed precision (bf16 on CPU, fp16 on CUDA)')
    p.add_argument('--channels-last', dest='channels_last', action='store_true', default=None)
    p.add_argument('--resume', help="checkpoint to resume, or 'auto' for OUTPUT/last.pth.tar")
    p.add_argument('--threads', type=int, help='torch CPU threads')
    p.add_argument('--aug', choices=['auto', 'cifar', 'timm'],
                   help='auto: exact CIFAR pad-and-crop for inputs <= 64 px, timm transforms otherwise')
    p.add_argument('--seed', type=int)
    p.add_argument('--max-steps-per-epoch', dest='max_steps_per_epoch', type=int, help='cap (smoke runs)')
    add_fast_arguments(p)
    p.set_defaults(func=run_train)
    return p


def add_fast_arguments(p: argparse.ArgumentParser) -> None:
    """The data path and the compiled step (shared by ``train`` and ``sweep``)."""
    g = p.add_argument_group('data path and step')
    g.add_argument('--data-path', dest='data_path', choices=['jpeg', 'device'],
                   help='jpeg (default): decode and augment in CPU workers; device: decode the folder once into a '
                        'uint8 cache held on the training device and augment there (images <= 64 px)')
    g.add_argument('--data-cache', dest='data_cache', metavar='DIR',
                   help='folder of the device path\'s cache files (default ~/.cache/timm-recal/images)')
    g.add_argument('--amp-dtype', dest='amp_dtype', choices=['float16', 'bfloat16'],
                   help='--amp precision (default float16 with loss scaling on CUDA, bfloat16 on the CPU)')
    g.add_argument('--torchcompile', nargs='?', const='inductor', metavar='BACKEND',
                   help='torch.compile the model (default backend inductor), as train.py\'s --torchcompile')
    g.add_argument('--torchcompile-mode', dest='torchcompile_mode',
                   choices=['default', 'reduce-overhead', 'max-autotune', 'max-autotune-no-cudagraphs'],
                   help='torch.compile mode; reduce-overhead adds CUDA graphs (CUDA only)')


def run_train(args: argparse.Namespace) -> int:
    """Check everything, then train; SIGTERM stops the run like Ctrl-C (the last finished epoch stays resumable).

    Epochs are counted from 1 here, as in the progress lines; summary.csv, checkpoint-N and results.json keep
    timm's count from 0.
    """
    import os
    from ..outputs import terminate_as_interrupt
    from .config import load_config
    overrides = {k: getattr(args, k) for k in _OVERRIDES}
    overrides.update(output=args.output, amp=args.amp, channels_last=args.channels_last)
    cfg = load_config(args.config, overrides)
    _check_flags_apply(args, cfg)
    resuming = bool(cfg.resume)
    if os.path.isdir(cfg.output) and os.listdir(cfg.output) and not (args.force or resuming):
        raise FileExistsError(f"{cfg.output} exists and is not empty; pass --force, or --resume auto to continue")
    from .trainer import train
    with terminate_as_interrupt():
        result = train(cfg)
    if result['best_epoch'] is None:
        print(f"no epoch trained or logged; run folder {cfg.output}")
    else:
        print(f"best top-1 {result['best_top1']:.2f} at epoch {result['best_epoch'] + 1} of {result['epochs']}; "
              f"run folder {cfg.output}")
    return 0


def _check_flags_apply(args: argparse.Namespace, cfg: 'TrainConfig') -> None:
    """A flag the run would not read is refused, not dropped: ``--amp-dtype`` only sets the precision of ``--amp``
    (without it the run trains in float32), and ``--data-cache`` is the cache of ``--data-path device`` only."""
    if args.amp_dtype is not None and not cfg.amp:
        raise ValueError(f"--amp-dtype {args.amp_dtype} sets the precision of --amp, which is off; add --amp (or "
                         f"amp: true in the config) or leave --amp-dtype out")
    if args.data_cache is not None and cfg.data_path != 'device':
        raise ValueError(f"--data-cache is the cache of --data-path device, and this run uses --data-path "
                         f"{cfg.data_path}; add --data-path device or leave --data-cache out")


def add_package_parser(sub) -> argparse.ArgumentParser:
    """``timm-recal package-weights``: the older name of ``timm-recal publish --dry-run`` (same folder options)."""
    from ..publish import add_package_weights_parser
    return add_package_weights_parser(sub)
