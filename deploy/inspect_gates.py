"""The inspect stage: what the recalibration gates of a model do, cost, and how a deployed file changes them.

``inspect MODEL --data DIR -o OUT_DIR`` runs the model over a labelled ImageFolder with forward hooks on every gate
(``gate_probe``; no model edits) and writes to OUT_DIR (whole or not at all):

* ``excitation.png`` + the ``excitation`` records: Hu et al.'s Section 7.2 statistics (``excitation``);
* ``importance.png`` + ``importance``: Singh et al.'s Table 16 zeroing curves (``channel_importance``);
* ``cost``: per gate parameters, MACs and the share of inference time in PyTorch and ONNX Runtime (``gate_cost``);
* ``inspect.json`` (this result) and ``inspect.md`` (the tables).

``inspect FILE.onnx [--reference MODEL]`` compares the file's gate outputs with the PyTorch model's on the same
images under one runtime (``gate_diff``) and writes ``gate_diff.json`` / ``gate_diff.md``; ``quantize
--float-gates-from OUT_DIR/gate_diff.json`` keeps the gates it ranks most damaged in float.
"""
import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from timm_recal.outputs import atomic_folder, temporary_folder, write_json, write_text

from .channel_importance import ZERO_FRACTIONS, importance_curves, importance_plot
from .errors import DeployError
from .excitation import SATURATED, excitation_plot, excitation_stats
from .gate_cost import gate_macs, ort_time_shares, torch_time_shares
from .gate_diff import compare_gates, gate_tensors, rank_damage, tap_gates
from .gate_probe import GateProbe, GateSite, require_gates, zeroed_channels
from .images import _batches, make_dataset, scan_images
from .options import DataOptions, ModelOptions, OutputOptions, RuntimeOptions, with_overrides
from .results import Result
from .runtimes import open_runtime, package_runtime, runtime_spec
from .sources import HASHED_WEIGHTS, Source, check_pairing, is_onnx_path, open_source
from .torch_threads import torch_threads

__all__ = ['InspectOptions', 'InspectResult', 'GateDiffResult', 'inspect', 'format_inspect', 'format_gate_diff',
           'REPORT_JSON', 'DIFF_JSON']

REPORT_JSON, DIFF_JSON = 'inspect.json', 'gate_diff.json'
#: image batches kept in memory between the passes of the zeroing curves when they fit in this many bytes
CACHE_BYTES = 1 << 30


@dataclass
class InspectOptions(ModelOptions, RuntimeOptions, DataOptions, OutputOptions):
    batch_size: int = 64
    reference: Optional[str] = None          # FILE.onnx mode: the PyTorch MODEL (default: the one it records)
    precision: Optional[str] = None          # FILE.onnx mode: the runtime's precision (default: the file's)
    fractions: Sequence[float] = ZERO_FRACTIONS
    importance: bool = True
    cost: bool = True
    ort_profile: bool = True
    progress: bool = False


@dataclass
class InspectResult(Result):
    model_spec: Optional[str]
    architecture: Optional[str]
    tag: Optional[str]
    weights: Optional[str]
    checkpoint: Optional[str]
    data: str
    n_images: int
    top1: float
    saturated_above: float
    gates: List[Dict[str, Any]]               # per gate: kind, channels, params, MACs, time shares, summary
    excitation: List[Dict[str, Any]]
    importance: List[Dict[str, Any]] = field(default_factory=list)
    cost: Dict[str, Any] = field(default_factory=dict)
    files: Dict[str, str] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)
    seconds: float = 0.0
    output: Optional[str] = None


@dataclass
class GateDiffResult(Result):
    onnx: str
    precision: str
    runtime: Dict[str, Any]
    reference: Optional[str]
    architecture: Optional[str]
    weights: Optional[str]
    data: str
    n_images: int
    top1_agreement: float
    gates: List[Dict[str, Any]]               # per gate: cosine, max/rel error, saturation, rank flips, tensor
    ranking: List[str]
    damaged: List[str]
    first_damaged: Optional[str]
    threshold: float
    seconds: float = 0.0
    output: Optional[str] = None


