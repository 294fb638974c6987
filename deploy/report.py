"""The report stage: Markdown tables and the throughput plot of ``bench`` records, and the ``report.md`` of
``pipeline``.

``timm-recal report table BENCH.json ...`` prints the README's performance table (ratios at each batch size,
measured side by side) from one or more ``timm-recal bench -o`` files; ``timm-recal report details BENCH.json``
the full tables of one (``report``/``report_files``).
"""
import json
import math
import os
import sys
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from timm_recal.outputs import call_atomically, public_paths, resolve_output, to_jsonable, write_json, write_text

from .errors import DeployError
from .malloc_policy import DEFAULT_POLICY
from .recommend import recommendation_markdown
from .runtimes import (DEFAULT_ONNX_RUNTIME, EAGER_PRECISIONS, PRECISIONS, RUNTIMES, build_columns_hook,
                       builder_runtimes, runtime_label, vs_best_eager_kind)

__all__ = ['bench_results_markdown', 'bench_table_markdown', 'machine_line', 'throughput_plot',
           'pipeline_report_markdown', 'write_report', 'report_files', 'check_bench_record', 'main']

_RUNTIME_ORDER = tuple(RUNTIMES)
_PRECISION_ORDER = ('fp32',) + EAGER_PRECISIONS + tuple(p for p in PRECISIONS if p != 'fp32')


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return '-'
    if isinstance(v, bool):
        return 'yes' if v else 'no'
    if isinstance(v, float):
        if v != v:
            return 'nan'
        if abs(v) >= 1000:
            return f'{v:,.0f}'
        if abs(v) >= 100:
            return f'{v:.1f}'
        if v != 0 and abs(v) < 10 ** -digits:
            return f'{v:.2e}'
        return f'{v:.{digits}f}'
    return str(v).replace('|', '\\|')


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join('---' for _ in header) + '|']
    for row in rows:
        lines.append('| ' + ' | '.join(_fmt(c) for c in row) + ' |')
    return '\n'.join(lines)


def _series_key(r: Dict[str, Any]) -> Tuple:
    rt = _RUNTIME_ORDER.index(r['runtime']) if r['runtime'] in _RUNTIME_ORDER else 99
    p = _PRECISION_ORDER.index(r['precision']) if r['precision'] in _PRECISION_ORDER else 99
    return (r['role'] != 'target', r['role'], rt, p)


def _series(record: Dict[str, Any]) -> List[Tuple[Tuple, List[Dict[str, Any]]]]:
    """Results grouped by (role, runtime, precision), in display order, each sorted by batch."""
    groups: Dict[Tuple, List[Dict[str, Any]]] = {}
    for r in record.get('results', []):
        groups.setdefault((r['role'], r['runtime'], r['precision']), []).append(r)
    keys = sorted(groups, key=lambda k: _series_key(dict(role=k[0], runtime=k[1], precision=k[2])))
    return [(k, sorted(groups[k], key=lambda r: r['batch'])) for k in keys]


def _model_name(record: Dict[str, Any], role: str) -> str:
    """Display name of a role's model; the compare model is marked when both have the same name."""
    models = record.get('models') or {}
    m = models.get(role) or {}
    name = m.get('name') or m.get('spec') or role
    if role != 'target':
        t = models.get('target') or {}
        if name == (t.get('name') or t.get('spec')):
            name = f'{name} ({role})'
    return name


def _malloc(threads: Dict[str, Any]) -> str:
    """The malloc policy when freed memory was kept (``bench --keep-freed-memory``); records before it had none."""
    policy = threads.get('malloc')
    return f'; malloc: {policy}' if policy and policy != DEFAULT_POLICY else ''


