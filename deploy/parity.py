"""The parity stage: PyTorch vs an ONNX file under a runtime, on real images through the model's own timm
preprocessing.

Metrics over all images: absolute error of the logits (max, mean), relative error (per image
``max|onnx - torch| / max|torch|``, then max and mean over images), top-1 agreement (same argmax) and top-5
agreement (mean overlap of the two top-5 sets), and non-finite outputs. A run passes when nothing is NaN/Inf,
``max_abs_err <= atol`` AND ``max_rel_err <= rtol``, and the top-1 agreement reaches ``min_top1``; the
defaults per precision are ``TOLERANCES``.

Parity compares artifacts: an ONNX file or a compiled package (a ``.pt2``, under its own runtime at its own
precision) with the PyTorch model its metadata names (``--checkpoint`` or the one recorded at export), or a MODEL
with ``--onnx FILE``. Handed only a MODEL, it calls the export stage (and the
quantize stage for ``--precision fp16/int8``) into a temporary folder (``keep_dir`` keeps the files). INT8 is
calibrated on ``calib_data``, disjoint from ``data``; without it, one folder is split into a calibration part
and a measurement part.
"""
import dataclasses
import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from torch import nn

from timm_recal.outputs import resolve_output, temporary_folder, write_json

from .eager_runtime import amp_precision
from .errors import DeployError
from .export import ExportOptions, export_source
from .images import (bundled_samples_dir, collect_logits, make_dataset, same_folder_by_name, scan_images,
                     spread_indices, split_indices)
from .metadata import read_metadata
from .options import (DataOptions, Int8Options, ModelOptions, OutputOptions, RuntimeOptions, with_overrides)
from .quantize import QuantizeOptions, convert_fp16, quantize_int8
from .results import Result
from .runtimes import (DEFAULT_ONNX_RUNTIME, PRECISIONS, REFERENCE_RUNTIME, open_runtime, package_runtime,
                       runtime_spec)
from .sources import Source, check_pairing, open_source
from .torch_threads import torch_threads

__all__ = ['PRECISIONS', 'TOLERANCES', 'ParityOptions', 'ParityResult', 'compare_logits', 'parity',
           'format_report']

#: default gates per precision: abs AND rel error of the logits, and the minimum top-1 agreement
TOLERANCES: Dict[str, Dict[str, float]] = {
    'fp32': {'atol': 1e-4, 'rtol': 1e-3, 'min_top1': 1.0},
    'fp16': {'atol': 5e-2, 'rtol': 1e-2, 'min_top1': 0.99},
    'int8': {'atol': 2.0, 'rtol': 0.25, 'min_top1': 0.99},
    # a runtime precision of the FP32 file (OpenVINO's BF16 hint): 8-bit mantissas, the same 99% contract
    'bf16': {'atol': 0.5, 'rtol': 0.1, 'min_top1': 0.99},
}


@dataclass
class ParityOptions(ModelOptions, RuntimeOptions, DataOptions, Int8Options, OutputOptions):
    precision: Optional[str] = None
    atol: Optional[float] = None
    rtol: Optional[float] = None
    min_top1: Optional[float] = None
    exporter: str = 'dynamo'
    keep_dir: Optional[str] = None
    progress: bool = False


@dataclass
class ParityResult(Result):
    passed: bool
    precision: str
    tolerances: Dict[str, float]
    n_images: int
    nonfinite: Dict[str, int]
    max_abs_err: float
    mean_abs_err: float
    max_rel_err: float
    mean_rel_err: float
    top1_agreement: float
    top5_agreement: float
    failures: List[str]
    worst_image: Optional[str]
    accuracy: Optional[Dict[str, Optional[float]]]
    model: Dict[str, Any]
    onnx: Optional[str]
    exported: bool
    input_size: List[int]
    data: str
    bundled_data: bool
    label_mode: str
    calibration: Optional[Dict[str, Any]]
    reference: Dict[str, Any]
    runtime: Dict[str, Any]
    seconds: float
    topk: int = 5
    logit_scale: float = float('nan')
    report_path: Optional[str] = None
    ALIASES = {'pytorch': 'reference', 'onnxruntime': 'runtime'}


