"""Learning-rate x batch-size sweeps and the heatmap of Wang & Yuan ("Investigating the effectiveness of feature
recalibration networks on image classification", Figure 1): the best test top-1 of each (lr, batch size) cell,
one panel per model.

A sweep file names a training config (train.py option names, see ``train_configs/``), the models and the grid::

    base_config: ../cifar10/shufflenetv2_cifar.yaml   # relative to the sweep file
    models: [shufflenetv2_cifar, se_shufflenetv2_cifar, sle_shufflenetv2_cifar]
    lr: [1.0e-2, 1.0e-3, 1.0e-4]
    batch_size: [32, 64, 128]
    overrides: {epochs: 100}                          # optional: train.py options for every cell
    seeds: [0, 1]                                     # optional: every cell once per seed
    title: Wang & Yuan, Figure 1                      # optional: heatmap title

Every cell is one ``timm-recal train`` run in ``OUT/<model>/lr<lr>_b<batch>[_s<seed>]/`` with ``--resume auto``,
so a sweep that is stopped continues where it was, and finished cells are skipped. ``parallel`` > 1 trains that
many cells at once, each in its own process (one GPU holds several small runs; a cell that fails is reported, the
others go on; each cell's output goes to ``OUT/logs/``).
"""
import csv
import io
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from ..outputs import OutputError, call_atomically, check_writable_folder, write_json, write_text
from .config import TrainConfig, check_config, check_data, load_config, read_yaml, recorded_path

__all__ = ['SweepSpec', 'Cell', 'load_sweep', 'grid_cells', 'check_overrides', 'cell_config', 'cell_status',
           'check_cells', 'check_sweep_output', 'run_sweep', 'collect_results', 'write_results', 'plot_heatmap']

_KEYS = {'base_config', 'models', 'lr', 'batch_size', 'overrides', 'title', 'seeds'}
_GRID_OWNED = {'model', 'lr', 'batch_size', 'output', 'resume'}  # set per cell by the sweep itself
#: exit status of a cell process whose loss diverged (it wrote failed.json)
_DIVERGED = 3
FAILED_FILE = 'failed.json'


@dataclass
class SweepSpec:
    base_config: str
    models: List[str]
    lrs: List[float]
    batch_sizes: List[int]
    overrides: Dict[str, Any] = field(default_factory=dict)
    title: str = ''
    seeds: List[int] = field(default_factory=list)


@dataclass(frozen=True)
class Cell:
    model: str
    lr: float
    batch_size: int
    seed: Optional[int] = None  # None: the config's seed

    @property
    def dirname(self) -> str:
        seed = '' if self.seed is None else f'_s{self.seed}'
        return os.path.join(self.model, f'lr{self.lr:g}_b{self.batch_size}{seed}')


def _number_list(path: str, key: str, values: Any, kind: type) -> list:
    if not isinstance(values, list) or not values:
        raise ValueError(f"{path}: {key!r} must be a non-empty list")
    out = []
    for v in values:
        try:  # PyYAML reads 1e-3 as a string; accept it as train.py's argparse would
            x = kind(v) if not isinstance(v, bool) else None
        except (TypeError, ValueError):
            x = None
        if x is None or not math.isfinite(x) or x <= 0 or (kind is int and float(v) != x):
            raise ValueError(f"{path}: {key!r} values must be positive {kind.__name__}s, got {v!r}")
        out.append(x)
    if len(set(out)) != len(out):
        raise ValueError(f"{path}: {key!r} has repeated values {values}")
    names = [f'{x:g}' for x in out]  # as the cell folders name them (``Cell.dirname``)
    same = next((n for n in names if names.count(n) > 1), None)
    if same is not None:  # two cells would train into one folder, the second reported done with the first's result
        raise ValueError(f"{path}: {key!r} values {', '.join(str(v) for v, n in zip(values, names) if n == same)} "
                         f"share the cell folder name {key}{same} (6 significant digits): make them differ there")
    return out