def machine_line(record: Dict[str, Any]) -> str:
    """One line naming the CPU, threads and library versions of a bench record."""
    m = record.get('machine') or {}
    th = record.get('threads') or {}
    v = m.get('versions') or {}
    flags = ', '.join(m.get('cpu_flags') or []) or 'no AVX2/AVX-512 flags'
    gpu = f"; GPU {m['cuda']}" if m.get('cuda') else ''
    return (f"{m.get('cpu_model', '?')} ({flags}), {m.get('usable_cpus', '?')} usable CPUs{gpu}; threads: torch "
            f"{th.get('torch_intra_op', '?')}, ORT {th.get('ort_intra_op', '?')}{_malloc(th)}; "
            f"torch {v.get('torch', '?')}, "
            f"onnxruntime {v.get('onnxruntime', '?')}, timm {v.get('timm', '?')}; "
            f"1-min load at start {_fmt(m.get('load_avg_1m'))}, CPUs busy with other work "
            f"{_fmt(m.get('busy_cpus_at_start'))}")


def bench_results_markdown(record: Dict[str, Any]) -> str:
    """Throughput, latency and ratio tables of one bench record."""
    batches = record.get('settings', {}).get('batches') or sorted({r['batch'] for r in record.get('results', [])})
    out = ['### Throughput (images/s, median over interleaved repeats)', '']
    rows = []
    for (role, rt, p), rs in _series(record):
        by_b = {r['batch']: r['images_per_s'] for r in rs}
        rows.append([_model_name(record, role), runtime_label(rt), p] + [by_b.get(b) for b in batches])
    out += [_table(['Model', 'Runtime', 'Precision'] + [f'b{b}' for b in batches], rows), '']
    out += ['### Latency per batch (ms)', '']
    rows = []
    for (role, rt, p), rs in _series(record):
        for r in rs:
            lat = r['latency_ms']
            rows.append([_model_name(record, role), runtime_label(rt), p, r['batch'],
                         lat['p50'], lat['p90'], lat['p99'], r['iterations']])
    out += [_table(['Model', 'Runtime', 'Precision', 'Batch', 'p50', 'p90', 'p99', 'Calls'], rows), '']
    ratios = record.get('ratios') or []
    if ratios:
        out += ['### Ratios (images/s of numerator / denominator, same run)', '']
        out += [_table(['Kind', 'Batch', 'Numerator', 'Denominator', 'Ratio'],
                       [[q['kind'], q['batch'], q['numerator'], q['denominator'], f"{q['value']:.2f}x"]
                        for q in ratios]), '']
    s = record.get('settings') or {}
    out.append(f"Settings: warm-up {s.get('warmup')} calls, {s.get('repeats')} interleaved repeats of at least "
               f"{s.get('min_time_s')} s, device {s.get('device')}. Machine: {machine_line(record)}.")
    for note in record.get('notes') or []:
        out.append(f'- note: {note}')
    return '\n'.join(out) + '\n'


def _ratio_value(record: Dict[str, Any], kind: str, role: str, batch: int,
                 runtime: str = DEFAULT_ONNX_RUNTIME) -> Optional[float]:
    for q in record.get('ratios') or []:
        if q['kind'] == kind and q.get('role') == role and q['batch'] == batch \
                and q['numerator'].split('/')[1] == runtime:
            return q['value']
    return None


def _ips(record: Dict[str, Any], role: str, runtime: str, precision: str, batch: int) -> Optional[float]:
    for r in record.get('results') or []:
        if (r['role'], r['runtime'], r['precision'], r['batch']) == (role, runtime, precision, batch):
            return r['images_per_s']
    return None


