"""The bench stage: images/s and latency (p50/p90/p99) of a model under every runtime of ``--runtimes``
(PyTorch eager NCHW and channels_last, ONNX Runtime CPU/CUDA/TensorRT, and the others of ``runtimes.RUNTIMES``),
over a batch sweep.

A second model or ONNX file (``--compare``) is timed in the same run, interleaved with the first
(``timing.time_interleaved``, the two sides of a ratio next to each other: ``side_by_side``); ratios are
medians of the per-repeat ratios of those side-by-side windows, which is what the README's performance numbers
are; they are benchmarks, not timed tests. Runners come only from the runtime table.
"""
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from torch import nn

from timm_recal.outputs import resolve_output, temporary_folder, write_json

from .eager_runtime import amp_precision, check_device
from .errors import BatchNotSupported, CompileFailed, DeployError, NoNativePrecision
from .export import ExportOptions, export_source
from .images import scan_images
from .memory import check_batches_fit, model_footprint, onnx_footprint
from .metadata import onnx_precision, read_metadata
from .ort_runtime import available_providers
from .options import Int8Options, ModelOptions, OutputOptions, RuntimeOptions, TimingOptions, with_overrides
from .quantize import QuantizeOptions, convert_fp16, quantize_int8
from .results import Result
from .runtimes import (EAGER_PRECISIONS, PRECISIONS, RUNTIMES, Runner, artifact_hook, check_precisions,
                       default_runtimes, numbers_hook, package_runtime, open_runtime, runtime_spec,
                       supports_precision)
from .sources import Source, check_pairing, is_onnx_path, open_source
from .timing import busy_cpus, compute_ratios, machine_info, summarize_times, time_interleaved
from .malloc_policy import keep_freed_memory
from .torch_threads import torch_threads

__all__ = ['BenchOptions', 'BenchResult', 'bench', 'parse_batches', 'default_runtimes', 'compute_ratios',
           'summarize_times', 'time_interleaved', 'machine_info', 'busy_cpus', 'onnx_precision']


@dataclass
class BenchOptions(ModelOptions, RuntimeOptions, TimingOptions, Int8Options, OutputOptions):
    compare: Optional[str] = None
    compare_checkpoint: Optional[str] = None
    onnx: Optional[List[str]] = None
    compare_onnx: Optional[List[str]] = None
    batches: Any = (1, 16)
    #: what to time for a MODEL side (None: fp32); a compiled package runs at the precision it was built for,
    #: which an explicit list must include
    precisions: Optional[Sequence[str]] = None
    calib_images: int = 64


@dataclass
class BenchResult(Result):
    models: Dict[str, Any]
    settings: Dict[str, Any]
    threads: Dict[str, Any]
    machine: Dict[str, Any]
    runners: List[Dict[str, Any]]
    results: List[Dict[str, Any]]
    ratios: List[Dict[str, Any]]
    notes: List[str]
    output: Optional[str] = None
    tensorrt: List[Dict[str, Any]] = field(default_factory=list)  # trtexec-style numbers of each trt runner
    kind: str = 'timm-recal-bench'
    #: per role: which file a runtime's ``artifact`` hook picked to time, and why (OpenVINO's INT8: our QDQ file or
    #: an NNCF IR, ``pick_int8``), with that ``runtime`` and ``precision``
    int8_pick: Dict[str, Any] = field(default_factory=dict)
    #: runners that could not be timed because their compile died, failed or timed out (``{key, error}``)
    failed: List[Dict[str, Any]] = field(default_factory=list)


@dataclass
class _Timed:
    """A runner of one side (``role`` target/compare)."""
    role: str
    model: str
    runner: Runner

    @property
    def key(self) -> str:
        return f'{self.role}/{self.runner.name}/{self.runner.precision}'


@dataclass
class _Side:
    """What to time for one model (target or compare)."""
    role: str
    spec: str
    checkpoint: Optional[str] = None
    onnx: Optional[Sequence[str]] = None
    module: Any = None  # an already built model (its weights are used; the spec only names it)
    desc: Dict[str, Any] = field(default_factory=dict)


