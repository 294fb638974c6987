"""`timm-recal sweep`: the sweep file, the grid, resumable runs (finished cells skipped), results.json/csv and
the heatmap of Wang & Yuan's Figure 1."""
import csv
import json
import os
import re

import pytest
import torch

from train_helpers import TINY_MODEL, make_tiny_cifar

BASE = """device_modules: [timm_recal]
model: {model}
num_classes: 10
train_split: train
val_split: test
opt: adam
lr: 1.0e-3
weight_decay: 1.0e-4
batch_size: 64
epochs: 1
sched: constant
warmup_epochs: 0
smoothing: 0.0
color_jitter: 0.0
seed: 5
workers: 0
"""


def _write(tmp_path, sweep_text, base_text=BASE.format(model=TINY_MODEL)):
    (tmp_path / 'configs').mkdir(exist_ok=True)
    (tmp_path / 'configs' / 'base.yaml').write_text(base_text)
    (tmp_path / 'sweeps').mkdir(exist_ok=True)
    path = tmp_path / 'sweeps' / 'grid.yaml'
    path.write_text(sweep_text)
    return str(path)


GRID = f"""base_config: ../configs/base.yaml
models: [{TINY_MODEL}]
lr: [1.0e-2, 1e-3]
batch_size: [4, 8]
title: tiny grid
"""


def test_load_sweep_and_grid(tmp_path):
    from timm_recal.training.sweep import Cell, cell_config, grid_cells, load_sweep
    spec = load_sweep(_write(tmp_path, GRID))
    assert spec.base_config == str(tmp_path / 'configs' / 'base.yaml')  # relative to the sweep file
    assert spec.lrs == [1e-2, 1e-3] and spec.batch_sizes == [4, 8]  # '1e-3' read as a number
    cells = grid_cells(spec)
    assert cells == [Cell(TINY_MODEL, lr, b) for lr in (1e-2, 1e-3) for b in (4, 8)]
    cfg = cell_config(spec, cells[1], str(tmp_path / 'out'), {'epochs': 3, 'data_dir': None})
    assert (cfg.model, cfg.lr, cfg.batch_size, cfg.epochs, cfg.resume) == (TINY_MODEL, 1e-2, 8, 3, 'auto')
    assert cfg.output == str(tmp_path / 'out' / TINY_MODEL / 'lr0.01_b8')
    assert cfg.opt == 'adam' and cfg.weight_decay == 1e-4  # the rest comes from the base config
    with pytest.raises(ValueError, match='not in the sweep'):
        grid_cells(spec, ['resnet50'])


@pytest.mark.parametrize('text,error', [
    (GRID + 'epochs: 3\n', 'unknown sweep key'),
    (GRID.replace('batch_size: [4, 8]\n', ''), 'missing batch_size'),
    (GRID.replace('[1.0e-2, 1e-3]', '[0.01, -1]'), 'positive floats'),
    (GRID.replace('[1.0e-2, 1e-3]', '[fast]'), 'positive floats'),
    (GRID.replace('[4, 8]', '[4, 4]'), 'repeated'),
    (GRID.replace('[1.0e-2, 1e-3]', '[1.0e-3, 1.0000001e-3]'), r'share the cell folder name lr0\.001 '),
    (GRID.replace('[4, 8]', '[4, 8.5]'), 'positive ints'),
    (GRID + 'overrides: {lr: 0.1}\n', 'may not set lr'),
    (GRID.replace(f'[{TINY_MODEL}]', '[]'), 'non-empty list of model names'),
])
def test_sweep_file_errors(tmp_path, text, error):
    from timm_recal.training.sweep import load_sweep
    with pytest.raises(ValueError, match=error):
        load_sweep(_write(tmp_path, text))


def test_missing_files(tmp_path):
    from timm_recal.training.sweep import load_sweep
    with pytest.raises(FileNotFoundError, match='sweep file not found'):
        load_sweep(str(tmp_path / 'nope.yaml'))
    with pytest.raises(FileNotFoundError, match='base_config not found'):
        load_sweep(_write(tmp_path, GRID.replace('../configs/base.yaml', 'missing.yaml')))


def test_dry_run_lists_cells_and_trains_nothing(tmp_path, capsys):
    from timm_recal.cli import main
    out = tmp_path / 'out'
    assert main(['sweep', '-c', _write(tmp_path, GRID), '-o', str(out), '--dry-run']) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 5 and lines[-1].startswith('4 cells (1 models x 2 lr x 2 batch sizes)')
    assert all(l.startswith('new') and TINY_MODEL in l for l in lines[:4])
    assert 'lr 0.01  batch 8' in lines[1]
    assert not out.exists()