def bench_table_markdown(records: Sequence[Dict[str, Any]], runtime: str = DEFAULT_ONNX_RUNTIME) -> str:
    """The README's performance table: one row per model and batch size, with the best FP32 eager, ONNX Runtime
    FP32 and INT8 images/s and the two ratios (ORT FP32 / best eager, INT8 / FP32) measured in the same run.

    ``records`` are bench records (dicts, e.g. ``json.load`` of ``timm-recal bench -o`` files); both the target
    and the ``--compare`` model of each get rows.
    """
    rows = []
    machines = []
    for rec in records:
        if rec.get('kind') != 'timm-recal-bench':
            raise ValueError('bench_table_markdown wants timm-recal bench records (JSON of `timm-recal bench -o`)')
        line = machine_line(rec)
        if line not in machines:
            machines.append(line)
        roles = [r for r in ('target', 'compare') if r in (rec.get('models') or {})]
        for role in roles:
            m = rec['models'][role]
            size = m.get('input_size') or []
            for b in sorted({r['batch'] for r in rec.get('results') or [] if r['role'] == role}):
                eager = [(rt, _ips(rec, role, rt, 'fp32', b)) for rt, spec in RUNTIMES.items() if spec.reference]
                eager = [(rt, v) for rt, v in eager if v is not None]
                best_rt, best = max(eager, key=lambda e: e[1]) if eager else (None, None)
                rows.append([
                    _model_name(rec, role), 'x'.join(str(s) for s in size[1:]) or '-', b,
                    f'{_fmt(best)} ({RUNTIMES[best_rt].layout})' if best is not None else '-',
                    _ips(rec, role, runtime, 'fp32', b), _ips(rec, role, runtime, 'int8', b),
                    _x(_ratio_value(rec, vs_best_eager_kind(runtime), role, b, runtime)),
                    _x(_ratio_value(rec, 'int8_vs_fp32', role, b, runtime)),
                ])
    spec = RUNTIMES.get(runtime)
    lab = (spec.short_label or spec.label) if spec else runtime
    header = ['Model', 'Input', 'Batch', 'Best eager FP32 img/s', f'{lab} FP32 img/s', f'{lab} INT8 img/s',
              f'{lab} FP32 / eager', 'INT8 / FP32']
    text = _table(header, rows)
    text += '\n\n' + '\n'.join(f'Measured on: {m}' for m in machines) + '\n'
    return text


def _x(v: Optional[float]) -> str:
    return '-' if v is None else f'{v:.2f}x'


