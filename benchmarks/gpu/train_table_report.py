"""The CIFAR-10 table of benchmarks/gpu/train_table.sh: its runs (a `timm-recal sweep` folder) beside Wang & Yuan's
Table 1, with the paired statistics of `timm-recal validate --compare`.

    train_table_report.py best-runs RUNS            -> "model run_folder train_config" per net, the base first
    train_table_report.py table RUNS --compare DIR --sweep SWEEP -o table.json --markdown table.md

The paper's score is the best test top-1 of any epoch ("maximum top1 validation accuracy achieved during
training"); the table gives that and the final epoch's top-1 (the weights folders hold the final epoch).
"""
import argparse
import csv
import json
import os
import statistics
import sys
from typing import Any, Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

#: Wang & Yuan, Table 1 (1.0x ShuffleNetV2 on CIFAR-10, lr 1e-3, batch 64): best test top-1 during training
PAPER = {'shufflenetv2_cifar': 89.97, 'se_shufflenetv2_cifar': 90.26, 'sle_shufflenetv2_cifar': 90.19}


def _cells(runs: str) -> List[Dict[str, Any]]:
    path = os.path.join(runs, 'results.json')
    if not os.path.isfile(path):
        raise SystemExit(f"train_table_report: no sweep results in {runs} (results.json missing)")
    with open(path) as f:
        return json.load(f)['cells']


def _run_dir(runs: str, cell: Dict[str, Any]) -> str:
    from timm_recal.training.sweep import Cell
    return os.path.join(runs, Cell(cell['model'], cell['lr'], cell['batch_size'], cell.get('seed')).dirname)


def _models(cells) -> List[str]:
    return list(dict.fromkeys(c['model'] for c in cells))


def best_runs(runs: str) -> List[str]:
    """Per net (sweep order: the base first), the finished run with the best top-1."""
    cells = _cells(runs)
    lines = []
    for model in _models(cells):
        done = [c for c in cells if c['model'] == model and c['status'] == 'done' and c['best_top1'] is not None]
        if not done:
            print(f"train_table_report: no finished run of {model}", file=sys.stderr)
            continue
        best = max(done, key=lambda c: c['best_top1'])
        config = os.path.join('train_configs', 'cifar10', f'{model}.yaml')
        lines.append(f"{model} {_run_dir(runs, best)} {config}")
    return lines


def _summary(run: str) -> List[Dict[str, str]]:
    path = os.path.join(run, 'summary.csv')
    if not os.path.isfile(path):
        return []
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def _spread(values: List[float]) -> Dict[str, Any]:
    if not values:
        return {'n': 0, 'mean': None, 'std': None, 'min': None, 'max': None}
    return {'n': len(values), 'mean': statistics.fmean(values),
            'std': statistics.stdev(values) if len(values) > 1 else None, 'min': min(values), 'max': max(values)}


def table(args) -> Dict[str, Any]:
    cells = _cells(args.runs)
    nets = []
    for model in _models(cells):
        runs = []
        for c in (c for c in cells if c['model'] == model):
            rows = _summary(_run_dir(args.runs, c))
            speeds = [float(r['train_img_per_s']) for r in rows[1:] or rows if r.get('train_img_per_s')]
            runs.append({'seed': c.get('seed'), 'status': c['status'], 'epochs_done': c['epochs_done'],
                         'best_top1': c['best_top1'], 'best_epoch': c['best_epoch'],
                         'final_top1': float(rows[-1]['eval_top1']) if rows else None,
                         'train_img_per_s_median': statistics.median(speeds) if speeds else None})
        best = _spread([r['best_top1'] for r in runs if r['best_top1'] is not None])
        paper = PAPER.get(model)
        nets.append({'model': model, 'paper_top1': paper, 'best_top1': best,
                     'final_top1': _spread([r['final_top1'] for r in runs if r['final_top1'] is not None]),
                     'mean_minus_paper': None if paper is None or best['mean'] is None else best['mean'] - paper,
                     'runs': runs})
    compare = {}
    if args.compare and os.path.isdir(args.compare):
        for name in sorted(os.listdir(args.compare)):
            if name.endswith('.json'):
                with open(os.path.join(args.compare, name)) as f:
                    compare[name[:-len('.json')]] = json.load(f)
    timings = {}
    for item in args.timings or []:
        key, _, span = item.partition('=')
        start, _, end = span.partition(':')
        timings[key] = round(float(end) - float(start), 1)
    from deploy.timing import machine_info
    return {'kind': 'timm-recal-cifar10-table', 'sweep': args.sweep, 'sweep_exit_status': args.sweep_status,
            'paper': 'Wang & Yuan, Table 1: best test top-1 during training, lr 1e-3, batch 64, 100 epochs',
            'nets': nets, 'paired_vs_base': compare or None,
            'paired_note': None if compare else 'no `timm-recal validate --compare` results',
            'seconds': timings, 'machine': machine_info()}


def _fmt(x, digits=2) -> str:
    return '-' if x is None else f'{x:.{digits}f}'


def markdown(result: Dict[str, Any]) -> str:
    lines = ['| net | paper top-1 | best top-1 mean | spread (std; min-max) | final top-1 mean | runs | img/s (median) |',
             '|---|---:|---:|---:|---:|---:|---:|']
    for n in result['nets']:
        b, f = n['best_top1'], n['final_top1']
        speeds = [r['train_img_per_s_median'] for r in n['runs'] if r['train_img_per_s_median']]
        lines.append(f"| {n['model']} | {_fmt(n['paper_top1'])} | {_fmt(b['mean'])} | {_fmt(b['std'])}; "
                     f"{_fmt(b['min'])}-{_fmt(b['max'])} | {_fmt(f['mean'])} | {b['n']} | "
                     f"{_fmt(statistics.median(speeds) if speeds else None, 0)} |")
    lines.append('')
    lines.append(f"Paired statistics (gate vs base, final-epoch weights, 10,000 test images): "
                 f"{', '.join(result['paired_vs_base']) if result['paired_vs_base'] else result['paired_note']} "
                 f"(full results in table.json).")
    lines.append(f"Seconds: {', '.join(f'{k} {v:g}' for k, v in result['seconds'].items())}.")
    return '\n'.join(lines) + '\n'


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest='cmd', required=True)
    b = sub.add_parser('best-runs')
    b.add_argument('runs')
    t = sub.add_parser('table')
    t.add_argument('runs')
    t.add_argument('--compare')
    t.add_argument('--sweep')
    t.add_argument('--sweep-status', type=int, default=0)
    t.add_argument('--timings', nargs='*')
    t.add_argument('-o', '--output', required=True)
    t.add_argument('--markdown')
    args = p.parse_args()
    if args.cmd == 'best-runs':
        print('\n'.join(best_runs(args.runs)))
        return 0
    from timm_recal.outputs import write_json, write_text
    result = table(args)
    write_json(result, args.output, force=True)
    if args.markdown:
        write_text(markdown(result), args.markdown, force=True)
    print(markdown(result))
    return 0


if __name__ == '__main__':
    sys.exit(main())