def compare_logits(ref: np.ndarray, out: np.ndarray) -> Dict[str, Any]:
    """Error and agreement metrics of ``out`` against the reference logits ``ref`` (both ``(N, C)``)."""
    if ref.shape != out.shape:
        raise DeployError(f'PyTorch gives logits {ref.shape} but the runtime {out.shape}')
    finite = np.isfinite(ref).all(1) & np.isfinite(out).all(1)
    metrics: Dict[str, Any] = {
        'n_images': int(ref.shape[0]),
        'nonfinite': {'pytorch': int((~np.isfinite(ref)).sum()), 'onnx': int((~np.isfinite(out)).sum())},
    }
    r, o = ref[finite].astype(np.float64), out[finite].astype(np.float64)
    if len(r) == 0:
        nan = float('nan')
        metrics.update(max_abs_err=nan, mean_abs_err=nan, max_rel_err=nan, mean_rel_err=nan, top1_agreement=0.0,
                       top5_agreement=0.0, worst_index=None)
        return metrics
    diff = np.abs(o - r)
    per_image_abs = diff.max(1)
    per_image_rel = per_image_abs / np.maximum(np.abs(r).max(1), 1e-12)
    k = min(5, r.shape[1])
    top_r, top_o = np.argsort(-r, 1)[:, :k], np.argsort(-o, 1)[:, :k]
    overlap = [len(set(a) & set(b)) / k for a, b in zip(top_r, top_o)]
    metrics.update(
        max_abs_err=float(diff.max()), mean_abs_err=float(diff.mean()),
        max_rel_err=float(per_image_rel.max()), mean_rel_err=float(per_image_rel.mean()),
        top1_agreement=float((top_r[:, 0] == top_o[:, 0]).sum() / ref.shape[0]),
        top5_agreement=float(np.sum(overlap) / ref.shape[0]), topk=k,
        logit_scale=float(np.abs(r).max()), worst_index=int(np.flatnonzero(finite)[int(per_image_abs.argmax())]),
    )
    return metrics


def _failures(m: Dict[str, Any], tol: Dict[str, float]) -> List[str]:
    out = []
    nf = m['nonfinite']
    if nf['pytorch'] or nf['onnx']:
        out.append(f"non-finite logits: {nf['pytorch']} from PyTorch, {nf['onnx']} from the runtime")
    if not m['max_abs_err'] <= tol['atol']:
        out.append(f"max abs error {m['max_abs_err']:.3g} > atol {tol['atol']:.3g}")
    if not m['max_rel_err'] <= tol['rtol']:
        out.append(f"max rel error {m['max_rel_err']:.3g} > rtol {tol['rtol']:.3g}")
    if not m['top1_agreement'] >= tol['min_top1']:
        out.append(f"top-1 agreement {100 * m['top1_agreement']:.2f}% < {100 * tol['min_top1']:.2f}%")
    return out


def _same_or_nested(a: str, b: str) -> bool:
    a, b = os.path.realpath(a), os.path.realpath(b)
    return a == b or a.startswith(b + os.sep) or b.startswith(a + os.sep)


def _accuracy(logits: np.ndarray, labels: np.ndarray) -> Optional[float]:
    ok = (labels >= 0) & (labels < logits.shape[1])
    if labels.size == 0 or not ok.all():
        return None
    return float(100.0 * (logits.argmax(1) == labels).mean())


def _runtime_word(spec: str, o: ParityOptions) -> str:
    """The runtime parity runs: a compiled package's own, else the one asked (or the default ONNX runtime)."""
    return package_runtime(spec) or (o.runtimes or [DEFAULT_ONNX_RUNTIME])[0]


