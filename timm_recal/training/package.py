"""A finished ``timm-recal train`` run as a publish source, and ``package_run``: its Hub-ready weights folder.

The folder itself is written by ``timm_recal.publish.build_hub_folder``, the one code path for Hub folders
(``timm-recal package-weights`` is ``timm-recal publish --dry-run``).
"""
import argparse
import csv
from pathlib import Path
from typing import Dict, Optional

__all__ = ['read_run', 'package_run']


def _last_row(summary_csv: Path) -> Dict[str, str]:
    if not summary_csv.is_file():
        raise FileNotFoundError(f"{summary_csv} not found: is {summary_csv.parent} a `timm-recal train` run?")
    with open(summary_csv) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{summary_csv} has no epochs")
    return rows[-1]


def read_run(run_dir: str):
    """The final-epoch model of ``run_dir`` with its test metrics and recipe (a ``timm_recal.publish.Source``).

    The final epoch is used, not the best: choosing by test accuracy would overstate it.
    """
    import torch
    from ..publish import PublishError, Source, _build_with_weights, recipe_dict
    run = Path(run_dir)
    ckpt_path = run / 'last.pth.tar'
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"{ckpt_path} not found: is {run_dir} a finished `timm-recal train` run?")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):  # train.py stores its args
            ckpt = torch.load(ckpt_path, map_location='cpu', weights_only=True)
    except Exception as e:
        raise PublishError(f'cannot read {ckpt_path}: {type(e).__name__}: {str(e).splitlines()[0][:200]}') from None
    args = ckpt.get('args')
    arch = ckpt.get('arch') or getattr(args, 'model', None)
    if not arch or not isinstance(ckpt.get('state_dict'), dict):
        raise PublishError(f'{ckpt_path} names no architecture or holds no state_dict')
    row = _last_row(run / 'summary.csv')
    epochs_done = int(row['epoch']) + 1
    total = args.epochs * max(1, getattr(args, 'lr_cycle_limit', 1) or 1) if args is not None else epochs_done
    if epochs_done < total:
        raise ValueError(f"{run_dir}: only {epochs_done} of {total} epochs are done; finish (--resume auto) first")
    model = _build_with_weights(arch, ckpt['state_dict'], str(ckpt_path), arch)
    training = recipe_dict(args) if args is not None else None
    if training is not None:
        training['epochs'] = epochs_done
    metrics = {'top1': float(row['eval_top1']), 'top5': float(row['eval_top5']), 'epochs': epochs_done,
               'source': 'timm-recal train (final epoch)'}
    return Source(model, arch, 'cifar10', metrics, training, 'the checkpoint of the final epoch (no selection on '
                  'the test set)')


def package_run(run_dir: str, out_dir: Optional[str] = None, tag: str = 'cifar10', force: bool = False) -> Path:
    """Write the Hub folder of a finished run (``publish --dry-run``) to ``out_dir`` (default weights/ARCH.TAG)."""
    from ..publish import publish
    result = publish(run_dir, tag=tag, output=out_dir, dry_run=True, force=force)
    return Path(result['folder'])