def _read_csv(path):
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def test_tiny_sweep_trains_skips_finished_resumes_and_draws(tmp_path, capsys):
    from timm_recal.cli import main
    data = make_tiny_cifar(str(tmp_path / 'data'))
    sweep, out = _write(tmp_path, GRID), tmp_path / 'out'
    run = ['sweep', '-c', sweep, '-o', str(out), '--data-dir', data, '--max-steps-per-epoch', '1', '--threads', '1']
    assert main(run) == 0
    printed = capsys.readouterr().out
    assert printed.count('best top-1') == 4
    results = json.loads((out / 'results.json').read_text())
    assert results['sweep']['lrs'] == [0.01, 0.001]
    assert results['sweep']['base_config'] == 'base.yaml', 'outside the working folder: no absolute path, the name'
    assert str(tmp_path) not in (out / 'results.json').read_text()
    cells = results['cells']
    assert len(cells) == 4 and {c['status'] for c in cells} == {'done'}
    for c in cells:
        cell_dir = out / TINY_MODEL / f"lr{c['lr']:g}_b{c['batch_size']}"
        rows = _read_csv(cell_dir / 'summary.csv')
        assert len(rows) == 1 and float(rows[0]['lr']) == pytest.approx(c['lr'])  # constant lr = the cell's
        assert c['best_top1'] == pytest.approx(float(rows[0]['eval_top1'])) and c['best_epoch'] == 0
        args = torch.load(cell_dir / 'last.pth.tar', map_location='cpu', weights_only=False)['args']
        assert args.batch_size == c['batch_size'] and args.model == TINY_MODEL
    table = _read_csv(out / 'results.csv')
    assert [(float(r['lr']), int(r['batch_size'])) for r in table] == [(0.01, 4), (0.01, 8), (0.001, 4), (0.001, 8)]
    png = (out / 'heatmap.png').read_bytes()
    assert png[:8] == b'\x89PNG\r\n\x1a\n' and len(png) > 10_000

    # again: every cell is finished, nothing trains
    stamp = {p: os.path.getmtime(p) for p in out.glob('*/*/last.pth.tar')}
    assert main(run) == 0
    assert capsys.readouterr().out.count('done, skipped') == 4
    assert stamp == {p: os.path.getmtime(p) for p in out.glob('*/*/last.pth.tar')}

    # more epochs: every cell resumes from its checkpoint and adds one epoch
    assert main(run + ['--epochs', '2']) == 0
    assert capsys.readouterr().out.count('resuming') == 4
    for c in json.loads((out / 'results.json').read_text())['cells']:
        assert (c['epochs_done'], c['epochs'], c['status']) == (2, 2, 'done')


def test_failed_and_unfinished_cells(tmp_path, monkeypatch):
    """A cell whose loss blows up is recorded and not retried; an interrupted cell shows its best so far."""
    import timm_recal.training.trainer as trainer
    from timm_recal.training.sweep import load_sweep, run_sweep
    calls = []

    def fake_train(cfg):
        calls.append((cfg.lr, cfg.batch_size))
        if cfg.lr == 1e-2 and cfg.batch_size == 8:
            raise FloatingPointError('loss is nan at epoch 0, step 3; lower the lr')
        os.makedirs(cfg.output, exist_ok=True)
        epochs = 1 if cfg.lr == 1e-3 and cfg.batch_size == 4 else cfg.epochs  # this one "was interrupted"
        with open(os.path.join(cfg.output, 'summary.csv'), 'w') as f:
            f.write('epoch,train_loss,eval_top1\n')
            for e in range(epochs):
                f.write(f'{e},1.0,{10 * (e + 1) + 1000 * cfg.lr + cfg.batch_size}\n')
        if epochs == cfg.epochs:
            with open(os.path.join(cfg.output, 'results.json'), 'w') as f:
                json.dump({'epochs': cfg.epochs}, f)

    monkeypatch.setattr(trainer, 'train', fake_train)
    spec = load_sweep(_write(tmp_path, GRID))
    data = make_tiny_cifar(str(tmp_path / 'data'), 1, 1)  # the sweep checks the data before any cell
    options = {'epochs': 3, 'data_dir': data}
    logs = []
    rows = run_sweep(spec, str(tmp_path / 'out'), options, log=logs.append)
    assert len(calls) == 4 and any('failed (loss is nan' in l for l in logs)
    by_cell = {(r['lr'], r['batch_size']): r for r in rows}
    assert by_cell[1e-2, 8]['status'] == 'failed' and by_cell[1e-2, 8]['best_top1'] is None
    assert by_cell[1e-3, 4]['status'] == 'partial' and by_cell[1e-3, 4]['best_top1'] == pytest.approx(15.0)
    assert by_cell[1e-2, 4]['status'] == 'done' and by_cell[1e-2, 4]['best_top1'] == pytest.approx(44.0)
    assert by_cell[1e-2, 4]['best_epoch'] == 2
    calls.clear()
    run_sweep(spec, str(tmp_path / 'out'), options, log=logs.append)
    assert calls == [(1e-3, 4)], 'done and failed cells are skipped, the unfinished one resumes'
    assert (tmp_path / 'out' / 'heatmap.png').is_file()