def parse_batches(text) -> Tuple[int, ...]:
    """``'1,16'`` (or a sequence) -> ``(1, 16)``, each a positive integer."""
    items = text.split(',') if isinstance(text, str) else list(text)
    try:
        batches = tuple(int(str(b).strip()) for b in items if str(b).strip())
    except ValueError:
        raise DeployError(f'--batch wants comma-separated positive integers like 1,16; got {text!r}') from None
    if not batches or any(b < 1 for b in batches):
        raise DeployError(f'--batch wants comma-separated positive integers like 1,16; got {text!r}')
    return tuple(dict.fromkeys(batches))


def _gate_runtimes(runtimes: Optional[Sequence[str]], device: str, notes: List[str]) -> List[str]:
    """The runtimes to time: the given ones (checked) or the device's default, without the GPU ones this
    machine cannot run (an error when asked for explicitly, a note otherwise)."""
    explicit = runtimes is not None
    kept = []
    for word in dict.fromkeys(runtimes if explicit else default_runtimes(device)):
        spec = runtime_spec(word)
        reason = None
        if spec.gpu and not device.startswith('cuda'):
            reason = f'{word} needs --device cuda'
        elif spec.providers and spec.providers[0] not in available_providers():
            reason = (f'{word} skipped: this onnxruntime has no {spec.providers[0]} '
                      f"(it offers {', '.join(available_providers())})")
        if reason and explicit:
            raise DeployError(reason)
        if reason:
            notes.append(reason)
        else:
            kept.append(word)
    if not kept:
        raise DeployError('no runtime left to time')
    return kept


def _precisions(o: BenchOptions) -> Sequence[str]:
    """The precisions asked of a MODEL side."""
    return tuple(o.precisions or ('fp32',))


def _check_options(o: BenchOptions) -> None:
    check_device(o.device)
    if o.threads is not None and o.threads < 1:
        raise DeployError(f'--threads must be >= 1, got {o.threads}')
    if o.repeats < 1:
        raise DeployError(f'--repeats must be >= 1, got {o.repeats}')
    if o.warmup < 0 or not 0 <= o.min_time_s < math.inf or o.min_iters < 1:
        raise DeployError(f'--warmup and --min-time must be finite and >= 0, got {o.warmup} and {o.min_time_s}')
    if o.compare is None and (o.compare_checkpoint or o.compare_onnx):
        raise DeployError('--compare-checkpoint/--compare-onnx need --compare')
    check_precisions(_precisions(o))
    if o.calib_data is not None and 'int8' in _precisions(o):
        scan_images(o.calib_data)  # a missing, empty or imageless folder is found now, not after the export


def _is_file(spec: str) -> bool:
    """A side given as a file (an ONNX file or a compiled package) rather than a MODEL."""
    return bool(package_runtime(spec)) or is_onnx_path(spec)


def _check_output(out_path: str, sides: Sequence['_Side']) -> None:
    """``-o`` must not name an input: ``--force`` would replace the model or weights just timed with JSON."""
    inputs = [p for side in sides for p in [side.spec, side.checkpoint, *(side.onnx or ())] if p]
    same = next((p for p in inputs if os.path.isfile(p) and os.path.realpath(p) == os.path.realpath(out_path)), None)
    if same is not None:
        raise DeployError(f'-o {out_path} is an input of this run ({same}); write the record elsewhere')