# --- checks and shared steps -------------------------------------------------------------------------------------
def _check_options(o: InspectOptions) -> str:
    """The final output folder, refused when it exists (without --force) or cannot be written; checked first."""
    from timm_recal.outputs import check_writable_folder
    if not o.output:
        raise DeployError('inspect needs an output folder (-o OUT_DIR)')
    final = os.path.abspath(o.output)
    if os.path.exists(final) and not os.path.isdir(final):
        raise DeployError(f'{o.output} is a file, expected a folder')
    if os.path.exists(final) and not o.force:
        from .errors import OutputExistsError
        raise OutputExistsError(f'{o.output} exists; pass --force to replace it')
    check_writable_folder(os.path.dirname(final))
    if o.batch_size < 1:
        raise DeployError(f'--batch-size must be >= 1, got {o.batch_size}')
    if any(not 0 <= f <= 1 for f in o.fractions):
        raise DeployError('zeroed fractions must lie in 0..1')
    if o.data is None:
        raise DeployError('inspect needs a labelled image folder (--data DIR/<class>/<image>)')
    scan_images(o.data)
    return final


def _dataset(src: Source, o: InspectOptions):
    from .validate import _check_dataset
    dataset = make_dataset(o.data, src.data_config, limit=o.limit, folder_order=o.folder_order)
    _check_dataset(dataset, src.data_config)
    return dataset


class _Images:
    """The measured batches, decoded once and kept in memory when they fit (``CACHE_BYTES``), else re-read."""

    def __init__(self, dataset, batch_size: int):
        from torch.utils.data import DataLoader
        self.loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
        c, h, w = dataset[0][0].shape
        self.cached: Optional[List[Tuple[torch.Tensor, torch.Tensor]]] = None
        self.fits = len(dataset) * c * h * w * 4 <= CACHE_BYTES

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        if self.cached is not None:
            yield from self.cached
            return
        kept = []
        for batch in _batches(self.loader):
            if self.fits:
                kept.append(batch)
            yield batch
        if self.fits:
            self.cached = kept


def _bar(total: int, progress: bool, desc: str):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit='batch', disable=not progress, leave=False)


def _forward(model, x: torch.Tensor, device: str) -> np.ndarray:
    with torch.no_grad():
        return model(x.to(device)).float().cpu().numpy()


# --- MODEL: excitation, importance, cost -------------------------------------------------------------------------
def _summary(site: GateSite, ex: Dict[str, Any], cost: Dict[str, Any]) -> Dict[str, Any]:
    row = {'gate': site.name, 'depth': ex['depth'], 'kind': site.kind, 'channels': ex['channels'],
           'mean': ex['mean'], 'saturation': ex['saturation'], 'class_spread': ex['class_spread'],
           'class_ratio': ex['class_ratio']}
    row.update(cost.get('per_gate', {}).get(site.name, {}))
    return row


def _cost(src: Source, sites: List[GateSite], x: torch.Tensor, o: InspectOptions, notes: List[str]) -> Dict[str, Any]:
    names = [s.name for s in sites]
    per_gate = {n: dict(v) for n, v in gate_macs(src.model, sites, x).items()}
    torch_t = torch_time_shares(src.model, sites, x)
    for n in names:
        per_gate[n]['torch_share'] = torch_t['gates'][n]
    out: Dict[str, Any] = {'per_gate': per_gate, 'torch': {k: v for k, v in torch_t.items() if k != 'gates'}}
    if o.ort_profile:
        from .export import ExportOptions, export_source
        with temporary_folder('timm_recal_inspect_') as tmp:
            path = os.path.join(tmp, 'model.onnx')
            try:
                export_source(src, path, ExportOptions())
            except DeployError as e:
                notes.append(f'no ONNX Runtime profile: {e}')
                return out
            ort_t = ort_time_shares(path, names, x.numpy(), tmp, threads=o.threads)
        for n in names:
            per_gate[n]['ort_share'] = ort_t['gates'][n]
        out['ort'] = {k: v for k, v in ort_t.items() if k != 'gates'}
    return out