def throughput_plot(record: Dict[str, Any], path: str, title: Optional[str] = None) -> str:
    """PNG of images/s against batch size: one colour per runtime and precision, the target solid (circles)
    and the ``--compare`` (base) model dashed (squares) in the same colour."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    series = _series(record)
    if not series:
        raise ValueError('the bench record has no results to plot')
    palette = plt.get_cmap('tab10').colors
    colour_of: Dict[Tuple[str, str], Any] = {}
    styles = {'target': dict(linestyle='-', marker='o', linewidth=2.0, markersize=6)}
    other = dict(linestyle='--', marker='s', linewidth=1.5, markersize=5)
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    values = []
    for (role, rt, p), rs in series:
        c = colour_of.setdefault((rt, p), palette[len(colour_of) % len(palette)])
        xs, ys = [r['batch'] for r in rs], [r['images_per_s'] for r in rs]
        values += ys
        ax.plot(xs, ys, color=c, **styles.get(role, other))
    batches = sorted({r['batch'] for _, rs in series for r in rs})
    if len(batches) > 1:
        ax.set_xscale('log', base=2)
        ax.set_xlim(batches[0] / 1.3, batches[-1] * 1.3)
    ax.set_xticks(batches)
    ax.set_xticklabels([str(b) for b in batches])
    ax.minorticks_off()
    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) > 30:  # eager b1 vs INT8 b16 of a small net: log reads better
        ax.set_yscale('log')
        from matplotlib.ticker import FuncFormatter

        def minor(v, _):  # label 2x and 5x ticks only
            lead = v / 10 ** math.floor(math.log10(v)) if v > 0 else 0
            return f'{v:g}' if round(lead) in (2, 5) and abs(lead - round(lead)) < 1e-6 else ''
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f'{v:g}'))
        ax.yaxis.set_minor_formatter(FuncFormatter(minor))
    else:
        ax.set_ylim(bottom=0, top=max(values) * 1.08)
    ax.set_xlabel('batch size')
    ax.set_ylabel('images / s' + (', log scale' if ax.get_yscale() == 'log' else '') + ' (higher is better)')
    ax.grid(True, which='major', alpha=0.3)
    cpu = (record.get('machine') or {}).get('cpu_model', '')
    ax.set_title(title or f"Throughput vs batch size, {(record.get('settings') or {}).get('device', 'cpu')} {cpu}",
                 fontsize=10)
    handles = [Line2D([], [], color=c, linewidth=6, label=f'{runtime_label(rt)} {p.upper()}')
               for (rt, p), c in colour_of.items()]
    roles = list(dict.fromkeys(role for (role, _, _), _ in series))
    handles += [Line2D([], [], color='0.25', **styles.get(role, other), label=f'{_model_name(record, role)} ({role})'
                       if role == 'target' or '(' not in _model_name(record, role) else _model_name(record, role))
                for role in roles]
    ax.legend(handles=handles, fontsize=8, loc='upper center', bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(path, format='png', bbox_inches='tight')
    plt.close(fig)
    return path


# --- the pipeline report ------------------------------------------------------------------------------------
def _pct(v: Any) -> str:
    return '-' if v is None else f'{100 * v:.1f}%'


def _parity_rows(parity: Sequence[Dict[str, Any]], record: Dict[str, Any]) -> List[List[Any]]:
    rows = []
    for p in parity:
        r = p.get('result') or {}
        acc = r.get('accuracy') or {}
        rows.append([
            _role_name(record, p['role']), runtime_label(p.get('runtime') or DEFAULT_ONNX_RUNTIME), p['precision'], 'pass' if r.get('passed') else '**FAIL**', r.get('n_images'),
            r.get('max_abs_err'), r.get('max_rel_err'), _pct(r.get('top1_agreement')), _pct(r.get('top5_agreement')),
            '-' if acc.get('pytorch_top1') is None else f"{acc['pytorch_top1']:.1f}% / {acc['onnx_top1']:.1f}%",
            '; '.join(r.get('failures') or []) or '-',
        ])
    return rows


def _role_name(record: Dict[str, Any], role: str) -> str:
    key = 'model_name' if role == 'target' else f'{role}_name'
    return record.get(key) or role


def pipeline_report_markdown(record: Dict[str, Any], png_name: Optional[str] = 'throughput.png') -> str:
    """``report.md`` of a pipeline record: models, files, parity, validation, benchmark and the plot."""
    out = _header_lines(record)
    out += _files_section(record)
    out += _parity_section(record)
    out += _validation_section(record)
    out += _bench_section(record, png_name)
    out += _engines_section(record)  # the serving stages, when --stages named them
    out += _triton_section(record)
    out += _stages_section(record)
    if record.get('recommendation'):
        out += [recommendation_markdown(record['recommendation'], runtime_label)]
    return '\n'.join(out).rstrip() + '\n'


def _header_lines(record: Dict[str, Any]) -> List[str]:
    """Title, notes and the overall status line."""
    title = record.get('model_name') or record.get('model')
    if record.get('compare'):
        title += f" vs {record.get('compare_name') or record.get('compare')}"
    out = [f'# Deploy report: {title}', '']
    for note in record.get('notes') or []:
        out += [f'> **Note:** {note}', '']
    failed = ', '.join(record.get('failed_stages') or [])
    status = 'all checks passed' if record.get('passed') else f'FAILED: {failed or "see below"}'
    out.append(f"Status: **{status}**. Generated by `timm-recal pipeline` in {_fmt(record.get('seconds'), 1)} s.")
    return out


def _files_section(record: Dict[str, Any]) -> List[str]:
    """One row per model role and ONNX file written for it."""
    rows = []
    for role, m in (record.get('models') or {}).items():
        for p, f in (m.get('onnx') or {}).items():
            size = f.get('file_bytes') if isinstance(f, dict) else None
            path = f.get('path') if isinstance(f, dict) else f
            rows.append([role, m.get('spec'), m.get('weights'), 'x'.join(map(str, (m.get('input_size') or [])[1:])),
                         p, f'`{os.path.basename(path)}`', f'{size / 1e6:.2f} MB' if size else '-'])
    return ['', '## Models and files', '',
            _table(['Role', 'Model', 'Weights', 'Input', 'Precision', 'ONNX file', 'Size'], rows), '']


def _parity_section(record: Dict[str, Any]) -> List[str]:
    parity = record.get('parity') or []
    if not parity:
        return []
    return ['## Parity (PyTorch vs each runtime on real images)', '',
            'Logits of the PyTorch model and of each ONNX file on the same preprocessed images; INT8 is '
            'calibrated on images disjoint from those measured.', '',
            _table(['Model', 'Runtime', 'Precision', 'Result', 'Images', 'Max abs err', 'Max rel err', 'Top-1 agree',
                    'Top-5 overlap', 'Top-1 acc PyTorch / runtime', 'Failures'], _parity_rows(parity, record)), '']


def _validation_section(record: Dict[str, Any]) -> List[str]:
    validation = record.get('validate') or []
    if not validation:
        return []
    rows, left_out = [], {}
    for v in validation:
        r = v.get('result') or {}
        rows.append([_role_name(record, v['role']), v['precision'], r.get('n_images', r.get('images')),
                     r.get('top1'), r.get('top5')])
        if v.get('calibration_images_excluded'):
            left_out[_role_name(record, v['role'])] = v['calibration_images_excluded']
    note = ([f"Every row of a model is measured on the images its INT8 file was not calibrated on ("
             + '; '.join(f'{name}: {n} calibration images left out' for name, n in left_out.items()) + ').', '']
            if left_out else [])
    return ['## Validation (accuracy on labelled images)', ''] + note + [
        _table(['Model', 'Runtime / precision', 'Images', 'Top-1 %', 'Top-5 %'], rows), '']


def _bench_section(record: Dict[str, Any], png_name: Optional[str]) -> List[str]:
    bench_rec = record.get('bench')
    if not bench_rec:
        return []
    out = ['## Benchmark', '']
    if png_name:
        out += [f'![throughput vs batch size]({png_name})', '']
    out += ['### Summary (ratios measured side by side in this run)', '',
            bench_table_markdown([bench_rec], runtime=_summary_runtime(bench_rec)).split('\n\nMeasured on:')[0], '']
    out += [bench_results_markdown(bench_rec)]
    return out + _int8_pick_lines(bench_rec)


def _summary_runtime(bench_rec: Dict[str, Any]) -> str:
    """The ONNX runtime of a bench record's summary table: ``DEFAULT_ONNX_RUNTIME`` when the run timed it, else
    the first ONNX runtime it timed, in table order (a run with ``--runtimes eager,openvino`` had a summary of
    ORT columns that were all '-')."""
    timed = {r.get('runtime') for r in bench_rec.get('results') or []}
    onnx = [w for w, spec in RUNTIMES.items() if spec.kind == 'onnx' and w in timed]
    return DEFAULT_ONNX_RUNTIME if DEFAULT_ONNX_RUNTIME in timed or not onnx else onnx[0]


def _engines_section(record: Dict[str, Any]) -> List[str]:
    """The files the runtimes with a builder made (the engine stage), one table for them all: the columns each
    runtime's row fills from its build records (``RuntimeSpec.build_columns``), else the file's name."""
    engines = record.get('engine') or []
    if not engines:
        return []
    first = builder_runtimes()[0]  # the one builder of records written before engine entries named theirs
    words = list(dict.fromkeys(e.get('runtime') or first for e in engines))
    cells = [_build_cells(e.get('runtime') or first, e) for e in engines]
    columns = list(dict.fromkeys(c for row in cells for c in row))
    rows = []
    for e, row in zip(engines, cells):
        rows.append(([runtime_label(e.get('runtime') or first)] if len(words) > 1 else []) + [
            e.get('precision'), e.get('status') if e.get('status') != 'skipped' else f"skipped: {e.get('reason')}",
            *(row.get(c) for c in columns)])
    return [f"## {' and '.join(runtime_label(w) for w in words)} engines", '',
            _table((['Runtime'] if len(words) > 1 else []) + ['Precision', 'Engine'] + columns, rows), '']


def _build_cells(word: str, entry: Dict[str, Any]) -> Dict[str, Any]:
    """``{column: value}`` of one engine entry: its runtime row's ``build_columns`` of the build record, or the
    built file's name for a row without them (a runtime unknown here: the same)."""
    result = entry.get('result') or {}
    hook = build_columns_hook(word) if word in RUNTIMES else None
    if hook is not None:
        return hook(result)
    built = entry.get('file') or result.get('output')
    return {'File': f'`{os.path.basename(built)}`' if built else None}