def _check_sides(sides: Sequence['_Side'], o: BenchOptions, runtimes: Sequence[str], notes: List[str]) -> None:
    """What a file side cannot use, refused before any export or timing: a file carries its weights (no
    --checkpoint/--use-ema), runs at the precision it was made for (an FP32 ONNX file also at the runtime
    precision bf16), and no file runs under autocast (--amp, with no MODEL side)."""
    if o.amp and all(_is_file(side.spec) for side in sides):
        raise DeployError(f'--amp applies to a MODEL (PyTorch under autocast); {sides[0].spec} is a file that '
                          'runs at its own precision')
    for side in sides:
        flag = '--checkpoint/--use-ema' if side.role == 'target' else '--compare-checkpoint'
        if package_runtime(side.spec) is not None:
            _check_package_side(side, o, runtimes)
            continue
        if not is_onnx_path(side.spec):
            continue  # a MODEL
        if side.onnx or side.module is not None:
            raise DeployError(f'{side.spec} is an ONNX file already; --onnx/--compare-onnx are for model specs')
        if side.checkpoint is not None or (o.use_ema and side.role == 'target'):
            raise DeployError(f'{flag} apply to a MODEL; {side.spec} is an ONNX file with its own weights')
        if o.precisions is None:
            continue  # the file's own precision
        built = onnx_precision(side.spec)
        runs = [built] + (['bf16'] if built == 'fp32' else [])  # bf16: a runtime precision of the FP32 file
        if not set(runs) & set(o.precisions):
            raise DeployError(f"{side.spec} is a {built} ONNX file, not --precision {','.join(o.precisions)}: a file "
                              f"runs at the precision it was made for (give --precision {' or '.join(runs)} or none; "
                              'timm-recal quantize makes the others)')
        skipped = [p for p in o.precisions if p not in runs]
        if skipped:
            notes.append(f"{side.role} {os.path.basename(side.spec)} is a {built} ONNX file: {', '.join(skipped)} "
                         'not timed for it')


def _check_package_side(side: '_Side', o: BenchOptions, runtimes: Sequence[str]) -> None:
    """A compiled file (a .pt2) runs under its own runtime with its own weights, at the precision it was built
    for (which an explicit --precision must include); read from its metadata, nothing loaded."""
    word = package_runtime(side.spec)
    if side.onnx or side.module is not None or side.checkpoint is not None or (o.use_ema and side.role == 'target'):
        raise DeployError(f'{side.spec} is a compiled package with its own weights; --checkpoint, --use-ema '
                          'and --onnx/--compare-onnx are for model specs')
    if word not in runtimes:
        raise DeployError(f'{side.spec} is a compiled package: it runs under {word}; add {word} to --runtimes')
    src = open_source(side.spec, ModelOptions(img_size=o.img_size, device=o.device))  # refuses another --device
    built = src.meta['precision']
    if o.precisions is not None and built not in o.precisions:
        raise DeployError(f"{side.spec} was compiled for {built}, not --precision {','.join(o.precisions)}: a "
                          f'package runs at the precision it was built for (give --precision {built} or none)')


def _onnx_files(side: _Side, src: Source) -> Dict[str, str]:
    """The given ONNX files of a MODEL side by precision, each checked to come from that model."""
    files: Dict[str, str] = {}
    for path in side.onnx:
        p = onnx_precision(path)
        if p in files:
            raise DeployError(f'two {p} ONNX files for {side.spec}: {files[p]} and {path}')
        check_pairing(src.info, read_metadata(path), path, src.model)
        files[p] = path
    return files


def _export_for_bench(side: _Side, src: Source, o: BenchOptions, workdir: str, log) -> Dict[str, str]:
    """The export and quantize stages into ``workdir``, for the ONNX runtimes of a MODEL side."""
    import copy
    files = {'fp32': os.path.join(workdir, f'{side.role}.onnx')}
    log(f'bench: exporting {side.spec} to ONNX (temporary file)')
    cpu = Source(src.spec, 'model', src.info, model=copy.deepcopy(src.model).cpu())
    export_source(cpu, files['fp32'], ExportOptions(force=True))
    q = QuantizeOptions(**{k: getattr(o, k) for k in Int8Options.__dataclass_fields__}, force=True,
                        progress=sys.stderr.isatty())
    if 'int8' in _precisions(o):
        log(f'bench: quantizing {side.spec} to INT8 ({o.calib_images} calibration images)')
        files['int8'] = quantize_int8(files['fp32'], os.path.join(workdir, f'{side.role}.int8.onnx'),
                                      o.calib_data, q).output
    if 'fp16' in _precisions(o):
        log(f'bench: converting {side.spec} to FP16')
        files['fp16'] = convert_fp16(files['fp32'], os.path.join(workdir, f'{side.role}.fp16.onnx'), q).output
    # the FP32 file stays even when not timed: bf16 runs it, and the OpenVINO INT8 pick measures against it
    return files


