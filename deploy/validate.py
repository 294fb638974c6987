"""The validate stage: top-1/top-5 accuracy of a checkpoint, an ONNX file or its FP16/INT8 version on a
labelled ImageFolder, under one runtime; with ``compare``, a second model or file on the same images and the
paired statistics of the two (``PairedTop1``: McNemar's exact test, a bootstrap interval of the difference).

Images go through the model's own timm eval preprocessing (for an ONNX file: the preprocessing recorded in
its metadata). The JSON written with ``output`` is what the model card of ``timm-recal publish`` reads:
``top1``/``top5`` in percent, ``n_images``, the model and data it measured, and optionally ``per_class``.
"""
import dataclasses
import os
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from torch import nn

from timm_recal.outputs import resolve_output, write_json

from .eager_runtime import amp_precision, check_device
from .errors import DeployError
from .images import collect_logits, make_dataset, scan_images, spread_indices
from .options import DataOptions, ModelOptions, OutputOptions, RuntimeOptions, with_overrides
from .paired_stats import bootstrap_difference_ci, discordant_counts, mcnemar_exact
from .results import Result
from .runtimes import (DEFAULT_ONNX_RUNTIME, PACKAGE_RUNTIME, REFERENCE_RUNTIME, RUNTIMES, open_runtime,
                       package_runtime, runtime_spec)
from .sources import Source, open_source

__all__ = ['ValidateOptions', 'ValidateResult', 'PairedTop1', 'validate', 'paired_top1', 'topk_correct',
           'format_metrics', 'format_per_class', 'format_paired']


@dataclass
class ValidateOptions(ModelOptions, RuntimeOptions, DataOptions, OutputOptions):
    batch_size: int = 64
    workers: int = 0
    per_class: bool = False
    progress: bool = False
    compare: Optional[str] = None             # a second MODEL_OR_ONNX, measured on the same images
    compare_checkpoint: Optional[str] = None  # weights for a ``compare`` model spec
    resamples: int = 10_000                   # bootstrap resamples of the paired top-1 difference
    seed: int = 0                             # the bootstrap's seed
    #: only these images of ``data`` (indices into its sorted listing; ``limit`` then spreads over them): the
    #: pipeline measures an INT8 file on the images it was not calibrated on
    indices: Optional[Sequence[int]] = None


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
    compare: Optional['ValidateResult'] = None  # the ``compare`` model's own result, same images
    paired: Optional['PairedTop1'] = None       # the statistics of the two on those images


@dataclass
class PairedTop1(Result):
    """Top-1 of two models on the same images, paired per image. ``difference`` and its interval are in
    points, model minus compare; ``only_model``/``only_compare`` count the discordant images (right for that
    model alone) that McNemar's exact test weighs, and name them (paths relative to the data folder)."""
    n_images: int
    model_top1: float
    compare_top1: float
    difference: float
    ci_low: float
    ci_high: float
    confidence: float
    resamples: int
    seed: int
    both_correct: int
    only_model: int
    only_compare: int
    both_wrong: int
    mcnemar_p: float
    only_model_images: List[str]
    only_compare_images: List[str]


