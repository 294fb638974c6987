"""The README's OpenVINO table from ``timm-recal bench --compare`` JSON files: every runtime x precision at each
batch, images/s of the recalibrated model and of its base timed interleaved in the same run, their ratio and
issue 12's goal for it.

    python benchmarks/scripts/ov_table.py benchmarks/openvino/*.json > table.md

Files whose settings time a single INT8 recipe (``--gates-float``, ``--gate-fusion``) add rows named after it;
OpenVINO INT8 rows say which file each side's INT8 pick timed (QDQ or NNCF).
A file that does not record the machine, or whose two sides are not one interleaved run, is refused.
"""
import argparse
import json
import sys
from typing import Any, Dict, List, Tuple

#: issue 12's ratio goals: recal / base, same runtime, precision and batch
GOALS = {'fp32': 0.95, 'bf16': 0.95, 'int8': 0.90}
TRIO_GOALS = {'sle': 0.93}


def _recipe(doc: Dict[str, Any]) -> str:
    """The INT8 recipe a file's quantization used, from the QDQ metadata bench recorded ('' for the default)."""
    q = doc.get('settings', {}).get('int8') or {}
    parts = []
    if q.get('gates_float'):
        parts.append('--gates-float')
    if q.get('gate_fusion'):
        parts.append(f"--gate-fusion {q['gate_fusion']}")
    return ' '.join(parts)


def _picks(doc: Dict[str, Any]) -> Tuple[str, bool]:
    """Which INT8 file each side's OpenVINO pick timed, as '(net QDQ / base NNCF)', and whether they differ:
    when one side's NNCF IR misses the agreement contract, the ratio compares two recipes."""
    pick = doc.get('int8_pick') or {}
    net, base = ((pick.get(side) or {}).get('timed') for side in ('target', 'compare'))
    if not (net and base):
        return '', False
    return f'(net {net.upper()} / base {base.upper()})', net != base


def goal(model: str, precision: str) -> float:
    """Issue 12's minimum ratio for ``model`` against its base at ``precision``."""
    if model.endswith('_cifar'):
        return TRIO_GOALS.get(model.split('_', 1)[0], 0.95)
    return GOALS[precision]


def rows_of(doc: Dict[str, Any]) -> Tuple[str, str, List[Dict[str, Any]]]:
    """``(model, base, rows)``: a row per (runtime, precision) with images/s of both sides per batch."""
    if doc.get('kind') != 'timm-recal-bench' or 'machine' not in doc:
        raise SystemExit('not a timm-recal bench JSON with a machine record')
    models = doc['models']
    if 'compare' not in models:
        raise SystemExit(f"{models['target']['name']}: no --compare model in this file")
    speed: Dict[Tuple[str, str, int, str], float] = {}
    for r in doc['results']:
        speed[(r['runtime'], r['precision'], int(r['batch']), r['role'])] = r['images_per_s']
    recipe = _recipe(doc)
    rows = []
    for rt, prec in dict.fromkeys((k[0], k[1]) for k in speed):
        row = {'runtime': rt, 'precision': prec, 'recipe': recipe if prec == 'int8' else '', 'mixed': False,
               'batches': {}}
        if rt == 'openvino' and prec == 'int8':
            picks, row['mixed'] = _picks(doc)
            row['recipe'] = ' '.join(filter(None, [row['recipe'], picks]))
        for b in doc['settings']['batches']:
            t, c = speed.get((rt, prec, int(b), 'target')), speed.get((rt, prec, int(b), 'compare'))
            if t and c:
                row['batches'][int(b)] = (t, c, t / c)
        rows.append(row)
    return models['target']['name'], models['compare']['name'], rows


def markdown(paths: List[str]) -> str:
    """One table: a row per model x runtime x precision (x INT8 recipe), columns per batch."""
    docs = [json.load(open(p)) for p in paths]
    batches = sorted({int(b) for d in docs for b in d['settings']['batches']})
    head = ['model', 'runtime', 'precision'] + [f'b{b} img/s (base)' for b in batches] + \
        [f'b{b} ratio' for b in batches] + ['goal']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * 3 + '---:|' * (2 * len(batches) + 1)]
    cpus, table = set(), []
    for doc in docs:
        model, base, rows = rows_of(doc)
        m = doc['machine']
        isa = m.get('cpu_isa') or {}
        flags = [k for k, v in isa.items() if v and k != 'amx_usable']
        if isa.get('amx') and isa.get('amx_usable') is False:  # e.g. run under benchmarks/scripts/deny_amx.py
            flags.append('AMX denied to the process: AVX-512 kernels only')
        cpus.add(f"{m['cpu_model']} ({', '.join(flags)}), {doc['threads'].get('torch_intra_op')} threads")
        table += [(model, base, row) for row in rows]
    rt_order, prec_order = ['eager', 'ort', 'openvino'], ['fp32', 'bf16', 'int8']
    table.sort(key=lambda t: (t[1], t[0], rt_order.index(t[2]['runtime']) if t[2]['runtime'] in rt_order else 9,
                              prec_order.index(t[2]['precision']) if t[2]['precision'] in prec_order else 9,
                              t[2]['recipe']))
    for model, base, row in table:
            prec = row['precision'] + (f" {row['recipe']}" if row['recipe'] else '')
            want = goal(model, row['precision'])
            cells = [f'`{model}` / `{base}`', row['runtime'], prec]
            cells += [f'{row["batches"][b][0]:.0f} ({row["batches"][b][1]:.0f})' if b in row['batches'] else '-'
                      for b in batches]
            for b in batches:
                if b not in row['batches']:
                    cells.append('-')
                    continue
                ratio = row['batches'][b][2]
                # eager is the reference (no goal); a ratio of two different INT8 files does not count as met
                met = ratio >= want and row['runtime'] != 'eager' and not row['mixed']
                cells.append(f'**{ratio:.2f}**' if met else f'{ratio:.2f}' + ('†' if row['mixed'] else ''))
            cells.append(f'>= {want:.2f}' if row['runtime'] != 'eager' else '-')
            lines.append('| ' + ' | '.join(cells) + ' |')
    mixed = any(row['mixed'] for _, _, row in table)
    note = (' †: the two sides\' INT8 picks timed different files (QDQ against NNCF: see `int8_pick` in the JSON),'
            ' so the ratio compares two recipes and is not counted as met.' if mixed else '')
    return '\n'.join(lines) + '\n\nMachine: ' + '; '.join(sorted(cpus)) + '. Bold: the goal is met.' + note + '\n'


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('files', nargs='+', help='bench JSON files (timm-recal bench MODEL --compare BASE)')
    sys.stdout.write(markdown(p.parse_args(argv).files))
    return 0


if __name__ == '__main__':
    sys.exit(main())