def _triton_section(record: Dict[str, Any]) -> List[str]:
    triton = record.get('triton')
    if not triton:
        return []
    out = ['## Triton model repository', '']
    if triton.get('status') == 'skipped':
        return out + [f"Skipped ({triton.get('backend')} backend): {triton.get('reason')}", '']
    return out + [f"`{os.path.basename(str(triton.get('repository')))}/{triton.get('model_name')}/` "
                  f"(backend {triton.get('backend')}, max_batch_size {triton.get('max_batch_size')}): "
                  f"config.pbtxt {'parsed into and checked against' if triton.get('validated_with_model_config_pb2') else 'not checked against (tritonclient missing)'} "
                  "Triton's `ModelConfig`; serve with `tritonserver --model-repository "
                  f"{os.path.basename(str(triton.get('repository')))}`.", '']


def _stages_section(record: Dict[str, Any]) -> List[str]:
    stages = record.get('stages') or []
    if not stages:
        return []
    return ['## Stages', '',
            _table(['Stage', 'Role', 'Precision', 'Seconds', 'Result', 'JSON'],
                   [[s['stage'], s.get('role'), s.get('precision'), s.get('seconds'),
                     {'error': f"error: {s.get('error')}", 'skipped': f"skipped: {s.get('reason')}"}.get(
                         s.get('status'), s.get('status')),
                     f"`{os.path.basename(s['json'])}`" if s.get('json') else '-']
                    for s in stages]), '']