def topk_correct(logits: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Per image: is the label among the ``k`` highest logits."""
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return (top == labels[:, None]).any(1)


def _open_runner(src: Source, o: ValidateOptions):
    word = (o.runtimes or [DEFAULT_ONNX_RUNTIME if src.kind == 'onnx' else REFERENCE_RUNTIME])
    if len(word) != 1:
        raise DeployError('validate runs one runtime at a time: give one word with --runtimes')
    spec = runtime_spec(word[0])
    if src.kind == 'package':
        if o.runtimes and spec.word != PACKAGE_RUNTIME:
            raise DeployError(f'{src.spec} is a compiled package; it runs under {PACKAGE_RUNTIME}, not {spec.word}')
        return open_runtime(PACKAGE_RUNTIME, src.spec, precision=src.meta['precision'], threads=o.threads)
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


def _source(model_or_onnx: str, o: ValidateOptions, model: Optional[nn.Module], compare: bool = False) -> Source:
    """The source of one side. ``compare``: the ``--compare`` side, whose weights come from
    ``--compare-checkpoint``; its refusals name that flag and the file (they named ``--checkpoint``, which the
    user had not given)."""
    ckpt = '--compare-checkpoint' if compare else '--checkpoint/--use-ema'
    side = (lambda kind: f'--compare {model_or_onnx} is {kind}, which') if compare else (lambda kind: kind)
    if package_runtime(model_or_onnx) is not None:
        if o.checkpoint is not None or o.use_ema or o.amp:
            raise DeployError(f"{ckpt}/--amp apply to a MODEL; {side('a .pt2 package')} carries its weights")
    elif model_or_onnx.lower().endswith('.onnx'):
        if o.checkpoint is not None or o.use_ema:
            raise DeployError(f"{ckpt} apply to a MODEL; {side('an ONNX file')} carries its own weights")
        if o.device != 'cpu' or o.amp:
            gpu = ', '.join(w for w, r in RUNTIMES.items() if r.gpu and r.kind == 'onnx')
            which = f', and --compare {model_or_onnx} is an ONNX file' if compare else ''
            raise DeployError(f'--device/--amp apply to a MODEL{which}; for an ONNX file choose the runtime with '
                              f'--runtimes ({gpu})')
    else:
        check_device(o.device)
    return open_source(model_or_onnx, o, module=model)


def _compare_options(o: ValidateOptions) -> ValidateOptions:
    """The options of the ``compare`` side: its own checkpoint; ``--use-ema`` is the first model's (as in bench)."""
    return dataclasses.replace(o, checkpoint=o.compare_checkpoint, use_ema=False)


def _labels(src: Source) -> str:
    names = src.info.get('class_labels') or []
    shown = ', '.join(names[:3]) + (', ...' if len(names) > 3 else '')
    return f"{src.info.get('num_classes')} classes" + (f' ({shown})' if names else '')


def _check_same_labels(first: Source, second: Source) -> None:
    """Two models are compared image by image only if they predict the same classes (by name, in any order:
    each side maps the class folders to its own indices)."""
    a, b = first.info.get('class_labels'), second.info.get('class_labels')
    if first.info.get('num_classes') != second.info.get('num_classes') or (a and b and set(a) != set(b)):
        raise DeployError(f'{first.spec} and {second.spec} predict different labels ({_labels(first)} vs '
                          f'{_labels(second)}); a paired comparison needs the same classes')


def _prepare(o: ValidateOptions, src: Source):
    """``(runner, dataset)`` of one side, checked before any image is run."""
    runner = _open_runner(src, o)
    idx = None if o.indices is None else list(o.indices)
    if idx is not None and o.limit is not None:
        idx = [idx[i] for i in spread_indices(len(idx), o.limit)]
    dataset = make_dataset(o.data, src.data_config, limit=o.limit if idx is None else None, indices=idx,
                           folder_order=o.folder_order)
    _check_dataset(dataset, src.data_config)
    return runner, dataset


def _measure(src: Source, o: ValidateOptions, runner, dataset, t0: float, desc: str):
    """``(result, per-image top-1 correctness)`` of one side, images in the dataset's order."""
    from torch.utils.data import DataLoader
    loader = DataLoader(dataset, batch_size=o.batch_size, shuffle=False, num_workers=o.workers)
    (out,), lab = collect_logits(loader, [runner], o.progress, desc)
    if not np.isfinite(out).all():
        raise DeployError(f'{src.spec} produced {int((~np.isfinite(out)).sum())} NaN/Inf logits; '
                          'accuracy would be meaningless')
    return _result(src, o, runner, dataset, out, lab, t0), topk_correct(out, lab, 1)


def validate(model_or_onnx: str, data: Optional[str] = None, options: Optional[ValidateOptions] = None, *,
             model: Optional[nn.Module] = None, **overrides) -> ValidateResult:
    """Accuracy of ``model_or_onnx`` (MODEL spec, or ``.onnx`` of any precision) on the ImageFolder ``data``
    (``None``: the bundled samples). ``limit`` measures that many images spread over the classes. With
    ``compare`` (a second MODEL_OR_ONNX) both run on the same images and the result also holds the second's
    result (``compare``) and their paired statistics (``paired``)."""
    o = with_overrides(ValidateOptions, options, overrides)
    o.data = data if data is not None else o.data
    t0 = time.perf_counter()
    json_path = resolve_output(o.output, o.force, default_name='metrics.json', suffix='.json') if o.output else None
    if o.workers < 0:
        raise DeployError(f'--workers must be >= 0, got {o.workers}')
    if o.compare is None and o.compare_checkpoint is not None:
        raise DeployError('--compare-checkpoint needs --compare')
    if o.resamples < 1:
        raise DeployError(f'--resamples must be >= 1, got {o.resamples}')
    if o.data is not None:
        scan_images(o.data)
    src = _source(model_or_onnx, o, model)
    co = _compare_options(o)
    other = _source(o.compare, co, None, compare=True) if o.compare is not None else None
    if other is not None:
        _check_same_labels(src, other)
    runner, dataset = _prepare(o, src)
    paths = [p for p, _ in dataset.samples]
    if other is not None:
        other_runner, other_dataset = _prepare(co, other)
        if [p for p, _ in other_dataset.samples] != paths:
            raise DeployError(f'{model_or_onnx} and {o.compare} would see different images; cannot pair them')
    result, correct = _measure(src, o, runner, dataset, t0, 'validate')
    if other is not None:
        result.compare, other_correct = _measure(other, co, other_runner, other_dataset, time.perf_counter(),
                                                 'validate --compare')
        result.paired = paired_top1(correct, other_correct, paths, dataset.root, o.resamples, o.seed)
    if json_path:
        result.report_path = json_path  # before the write: the file and --json agree
        write_json(result, json_path, force=True)
    return result


def paired_top1(correct: np.ndarray, other_correct: np.ndarray, paths: List[str], root: str,
                resamples: int = 10_000, seed: int = 0, confidence: float = 0.95) -> PairedTop1:
    """The paired statistics of two models' per-image top-1 outcomes on the images ``paths`` (under ``root``)."""
    a, b = np.asarray(correct, dtype=bool), np.asarray(other_correct, dtype=bool)
    only_a, only_b = discordant_counts(a, b)
    low, high = bootstrap_difference_ci(a, b, resamples, seed, confidence)

    def names(mask: np.ndarray) -> List[str]:
        return [os.path.relpath(p, root).replace(os.sep, '/') for p, m in zip(paths, mask) if m]

    def points(x: float) -> float:
        return round(100.0 * float(x), 4)
    return PairedTop1(
        n_images=int(a.size), model_top1=points(a.mean()), compare_top1=points(b.mean()),
        difference=points(a.mean() - b.mean()), ci_low=points(low), ci_high=points(high), confidence=confidence,
        resamples=resamples, seed=seed, both_correct=int((a & b).sum()), only_model=only_a, only_compare=only_b,
        both_wrong=int((~a & ~b).sum()), mcnemar_p=mcnemar_exact(only_a, only_b),
        only_model_images=names(a & ~b), only_compare_images=names(~a & b))


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


#: ``--per-class`` text output: every class up to this many, else the ``PER_CLASS_WORST`` worst (the JSON has all)
PER_CLASS_ALL = 20
PER_CLASS_WORST = 10


def _source_name(r) -> str:
    return r.get('onnx') or r.get('model_spec')


def format_metrics(result: ValidateResult) -> str:
    """One line for the console; with a comparison, a line for the second model and the paired statistics; with
    ``per_class``, each model's per-class table (``format_per_class``)."""
    def line(r) -> str:
        return (f"{_source_name(r)} [{r.get('precision')}, weights: {r.get('weights')}]: top-1 {r['top1']:.2f}%  "
                f"top-{r['topk']} {r['top5']:.2f}%  on {r['n_images']} images of {r['data']}")
    lines = [line(result)]
    paired, other = result.get('paired'), result.get('compare')
    if paired is not None and other is not None:
        lines += [line(other), format_paired(paired)]
    for r in (result, other):
        if r is not None and r.get('per_class'):
            lines.append(format_per_class(r['per_class'], _source_name(r) if other is not None else None))
    return '\n'.join(lines)


def format_per_class(per_class: Dict[str, Dict[str, Any]], name: Optional[str] = None) -> str:
    """Per-class top-1 as a text table, worst class first: every class up to ``PER_CLASS_ALL`` of them, else
    the ``PER_CLASS_WORST`` worst and a line saying where the rest are (``--per-class`` printed nothing without
    ``--json``/``-o``). ``name``: the model it belongs to, when two are shown."""
    rows = sorted(per_class.items(), key=lambda kv: (kv[1]['top1'], kv[0]))
    shown = rows if len(rows) <= PER_CLASS_ALL else rows[:PER_CLASS_WORST]
    what = 'per-class top-1' + (f' of {name}' if name else '')
    head = (f'{what}, {len(rows)} classes, worst first:' if len(shown) == len(rows)
            else f'{what}, the {len(shown)} worst of {len(rows)} classes:')
    width = max([len('class')] + [len(c) for c, _ in shown])
    lines = [head, f"  {'class':<{width}}  {'images':>6}  {'top-1':>7}"]
    lines += [f"  {c:<{width}}  {v['n']:>6}  {v['top1']:>6.2f}%" for c, v in shown]
    if len(shown) < len(rows):
        lines.append(f'  ... {len(rows) - len(shown)} more classes in the JSON (--json or -o)')
    return '\n'.join(lines)


def format_paired(p: PairedTop1) -> str:
    """The paired statistics in one line (difference: the first model minus the second)."""
    return (f"paired, same {p.n_images} images: top-1 difference {p.difference:+.2f} points "
            f"({100 * p.confidence:g}% bootstrap CI {p.ci_low:+.2f} to {p.ci_high:+.2f}, {p.resamples} resamples, "
            f"seed {p.seed}); McNemar exact p = {p.mcnemar_p:.3g} (right only for the first: {p.only_model}, "
            f"only for the second: {p.only_compare})")