def _check_package(spec: str, onnx_path: Optional[str], o: ParityOptions) -> None:
    """A compiled package is compared with the PyTorch model its metadata records, under its own runtime and at
    the precision it was built for; what would be ignored is refused (before the reference is built)."""
    word = package_runtime(spec)
    if onnx_path is not None:
        raise DeployError(f'{spec} is a compiled package, compared with the model it records; --onnx is for a MODEL')
    if o.runtimes and list(o.runtimes) != [word]:
        raise DeployError(f"{spec} is a compiled package; it runs under {word}, not --runtimes {','.join(o.runtimes)}")
    built = open_source(spec, o).meta['precision']  # reads the metadata only; refuses another --device
    if o.precision is not None and o.precision != built:
        raise DeployError(f'{spec} was compiled for {built}, not --precision {o.precision}: a package runs at the '
                          f'precision it was built for (give --precision {built} or none)')


def _check_options(o: ParityOptions) -> None:
    if o.precision is not None and o.precision not in PRECISIONS:
        raise DeployError(f"--precision must be one of {', '.join(PRECISIONS)}, got {o.precision!r}")
    for name in ('atol', 'rtol'):
        if getattr(o, name) is not None and not getattr(o, name) >= 0:
            raise DeployError(f'--{name} must be >= 0, got {getattr(o, name)}')
    if o.min_top1 is not None and not 0 <= o.min_top1 <= 1:
        raise DeployError(f'--min-top1 must be a percentage between 0 and 100, got {100 * o.min_top1:g}')
    if len(o.runtimes or [DEFAULT_ONNX_RUNTIME]) != 1:
        raise DeployError('parity compares PyTorch with one runtime at a time: give one word with --runtimes')
    spec = runtime_spec((o.runtimes or [DEFAULT_ONNX_RUNTIME])[0])
    if spec.reference:
        raise DeployError(f'{spec.word} is the PyTorch reference parity compares with; choose another runtime')
    if spec.kind == 'model' and o.precision is not None and o.precision not in spec.precisions:
        raise DeployError(f"{spec.word} runs {', '.join(spec.precisions)}, not --precision {o.precision}")
    if o.data is not None:
        scan_images(o.data)  # fail early on a missing or empty folder
    if o.calib_data is not None:
        scan_images(o.calib_data)


def _check_int8_options(o: ParityOptions, ref: Source, onnx_path: Optional[str]) -> None:
    """Refuse INT8 calibration options (``Int8Options``) when this run quantizes nothing, before any export: an
    FP32/FP16 check, an INT8 file (calibrated when it was made), a package or a compiled PyTorch runtime ignored
    them and printed PASSED as if the recipe had been checked."""
    defaults = Int8Options()
    given = [f"--{'no-' if getattr(defaults, f.name) is True else ''}{f.name.replace('_', '-')}"
             for f in dataclasses.fields(Int8Options) if getattr(o, f.name) != getattr(defaults, f.name)]
    if not given:
        return
    if ref.kind == 'package' or runtime_spec(_runtime_word(ref.spec, o)).kind != 'onnx':
        why = f'{ref.spec} runs as it is' if ref.kind == 'package' else f'--runtimes {_runtime_word(ref.spec, o)} ' \
            'runs the PyTorch module'
    else:
        file_precision = read_metadata(onnx_path).get('precision', 'fp32') if onnx_path else 'fp32'
        precision = o.precision or file_precision
        if precision == 'int8' and file_precision == 'fp32':
            return  # parity quantizes the FP32 file: the options shape it
        why = (f'{onnx_path} is already INT8 (calibrated when it was quantized)' if file_precision == 'int8'
               else f'parity calibrates only for --precision int8 of an FP32 file or MODEL, not {precision}')
    raise DeployError(f"{', '.join(given)} {'shapes' if len(given) == 1 else 'shape'} INT8 calibration, which this "
                      f'run does not do: {why}')


@dataclass
class _Candidate:
    """The file parity measures, how it was made, and which images of the folder it may be measured on."""
    path: str
    precision: str
    exported: bool = False
    made_here: bool = False
    calibration: Optional[Dict[str, Any]] = None
    measure_idx: Optional[List[int]] = None
    meta: Dict[str, Any] = field(default_factory=dict)