def _pick_label(pick: Dict[str, Any]) -> str:
    """The runtime whose ``artifact`` hook made a bench pick: the one the record names, else the table's row with
    that hook (records before the pick named its runtime)."""
    word = pick.get('runtime') or next((w for w, r in RUNTIMES.items() if r.artifact), None)
    return runtime_label(word) if word else 'the runtime'


def _int8_pick_lines(bench_rec: Dict[str, Any]) -> List[str]:
    """Which INT8 file each model ran where a runtime's ``artifact`` hook picked it (OpenVINO: QDQ or NNCF IR),
    and why."""
    out = []
    for role, pick in (bench_rec.get('int8_pick') or {}).items():
        cands = ', '.join(f"{k}: {100 * v['agreement']:.2f}% agreement"
                          + (f", {v['images_per_s']:.1f} img/s" if v.get('images_per_s') is not None else '')
                          for k, v in (pick.get('candidates') or {}).items())
        out.append(f"- {_pick_label(pick)} {str(pick.get('precision', 'int8')).upper()} of "
                   f"{_model_name(bench_rec, role)}: timed the **{pick.get('timed')}** file "
                   f"({pick.get('reason')}; {cands}; agreement on {pick.get('agreement_images', '-')}).")
    return out + [''] if out else []


def write_report(record: Dict[str, Any], output_dir: str, force: bool = False) -> Dict[str, str]:
    """Write ``report.md``, ``report.json`` and (with bench results) ``throughput.png`` into ``output_dir``,
    each whole or not at all. The Markdown is rendered from the record as ``report.json`` holds it (paths made
    public: ``timm_recal.outputs.public_paths``), so neither names a local folder."""
    record = public_paths(to_jsonable(record))
    md = resolve_output(os.path.join(output_dir, 'report.md'), force)
    js = resolve_output(os.path.join(output_dir, 'report.json'), force)
    paths = {'md': md, 'json': js}
    png_name = None
    if (record.get('bench') or {}).get('results'):
        png = resolve_output(os.path.join(output_dir, 'throughput.png'), force)
        name = record.get('model_name') or record.get('model')
        base = record.get('compare_name') or record.get('compare')
        title = (f"{name}" + (f" vs {base} (dashed)" if base else '')
                 + f" - {(record['bench'].get('machine') or {}).get('cpu_model', '')}")
        call_atomically(png, lambda tmp: throughput_plot(record['bench'], tmp, title=title), force=force)
        paths['png'] = png
        png_name = os.path.basename(png)
    write_text(pipeline_report_markdown(record, png_name), md, force=force)
    write_json(dict(record, report={k: os.path.basename(v) for k, v in paths.items()}), js, force=force)
    return paths


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


