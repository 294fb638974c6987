"""The validate stage: top-1/top-5 accuracy of a checkpoint, an ONNX file or its FP16/INT8 version on a
labelled ImageFolder, under one runtime.

Images go through the model's own timm eval preprocessing (for an ONNX file: the preprocessing recorded in
its metadata). The JSON written with ``output`` is what the model card of ``timm-recal publish`` reads:
``top1``/``top5`` in percent, ``n_images``, the model and data it measured, and optionally ``per_class``.
"""
import os
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import numpy as np
from torch import nn

from .eager_runtime import amp_precision, check_device
from .errors import DeployError
from .images import collect_logits, make_dataset, scan_images
from .options import DataOptions, ModelOptions, OutputOptions, RuntimeOptions, with_overrides
from .outputs import resolve_output, write_json
from .results import Result
from .runtimes import open_runtime, runtime_spec
from .sources import Source, open_source

__all__ = ['ValidateOptions', 'ValidateResult', 'validate', 'topk_correct', 'format_metrics']


@dataclass
class ValidateOptions(ModelOptions, RuntimeOptions, DataOptions, OutputOptions):
    batch_size: int = 64
    workers: int = 0
    per_class: bool = False
    progress: bool = False


@dataclass
class ValidateResult(Result):
    top1: float
    top5: float
    topk: int
    n_images: int
    n_classes_in_data: int
    model_spec: Optional[str]
    architecture: Optional[str]
    tag: Optional[str]
    weights: Optional[str]
    checkpoint: Optional[str]
    onnx: Optional[str]
    precision: str
    data: str
    bundled_data: bool
    limit: Optional[int]
    label_mode: str
    input_size: List[int]
    interpolation: Optional[str]
    crop_pct: Optional[float]
    crop_mode: Optional[str]
    mean: List[float]
    std: List[float]
    runtime: Dict[str, Any]
    seconds: float
    per_class: Optional[Dict[str, Dict[str, Any]]] = None
    report_path: Optional[str] = None