def _side_sources(side: _Side, o: BenchOptions, runtimes: Sequence[str], workdir: str, notes: List[str],
                  log) -> Tuple[Optional[Source], Dict[str, str], Source]:
    """``(model source or None, ONNX files by precision, the resolved source)`` of one side."""
    opts = ModelOptions(side.checkpoint, o.num_classes, o.use_ema and side.role == 'target', o.img_size, o.device)
    word = package_runtime(side.spec)
    if word is not None:  # a compiled file (a .pt2): its own runtime runs it, at the precision it was built for
        src = open_source(side.spec, opts)  # its options were checked before any work (``_check_sides``)
        others = [w for w in runtimes if w != word]
        if others:
            notes.append(f"{side.role} {os.path.basename(side.spec)} is a compiled package: only {word} runs it "
                         f"({', '.join(others)} skipped)")
        return None, {}, src
    if is_onnx_path(side.spec):  # its options were checked before any work (``_check_sides``)
        src = open_source(side.spec, opts)
        check_batches_fit(onnx_footprint(side.spec, src.info['input_size']), parse_batches(o.batches), o.device,
                          f'{side.role} {os.path.basename(side.spec)}')
        if any(RUNTIMES[w].kind == 'model' for w in runtimes):
            notes.append(f'{side.role} {os.path.basename(side.spec)} is an ONNX file: the PyTorch runtimes skipped')
        return None, {onnx_precision(side.spec): side.spec}, src
    if side.module is None:
        log(f'bench: loading {side.spec}')
    src = open_source(side.spec, opts, module=side.module)
    src.model = src.model.to(o.device).eval()
    check_batches_fit(model_footprint(src.model, src.info['input_size']), parse_batches(o.batches), o.device,
                      f'{side.role} {side.spec}')  # before the export: the first slow step
    if not any(RUNTIMES[w].kind == 'onnx' for w in runtimes):
        return src, {}, src
    if side.onnx:
        files = _onnx_files(side, src)
        missing = [p for p in _precisions(o) if p in PRECISIONS and files.get('fp32' if p == 'bf16' else p) is None]
        if missing:  # asked for, with no file to run it: said, not silently left out of the tables
            given = ', '.join(os.path.basename(f) for f in side.onnx)
            why = ' (bf16 runs the FP32 file)' if 'bf16' in missing else ''
            notes.append(f"{side.role}: --onnx ({given}) has no file for {', '.join(missing)}{why}: not timed under "
                         'the ONNX runtimes')
        return src, files, src
    side.desc['onnx_temporary'] = True
    return src, _export_for_bench(side, src, o, workdir, log), src


def _model_precisions(word: str, o: BenchOptions) -> List[str]:
    """What a PyTorch runtime times: fp32 (also as the reference of an ONNX-only precision list), the other
    asked precisions it runs, and autocast (``--amp``) for eager."""
    spec = runtime_spec(word)
    asked = _precisions(o)
    lower = [p for p in asked if p in spec.precisions and p != 'fp32']
    return (['fp32'] if 'fp32' in asked or not lower else []) + lower + \
        ([amp_precision(o.device)] if o.amp and spec.reference else [])


def _open_or_note(word: str, source: Any, p: str, notes: List[str], role: str, failed: List[Dict[str, Any]],
                  **kw) -> Optional[Runner]:
    """The runner, or None with a note where the CPU has no native form of ``p`` (never timed as an emulation),
    or where a compiled runtime's compile died or timed out (recorded in ``failed``; the others go on)."""
    try:
        return open_runtime(word, source, precision=p, **kw)
    except NoNativePrecision as e:
        notes.append(f'{role}/{word}/{p} not timed: {e}')
    except CompileFailed as e:
        notes.append(f'{role}/{word}/{p} FAILED: {e}')
        failed.append({'key': f'{role}/{word}/{p}', 'error': str(e)})
    return None