_TEXT = (lambda v: isinstance(v, str) and v != '', 'a non-empty string')
_NUMBER = (_is_number, 'a finite number')
_COUNT = (_is_count, 'a non-negative integer')
_BATCH = (lambda v: _is_count(v) and v > 0, 'a positive integer')
_DICT = (lambda v: isinstance(v, dict), 'an object')
_LIST = (lambda v: isinstance(v, list), 'a list')
_PAIR = (lambda v: isinstance(v, str) and v.count('/') == 2, "'role/runtime/precision'")
#: the fields of a bench record the report reads: (name, (test, what it must be), required); ``models`` per role,
#: ``results`` and ``ratios`` per entry. Optional ones (older records lack them) are checked when present.
_RECORD_FIELDS = (('models', _DICT, True), ('settings', _DICT, True), ('results', _LIST, True),
                  ('ratios', _LIST, True), ('machine', _DICT, False), ('threads', _DICT, False),
                  ('notes', _LIST, False))
_SETTINGS_FIELDS = (('batches', _LIST, True), ('warmup', _COUNT, True), ('repeats', _BATCH, True),
                    ('min_time_s', _NUMBER, True), ('device', _TEXT, True))
_MODEL_FIELDS = (('input_size', _LIST, False),)
_RESULT_FIELDS = (('role', _TEXT, True), ('runtime', _TEXT, True), ('precision', _TEXT, True), ('batch', _BATCH, True),
                  ('images_per_s', _NUMBER, True), ('latency_ms', _DICT, True), ('iterations', _COUNT, True),
                  ('images_per_s_repeats', _LIST, False))
_LATENCY_FIELDS = (('p50', _NUMBER, True), ('p90', _NUMBER, True), ('p99', _NUMBER, True))
_RATIO_FIELDS = (('kind', _TEXT, True), ('batch', _BATCH, True), ('numerator', _PAIR, True),
                 ('denominator', _PAIR, True), ('value', _NUMBER, True))


def _check_fields(obj: Dict[str, Any], fields, where: str, path: str) -> None:
    for name, (test, what), required in fields:
        if name not in obj:
            if required:
                raise DeployError(f'{path} is not a whole timm-recal bench record: {where}{name} is missing')
            continue
        if not test(obj[name]):
            raise DeployError(f'{path} is not a whole timm-recal bench record: {where}{name} is '
                              f'{json.dumps(obj[name])[:60]}, expected {what}')