def test_heatmap_panels(tmp_path):
    """One panel per model, lr on the vertical axis (largest on top), batch sizes across, values written in."""
    from timm_recal.training.sweep import plot_heatmap
    import matplotlib.image as mpimg
    rows = [dict(model=m, lr=lr, batch_size=b, best_top1=(None if (m, lr, b) == ('b', 1e-4, 128) else
                                                         80 + 10 * (lr == 1e-3) + b / 64 + (m == 'b')),
                 status='done' if lr != 1e-2 else 'partial')
            for m in ('a', 'b', 'c') for lr in (1e-2, 1e-3, 1e-4) for b in (32, 64, 128)]
    path = plot_heatmap(rows, str(tmp_path / 'sub' / 'heat.png'), title='three panels')
    image = mpimg.imread(path)
    assert image.shape[1] > 2.5 * image.shape[0], 'three panels side by side'
    with pytest.raises(ValueError, match='no sweep cells'):
        plot_heatmap([], str(tmp_path / 'x.png'))


def test_bad_cell_is_found_before_any_cell_trains(tmp_path, capsys):
    """An unknown model (second in the sweep), an impossible option or a batch larger than the data stops the
    sweep before the first cell trains: one error line, exit 2, no folder; --dry-run marks the bad cells."""
    from timm_recal.cli import main
    data = make_tiny_cifar(str(tmp_path / 'data'), train_per_class=1, test_per_class=1)
    out = tmp_path / 'out'
    bad_model = _write(tmp_path, GRID.replace(f'[{TINY_MODEL}]', f'[{TINY_MODEL}, resnet20_cifr]'))
    common = ['-o', str(out), '--data-dir', data, '--max-steps-per-epoch', '1', '--threads', '1']
    assert main(['sweep', '-c', bad_model] + common) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'cell resnet20_cifr/lr0.01_b4: unknown model' in err, err
    assert 'did you mean resnet20_cifar' in err and 'nothing was trained' in err
    assert not out.exists()

    assert main(['sweep', '-c', bad_model, '-o', str(out), '--dry-run']) == 2
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert [line.split()[0] for line in lines[:8]] == ['new'] * 4 + ['error'] * 4
    assert "unknown model 'resnet20_cifr'" in lines[4]
    assert captured.err.strip() == 'timm-recal sweep: error: 4 of 8 cells cannot train (marked \'error\' above)'
    assert not out.exists()

    assert main(['sweep', '-c', _write(tmp_path, GRID), '-o', str(out), '--plot-only']) == 2
    assert 'no cell of this sweep has trained' in capsys.readouterr().err
    assert not out.exists()

    for grid, argv, message in ((GRID, ['--epochs', '0'], 'epochs (--epochs) must be >= 1, got 0'),
                                (GRID, ['--workers', '-2'], 'workers (--workers) must be >= 0'),
                                (GRID.replace('[4, 8]', '[4, 64]'), [],  # 1 image per class
                                 f'cell {TINY_MODEL}/lr0.01_b64: batch size 64 is larger than the 10 training')):
        assert main(['sweep', '-c', _write(tmp_path, grid)] + common + argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
        assert not out.exists()


def test_failed_cell_leaves_no_empty_folder(tmp_path, monkeypatch):
    """A cell that fails in its first epoch stops the sweep: its folder (and its model's, made for it) are gone;
    the cells before it keep their results."""
    import timm_recal.training.trainer as trainer
    from timm_recal.training.sweep import load_sweep, run_sweep
    data = make_tiny_cifar(str(tmp_path / 'data'))
    real_train = trainer.train

    def train_or_fail(cfg):
        if cfg.batch_size == 8:
            monkeypatch.setattr(trainer, '_append_summary', _interrupt)
        return real_train(cfg)
    monkeypatch.setattr(trainer, 'train', train_or_fail)
    spec = load_sweep(_write(tmp_path, GRID.replace('lr: [1.0e-2, 1e-3]', 'lr: [1.0e-2]')))
    out = tmp_path / 'out'
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, str(out), {'data_dir': data, 'max_steps_per_epoch': 1, 'threads': 1}, log=lambda s: None)
    assert sorted(os.listdir(out / TINY_MODEL)) == ['lr0.01_b4'], 'the b8 cell left no folder'
    assert (out / TINY_MODEL / 'lr0.01_b4' / 'results.json').is_file()


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt('stopped')