def _onnx_precisions(word: str, files: Dict[str, str], o: BenchOptions,
                     notes: List[str], role: str) -> List[Tuple[str, str]]:
    """``[(precision, file)]`` an ONNX runtime times: the files it supports, and ``bf16`` on the FP32 file."""
    out = []
    for p in PRECISIONS:
        path = files.get('fp32' if p == 'bf16' else p)
        if path is None or (p == 'bf16' and 'bf16' not in _precisions(o)):
            continue
        if p == 'fp32' and 'fp32' not in _precisions(o):
            continue  # a MODEL side's file exported only for bf16; a file side asked for bf16 alone
        if not supports_precision(word, p):
            notes.append(f'{role}/{word}/{p} skipped: {runtime_spec(word).label} has no {p.upper()} '
                         f"(it runs {', '.join(runtime_spec(word).precisions)})")
            continue
        out.append((p, path))
    return out


def _side_runners(side: _Side, o: BenchOptions, runtimes: Sequence[str], workdir: str, notes: List[str],
                  log, picks: Dict[str, Any], failed: List[Dict[str, Any]]) -> List[_Timed]:
    """Every runner of one side: eager runtimes on its module, ONNX runtimes on each of its files."""
    model_src, files, src = _side_sources(side, o, runtimes, workdir, notes, log)
    name = src.name
    side.desc.update(spec=side.spec, kind=src.kind, name=name, input_size=list(src.info['input_size']))
    if model_src is not None or src.kind == 'package':
        side.desc.update(weights=src.info.get('weights'), checkpoint=src.info.get('checkpoint'))
    if src.kind == 'package':
        word = package_runtime(side.spec)
        runner = _open_or_note(word, src.spec, src.meta['precision'], notes, side.role, failed, threads=o.threads)
        return [_Timed(side.role, name, runner)] if runner is not None else []
    timed = []
    for word in runtimes:
        if RUNTIMES[word].kind == 'model' and model_src is not None:
            for p in _model_precisions(word, o):
                runner = _open_or_note(word, src.model, p, notes, side.role, failed, device=o.device,
                                       input_size=src.info['input_size'], threads=o.threads, info=src.info,
                                       compile_timeout=o.compile_timeout, log=log)
                timed += [_Timed(side.role, name, runner)] if runner is not None else []
        elif RUNTIMES[word].kind == 'onnx':
            hook = artifact_hook(word)
            for p, path in _onnx_precisions(word, files, o, notes, side.role):
                record = None
                if hook is not None:  # a runtime that picks or builds its own file (OpenVINO's INT8 pick)
                    path, record = hook(path, p, files, src, o, workdir, notes, log, side.role)
                if record is not None:  # the report names the runtime and precision from the record
                    picks[side.role] = {'runtime': word, 'precision': p, **record}
                variant = (record or {}).get('timed')
                runner = _open_or_note(word, path, p, notes, side.role, failed, threads=o.threads)
                if runner is not None:
                    runner.variant = variant
                    timed.append(_Timed(side.role, name, runner))
    if files and any(RUNTIMES[w].kind == 'onnx' for w in runtimes):
        side.desc['onnx'] = {p: os.path.abspath(f) for p, f in files.items()}
    return timed


def side_by_side(timed: List[_Timed]) -> List[_Timed]:
    """The timing order: the target's and the compare model's runner of one runtime and precision next to each
    other (target first), so the two windows of a ratio's repeat run back to back (``timing.paired_ratio``)."""
    slot: Dict[Tuple[str, str], int] = {}
    for t in timed:
        slot.setdefault((t.runner.name, t.runner.precision), len(slot))
    return sorted(timed, key=lambda t: slot[(t.runner.name, t.runner.precision)])  # stable: sides keep their order