def _int8_from(fp32: str, out: str, root: str, o: ParityOptions) -> Tuple[Dict[str, Any], Optional[List[int]]]:
    """Quantize ``fp32`` for parity: on ``calib_data``, or on one part of ``root`` (returns the other part)."""
    q = QuantizeOptions(**{k: getattr(o, k) for k in Int8Options.__dataclass_fields__}, force=True,
                        progress=o.progress)
    if o.calib_data is None:
        n = len(scan_images(root)[0])
        calib_idx, measure_idx = split_indices(n, o.calib_images)
        return quantize_int8(fp32, out, root, q, indices=calib_idx, split_of=n).quantization, measure_idx
    if _same_or_nested(o.calib_data, root):
        raise DeployError(f'--calib-data {o.calib_data} overlaps --data {root}; calibrate on disjoint images '
                          '(CIFAR-10: calibrate on train, measure on test)')
    return quantize_int8(fp32, out, o.calib_data, q).quantization, None


def _recorded_folder_is(recorded: str, root: str) -> Tuple[bool, bool]:
    """``(overlaps, same)`` for a calibration folder recorded in a file and the folder ``root``. The record is
    relative to the working folder it was made in, or a bare folder name (no absolute paths are published):
    when it does not resolve here, a folder of the same name is taken to be the same folder."""
    if os.path.exists(recorded):
        return _same_or_nested(recorded, root), os.path.realpath(recorded) == os.path.realpath(root)
    same = same_folder_by_name(recorded, root)
    return same, same


def _recorded_split(c: _Candidate, root: str) -> None:
    """An INT8 file calibrated on part of ``root``: measure on the other part, or refuse an overlap."""
    q = c.meta.get('quantization') or {}
    overlaps, same = _recorded_folder_is(q['calib_data'], root) if q.get('calib_data') else (False, False)
    if not overlaps:
        c.calibration = q or None
        return
    n = len(scan_images(root)[0])
    if q.get('calib_split') and q.get('calib_split_of') == n and same:
        c.measure_idx = split_indices(n, q['calib_images'])[1]
        c.calibration = q
        return
    raise DeployError(f"{c.path} was calibrated on {q['calib_data']}, which overlaps the data measured here "
                      f'({root}); measure on disjoint images')


def _candidate(ref: Source, onnx_path: Optional[str], root: str, work: str, o: ParityOptions) -> _Candidate:
    """The ONNX file to compare: the one given, or one made by the export (and quantize) stages in ``work``."""
    name = (ref.info.get('architecture') or 'model').replace('/', '_')
    if onnx_path is None:
        onnx_path = export_source(ref, os.path.join(work, f'{name}.onnx'),
                                  ExportOptions(exporter=o.exporter, force=True)).output
        c = _Candidate(onnx_path, 'fp32', exported=True, made_here=True)
    else:
        c = _Candidate(onnx_path, 'fp32')
    c.meta = read_metadata(c.path)
    file_precision = c.meta.get('precision', 'fp32')
    c.precision = o.precision or file_precision
    if c.precision == 'bf16':  # a runtime precision: the FP32 file under the runtime's BF16 mode
        if file_precision != 'fp32':
            raise DeployError(f'{c.path} is {file_precision}; --precision bf16 runs the FP32 export')
        return c
    if c.precision == file_precision:
        if c.precision == 'int8':
            _recorded_split(c, root)
        return c
    if file_precision != 'fp32':
        raise DeployError(f'{c.path} is {file_precision}; --precision {c.precision} needs the FP32 export')
    out = os.path.join(work, f'{name}_{c.precision}.onnx')
    if c.precision == 'fp16':
        convert_fp16(c.path, out, force=True)
    else:
        c.calibration, c.measure_idx = _int8_from(c.path, out, root, o)
    c.path, c.made_here = out, True
    return c


