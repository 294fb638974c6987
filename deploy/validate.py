"""Top-1/top-5 accuracy of a checkpoint, an ONNX file or its FP16/INT8 version on a labelled ImageFolder.

Images go through the model's own timm eval preprocessing (for an ONNX file: the preprocessing recorded in
its metadata). The JSON written with ``output`` is what the model card of ``timm-recal publish`` reads:
``top1``/``top5`` in percent, ``n_images``, the model and data it measured, and optionally ``per_class``.
"""
import os
import time
from typing import Any, Dict, List, Optional

import numpy as np

from .errors import DeployError
from .images import make_dataset, scan_images
from .model_io import is_onnx_path, load_model
from .outputs import resolve_output, write_json

__all__ = ['validate', 'topk_correct', 'format_metrics']


def topk_correct(logits: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Per image: is the label among the ``k`` highest logits."""
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return (top == labels[:, None]).any(1)


def validate(
        model_or_onnx: str,
        data: Optional[str],
        checkpoint: Optional[str] = None,
        num_classes: Optional[int] = None,
        use_ema: bool = False,
        img_size: Optional[int] = None,
        device: str = 'cpu',
        amp: bool = False,
        batch_size: int = 64,
        limit: Optional[int] = None,
        providers: Optional[List[str]] = None,
        threads: Optional[int] = None,
        per_class: bool = False,
        output: Optional[str] = None,
        force: bool = False,
        model=None,
        workers: int = 0,
        progress: bool = False,
) -> Dict[str, Any]:
    """Accuracy of ``model_or_onnx`` (MODEL spec, or ``.onnx`` of any precision) on the ImageFolder ``data``
    (``None``: the bundled samples). ``limit`` measures that many images spread over the classes."""
    from torch.utils.data import DataLoader
    from .predict import OnnxPredictor, TorchPredictor, check_device, check_img_size, onnx_data_config
    from .metadata import read_metadata
    t0 = time.perf_counter()
    json_path = resolve_output(output, force, default_name='metrics.json', suffix='.json') if output else None
    if data is not None:
        scan_images(data)
    if is_onnx_path(model_or_onnx):
        if checkpoint is not None or use_ema:
            raise DeployError('--checkpoint/--use-ema apply to a MODEL; an ONNX file carries its own weights')
        meta = read_metadata(model_or_onnx)
        check_img_size(meta, img_size, model_or_onnx)
        cfg = onnx_data_config(meta, model_or_onnx)
        predictor = OnnxPredictor(model_or_onnx, providers, threads)
        about = {'model_spec': meta.get('model_spec'), 'architecture': meta.get('architecture'),
                 'tag': meta.get('tag'), 'weights': meta.get('weights'), 'checkpoint': meta.get('checkpoint'),
                 'onnx': os.path.abspath(model_or_onnx), 'precision': meta.get('precision', 'fp32')}
    else:
        check_device(device)
        if model is None:
            model, info = load_model(model_or_onnx, checkpoint, num_classes, use_ema, device, img_size)
        else:
            from .export import _module_info
            info = _module_info(model, model_or_onnx, img_size)
        cfg = {k: info.get(k) for k in ('input_size', 'mean', 'std', 'interpolation', 'crop_pct', 'crop_mode',
                                        'num_classes', 'class_labels')}
        predictor = TorchPredictor(model, device, amp)
        about = {k: info.get(k) for k in ('model_spec', 'architecture', 'tag', 'weights', 'checkpoint')}
        about.update(onnx=None, precision='amp' if amp else 'fp32')

    dataset = make_dataset(data, cfg, limit=limit)
    if not dataset.labelled:
        raise DeployError(f'{dataset.root} has no class folders; validate needs a labelled ImageFolder '
                          '(DIR/<class>/<image>)')
    n_out = cfg.get('num_classes')
    bad = sorted({dataset.classes[i] for i, idx in enumerate(dataset.class_index) if n_out and idx >= n_out})
    if bad:
        raise DeployError(f"{dataset.root} has {len(dataset.classes)} classes but the model predicts {n_out} "
                          f"(no output for {', '.join(bad[:5])}{', ...' if len(bad) > 5 else ''}); wrong data "
                          'folder or --num-classes?')
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    from tqdm import tqdm
    logits, labels = [], []
    for images, y in tqdm(loader, desc='validate', unit='batch', disable=not progress, leave=False):
        logits.append(predictor(images))
        labels.append(y.numpy())
    out, lab = np.concatenate(logits), np.concatenate(labels)
    if not np.isfinite(out).all():
        raise DeployError(f'the model produced {int((~np.isfinite(out)).sum())} NaN/Inf logits; '
                          'accuracy would be meaningless')
    c1, c5 = topk_correct(out, lab, 1), topk_correct(out, lab, 5)
    result: Dict[str, Any] = {
        'top1': round(100.0 * float(c1.mean()), 4), 'top5': round(100.0 * float(c5.mean()), 4),
        'topk': min(5, out.shape[1]), 'n_images': int(len(lab)), 'n_classes_in_data': len(dataset.classes),
        **about,
        'data': os.path.abspath(dataset.root), 'bundled_data': data is None, 'limit': limit,
        'label_mode': dataset.label_mode, 'input_size': list(cfg['input_size']),
        'interpolation': cfg.get('interpolation'), 'crop_pct': cfg.get('crop_pct'), 'crop_mode': cfg.get('crop_mode'),
        'mean': list(cfg['mean']), 'std': list(cfg['std']), 'runtime': predictor.describe(),
        'seconds': round(time.perf_counter() - t0, 2),
    }
    if per_class:
        names = {idx: name for name, idx in zip(dataset.classes, dataset.class_index)}
        result['per_class'] = {
            names[c]: {'n': int((lab == c).sum()), 'top1': round(100.0 * float(c1[lab == c].mean()), 4)}
            for c in sorted(set(lab.tolist()))}
    if json_path:
        write_json(result, json_path, force=True)
        result['report_path'] = json_path
    return result


def format_metrics(result: Dict[str, Any]) -> str:
    """One line for the console."""
    src = result.get('onnx') or result.get('model_spec')
    return (f"{src} [{result.get('precision')}, weights: {result.get('weights')}]: top-1 {result['top1']:.2f}%  "
            f"top-{result['topk']} {result['top5']:.2f}%  on {result['n_images']} images of {result['data']}")