def load_sweep(path: str) -> SweepSpec:
    """Read and check a sweep file; ``base_config`` is resolved relative to the sweep file."""
    raw = read_yaml(path, 'sweep file') or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a sweep file is a YAML mapping ({', '.join(sorted(_KEYS))})")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ValueError(f"{path}: unknown sweep key(s) {', '.join(unknown)}; expected {', '.join(sorted(_KEYS))}")
    missing = sorted({'base_config', 'models', 'lr', 'batch_size'} - set(raw))
    if missing:
        raise ValueError(f"{path}: missing {', '.join(missing)}")
    base = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(path)), str(raw['base_config'])))
    if not os.path.isfile(base):
        raise FileNotFoundError(f"{path}: base_config not found: {base}")
    models = raw['models']
    if not isinstance(models, list) or not models or not all(isinstance(m, str) and m for m in models):
        raise ValueError(f"{path}: 'models' must be a non-empty list of model names")
    if len(set(models)) != len(models):
        raise ValueError(f"{path}: 'models' has repeated names")
    overrides = raw.get('overrides') or {}
    if not isinstance(overrides, dict):
        raise ValueError(f"{path}: 'overrides' must be a mapping of train.py options")
    owned = sorted(_GRID_OWNED & set(overrides))
    if owned:
        raise ValueError(f"{path}: overrides may not set {', '.join(owned)} (the sweep sets them per cell)")
    seeds = raw.get('seeds') or []
    if not isinstance(seeds, list) or not all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 2 ** 32
                                              for x in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"{path}: 'seeds' must be a list of distinct integers >= 0, got {seeds!r}")
    if seeds and 'seed' in overrides:
        raise ValueError(f"{path}: set the seed by 'seeds' or by overrides, not both")
    return SweepSpec(
        base_config=base, models=list(models), lrs=_number_list(path, 'lr', raw['lr'], float),
        batch_sizes=_number_list(path, 'batch_size', raw['batch_size'], int), overrides=dict(overrides),
        title=str(raw.get('title') or ''), seeds=list(seeds))


def grid_cells(spec: SweepSpec, models: Optional[Sequence[str]] = None, seeds: Optional[Sequence[int]] = None
               ) -> List[Cell]:
    """Cells in run order: model by model, large lr first, small batch first, then seed by seed."""
    if models:
        unknown = sorted(set(models) - set(spec.models))
        if unknown:
            raise ValueError(f"--models: {', '.join(unknown)} not in the sweep file (it has {', '.join(spec.models)})")
    chosen = [m for m in spec.models if not models or m in models]
    if seeds:
        unknown = sorted(set(seeds) - set(spec.seeds))
        if unknown:
            raise ValueError(f"--seeds: {', '.join(map(str, unknown))} not in the sweep file "
                             f"(it has {', '.join(map(str, spec.seeds)) or 'no seeds list'})")
    seeds = [x for x in spec.seeds if not seeds or x in seeds] or [None]
    return [Cell(m, lr, bs, seed) for m in chosen for lr in spec.lrs for bs in spec.batch_sizes for seed in seeds]


def check_overrides(spec: SweepSpec, overrides: Optional[Dict[str, Any]] = None) -> None:
    """A caller's override the cells would not use is refused: with a ``seeds`` list every cell sets its own seed,
    so ``--seed`` was silently dropped (the file itself may not set both either)."""
    if spec.seeds and (overrides or {}).get('seed') is not None:
        raise ValueError(f"--seed {overrides['seed']}: this sweep file trains every cell with each of its seeds "
                         f"{spec.seeds}; pick some with --seeds, or remove the seeds list to use --seed")


def cell_config(spec: SweepSpec, cell: Cell, out_dir: str, overrides: Optional[Dict[str, Any]] = None) -> TrainConfig:
    """The base config with the sweep's and the caller's overrides, then the cell's model, lr and batch size."""
    check_overrides(spec, overrides)
    values = dict(spec.overrides)
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    owned = sorted(_GRID_OWNED & set(values))
    if owned:
        raise ValueError(f"overrides may not set {', '.join(owned)} (the sweep sets them per cell)")
    values.update(model=cell.model, lr=cell.lr, batch_size=cell.batch_size,
                  output=os.path.join(out_dir, cell.dirname), resume='auto')
    if cell.seed is not None:
        values['seed'] = cell.seed
    return load_config(spec.base_config, values)


def _read_json(path: str) -> Optional[dict]:
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def _summary_best(path: str):
    """(epochs logged, best top-1, its epoch) from a run's summary.csv; a partial run's progress."""
    if not os.path.isfile(path):
        return 0, None, None
    with open(path, newline='') as f:
        rows = [r for r in csv.DictReader(f) if r.get('eval_top1')]
    if not rows:
        return 0, None, None
    best = max(rows, key=lambda r: float(r['eval_top1']))
    return len(rows), float(best['eval_top1']), int(best['epoch'])