def _measure(ref: Source, c: _Candidate, o: ParityOptions):
    """``(reference logits, candidate logits, labels, dataset, reference runner, candidate runner)``."""
    idx = c.measure_idx
    if idx is not None and o.limit is not None:
        idx = [idx[i] for i in spread_indices(len(idx), o.limit)]
    dataset = make_dataset(o.data, ref.data_config, limit=o.limit if idx is None else None, indices=idx,
                           folder_order=o.folder_order)
    from torch.utils.data import DataLoader
    loader = DataLoader(dataset, batch_size=o.batch_size, shuffle=False)
    ref_runner = open_runtime(REFERENCE_RUNTIME, ref.model, precision=amp_precision(o.device) if o.amp else 'fp32',
                              device=o.device, input_size=ref.info['input_size'], threads=o.threads)
    word = _runtime_word(ref.spec, o)
    if ref.kind == 'package' or runtime_spec(word).kind == 'onnx':  # a file: the one the candidate names
        source, kw = c.path, {}
    else:  # a PyTorch runtime (compiled) runs the module itself
        source, kw = ref.model, dict(device=o.device, input_size=ref.info['input_size'], info=ref.info,
                                     compile_timeout=o.compile_timeout)
    runner = open_runtime(word, source, precision=c.precision, threads=o.threads, **kw)
    (r, out), labels = collect_logits(loader, [ref_runner, runner], o.progress, f'parity {c.precision}')
    return r, out, labels, dataset, ref_runner.describe(), runner.describe()


def _tolerances(o: ParityOptions, precision: str) -> Dict[str, float]:
    tol = dict(TOLERANCES[precision])
    tol.update({k: float(getattr(o, k)) for k in ('atol', 'rtol', 'min_top1') if getattr(o, k) is not None})
    return tol


def parity(model_or_onnx: str, onnx_path: Optional[str] = None, options: Optional[ParityOptions] = None, *,
           model: Optional[nn.Module] = None, **overrides) -> ParityResult:
    """Compare PyTorch and a runtime's logits; ``passed`` says if every gate held.

    ``model_or_onnx``: a MODEL spec, an ``.onnx`` file or a compiled package. ``onnx_path``: with a MODEL, compare against this file
    instead of exporting. ``model``: an already built module as the PyTorch side (e.g. randomized weights).
    ``overrides`` set single ``ParityOptions`` fields (``precision``, ``data``, ``output``...).
    """
    o = with_overrides(ParityOptions, options, overrides)
    t_start = time.perf_counter()
    json_path = resolve_output(o.output, o.force, default_name='parity.json', suffix='.json') if o.output else None
    _check_options(o)
    if onnx_path is not None and model_or_onnx.lower().endswith('.onnx'):
        raise DeployError('give either an ONNX file or a MODEL with --onnx, not two ONNX files')
    if onnx_path is not None and package_runtime(onnx_path):
        raise DeployError(f'--onnx takes an ONNX file; compare a compiled package on its own: timm-recal parity '
                          f'{onnx_path}')
    if package_runtime(model_or_onnx):
        _check_package(model_or_onnx, onnx_path, o)
    ref = open_source(model_or_onnx, o, module=model, need_model=True)
    if ref.kind == 'onnx':
        onnx_path = ref.onnx_path
    elif onnx_path is not None:
        check_pairing(ref.info, read_metadata(onnx_path), onnx_path, ref.model)
    _check_int8_options(o, ref, onnx_path)
    root = o.data if o.data is not None else bundled_samples_dir(ref.data_config)
    with temporary_folder('timm_recal_parity_') as tmp:
        work = o.keep_dir or tmp
        if o.keep_dir and os.path.exists(o.keep_dir) and not os.path.isdir(o.keep_dir):
            raise DeployError(f'--keep-dir {o.keep_dir} is a file, not a folder')
        os.makedirs(work, exist_ok=True)
        if ref.kind == 'package':  # the package as it is, at the precision it was built for
            c = _Candidate(ref.spec, ref.meta['precision'])
        elif runtime_spec(_runtime_word(ref.spec, o)).kind == 'onnx':
            c = _candidate(ref, onnx_path, root, work, o)
        else:  # a PyTorch runtime (compiled) runs the module itself
            c = _Candidate(None, o.precision or 'fp32')
        with torch_threads(o.threads):  # the PyTorch side runs with --threads as the runtime does
            r, out, labels, dataset, ref_desc, run_desc = _measure(ref, c, o)
    result = _result(ref, c, o, r, out, labels, dataset, ref_desc, run_desc, root, t_start)
    if json_path:
        result.report_path = json_path  # before the write: the file and --json agree
        write_json(result, json_path, force=True)
    return result


