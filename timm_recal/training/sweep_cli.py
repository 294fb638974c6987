"""``timm-recal sweep``: argument definitions (no heavy imports here) and the command."""
import argparse

__all__ = ['add_parser', 'run_sweep_command']

#: command-line flag -> training option applied to every cell
_OVERRIDES = ('data_dir', 'epochs', 'workers', 'device', 'threads', 'seed', 'max_steps_per_epoch', 'amp',
              'channels_last', 'data_path', 'data_cache', 'amp_dtype', 'torchcompile', 'torchcompile_mode')


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        'sweep', help='train a learning-rate x batch-size grid and draw the best-accuracy heatmap',
        description='Run every (model, lr, batch size) cell of a sweep file with `timm-recal train` (resumable: '
                    'finished cells are skipped), then write results.json, results.csv and heatmap.png '
                    '(Wang & Yuan, Figure 1) into the output folder.')
    p.add_argument('--config', '-c', required=True, help='sweep YAML (train_configs/sweeps/...)')
    p.add_argument('-o', '--output', required=True, help='sweep folder: one run folder per cell, results, heatmap')
    mode = p.add_mutually_exclusive_group()  # together, --dry-run won and --plot-only was silently dropped
    mode.add_argument('--dry-run', action='store_true', help='list the cells and their state; train nothing')
    mode.add_argument('--plot-only', action='store_true', help='collect the results and redraw; train nothing')
    p.add_argument('--models', nargs='+', help='train only these models of the sweep (the results cover all)')
    p.add_argument('--seeds', nargs='+', type=int, help="train only these of the sweep file's seeds")
    p.add_argument('--data-dir', dest='data_dir')
    p.add_argument('--epochs', type=int)
    p.add_argument('--workers', '-j', type=int)
    p.add_argument('--device', choices=['cpu', 'cuda'])
    p.add_argument('--threads', type=int, help='torch CPU threads')
    p.add_argument('--seed', type=int)
    p.add_argument('--max-steps-per-epoch', dest='max_steps_per_epoch', type=int, help='cap (smoke runs)')
    p.add_argument('--amp', action='store_true', default=None, help='mixed precision (bf16 on CPU, fp16 on CUDA)')
    p.add_argument('--channels-last', dest='channels_last', action='store_true', default=None)
    p.add_argument('--parallel', type=int, default=1, metavar='N',
                   help='train N cells at once, each in its own process (several small runs share one GPU); '
                        'a failed cell is reported and the others go on')
    from .cli import add_fast_arguments
    add_fast_arguments(p)
    p.set_defaults(func=run_sweep_command)
    return p


def run_sweep_command(args: argparse.Namespace) -> int:
    """Every cell is checked (model, options, data folder) before the first one trains; ``--dry-run`` lists the
    cells with their state, a bad cell as ``error`` with the reason, and then fails if any cell is bad."""
    import os
    from ..outputs import terminate_as_interrupt
    from . import sweep
    spec = sweep.load_sweep(args.config)
    overrides = {k: getattr(args, k) for k in _OVERRIDES if getattr(args, k) is not None}
    sweep.check_overrides(spec, overrides)
    cells = sweep.grid_cells(spec, args.models, args.seeds)
    sweep.check_sweep_output(args.output)
    if args.parallel < 1:
        raise ValueError(f"--parallel must be >= 1, got {args.parallel}")
    if args.dry_run:
        checked = sweep.check_cells(spec, cells, args.output, overrides, need_data=False)
        for cell, cfg, error in checked:
            if error:
                print(f"{'error':8s} {cell.model}  lr {cell.lr:g}  batch {cell.batch_size}: {error}")
                continue
            print(f"{sweep.cell_status(cfg):8s} {cell.model}  lr {cell.lr:g}  batch {cell.batch_size}  "
                  f"{'' if cell.seed is None else f'seed {cell.seed}  '}"
                  f"epochs {cfg.epochs}  -> {cfg.output}")
        seeds = f" x {len(spec.seeds)} seeds" if spec.seeds else ''
        print(f"{len(cells)} cells ({len(spec.models)} models x {len(spec.lrs)} lr x {len(spec.batch_sizes)} "
              f"batch sizes{seeds}); base config {spec.base_config}")
        bad = sum(1 for _, _, error in checked if error)
        if bad:
            raise ValueError(f"{bad} of {len(cells)} cells cannot train (marked 'error' above)")
        good = next((cfg for _, cfg, _ in checked if cfg is not None), None)
        if good is not None and good.data_dir:
            from .config import check_data
            check_data(good)
        return 0
    if args.plot_only:
        rows = sweep.collect_results(spec, args.output, overrides)
        if not any(r['epochs_done'] or r['status'] == 'failed' for r in rows):
            raise ValueError(f"--plot-only: no cell of this sweep has trained in {args.output} yet; nothing to plot")
        sweep.write_results(spec, rows, args.output)
        sweep.plot_heatmap(rows, os.path.join(args.output, 'heatmap.png'), title=spec.title)
    else:
        with terminate_as_interrupt():
            rows = sweep.run_sweep(spec, args.output, overrides, models=args.models, parallel=args.parallel,
                                   seeds=args.seeds)
    for r in rows:
        score = f"{r['best_top1']:.2f}" if r['best_top1'] is not None else '-'
        seed = '' if r['seed'] is None or not spec.seeds else f"  seed {r['seed']}"
        print(f"{r['model']}  lr {r['lr']:g}  batch {r['batch_size']}{seed}: best top-1 {score} ({r['status']})")
    print(f"results: {os.path.join(args.output, 'results.csv')}; heatmap: {os.path.join(args.output, 'heatmap.png')}")
    return 0