def check_bench_record(record: Any, path: str) -> None:
    """Refuse, in one line naming ``path`` and the field, a JSON that is no whole bench record: every field the
    report reads is there and of its type (a record with ``kind`` alone printed ``warm-up None calls``; one
    without ``models`` gave an empty table)."""
    if not isinstance(record, dict) or record.get('kind') != 'timm-recal-bench':
        found = f"kind {record.get('kind')!r}" if isinstance(record, dict) else f'a JSON {type(record).__name__}'
        raise DeployError(f'{path} is not a timm-recal bench record (JSON of `timm-recal bench -o`): it holds '
                          f'{found}')
    _check_fields(record, _RECORD_FIELDS, '', path)
    _check_fields(record['settings'], _SETTINGS_FIELDS, 'settings.', path)
    if not all(_BATCH[0](b) for b in record['settings']['batches']):
        raise DeployError(f'{path} is not a whole timm-recal bench record: settings.batches holds '
                          f"{json.dumps(record['settings']['batches'])[:60]}, expected positive integers")
    if 'target' not in record['models']:
        raise DeployError(f'{path} is not a whole timm-recal bench record: models.target is missing')
    for role, model in record['models'].items():
        _check_fields({role: model}, (((role), _DICT, True),), 'models.', path)
        _check_fields(model, _MODEL_FIELDS, f'models.{role}.', path)
    for i, r in enumerate(record['results']):
        where = f'results[{i}]'
        _check_fields({where: r}, ((where, _DICT, True),), '', path)
        _check_fields(r, _RESULT_FIELDS, f'{where}.', path)
        _check_fields(r['latency_ms'], _LATENCY_FIELDS, f'{where}.latency_ms.', path)
        if r['role'] not in record['models']:
            raise DeployError(f"{path} is not a whole timm-recal bench record: {where}.role is {r['role']!r}, "
                              f"which models does not hold")
        if not all(_is_number(v) for v in r.get('images_per_s_repeats') or []):
            raise DeployError(f'{path} is not a whole timm-recal bench record: {where}.images_per_s_repeats holds '
                              'a value that is no finite number')
    for i, q in enumerate(record['ratios']):
        where = f'ratios[{i}]'
        _check_fields({where: q}, ((where, _DICT, True),), '', path)
        _check_fields(q, _RATIO_FIELDS, f'{where}.', path)


def _check_has_runtime(record: Dict[str, Any], path: str, runtime: str) -> None:
    """Refuse a ``table`` of a runtime the record never timed: its columns were all '-' (exit 0), as if the
    runtime had been timed and had failed; the message lists the ONNX runtimes the record holds."""
    timed = list(dict.fromkeys(r['runtime'] for r in record['results']))
    if runtime not in timed:
        onnx = [w for w in timed if w in RUNTIMES and RUNTIMES[w].kind == 'onnx']
        raise DeployError(f"{path} holds no {runtime} results (it timed {', '.join(timed) or 'nothing'}); "
                          + (f"choose --runtimes {' or '.join(onnx)}" if onnx else 'a table needs an ONNX runtime '
                             'timed beside eager (timm-recal bench FILE.onnx or MODEL)'))


def report_files(kind: str, files: Sequence[str], runtime: str = DEFAULT_ONNX_RUNTIME) -> str:
    """The report of bench JSON ``files``: ``table`` (the README table of them all) or ``details`` (of one)."""
    records = []
    for path in files:
        try:
            with open(path) as f:
                records.append(json.load(f))
        except (OSError, ValueError) as e:
            raise DeployError(f'cannot read bench record {path}: {e}') from None
        check_bench_record(records[-1], path)
        if kind == 'table':
            _check_has_runtime(records[-1], path, runtime)
    try:
        if kind == 'table':
            return bench_table_markdown(records, runtime=runtime)
        return '\n'.join(bench_results_markdown(r) for r in records)
    except (KeyError, ValueError, TypeError, AttributeError) as e:  # a damaged record: one line, no traceback
        raise DeployError(f'not a whole timm-recal bench record ({type(e).__name__}: {e})') from None


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m timm_recal_deploy.report ...``: the same as ``timm-recal report ...``."""
    from timm_recal.cli import main as cli_main
    return cli_main(['report'] + list(sys.argv[1:] if argv is None else argv))


if __name__ == '__main__':
    sys.exit(main())