def _inspect_model(spec: str, o: InspectOptions, final: str, t0: float) -> InspectResult:
    src = open_source(spec, o)
    sites = require_gates(src.model, spec)
    dataset = _dataset(src, o)
    images = _Images(dataset, o.batch_size)
    passes = 1 + (2 * sum(f > 0 for f in o.fractions) if o.importance else 0)
    bar = _bar(passes * len(images), o.progress, 'inspect')
    probe = GateProbe(src.model, sites)
    logits, labels = [], []
    with probe:
        for x, y in images:
            logits.append(_forward(src.model, x, o.device))
            labels.append(y.numpy())
            bar.update()
    values, order = probe.take(), probe.order
    sites = probe.ordered_sites()
    labels_np = np.concatenate(labels)
    top1 = float((np.concatenate(logits).argmax(1) == labels_np).mean() * 100)
    names = {idx: name for name, idx in zip(dataset.classes, dataset.class_index)}
    stats = excitation_stats(values, labels_np, names, order)

    def top1_with(masks: Dict[str, torch.Tensor]) -> float:
        if not masks:
            return round(top1, 4)
        hits = 0
        with zeroed_channels(src.model, sites, masks):
            for x, y in images:
                hits += int((_forward(src.model, x, o.device).argmax(1) == y.numpy()).sum())
                bar.update()
        return round(100.0 * hits / len(labels_np), 4)

    means = {n: values[n].mean(0) for n in order}
    importance = importance_curves(sites, means, top1_with, o.fractions) if o.importance else []
    bar.close()
    notes: List[str] = []
    first = next(iter(images))[0]
    cost = _cost(src, sites, first, o, notes) if o.cost else {}
    result = InspectResult(
        **src.naming, data=os.path.abspath(dataset.root), n_images=int(len(labels_np)), top1=round(top1, 4),
        saturated_above=SATURATED, gates=[_summary(s, e, cost) for s, e in zip(sites, stats)], excitation=stats,
        importance=importance, cost={k: v for k, v in cost.items() if k != 'per_gate'}, notes=notes)
    title = f"{src.name}: mean gate value per channel (first 64), per class and all ({len(labels_np)} images)"
    with atomic_folder(final, force=o.force) as work:
        excitation_plot(stats, os.path.join(work, 'excitation.png'), title, [names[c] for c in sorted(names)])
        if importance:
            importance_plot(importance, os.path.join(work, 'importance.png'),
                            f'{src.name}: channels zeroed by average gate value')
            result.files['importance_png'] = 'importance.png'
        result.files.update(excitation_png='excitation.png', json=REPORT_JSON, md='inspect.md')
        result.seconds = round(time.perf_counter() - t0, 2)
        result.output = final
        write_json(result, os.path.join(work, REPORT_JSON), force=True)
        write_text(format_inspect_md(result), os.path.join(work, 'inspect.md'), force=True)
    return result


# --- FILE.onnx: gate-level diff ----------------------------------------------------------------------------------
def _reference(spec: str, o: InspectOptions) -> Source:
    """The file with its PyTorch reference: ``--reference MODEL`` (checked against the file), else the recorded one."""
    if o.reference is None:
        return open_source(spec, o, need_model=True)
    from .model_io import load_model
    src = open_source(spec, o)
    model, info = load_model(o.reference, o.checkpoint, o.num_classes, o.use_ema, o.device, o.img_size)
    check_pairing(info, src.meta, spec, model)
    if src.meta.get('weights_sha256') and info.get('weights') not in HASHED_WEIGHTS:
        raise DeployError(f"{spec} was exported from trained weights but --reference {o.reference} has "
                          f"{info.get('weights')} weights; pass its --checkpoint")
    src.model = model.eval()
    src.info.update({k: info.get(k) for k in ('weights', 'checkpoint', 'model_spec')})
    return src


