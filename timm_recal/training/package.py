"""``package_run``: the Hub-ready weights folder of a finished ``timm-recal train`` run.

The folder is written by ``timm_recal.publish`` (``build_hub_folder``, the one code path for Hub folders; a run
folder is one of its sources, ``read_run``): ``timm-recal package-weights`` is ``timm-recal publish --dry-run``.
"""
from pathlib import Path
from typing import Optional

__all__ = ['package_run']


def package_run(run_dir: str, out_dir: Optional[str] = None, tag: str = 'cifar10', force: bool = False) -> Path:
    """Write the Hub folder of a finished run (``publish --dry-run``) to ``out_dir`` (default weights/ARCH.TAG)."""
    from ..publish import publish
    result = publish(run_dir, tag=tag, output=out_dir, dry_run=True, force=force)
    return Path(result['folder'])