def test_parallel_cells_with_seeds_and_device_data(tmp_path, capsys):
    """--parallel 2: the cells train side by side in their own processes on the device data path (one seed each);
    a cell that fails is reported by name with its reason, the other finishes and both are in results.json."""
    from timm_recal.cli import main
    data = make_tiny_cifar(str(tmp_path / 'data'), 4, 1)
    grid = f"""base_config: ../configs/base.yaml
models: [{TINY_MODEL}]
lr: [1.0e-3]
batch_size: [4]
seeds: [1, 2]
"""
    sweep, out = _write(tmp_path, grid), tmp_path / 'out'
    (out / TINY_MODEL / 'lr0.001_b4_s2' / 'summary.csv').mkdir(parents=True)  # this cell cannot log its epoch
    run = ['sweep', '-c', sweep, '-o', str(out), '--data-dir', data, '--max-steps-per-epoch', '1', '--threads', '1',
           '--parallel', '2', '--data-path', 'device', '--data-cache', str(tmp_path / 'cache')]
    assert main(run) != 0
    printed, err = capsys.readouterr()
    assert re.search(r"error: 1 cell\(s\) failed: .*lr0.001_b4_s2 \(see .*logs\); the other cells finished", err)
    assert 'lr0.001_b4_s1: done' in printed
    assert re.search(r'lr0.001_b4_s2: error after \d+ s \(error: IsADirectoryError: .*summary.csv', printed)
    cells = {c['seed']: c for c in json.loads((out / 'results.json').read_text())['cells']}
    assert cells[1]['status'] == 'done' and cells[2]['status'] == 'new'
    result = json.loads((out / TINY_MODEL / 'lr0.001_b4_s1' / 'results.json').read_text())
    assert result['data_path'] == 'device'
    args = torch.load(out / TINY_MODEL / 'lr0.001_b4_s1' / 'last.pth.tar', map_location='cpu', weights_only=False)['args']
    assert args.seed == 1
    assert sorted(p.name for p in (out / 'logs').iterdir()) == [f'{TINY_MODEL}__lr0.001_b4_s1.log',
                                                                 f'{TINY_MODEL}__lr0.001_b4_s2.log']


def test_seeds_multiply_the_grid_and_can_be_chosen(tmp_path):
    from timm_recal.training.sweep import Cell, cell_config, grid_cells, load_sweep
    spec = load_sweep(_write(tmp_path, GRID + 'seeds: [7, 8]\n'))
    cells = grid_cells(spec)
    assert len(cells) == 8 and cells[:2] == [Cell(TINY_MODEL, 1e-2, 4, 7), Cell(TINY_MODEL, 1e-2, 4, 8)]
    cfg = cell_config(spec, cells[1], str(tmp_path / 'out'))
    assert cfg.seed == 8 and cfg.output == str(tmp_path / 'out' / TINY_MODEL / 'lr0.01_b4_s8')
    assert {c.seed for c in grid_cells(spec, seeds=[8])} == {8}
    with pytest.raises(ValueError, match='--seeds: 9 not in the sweep file'):
        grid_cells(spec, seeds=[9])
    for bad in ('seeds: [1, 1]\n', 'seeds: [-1]\n', 'seeds: 3\n', 'seeds: [1]\noverrides: {seed: 2}\n'):
        with pytest.raises(ValueError, match='seed'):
            load_sweep(_write(tmp_path, GRID + bad))


def test_flags_the_sweep_would_not_use_are_refused(tmp_path, capsys):
    """--seed on a sweep with a seeds list was silently dropped (every cell sets its own seed), and --plot-only
    beside --dry-run was silently ignored; both are refused before anything is written."""
    from timm_recal.cli import main
    from timm_recal.training.sweep import Cell, cell_config, load_sweep
    sweep, out = _write(tmp_path, GRID + 'seeds: [7, 8]\n'), tmp_path / 'out'
    assert main(['sweep', '-c', sweep, '-o', str(out), '--dry-run', '--seed', '3']) == 2
    err = capsys.readouterr().err
    assert '--seed 3: this sweep file trains every cell with each of its seeds [7, 8]; pick some with --seeds' in err
    assert main(['sweep', '-c', sweep, '-o', str(out), '--dry-run', '--plot-only']) == 2
    assert 'not allowed with argument --dry-run' in capsys.readouterr().err
    assert not out.exists()
    spec = load_sweep(sweep)
    with pytest.raises(ValueError, match='--seed 3: this sweep file'):
        cell_config(spec, Cell(TINY_MODEL, 1e-2, 4, 7), str(out), {'seed': 3})
    assert main(['sweep', '-c', sweep, '-o', str(out), '--dry-run', '--seeds', '8']) == 0  # the way to pick a seed
    assert main(['sweep', '-c', _write(tmp_path, GRID), '-o', str(out), '--dry-run', '--seed', '3']) == 0