def _run_batches(timed: List[_Timed], batches: Sequence[int], o: BenchOptions, clock, notes: List[str],
                 log, failed: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    results = []
    for b in batches:
        calls, by_key = [], {}
        for t in side_by_side(timed):
            try:
                calls.append((t.key, t.runner.prepare(b)))  # set-up and compiles: outside the timing windows
                by_key[t.key] = t
            except BatchNotSupported as e:
                notes.append(f'{t.key} batch {b} skipped: {e}')
            except CompileFailed as e:
                notes.append(f'{t.key} batch {b} FAILED: {e}')
                failed.append({'key': t.key, 'batch': b, 'error': str(e)})
        if not calls:
            continue
        log(f"bench: batch {b}: timing {', '.join(k for k, _ in calls)}")
        windows = time_interleaved(calls, warmup=o.warmup, repeats=o.repeats, min_time_s=o.min_time_s,
                                   min_iters=o.min_iters, clock=clock)
        for t in [t for t in timed if t.key in by_key]:  # records in the sides' order, as the tables group them
            variant = getattr(t.runner, 'variant', None)
            results.append(dict(role=t.role, model=t.model, runtime=t.runner.name, precision=t.runner.precision,
                                batch=b, **({'variant': variant} if variant else {}),
                                **summarize_times(windows[t.key], b)))
    return results


def _busy_note(machine: Dict[str, Any]) -> Optional[str]:
    busy = machine.get('busy_cpus_at_start')
    if busy is not None and machine['usable_cpus'] and busy > 0.5 * machine['usable_cpus']:
        return (f"the machine was busy when the benchmark started ({busy:.2f} CPUs busy with other work "
                f"on {machine['usable_cpus']} CPUs): absolute numbers are low, ratios less reliable")
    return None


def _settings(o: BenchOptions, batches, runtimes, timed: List[_Timed]) -> Dict[str, Any]:
    return {
        'batches': list(batches), 'runtimes': list(runtimes),
        'precisions': sorted({t.runner.precision for t in timed}),
        'warmup': o.warmup, 'repeats': o.repeats, 'min_time_s': o.min_time_s, 'min_iters': o.min_iters,
        'device': o.device, 'amp': any(t.runner.precision in EAGER_PRECISIONS for t in timed),  # what ran
        'input': 'standard normal, seed 0',
        'order': ('interleaved: each repeat times every runner once, forward order on even repeats, reversed on odd; '
                  'the target and compare runner of one runtime and precision back to back'),
        'images_per_s': 'median over repeats of batch * calls / seconds in each timing window',
        'ratios': 'median over repeats of the ratio of the two windows of the same repeat',
        **({'int8': _int8_recipe(o)} if any(t.runner.precision == 'int8' for t in timed) else {}),
    }


def _int8_recipe(o: BenchOptions) -> Dict[str, Any]:
    """How bench quantized the INT8 files it made (an INT8 file given with ``--onnx`` records its own recipe in
    its metadata), so a table of INT8 speeds says which recipe it measured."""
    return {'calib_data': o.calib_data or 'bundled samples',  # written files make an absolute path public
            'calib_images': o.calib_images, 'calib_method': o.calib_method, 'fp32_layers': o.fp32_layers,
            'gates_float': bool(o.gates_float), 'gate_fusion': o.gate_fusion, 'symmetric': bool(o.symmetric)}


def _runner_entry(t: _Timed) -> Dict[str, Any]:
    """``describe()`` of a timed runner with ``compiled_shape``: 'fixed' (compiled per batch size) or 'dynamic'."""
    info = {'key': t.key, 'model': t.model, **t.runner.describe()}
    shape = str(info.get('shape', 'dynamic'))
    info['compiled_shape'] = 'fixed' if shape.startswith('fixed') else 'dynamic'
    if getattr(t.runner, 'variant', None):
        info['int8_variant'] = t.runner.variant
    return info


def _extra_numbers(timed: List[_Timed], runtimes: Sequence[str], batches: Sequence[int], o: BenchOptions,
                   notes: List[str], log) -> Dict[str, Any]:
    """Per record field, the numbers a runtime's users expect beyond images/s (the table's ``extra_numbers``)."""
    out: Dict[str, Any] = {}
    for word in runtimes:
        hook = numbers_hook(word)
        mine = [t for t in timed if t.runner.name == word]
        if hook is not None and mine:
            out[hook[0]] = hook[1](mine, batches, o, notes, log)
    return out


def bench(target: str, options: Optional[BenchOptions] = None, *, model: Optional[nn.Module] = None,
          compare_model: Optional[nn.Module] = None, log: Optional[Callable[[str], None]] = None,
          clock: Callable[[], float] = time.perf_counter, **overrides) -> BenchResult:
    """Time ``target`` (and ``compare``) at each batch size; returns (and writes to ``output``) the record.

    ``target``/``compare`` are a model spec, an ``.onnx`` file (ONNX runtimes only) or a compiled package (a
    ``.pt2``: its own runtime, at its precision; the default runtimes then are that one). For a model spec the ONNX
    runtimes use ``onnx`` files if given, else a temporary export in each of ``precisions`` (INT8 calibrated on
    ``calib_data``, the bundled samples when None). ``runtimes`` defaults to ``default_runtimes(device)``;
    ``amp`` adds eager runners under autocast; ``threads`` sets torch's and the runtimes' intra-op threads.
    ``model``/``compare_model``: already built modules (``pipeline`` passes the ones it exported).
    """
    import torch
    o = with_overrides(BenchOptions, options, overrides)
    log = log or (lambda msg: None)
    out_path = resolve_output(o.output, o.force, default_name='bench.json', suffix='.json') if o.output else None
    batches = parse_batches(o.batches)
    _check_options(o)
    notes: List[str] = []
    packaged = list(dict.fromkeys(w for w in (package_runtime(target), package_runtime(o.compare or '')) if w))
    runtimes = _gate_runtimes(o.runtimes if o.runtimes is not None or not packaged else packaged, o.device, notes)
    sides = [_Side('target', target, o.checkpoint, o.onnx, model)]
    if o.compare:
        sides.append(_Side('compare', o.compare, o.compare_checkpoint, o.compare_onnx, compare_model))
    if out_path:
        _check_output(out_path, sides)
    first_side_note = len(notes)
    _check_sides(sides, o, runtimes, notes)
    machine = machine_info()
    notes[first_side_note:first_side_note] = [n for n in [_busy_note(machine)] if n]
    with torch_threads(o.threads) as threads_in_force, keep_freed_memory(o.keep_freed_memory) as malloc, \
            temporary_folder('timm_recal_bench_') as workdir:
        picks: Dict[str, Any] = {}
        failed: List[Dict[str, Any]] = []
        timed = [t for side in sides
                 for t in _side_runners(side, o, runtimes, workdir, notes, log, picks, failed)]
        if not timed:
            raise DeployError('nothing to time: ' + '; '.join(notes))
        if o.amp and not any(t.runner.precision in EAGER_PRECISIONS for t in timed):
            notes.append('--amp not applied: no runtime timed a MODEL side under autocast')
        results = _run_batches(timed, batches, o, clock, notes, log, failed)
        extra = _extra_numbers(timed, runtimes, batches, o, notes, log)
    record = BenchResult(
        models={s.role: s.desc for s in sides}, settings=_settings(o, batches, runtimes, timed),
        threads={'torch_intra_op': threads_in_force, 'torch_inter_op': torch.get_num_interop_threads(),
                 'ort_intra_op': o.threads if o.threads else 'default (one per physical core)', 'malloc': malloc},
        machine=machine, runners=[_runner_entry(t) for t in timed],
        results=results, ratios=compute_ratios(results), notes=notes, int8_pick=picks, failed=failed, **extra)
    if out_path:
        record.output = out_path  # before the write: the file and --json agree
        write_json(record, out_path, force=True)
    return record