def _diff_file(spec: str, o: InspectOptions, final: str, t0: float) -> GateDiffResult:
    import onnx
    from .metadata import load_onnx
    word = (o.runtimes or ['ort'])
    if len(word) != 1 or runtime_spec(word[0]).kind != 'onnx':
        raise DeployError('inspect FILE.onnx runs one ONNX runtime: --runtimes ort, openvino, ...')
    src = _reference(spec, o)
    sites = require_gates(src.model, o.reference or src.info.get('model_spec') or spec)
    dataset = _dataset(src, o)
    images = _Images(dataset, o.batch_size)
    probe = GateProbe(src.model, sites)
    x0 = next(iter(images))[0][:2]
    with probe:
        _forward(src.model, x0, o.device)
    probe.take()
    order = probe.order
    proto = load_onnx(spec)
    tensors = gate_tensors(proto, order, spec)
    tap_gates(proto, [tensors[g] for g in order])
    precision = o.precision or src.meta.get('precision', 'fp32')
    bar = _bar(len(images), o.progress, 'gate diff')
    ref_logits, out_logits = [], []
    got: Dict[str, List[np.ndarray]] = {g: [] for g in order}
    with temporary_folder('timm_recal_gate_diff_') as tmp:
        tapped = os.path.join(tmp, 'tapped.onnx')
        onnx.save(proto, tapped)
        runner = open_runtime(word[0], tapped, precision=precision, threads=o.threads)
        if not hasattr(runner, 'outputs'):
            raise DeployError(f'the {word[0]} runtime cannot return intermediate tensors; use ort or openvino')
        with probe:
            for x, _ in images:
                ref_logits.append(_forward(src.model, x, o.device))
                outs = runner.outputs(x.numpy())
                out_logits.append(outs[0])
                for g, v in zip(order, outs[1:]):
                    got[g].append(v.reshape(v.shape[0], v.shape[1], -1).mean(-1))
                bar.update()
        describe = runner.describe()
    bar.close()
    ref, out = probe.take(), {g: np.concatenate(v) for g, v in got.items()}
    rows = compare_gates(ref, out, order)
    for r in rows:
        r['tensor'] = tensors[r['gate']]
    damage = rank_damage(rows)
    agree = float((np.concatenate(ref_logits).argmax(1) == np.concatenate(out_logits).argmax(1)).mean() * 100)
    result = GateDiffResult(
        onnx=os.path.abspath(spec), precision=describe.get('precision', precision), runtime=describe,
        reference=o.reference or src.info.get('model_spec'), architecture=src.info.get('architecture'),
        weights=src.info.get('weights'), data=os.path.abspath(dataset.root), n_images=len(dataset),
        top1_agreement=round(agree, 4), gates=rows, **damage)
    with atomic_folder(final, force=o.force) as work:
        result.seconds = round(time.perf_counter() - t0, 2)
        result.output = final
        write_json(result, os.path.join(work, DIFF_JSON), force=True)
        write_text(format_gate_diff_md(result), os.path.join(work, 'gate_diff.md'), force=True)
    return result


def inspect(model_or_onnx: str, options: Optional[InspectOptions] = None, **overrides):
    """The inspect stage: ``InspectResult`` for a MODEL, ``GateDiffResult`` for an ONNX file (module docstring)."""
    o = with_overrides(InspectOptions, options, overrides)
    t0 = time.perf_counter()
    if package_runtime(model_or_onnx):  # compiled code has no gate modules to hook nor tensors to tap
        raise DeployError(f'{model_or_onnx} is a compiled package: its gates cannot be probed; inspect the MODEL it '
                          f'was compiled from (timm-recal info {model_or_onnx} names it) or an ONNX export of it')
    final = _check_options(o)
    with torch_threads(o.threads):  # intra-op threads of the PyTorch passes (the runtimes take their own)
        if is_onnx_path(model_or_onnx):
            model_only = [flag for flag, off in (('--no-importance', not o.importance), ('--no-cost', not o.cost),
                                                 ('--no-ort-profile', not o.ort_profile)) if off]
            if model_only:  # the gate diff runs none of these analyses: the flags would be ignored, so refused
                raise DeployError(f"{' and '.join(model_only)} appl{'ies' if len(model_only) == 1 else 'y'} to a "
                                  f"MODEL (inspect MODEL {model_only[0]} ...), not to an ONNX file's gate diff")
            return _diff_file(model_or_onnx, o, final, t0)
        file_only = [flag for flag, value in (('--reference', o.reference), ('--precision', o.precision),
                                              ('--runtimes', o.runtimes)) if value is not None]
        if file_only:  # a MODEL's hooks run in PyTorch FP32: these would be ignored, so they are refused
            raise DeployError(f"{' and '.join(file_only)} appl{'ies' if len(file_only) == 1 else 'y'} to an ONNX "
                              f"file (inspect FILE.onnx {file_only[0]} ...), not to a MODEL")
        return _inspect_model(model_or_onnx, o, final, t0)


# --- text ---------------------------------------------------------------------------------------------------------
def _pct(v: Optional[float]) -> str:
    return '-' if v is None else f'{100 * v:.1f}%'


def _num(v: Optional[float], fmt: str = '.3f') -> str:
    return '-' if v is None else format(v, fmt)