def _result(ref: Source, c: _Candidate, o: ParityOptions, r, out, labels, dataset, ref_desc, run_desc, root,
            t_start) -> ParityResult:
    tol = _tolerances(o, c.precision)
    metrics = compare_logits(r, out)
    worst = metrics.pop('worst_index')
    return ParityResult(
        passed=not _failures(metrics, tol), precision=c.precision, tolerances=tol, **metrics,
        failures=_failures(metrics, tol), worst_image=dataset.samples[worst][0] if worst is not None else None,
        accuracy={'pytorch_top1': _accuracy(r, labels), 'onnx_top1': _accuracy(out, labels)}
        if dataset.labelled else None,
        model=ref.naming, onnx=None if c.path is None or (c.made_here and not o.keep_dir) else os.path.abspath(c.path),
        exported=c.exported, input_size=list(ref.info['input_size']), data=os.path.abspath(root),
        bundled_data=o.data is None, label_mode=dataset.label_mode, calibration=c.calibration,
        reference=ref_desc, runtime=run_desc, seconds=round(time.perf_counter() - t_start, 2))


def format_report(result: ParityResult) -> str:
    """The human-readable summary that ``timm-recal parity`` prints."""
    r, tol, m = result, result['tolerances'], result['model']
    lines = [
        f"parity {r['precision']}: {'PASSED' if r['passed'] else 'FAILED'}  "
        f"({m.get('model_spec') or m.get('architecture')}, weights: {m.get('weights')}, {r['n_images']} images "
        f"from {'bundled samples' if r['bundled_data'] else r['data']})",
        f"  max abs error  {r['max_abs_err']:.3g}  (mean {r['mean_abs_err']:.3g}, atol {tol['atol']:.3g}, "
        f"logit scale {r.get('logit_scale', float('nan')):.3g})",
        f"  max rel error  {r['max_rel_err']:.3g}  (mean {r['mean_rel_err']:.3g}, rtol {tol['rtol']:.3g})",
        f"  top-1 agreement {100 * r['top1_agreement']:.2f}%  (min {100 * tol['min_top1']:.2f}%), "
        f"top-{r.get('topk', 5)} overlap {100 * r['top5_agreement']:.2f}%",
        f"  non-finite logits: PyTorch {r['nonfinite']['pytorch']}, runtime {r['nonfinite']['onnx']}",
    ]
    acc = r.get('accuracy') or {}
    if acc.get('pytorch_top1') is not None:
        lines.append(f"  top-1 accuracy: PyTorch {acc['pytorch_top1']:.2f}%, runtime {acc['onnx_top1']:.2f}%")
    cal = r.get('calibration')
    if cal and cal.get('calib_images'):
        lines.append(f"  INT8 calibrated on {cal['calib_images']} images of {cal.get('calib_data')}"
                     + (' (disjoint split)' if cal.get('calib_split') else ''))
        if cal.get('fp32_layers'):
            lines.append(f"  {len(cal['fp32_layers'])} most quantization-sensitive nodes kept in float")
    lines += [f'  FAIL: {f}' for f in r['failures']]
    if r['failures'] and r.get('worst_image'):
        lines.append(f"  largest error on {r['worst_image']}")
    return '\n'.join(lines)