def topk_correct(logits: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Per image: is the label among the ``k`` highest logits."""
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return (top == labels[:, None]).any(1)


def _open_runner(src: Source, o: ValidateOptions):
    word = (o.runtimes or ['ort' if src.kind == 'onnx' else 'eager'])
    if len(word) != 1:
        raise DeployError('validate runs one runtime at a time: give one word with --runtimes')
    spec = runtime_spec(word[0])
    if src.kind == 'package':
        if o.runtimes and spec.word != 'aoti':
            raise DeployError(f'{src.spec} is an AOTInductor package; it runs under aoti, not {spec.word}')
        return open_runtime('aoti', src.spec, precision=src.meta['precision'], threads=o.threads)
    if src.kind == 'onnx':
        if spec.kind != 'onnx':
            raise DeployError(f'{src.spec} is an ONNX file; --runtimes {spec.word} runs a MODEL')
        return open_runtime(spec.word, src.onnx_path, precision=src.meta.get('precision', 'fp32'),
                            threads=o.threads)
    if spec.kind != 'model':
        raise DeployError(f'--runtimes {spec.word} runs ONNX files; export the MODEL first (timm-recal export)')
    return open_runtime(spec.word, src.model, precision=amp_precision(o.device) if o.amp else 'fp32',
                        device=o.device, input_size=src.info['input_size'], threads=o.threads, info=src.info,
                        compile_timeout=o.compile_timeout)


def _check_dataset(dataset, cfg: Dict[str, Any]) -> None:
    if dataset.label_mode == 'unmatched':
        raise DeployError(f'{dataset.root}: {dataset.mismatch}')
    if not dataset.labelled:
        raise DeployError(f'{dataset.root} has no class folders; validate needs a labelled ImageFolder '
                          '(DIR/<class>/<image>)')
    n_out = cfg.get('num_classes')
    bad = sorted({dataset.classes[i] for i, idx in enumerate(dataset.class_index) if n_out and idx >= n_out})
    if bad:
        raise DeployError(f"{dataset.root} has {len(dataset.classes)} classes but the model predicts {n_out} "
                          f"(no output for {', '.join(bad[:5])}{', ...' if len(bad) > 5 else ''}); wrong data "
                          'folder or --num-classes?')


def _source(model_or_onnx: str, o: ValidateOptions, model: Optional[nn.Module]) -> Source:
    if model_or_onnx.lower().endswith('.pt2'):
        if o.checkpoint is not None or o.use_ema or o.amp:
            raise DeployError('--checkpoint/--use-ema/--amp apply to a MODEL; a .pt2 package carries its weights')
        from .aoti_package import package_source
        return package_source(model_or_onnx)
    if model_or_onnx.lower().endswith('.onnx'):
        if o.checkpoint is not None or o.use_ema:
            raise DeployError('--checkpoint/--use-ema apply to a MODEL; an ONNX file carries its own weights')
        if o.device != 'cpu' or o.amp:
            raise DeployError('--device/--amp apply to a MODEL; for an ONNX file choose the runtime with '
                              '--runtimes (ort_cuda, ort_trt, ...)')
    else:
        check_device(o.device)
    return open_source(model_or_onnx, o, module=model)


def validate(model_or_onnx: str, data: Optional[str] = None, options: Optional[ValidateOptions] = None, *,
             model: Optional[nn.Module] = None, **overrides) -> ValidateResult:
    """Accuracy of ``model_or_onnx`` (MODEL spec, or ``.onnx`` of any precision) on the ImageFolder ``data``
    (``None``: the bundled samples). ``limit`` measures that many images spread over the classes."""
    from torch.utils.data import DataLoader
    o = with_overrides(ValidateOptions, options, overrides)
    o.data = data if data is not None else o.data
    t0 = time.perf_counter()
    json_path = resolve_output(o.output, o.force, default_name='metrics.json', suffix='.json') if o.output else None
    if o.workers < 0:
        raise DeployError(f'--workers must be >= 0, got {o.workers}')
    if o.data is not None:
        scan_images(o.data)
    src = _source(model_or_onnx, o, model)
    runner = _open_runner(src, o)
    dataset = make_dataset(o.data, src.data_config, limit=o.limit, folder_order=o.folder_order)
    _check_dataset(dataset, src.data_config)
    loader = DataLoader(dataset, batch_size=o.batch_size, shuffle=False, num_workers=o.workers)
    (out,), lab = collect_logits(loader, [runner], o.progress, 'validate')
    if not np.isfinite(out).all():
        raise DeployError(f'the model produced {int((~np.isfinite(out)).sum())} NaN/Inf logits; '
                          'accuracy would be meaningless')
    result = _result(src, o, runner, dataset, out, lab, t0)
    if json_path:
        write_json(result, json_path, force=True)
        result.report_path = json_path
    return result


def _result(src: Source, o: ValidateOptions, runner, dataset, out, lab, t0) -> ValidateResult:
    c1, c5 = topk_correct(out, lab, 1), topk_correct(out, lab, 5)
    cfg = src.data_config
    per_class = None
    if o.per_class:
        names = {idx: name for name, idx in zip(dataset.classes, dataset.class_index)}
        per_class = {names[c]: {'n': int((lab == c).sum()), 'top1': round(100.0 * float(c1[lab == c].mean()), 4)}
                     for c in sorted(set(lab.tolist()))}
    return ValidateResult(
        top1=round(100.0 * float(c1.mean()), 4), top5=round(100.0 * float(c5.mean()), 4), topk=min(5, out.shape[1]),
        n_images=int(len(lab)), n_classes_in_data=len(dataset.classes), **src.naming,
        onnx=os.path.abspath(src.onnx_path) if src.onnx_path else None,
        precision=runner.precision if src.kind in ('onnx', 'package') else ('amp' if o.amp else 'fp32'),
        data=os.path.abspath(dataset.root), bundled_data=o.data is None, limit=o.limit,
        label_mode=dataset.label_mode, input_size=list(cfg['input_size']), interpolation=cfg.get('interpolation'),
        crop_pct=cfg.get('crop_pct'), crop_mode=cfg.get('crop_mode'), mean=list(cfg['mean']), std=list(cfg['std']),
        runtime=runner.describe(), seconds=round(time.perf_counter() - t0, 2), per_class=per_class)


def format_metrics(result: ValidateResult) -> str:
    """One line for the console."""
    src = result.get('onnx') or result.get('model_spec')
    return (f"{src} [{result.get('precision')}, weights: {result.get('weights')}]: top-1 {result['top1']:.2f}%  "
            f"top-{result['topk']} {result['top5']:.2f}%  on {result['n_images']} images of {result['data']}")