def cell_status(cfg: TrainConfig) -> str:
    """'done' (results.json of a run that reached ``cfg.epochs``), 'failed' (diverged before), 'partial' or 'new'."""
    if os.path.isfile(os.path.join(cfg.output, FAILED_FILE)):
        return 'failed'
    result = _read_json(os.path.join(cfg.output, 'results.json'))
    logged, _, _ = _summary_best(os.path.join(cfg.output, 'summary.csv'))
    if result is not None and logged >= result.get('epochs', math.inf) >= cfg.epochs:
        return 'done'
    return 'partial' if logged or os.path.isfile(os.path.join(cfg.output, 'last.pth.tar')) else 'new'


def check_sweep_output(out_dir: str) -> None:
    """The sweep folder can be a folder and can be written (checked before any cell trains)."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise OutputError(f"-o/--output {out_dir} is a file; the sweep folder must be a folder")
    check_writable_folder(out_dir)


def check_cells(spec: SweepSpec, cells: Sequence[Cell], out_dir: str, overrides: Optional[Dict[str, Any]] = None,
                need_data: bool = True) -> List[Tuple[Cell, Optional[TrainConfig], Optional[str]]]:
    """(cell, config, error) for every cell: each cell's model and options checked as ``train`` would check them,
    so a bad cell is found before any cell trains. The data folder (shared by all cells) is checked once."""
    checked = []
    for cell in cells:
        try:
            cfg = cell_config(spec, cell, out_dir, overrides)
            check_config(cfg, need_data=False)
        except (ValueError, RuntimeError, FileNotFoundError) as e:
            checked.append((cell, None, str(e)))
        else:
            checked.append((cell, cfg, None))
    first = next((cfg for _, cfg, _ in checked if cfg is not None), None)
    if need_data and first is not None:
        check_data(first)
        from timm.data import create_dataset
        n_images = len(create_dataset(first.dataset, root=first.data_dir, split=first.train_split, is_training=True))
        checked = [(cell, None, f"batch size {cell.batch_size} is larger than the {n_images} training images of "
                                f"{first.data_dir!r}: no full batch to train on")
                   if cfg is not None and cell.batch_size > n_images else (cell, cfg, error)
                   for cell, cfg, error in checked]
    return checked


def run_sweep(
        spec: SweepSpec,
        out_dir: str,
        overrides: Optional[Dict[str, Any]] = None,
        models: Optional[Sequence[str]] = None,
        log: Callable[[str], None] = print,
        parallel: int = 1,
        seeds: Optional[Sequence[int]] = None,
) -> List[Dict[str, Any]]:
    """Train every unfinished cell (resuming partial ones), then collect and write the results and heatmap.

    A cell whose loss turns non-finite (a too-large lr) is recorded as failed and the sweep goes on; it is not
    retried on the next call (delete its ``failed.json`` to retry). Run one at a time, other errors stop the sweep;
    with ``parallel`` > 1 every cell runs to its end and the sweep fails afterwards, naming the cells that did.
    """
    if parallel < 1:
        raise ValueError(f"--parallel must be >= 1, got {parallel}")
    cells = grid_cells(spec, models, seeds)
    check_sweep_output(out_dir)
    checked = check_cells(spec, cells, out_dir, overrides)
    bad = [(cell, error) for cell, _, error in checked if error]
    if bad:
        cell, error = bad[0]
        more = f" (and {len(bad) - 1} more bad cell(s); --dry-run lists them)" if len(bad) > 1 else ''
        raise ValueError(f"cell {cell.dirname}: {error}{more}; nothing was trained")
    todo = []
    for i, (cell, cfg, _) in enumerate(checked, 1):
        status = cell_status(cfg)
        if status in ('done', 'failed'):
            log(f"[{i}/{len(cells)}] {cell.dirname}: {status}, skipped")
        else:
            todo.append((i, cell, cfg, status))
    errors = _train_parallel(todo, len(cells), out_dir, parallel, log) if parallel > 1 else \
        _train_in_turn(todo, len(cells), log)
    rows = collect_results(spec, out_dir, overrides)
    write_results(spec, rows, out_dir)
    plot_heatmap(rows, os.path.join(out_dir, 'heatmap.png'), title=spec.title)
    if errors:
        names = ', '.join(cell.dirname for cell in errors)
        raise RuntimeError(f"{len(errors)} cell(s) failed: {names} (see {os.path.join(out_dir, 'logs')}); "
                           f"the other cells finished and are in results.json")
    return rows


def _train_in_turn(todo, n_cells: int, log) -> list:
    from .trainer import train
    for i, cell, cfg, status in todo:
        log(f"[{i}/{n_cells}] {cell.dirname}: {'resuming' if status == 'partial' else 'training'}")
        try:
            train(cfg)
        except FloatingPointError as e:
            write_json({'error': str(e)}, os.path.join(cfg.output, FAILED_FILE), force=True)
            log(f"[{i}/{n_cells}] {cell.dirname}: failed ({e})")
    return []


def _cell_process(cfg: TrainConfig, log_path: str) -> None:
    """A cell in its own process: output to its log file; exit 0 trained, ``_DIVERGED`` diverged, 1 any error
    (its one-line reason is the log's last line)."""
    import sys
    from ..outputs import terminate_as_interrupt
    status = 0
    with open(log_path, 'a', buffering=1) as f:
        sys.stdout = sys.stderr = f
        try:
            with terminate_as_interrupt():
                from .trainer import train
                train(cfg)
        except FloatingPointError as e:
            write_json({'error': str(e)}, os.path.join(cfg.output, FAILED_FILE), force=True)
            print(f"failed: {e}", flush=True)
            status = _DIVERGED
        except BaseException as e:  # noqa: BLE001  (reported by the parent from this line)
            reason = str(e).strip().splitlines()[0] if str(e).strip() else ''
            print(f"error: {type(e).__name__}: {reason}", flush=True)
            status = 1
        finally:
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    sys.exit(status)


def _last_line(path: str) -> str:
    try:
        with open(path, errors='replace') as f:
            lines = [l.strip() for l in f.read().replace('\r', '\n').splitlines() if l.strip()]
    except OSError:
        return ''
    return lines[-1][:300] if lines else ''


def _train_parallel(todo, n_cells: int, out_dir: str, parallel: int, log) -> list:
    """Up to ``parallel`` cells at a time, each in a fresh (spawned) process; returns the cells that failed for
    another reason than a diverged loss. Ctrl-C/SIGTERM stops the running cells (each keeps its last epoch)."""
    import multiprocessing as mp
    from multiprocessing.connection import wait
    ctx = mp.get_context('spawn')  # CUDA cannot be forked; each cell gets its own context
    logs = os.path.join(out_dir, 'logs')
    os.makedirs(logs, exist_ok=True)
    pending, running, errors = list(todo), {}, []
    try:
        while pending or running:
            while pending and len(running) < parallel:
                i, cell, cfg, status = pending.pop(0)
                log_path = os.path.join(logs, cell.dirname.replace(os.sep, '__') + '.log')
                proc = ctx.Process(target=_cell_process, args=(cfg, log_path), daemon=False)
                proc.start()
                running[proc.sentinel] = (proc, i, cell, log_path, time.time())
                log(f"[{i}/{n_cells}] {cell.dirname}: {'resuming' if status == 'partial' else 'training'} "
                    f"(process {proc.pid}, log {os.path.relpath(log_path, out_dir)})")
            for sentinel in wait(list(running)):
                proc, i, cell, log_path, t0 = running.pop(sentinel)
                proc.join()
                took = f"{time.time() - t0:.0f} s"
                if proc.exitcode == 0:
                    log(f"[{i}/{n_cells}] {cell.dirname}: done ({took})")
                elif proc.exitcode == _DIVERGED:
                    log(f"[{i}/{n_cells}] {cell.dirname}: failed ({_last_line(log_path)})")
                else:
                    errors.append(cell)
                    reason = _last_line(log_path) or f'exit status {proc.exitcode}'
                    log(f"[{i}/{n_cells}] {cell.dirname}: error after {took} ({reason})")
    finally:
        for proc, *_ in running.values():  # interrupted: stop the cells still running, each as Ctrl-C would
            proc.terminate()
        for proc, *_ in running.values():
            proc.join()
    return errors


def collect_results(spec: SweepSpec, out_dir: str, overrides: Optional[Dict[str, Any]] = None
                    ) -> List[Dict[str, Any]]:
    """One row per cell of the whole grid: best test top-1 so far, its epoch, epochs logged, status."""
    rows = []
    for cell in grid_cells(spec):
        cfg = cell_config(spec, cell, out_dir, overrides)
        logged, best, best_epoch = _summary_best(os.path.join(cfg.output, 'summary.csv'))
        rows.append(dict(model=cell.model, lr=cell.lr, batch_size=cell.batch_size, seed=cfg.seed, best_top1=best,
                         best_epoch=best_epoch, epochs_done=logged, epochs=cfg.epochs, status=cell_status(cfg)))
    return rows


def write_results(spec: SweepSpec, rows: List[Dict[str, Any]], out_dir: str) -> None:
    """results.json (the sweep, its base config as ``recorded_path`` writes it, and the cells) and results.csv."""
    sweep = dict(asdict(spec), base_config=recorded_path(spec.base_config))
    write_json({'sweep': sweep, 'cells': rows}, os.path.join(out_dir, 'results.json'), force=True)
    text = io.StringIO(newline='')
    writer = csv.DictWriter(text, fieldnames=list(rows[0]) if rows else ['model'])
    writer.writeheader()
    writer.writerows(rows)
    write_text(text.getvalue(), os.path.join(out_dir, 'results.csv'), force=True)


def _ordered(values: Iterable) -> list:
    return sorted(set(values))


def plot_heatmap(rows: List[Dict[str, Any]], path: str, title: str = '') -> str:
    """Best test top-1 per (lr, batch size), one panel per model, one colour scale for all panels.

    Unfinished cells are marked with '*', cells without a result are grey; each panel's best cell is boxed.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np

    if not rows:
        raise ValueError("no sweep cells to plot")
    models = list(dict.fromkeys(r['model'] for r in rows))
    lrs = _ordered(r['lr'] for r in rows)[::-1]  # large lr on top
    batches = _ordered(r['batch_size'] for r in rows)
    scores = [r['best_top1'] for r in rows if r['best_top1'] is not None]
    vmin, vmax = (min(scores), max(scores)) if scores else (0.0, 100.0)
    if vmax - vmin < 1e-6:
        vmin, vmax = vmin - 0.5, vmax + 0.5

    size = (2.1 + 1.15 * len(batches) * len(models), 0.9 + 0.75 * len(lrs))
    fig, axes = plt.subplots(1, len(models), figsize=size, squeeze=False, constrained_layout=True)
    cmap = matplotlib.colormaps['viridis'].with_extremes(bad='#d0d0d0')  # grey: no result
    image = None
    unfinished = False
    for ax, model in zip(axes[0], models):
        grid = np.full((len(lrs), len(batches)), np.nan)
        statuses, scored = {}, {}
        for r in rows:  # several seeds of a cell: their mean; the cell is done when all its seeds are
            if r['model'] != model:
                continue
            i, j = lrs.index(r['lr']), batches.index(r['batch_size'])
            if r['best_top1'] is not None:
                scored.setdefault((i, j), []).append(r['best_top1'])
            statuses.setdefault((i, j), []).append(r['status'])
        marks = {ij: next((s for s in v if s != 'done'), 'done') for ij, v in statuses.items()}
        for (i, j), values in scored.items():
            grid[i, j] = float(np.mean(values))
        image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=vmin, vmax=vmax, aspect='auto')
        best = np.unravel_index(np.nanargmax(grid), grid.shape) if np.isfinite(grid).any() else None
        for (i, j), status in marks.items():
            value = grid[i, j]
            if np.isfinite(value):
                star = '' if status == 'done' else '*'
                unfinished |= bool(star)
                text = f'{value:.2f}{star}'
                shade = (value - vmin) / (vmax - vmin)
                color = 'black' if shade > 0.6 else 'white'
            else:
                text, color = ('failed' if status == 'failed' else 'n/a'), 'black'
            ax.text(j, i, text, ha='center', va='center', color=color, fontsize=9,
                    fontweight='bold' if best == (i, j) else 'normal')
        if best is not None:
            ax.add_patch(plt.Rectangle((best[1] - 0.5, best[0] - 0.5), 1, 1, fill=False, lw=2, ec='red'))
        ax.set_xticks(range(len(batches)), [str(b) for b in batches])
        ax.set_yticks(range(len(lrs)), [f'{lr:g}' for lr in lrs])
        ax.set_xlabel('batch size')
        ax.set_title(model, fontsize=10)
    axes[0][0].set_ylabel('learning rate')
    cbar = fig.colorbar(image, ax=axes[0].tolist(), shrink=0.9)
    cbar.set_label('best test top-1 (%)')
    suptitle = title or 'best test top-1 by learning rate and batch size'
    if unfinished:
        suptitle += '   (* unfinished)'
    fig.suptitle(suptitle, fontsize=11)
    try:
        call_atomically(path, lambda tmp: fig.savefig(tmp, dpi=120), force=True)
    finally:
        plt.close(fig)
    return path
