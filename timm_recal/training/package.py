"""Turn a finished training run into a Hub-ready weights folder (``weights/<arch>.<tag>/``)."""
import csv
import os
from pathlib import Path
from typing import Any, Dict, Optional

import torch

__all__ = ['package_run']

_DESCRIPTIONS = {
    '': 'ShuffleNetV2 (Ma et al.)', 'se_': 'ShuffleNetV2 with Squeeze-and-Excitation gates (Wang & Yuan)',
    'sle_': 'ShuffleNetV2 with Skip-Layer Excitation (Wang & Yuan)', 'ab_': 'ShuffleNetV2 with Accuracy Booster gates',
    'abplus_': 'ShuffleNetV2 with AB-Plus gates',
}
#: Wang & Yuan, Table 1 (ShuffleNetV2 1.0x, Adam 1e-3, batch 64, 100 epochs)
_PAPER_TOP1 = {'': 89.97, 'se_': 90.26, 'sle_': 90.19}


def _last_row(summary_csv: Path) -> Dict[str, str]:
    with open(summary_csv) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{summary_csv} has no epochs")
    return rows[-1]


def _cycles(args) -> str:
    limit = getattr(args, 'lr_cycle_limit', 1) or 1
    if limit <= 1:
        return ''
    return f" in {limit} cycles (each restart at x{getattr(args, 'lr_cycle_decay', 0.5)} the peak lr)"


def _gate_prefix(arch: str) -> str:
    for prefix in ('abplus_', 'ab_', 'sle_', 'se_'):
        if arch.startswith(prefix):
            return prefix
    return ''


def package_run(run_dir: str, out_dir: Optional[str] = None, tag: str = 'cifar10', force: bool = False) -> Path:
    """Load the final-epoch checkpoint of ``run_dir`` and write it with a model card and metrics.

    The final epoch is used, not the best: choosing by test accuracy would overstate it.
    """
    import timm
    import timm_recal  # noqa: F401
    from ..hub import hub_repo_id, render_card, save_weights_folder
    from ..registry import model_paper

    run = Path(run_dir)
    ckpt_path = run / 'last.pth.tar'
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"{ckpt_path} not found: is {run_dir} a finished `timm-recal train` run?")
    ckpt = torch.load(ckpt_path, map_location='cpu', weights_only=False)
    args = ckpt.get('args')
    arch = ckpt.get('arch') or getattr(args, 'model')
    row = _last_row(run / 'summary.csv')
    epochs_done = int(row['epoch']) + 1
    total = args.epochs * max(1, getattr(args, 'lr_cycle_limit', 1) or 1) if args is not None else epochs_done
    if epochs_done < total:
        raise ValueError(f"{run_dir}: only {epochs_done} of {total} epochs are done; finish (--resume auto) first")

    model = timm.create_model(arch, num_classes=ckpt['state_dict'][
        [k for k in ckpt['state_dict'] if k.endswith('fc.weight')][-1]].shape[0])
    model.load_state_dict(ckpt['state_dict'])
    model.eval()
    repo_id = hub_repo_id(arch, tag)
    model.pretrained_cfg = dict(model.pretrained_cfg, architecture=arch, tag=tag, hf_hub_id=repo_id)

    params = sum(p.numel() for p in model.parameters())
    gmacs = 'n/a'
    try:
        from ptflops import get_model_complexity_info
        macs, _ = get_model_complexity_info(
            model, tuple(model.pretrained_cfg['input_size']), as_strings=False, print_per_layer_stat=False,
            verbose=False, backend='pytorch', backend_specific_config={'count_functional': False})
        gmacs = f'{macs / 1e9:.4f}'
    except ImportError:
        pass
    prefix = _gate_prefix(arch)
    top1, top5 = float(row['eval_top1']), float(row['eval_top5'])
    schedule = (f"{epochs_done} epochs, {args.opt} (momentum {args.momentum}), lr {args.lr}, batch {args.batch_size}, "
                f"weight decay {args.weight_decay}, {args.sched} schedule"
                f"{_cycles(args)} with {args.warmup_epochs} warm-up epoch(s), "
                f"4-pixel pad + random 32x32 crop + horizontal flip, `timm-recal train` on a 2-core CPU"
                if args is not None else 'see the training run')
    paper = _PAPER_TOP1.get(prefix)
    comparison = (f"For reference, Wang & Yuan (Table 1) report {paper:.2f}% for the 1.0x model after 100 epochs of "
                  f"Adam on the original CIFAR-10; this model is {'the 0.5x' if 'x0_5' in arch else 'a'} network "
                  f"trained {epochs_done} epochs, so expect a lower number."
                  if paper is not None else '')
    card = render_card('cifar10.md', dict(
        repo_id=repo_id, arch=arch, tag=tag, license=model.pretrained_cfg.get('license', 'apache-2.0'),
        description=_DESCRIPTIONS.get(prefix, arch), paper=model_paper(arch), params_m=f'{params / 1e6:.3f}',
        gmacs=gmacs, input_size='x'.join(map(str, model.pretrained_cfg['input_size'][1:])), schedule=schedule,
        top1=f'{top1:.2f}', top5=f'{top5:.2f}', paper_comparison=comparison))
    metrics = {'dataset': 'cifar10', 'split': 'test', 'n_images': 10000, 'top1': top1, 'top5': top5,
               'epochs': epochs_done, 'source': 'timm-recal train (final epoch)', 'params': params}
    out = Path(out_dir) if out_dir else Path('weights') / f'{arch}.{tag}'
    return save_weights_folder(model, out, card, metrics=metrics, force=force)