def _random_note(r: InspectResult) -> str:
    """Said wherever the numbers are read: a random init's gates say nothing of a trained net's."""
    return "; random weights: timm's init, no checkpoint or pretrained tag" if r.weights == 'random' else ''


def format_inspect_md(r: InspectResult) -> str:
    """The Markdown tables of ``inspect.md``."""
    lines = [f"# Gates of {r.architecture} ({r.n_images} images, top-1 {r.top1:.2f}%{_random_note(r)})", '',
             f"Saturation: share of gate values > {r.saturated_above}. Class ratio: between-class spread of the "
             'class means over the within-class standard deviation (0: class-agnostic).', '',
             '| gate | kind | channels | params | MACs | torch time | ORT time | mean | saturation | class spread | '
             'class ratio |', '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
    for g in r.gates:
        lines.append(f"| `{g['gate']}` | {g['kind']} | {g['channels']} | {g.get('params', '-')} | "
                     f"{g.get('macs', '-')} | {_pct(g.get('torch_share'))} | {_pct(g.get('ort_share'))} | "
                     f"{g['mean']:.3f} | {_pct(g['saturation'])} | {_num(g['class_spread'], '.4f')} | "
                     f"{_num(g['class_ratio'], '.3f')} |")
    if r.importance:
        lines += ['', '| zeroed per gate | top-1, highest zeroed | top-1, lowest zeroed |', '|---:|---:|---:|']
        lines += [f"| {100 * i['fraction']:.0f}% | {i['top1_highest_zeroed']:.2f} | {i['top1_lowest_zeroed']:.2f} |"
                  for i in r.importance]
    lines += ['', '![excitation](excitation.png)'] + (['', '![importance](importance.png)'] if r.importance else [])
    return '\n'.join(lines) + '\n'


def format_inspect(r: InspectResult) -> str:
    """Console summary."""
    sat = ', '.join(f"{g['gate']} {_pct(g['saturation'])}" for g in r.gates)
    imp = ''
    if r.importance:
        last = r.importance[-1]
        imp = (f"; {100 * last['fraction']:.0f}% zeroed: top-1 {last['top1_highest_zeroed']:.2f} (highest) vs "
               f"{last['top1_lowest_zeroed']:.2f} (lowest)")
    return (f"{r.model_spec}: {len(r.gates)} gates, {r.n_images} images, top-1 {r.top1:.2f}%{imp}{_random_note(r)}\n"
            f"saturation: {sat}\nwrote {r.output}")


def format_gate_diff_md(r: GateDiffResult) -> str:
    where = f"{os.path.basename(r.onnx)} ({r.precision}, {r.runtime.get('runtime')})"
    lines = [f"# Gate outputs of {where} vs PyTorch FP32",
             '', f"{r.n_images} images, top-1 agreement {r.top1_agreement:.2f}%. Damaged: relative RMS error > "
             f"{r.threshold}. First damaged (in depth order): {r.first_damaged or 'none'}.", '',
             '| gate | cosine | cosine min | max error | rel. error | saturation (file / PyTorch) | rank flips |',
             '|---|---:|---:|---:|---:|---:|---:|']
    for g in r.gates:
        lines.append(f"| `{g['gate']}` | {g['cosine']:.6f} | {g['cosine_min']:.6f} | {g['max_error']:.4g} | "
                     f"{g['rel_error']:.4g} | {_pct(g['saturation'])} / {_pct(g['saturation_ref'])} | "
                     f"{_pct(g['rank_flips'])} |")
    lines += ['', f"Ranking, most damaged first: {', '.join(r.ranking)}"]
    return '\n'.join(lines) + '\n'


def format_gate_diff(r: GateDiffResult) -> str:
    worst = r.gates[[g['gate'] for g in r.gates].index(r.ranking[0])] if r.ranking else None
    head = (f"{os.path.basename(r.onnx)} ({r.precision}, {r.runtime.get('runtime')}) vs PyTorch FP32 on {r.n_images} "
            f"images: top-1 agreement {r.top1_agreement:.2f}%")
    if worst is not None:
        head += (f"; most damaged gate {worst['gate']} (rel. error {worst['rel_error']:.3g}, cosine "
                 f"{worst['cosine']:.5f}, rank flips {_pct(worst['rank_flips'])}); first damaged: "
                 f"{r.first_damaged or 'none'}")
    return head + f'\nwrote {r.output}'
