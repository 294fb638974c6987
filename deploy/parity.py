"""PyTorch vs ONNX Runtime on real images, through the model's own timm preprocessing.

Metrics over all images: absolute error of the logits (max, mean), relative error (per image
``max|onnx - torch| / max|torch|``, then max and mean over images), top-1 agreement (same argmax) and top-5
agreement (mean overlap of the two top-5 sets), and non-finite outputs. A run passes when nothing is NaN/Inf,
``max_abs_err <= atol`` AND ``max_rel_err <= rtol``, and the top-1 agreement reaches ``min_top1``; the
defaults per precision are ``TOLERANCES``.

``MODEL`` runs export (a temporary file unless ``onnx_path``/``keep_dir``), then converts to the requested
precision; an ONNX file is compared with the PyTorch model its metadata names (``--checkpoint`` or the one
recorded at export). INT8 is calibrated on ``calib_data`` (``int8_options`` go to ``quantize_int8``), which must
be disjoint from ``data``; without it, one folder is split into a calibration part and a measurement part.
"""
import os
import tempfile
import time
from typing import Any, Dict, List, Optional

import numpy as np

from .errors import DeployError
from .images import make_dataset, scan_images, spread_indices, bundled_samples_dir
from .model_io import is_onnx_path, load_model
from .outputs import resolve_output, write_json

__all__ = ['PRECISIONS', 'TOLERANCES', 'compare_logits', 'parity', 'format_report']

PRECISIONS = ('fp32', 'fp16', 'int8')
#: default gates per precision: abs AND rel error of the logits, and the minimum top-1 agreement
TOLERANCES: Dict[str, Dict[str, float]] = {
    'fp32': {'atol': 1e-4, 'rtol': 1e-3, 'min_top1': 1.0},
    'fp16': {'atol': 5e-2, 'rtol': 1e-2, 'min_top1': 0.99},
    'int8': {'atol': 2.0, 'rtol': 0.25, 'min_top1': 0.99},
}


def compare_logits(ref: np.ndarray, out: np.ndarray) -> Dict[str, Any]:
    """Error and agreement metrics of ``out`` against the reference logits ``ref`` (both ``(N, C)``)."""
    if ref.shape != out.shape:
        raise DeployError(f'PyTorch gives logits {ref.shape} but ONNX Runtime {out.shape}')
    finite = np.isfinite(ref).all(1) & np.isfinite(out).all(1)
    metrics: Dict[str, Any] = {
        'n_images': int(ref.shape[0]),
        'nonfinite': {'pytorch': int((~np.isfinite(ref)).sum()), 'onnx': int((~np.isfinite(out)).sum())},
    }
    r, o = ref[finite].astype(np.float64), out[finite].astype(np.float64)
    if len(r) == 0:
        metrics.update(max_abs_err=float('nan'), mean_abs_err=float('nan'), max_rel_err=float('nan'),
                       mean_rel_err=float('nan'), top1_agreement=0.0, top5_agreement=0.0, worst_index=None)
        return metrics
    diff = np.abs(o - r)
    per_image_abs = diff.max(1)
    per_image_rel = per_image_abs / np.maximum(np.abs(r).max(1), 1e-12)
    k = min(5, r.shape[1])
    top_r, top_o = np.argsort(-r, 1)[:, :k], np.argsort(-o, 1)[:, :k]
    overlap = [len(set(a) & set(b)) / k for a, b in zip(top_r, top_o)]
    worst = int(np.flatnonzero(finite)[int(per_image_abs.argmax())])
    metrics.update(
        max_abs_err=float(diff.max()), mean_abs_err=float(diff.mean()),
        max_rel_err=float(per_image_rel.max()), mean_rel_err=float(per_image_rel.mean()),
        top1_agreement=float((top_r[:, 0] == top_o[:, 0]).sum() / ref.shape[0]),
        top5_agreement=float(np.sum(overlap) / ref.shape[0]), topk=k,
        logit_scale=float(np.abs(r).max()), worst_index=worst,
    )
    return metrics


def _failures(m: Dict[str, Any], tol: Dict[str, float]) -> List[str]:
    out = []
    nf = m['nonfinite']
    if nf['pytorch'] or nf['onnx']:
        out.append(f"non-finite logits: {nf['pytorch']} from PyTorch, {nf['onnx']} from ONNX Runtime")
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


def parity(
        model_or_onnx: str,
        onnx_path: Optional[str] = None,
        data: Optional[str] = None,
        precision: Optional[str] = None,
        checkpoint: Optional[str] = None,
        num_classes: Optional[int] = None,
        use_ema: bool = False,
        img_size: Optional[int] = None,
        device: str = 'cpu',
        amp: bool = False,
        exporter: str = 'dynamo',
        batch_size: int = 16,
        limit: Optional[int] = None,
        atol: Optional[float] = None,
        rtol: Optional[float] = None,
        min_top1: Optional[float] = None,
        providers: Optional[List[str]] = None,
        threads: Optional[int] = None,
        calib_data: Optional[str] = None,
        calib_images: int = 512,
        int8_options: Optional[Dict[str, Any]] = None,
        output: Optional[str] = None,
        force: bool = False,
        model=None,
        keep_dir: Optional[str] = None,
        progress: bool = False,
) -> Dict[str, Any]:
    """Compare PyTorch and ONNX Runtime logits; returns the report (``passed`` says if every gate held).

    ``model_or_onnx``: a MODEL spec or an ``.onnx`` file. ``onnx_path``: with a MODEL, compare against this file
    instead of exporting. ``precision``: ``fp32``/``fp16``/``int8`` (default: the file's); an FP32 file is
    converted. ``model``: an already built module as the PyTorch side (e.g. with randomized weights).
    ``output``: write the report as JSON there (refused if it exists, unless ``force``).
    """
    from .predict import (OnnxPredictor, TorchPredictor, check_device, check_img_size, onnx_data_config,
                          reference_from_metadata)
    from .metadata import read_metadata
    t_start = time.perf_counter()
    json_path = resolve_output(output, force, default_name='parity.json', suffix='.json') if output else None
    if precision is not None and precision not in PRECISIONS:
        raise DeployError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    check_device(device)
    if data is not None:
        scan_images(data)  # fail early on a missing or empty folder
    if calib_data is not None:
        scan_images(calib_data)

    if is_onnx_path(model_or_onnx):
        if onnx_path is not None:
            raise DeployError('give either an ONNX file or a MODEL with onnx_path, not two ONNX files')
        onnx_path = model_or_onnx
        meta = read_metadata(onnx_path)
        check_img_size(meta, img_size, onnx_path)
        if model is None:
            torch_model, info = reference_from_metadata(meta, onnx_path, checkpoint, use_ema, device)
        else:
            torch_model, info = model, {**onnx_data_config(meta, onnx_path), 'model_spec': meta.get('model_spec'),
                                        'weights': 'module'}
        if meta.get('num_classes') is not None and info.get('num_classes') not in (None, meta['num_classes']):
            raise DeployError(f"the PyTorch model has {info['num_classes']} classes but {onnx_path} "
                              f"{meta['num_classes']}; wrong --checkpoint?")
    else:
        if model is None:
            torch_model, info = load_model(model_or_onnx, checkpoint, num_classes, use_ema, device, img_size)
        else:
            from .export import _module_info
            torch_model, info = model, _module_info(model, model_or_onnx, img_size)
        meta = read_metadata(onnx_path) if onnx_path is not None else None
        if meta is not None and meta.get('input_size') and tuple(meta['input_size']) != tuple(info['input_size']):
            raise DeployError(f"{onnx_path} was exported for input {meta['input_size']} but the model runs at "
                              f"{list(info['input_size'])}; pass the matching --img-size")

    ref = TorchPredictor(torch_model, device, amp)
    data_cfg = {k: info.get(k) for k in ('input_size', 'mean', 'std', 'interpolation', 'crop_pct', 'crop_mode',
                                         'num_classes', 'class_labels')}
    measure_root = data if data is not None else bundled_samples_dir(data_cfg)

    with tempfile.TemporaryDirectory(prefix='timm_recal_parity_') as tmp:
        work = keep_dir or tmp
        os.makedirs(work, exist_ok=True)
        name = (info.get('architecture') or 'model').replace('/', '_')
        exported = None
        made_here = False  # the compared file was written by this call (temporary unless keep_dir)
        if onnx_path is None:
            from .export import export_onnx
            exported = export_onnx(info.get('model_spec'), os.path.join(work, f'{name}.onnx'), model=torch_model,
                                   exporter=exporter, force=True, info=info)
            onnx_path = exported['output']
            meta = read_metadata(onnx_path)
            made_here = True
        file_precision = meta.get('precision', 'fp32')
        precision = precision or file_precision
        calibration = None
        measure_idx = None
        if precision != file_precision:
            if file_precision != 'fp32':
                raise DeployError(f'{onnx_path} is {file_precision}; --precision {precision} needs the FP32 export')
            made_here = True
            if precision == 'fp16':
                from .quantize import convert_fp16
                convert_fp16(onnx_path, os.path.join(work, f'{name}_fp16.onnx'), force=True)
                onnx_path = os.path.join(work, f'{name}_fp16.onnx')
            else:
                from .quantize import quantize_int8
                calib_idx = None
                if calib_data is None:  # split the measurement folder into two disjoint parts
                    n = len(scan_images(measure_root)[0])
                    if n < 2:
                        raise DeployError(f'{measure_root} has {n} image; INT8 parity needs --calib-data')
                    calib_idx = spread_indices(n, min(calib_images, n // 2), seed=1)
                    measure_idx = spread_indices(n, None, exclude=calib_idx)
                    calib_root = measure_root
                elif _same_or_nested(calib_data, measure_root):
                    raise DeployError(f'--calib-data {calib_data} overlaps --data {measure_root}; calibrate on '
                                      'disjoint images (CIFAR-10: calibrate on train, measure on test)')
                else:
                    calib_root = calib_data
                q_path = os.path.join(work, f'{name}_int8.onnx')
                calibration = quantize_int8(onnx_path, q_path, calib_root, num_images=calib_images, force=True,
                                            indices=calib_idx, progress=progress, **(int8_options or {}))
                onnx_path = q_path
        elif precision == 'int8':
            q = meta.get('quantization') or {}
            if q.get('calib_data') and _same_or_nested(q['calib_data'], measure_root):
                raise DeployError(f"{onnx_path} was calibrated on {q['calib_data']}, which overlaps the data "
                                  f'measured here ({measure_root}); measure on disjoint images')
            calibration = q or None

        if measure_idx is not None and limit is not None:
            measure_idx = [measure_idx[i] for i in spread_indices(len(measure_idx), limit)]
        dataset = make_dataset(data, data_cfg, limit=limit if measure_idx is None else None, indices=measure_idx)
        from torch.utils.data import DataLoader
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
        ort_pred = OnnxPredictor(onnx_path, providers, threads)
        refs, outs, labels = [], [], []
        from tqdm import tqdm
        for images, y in tqdm(loader, desc=f'parity {precision}', unit='batch', disable=not progress, leave=False):
            refs.append(ref(images))
            outs.append(ort_pred(images))
            labels.append(y.numpy())
        ort_desc = ort_pred.describe()
        del ort_pred
    r, o, lab = np.concatenate(refs), np.concatenate(outs), np.concatenate(labels)
    tol = dict(TOLERANCES[precision])
    for key, val in (('atol', atol), ('rtol', rtol), ('min_top1', min_top1)):
        if val is not None:
            tol[key] = float(val)
    metrics = compare_logits(r, o)
    failures = _failures(metrics, tol)
    worst = metrics.pop('worst_index')
    result = {
        'passed': not failures, 'precision': precision, 'tolerances': tol, **metrics, 'failures': failures,
        'worst_image': dataset.samples[worst][0] if worst is not None else None,
        'accuracy': {'pytorch_top1': _accuracy(r, lab), 'onnx_top1': _accuracy(o, lab)}
        if dataset.labelled else None,
        'model': {k: info.get(k) for k in ('model_spec', 'architecture', 'tag', 'weights', 'checkpoint')},
        'onnx': None if made_here and not keep_dir else os.path.abspath(onnx_path),
        'exported': exported is not None, 'input_size': list(info['input_size']),
        'data': os.path.abspath(measure_root), 'bundled_data': data is None, 'label_mode': dataset.label_mode,
        'calibration': calibration, 'pytorch': ref.describe(), 'onnxruntime': ort_desc,
        'seconds': round(time.perf_counter() - t_start, 2),
    }
    if json_path:
        write_json(result, json_path, force=True)
        result['report_path'] = json_path
    return result


def format_report(result: Dict[str, Any]) -> str:
    """The human-readable summary that ``timm-recal parity`` prints."""
    tol = result['tolerances']
    m = result['model']
    lines = [
        f"parity {result['precision']}: {'PASSED' if result['passed'] else 'FAILED'}  "
        f"({m.get('model_spec') or m.get('architecture')}, weights: {m.get('weights')}, {result['n_images']} images "
        f"from {'bundled samples' if result['bundled_data'] else result['data']})",
        f"  max abs error  {result['max_abs_err']:.3g}  (mean {result['mean_abs_err']:.3g}, atol {tol['atol']:.3g}, "
        f"logit scale {result.get('logit_scale', float('nan')):.3g})",
        f"  max rel error  {result['max_rel_err']:.3g}  (mean {result['mean_rel_err']:.3g}, rtol {tol['rtol']:.3g})",
        f"  top-1 agreement {100 * result['top1_agreement']:.2f}%  (min {100 * tol['min_top1']:.2f}%), "
        f"top-{result.get('topk', 5)} overlap {100 * result['top5_agreement']:.2f}%",
        f"  non-finite logits: PyTorch {result['nonfinite']['pytorch']}, ONNX Runtime {result['nonfinite']['onnx']}",
    ]
    acc = result.get('accuracy') or {}
    if acc.get('pytorch_top1') is not None:
        lines.append(f"  top-1 accuracy: PyTorch {acc['pytorch_top1']:.2f}%, ONNX Runtime {acc['onnx_top1']:.2f}%")
    cal = result.get('calibration')
    if cal and cal.get('calib_images'):
        lines.append(f"  INT8 calibrated on {cal['calib_images']} images of {cal.get('calib_data')}"
                     + (' (disjoint split)' if cal.get('calib_split') else ''))
        if cal.get('fp32_layers'):
            lines.append(f"  {len(cal['fp32_layers'])} most quantization-sensitive nodes kept in float")
    for f in result['failures']:
        lines.append(f'  FAIL: {f}')
    if result['failures'] and result.get('worst_image'):
        lines.append(f"  largest error on {result['worst_image']}")
    return '\n'.join(lines)
