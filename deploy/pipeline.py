"""``timm-recal pipeline``: the deploy stages for one model (and a base model beside it), with a report.

The pipeline only orchestrates: it runs the stages of ``PIPELINE_STAGES`` that ``--stages`` names, in table
order: export (FP32) -> quantize (FP16, INT8) -> parity (each file against the PyTorch model) -> validate
(labelled images) -> bench (target and ``--compare`` model, every file, interleaved) -> report (``report.md``,
``report.json``, ``throughput.png``). Each stage's result is kept as JSON in the output folder. The folder is
built beside its final path and renamed into place at the end (``timm_recal.outputs.atomic_folder``): a failed
or interrupted run leaves nothing, and ``--force`` replaces the whole folder of an earlier run.

Without a MODEL it runs on the embedded default: the trained CIFAR model bundled in the package
(``timm_recal/assets/default_model``, a ``save_for_hf`` folder) and the bundled sample images, offline and in
a few minutes on 2 CPU cores.
"""
import math
import os
import re
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from timm_recal.outputs import atomic_folder, write_json

from .bench import BenchOptions, bench as bench_stage, parse_batches
from .errors import DeployError, NoNativePrecision, NotAvailableHere
from .export import ExportOptions, export_source
from .images import bundled_samples_dir, scan_images, split_indices, spread_indices
from .model_io import is_onnx_path, parse_model_spec
from .options import (DEFAULT_PIPELINE_STAGES, PIPELINE_STAGES, Int8Options, ModelOptions, RuntimeOptions,
                      TritonOptions, with_overrides)
from .parity import parity as parity_stage
from .quantize import QuantizeOptions, convert_fp16, quantize_int8
from .report import write_report
from .results import Result
from .recommend import recommend
from .runtimes import (DEFAULT_ONNX_RUNTIME, FILE_PRECISIONS, PRECISIONS, RUNTIMES, builder_hook, builder_runtimes,
                       check_precisions, default_runtimes, open_runtime, package_runtime, parse_runtimes,
                       runtime_label, supports_precision)
from .sources import Source, open_source
from .triton import write_triton_repository
from .triton_backends import check_batching, package_hook, triton_backend
from .validate import validate as validate_stage

__all__ = ['DEFAULT_MODEL_DIR', 'FALLBACK_MODEL', 'DEFAULT_COMPARE', 'TIMING', 'PIPELINE_STAGES', 'STAGE_STEPS',
           'PipelineOptions', 'PipelineResult', 'default_model', 'parse_stages', 'pipeline']

#: asset folder (inside ``timm_recal.assets``) of the bundled trained default model
DEFAULT_MODEL_DIR = 'default_model'
#: used, with random weights, while no trained default model is bundled
FALLBACK_MODEL = 'shufflenetv2_x0_5_cifar'
#: the base model the default run compares against (None: no comparison)
DEFAULT_COMPARE: Optional[str] = None
#: bench timing: 'full' for real measurements, 'quick' for the default run and smoke tests
TIMING = {
    'full': dict(warmup=3, repeats=5, min_time_s=1.0),
    'quick': dict(warmup=2, repeats=3, min_time_s=0.2),
}


@dataclass
class PipelineOptions(ModelOptions, RuntimeOptions, Int8Options, TritonOptions):
    compare: Optional[str] = None
    compare_checkpoint: Optional[str] = None
    data: Optional[str] = None
    folder_order: bool = False
    precisions: Sequence[str] = PRECISIONS
    batches: Any = (1, 16)
    exporter: str = 'dynamo'
    stages: Optional[Sequence[str]] = None
    quick: Optional[bool] = None
    warmup: Optional[int] = None
    repeats: Optional[int] = None
    min_time_s: Optional[float] = None
    keep_freed_memory: bool = False
    force: bool = False


@dataclass
class PipelineResult(Result):
    model: str
    model_name: str
    compare: Optional[str]
    compare_name: Optional[str]
    output_dir: str
    settings: Dict[str, Any]
    models: Dict[str, Any]
    parity: List[Dict[str, Any]]
    validate: List[Dict[str, Any]]
    bench: Optional[Dict[str, Any]]
    stages: List[Dict[str, Any]]
    failed_stages: List[str]
    passed: bool
    notes: List[str]
    engine: List[Dict[str, Any]] = field(default_factory=list)
    triton: Optional[Dict[str, Any]] = None
    seconds: float = 0.0
    report: Optional[Dict[str, str]] = None
    kind: str = 'timm-recal-pipeline'
    #: per batch size: the fastest runtime x precision of the target that passed parity (``recommend``)
    recommendation: List[Dict[str, Any]] = field(default_factory=list)


def pipeline_runtimes(o: 'PipelineOptions') -> List[str]:
    """``--runtimes``, else bench's default for the device plus the rows whose ``pipeline_on`` names it (OpenVINO
    on CPU) when their package is installed."""
    if o.runtimes is not None:
        return list(o.runtimes)
    return default_runtimes(o.device, pipeline=True)


def parity_jobs(o: 'PipelineOptions') -> List[Tuple[str, str]]:
    """``(runtime, precision)`` pairs the parity stage checks: each ONNX runtime of the run
    (``DEFAULT_ONNX_RUNTIME`` when none) at each precision it supports; ``bf16`` runs the FP32 file. Without
    ``--runtimes`` the bench's default runtimes (OpenVINO included) are checked only when the bench runs: the
    recommendation needs them."""
    stages = o.stages if o.stages is not None else PIPELINE_STAGES
    words = pipeline_runtimes(o) if o.runtimes is not None or 'bench' in stages else [DEFAULT_ONNX_RUNTIME]
    checked = [w for w in words if not RUNTIMES[w].reference]  # ONNX runtimes and compiled PyTorch
    if not any(RUNTIMES[w].kind == 'onnx' for w in checked):
        checked = [DEFAULT_ONNX_RUNTIME] + checked
    return [(w, p) for w in checked for p in o.precisions if supports_precision(w, p)]


def default_model() -> Tuple[str, Optional[str]]:
    """``(model spec, note)`` of the embedded default: ``local-dir:`` the bundled trained model, else the
    fallback architecture with random weights (the note says so)."""
    root = resources.files('timm_recal.assets').joinpath(DEFAULT_MODEL_DIR)
    path = os.fspath(root) if isinstance(root, os.PathLike) else str(root)
    if os.path.isfile(os.path.join(path, 'config.json')):
        return f'local-dir:{path}', None
    return FALLBACK_MODEL, (f'no trained default model is bundled (timm_recal/assets/{DEFAULT_MODEL_DIR}); '
                            f'the default run falls back to {FALLBACK_MODEL}')


def _relocate(obj: Any, old: str, new: str) -> Any:
    """``obj`` with every path under the temporary folder ``old`` moved to ``new`` (where it will be), also inside
    longer texts (``tritonserver --model-repository=OLD/triton``, an error message)."""
    if isinstance(obj, dict):
        return {k: _relocate(v, old, new) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_relocate(v, old, new) for v in obj]
    if isinstance(obj, str) and old in obj:
        return re.sub(re.escape(old) + r'(?=$|[^\w.-])', lambda m: new, obj)
    return obj


@dataclass
class _Role:
    """One model of the run: ``target`` or ``compare``."""
    role: str
    spec: str
    checkpoint: Optional[str]
    source: Optional[Source] = None
    files: Dict[str, str] = field(default_factory=dict)
    #: per precision: the images of the data folder a file was calibrated on (the INT8 split), which the
    #: model's validation leaves out, as standalone parity does
    calibrated_on: Dict[str, List[int]] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return '' if self.role == 'target' else f'{self.role}_'


class _Run:
    """Stage bookkeeping: numbered progress lines, timing, per-stage JSON files and status."""

    def __init__(self, work: str, final: str, o: PipelineOptions, roles: List[_Role], log, total: int):
        self.work, self.final, self.o, self.roles, self.log, self.total = work, final, o, roles, log, total
        self.stages: List[Dict[str, Any]] = []
        self.notes: List[str] = []
        self.parity: List[Dict[str, Any]] = []
        self.validate: List[Dict[str, Any]] = []
        self.bench: Optional[Dict[str, Any]] = None
        self.engine: List[Dict[str, Any]] = []
        self.triton: Optional[Dict[str, Any]] = None
        #: ``(runtime, precision)`` -> the file that runtime's builder made (the engine stage)
        self.built: Dict[Tuple[str, str], str] = {}

    def skip(self, stage: str, role: str, precision: Optional[str], reason: str) -> None:
        """Record a stage this machine cannot run (a missing library or GPU): reported, not a failure."""
        self.log(f"[{len(self.stages) + 1}/{self.total}] {' '.join(x for x in (stage, role, precision) if x)} "
                 f'... skipped: {reason}')
        self.stages.append(dict(stage=stage, role=role, precision=precision, json=None, status='skipped',
                                reason=reason, seconds=0.0))

    def path(self, name: str) -> str:
        return os.path.join(self.work, name)

    def keep(self, result: Any, json_name: str) -> Dict[str, Any]:
        """The result as a dict with final paths, written to ``json_name`` in the folder."""
        plain = _relocate(result.to_dict() if hasattr(result, 'to_dict') else dict(result), self.work, self.final)
        write_json(plain, self.path(json_name))
        return plain

    def stage(self, stage: str, role: str, precision: Optional[str], fn: Callable[[], Any],
              json_name: Optional[str] = None, fatal: bool = False) -> Optional[Dict[str, Any]]:
        """Run ``fn``; record it. A DeployError ends the pipeline if ``fatal``, else is recorded as an error."""
        self.log(f"[{len(self.stages) + 1}/{self.total}] {' '.join(x for x in (stage, role, precision) if x)} ...")
        rec: Dict[str, Any] = dict(stage=stage, role=role, precision=precision, json=None)
        t0 = time.perf_counter()
        try:
            result = self.keep(fn(), json_name) if json_name else fn()
        except NotAvailableHere as e:  # this machine cannot run it (natively): reported, not a failure
            self.stages.append(dict(rec, status='skipped', reason=str(e), seconds=0.0))
            self.log(f'    skipped: {e}')
            return None
        except DeployError as e:
            error = _relocate(str(e), self.work, self.final)  # names the folder being built by its final path
            rec.update(status='error', error=error, seconds=round(time.perf_counter() - t0, 2))
            self.stages.append(rec)
            self.log(f'    error: {error}')
            if fatal:
                raise
            return None
        rec.update(json=json_name, seconds=round(time.perf_counter() - t0, 2))
        rec['status'] = ('passed' if result.get('passed') else 'FAILED') if 'passed' in result else 'ok'
        self.stages.append(rec)
        self.log(f'    {rec["status"]} ({rec["seconds"]:.1f} s)')
        return result


# --- the stages: each runs for every role, in the order of PIPELINE_STAGES -----------------------------------
def _export(run: _Run) -> None:
    for r in run.roles:
        r.source = open_source(r.spec, ModelOptions(r.checkpoint, run.o.num_classes,
                                                    run.o.use_ema and r.role == 'target', run.o.img_size, 'cpu'))
        if r.source.info['weights'] == 'random':
            run.notes.append(f'{r.role} {r.spec} has random weights (no checkpoint): its accuracy means nothing, '
                             'and quantized parity on near-constant logits may miss its gates')
        path = run.path(f"{r.prefix}{r.source.info['architecture']}.onnx")
        run.stage('export', r.role, 'fp32', lambda: export_source(r.source, path, ExportOptions(
            exporter=run.o.exporter)), json_name=f'{r.prefix}export.json', fatal=True)
        r.files['fp32'] = path


def _quantize_one(run: _Run, r: _Role, p: str, path: str):
    q = QuantizeOptions(**{k: getattr(run.o, k) for k in Int8Options.__dataclass_fields__}, precision=p)
    if p == 'int8' and 'engine' in run.o.stages and any(RUNTIMES[w].int8_symmetric for w in builder_runtimes()):
        q = with_overrides(QuantizeOptions, q, {'symmetric': True})  # the QDQ form a builder parses
    if p == 'fp16':
        return convert_fp16(r.files['fp32'], path, q)
    root = _data_root(run, r)
    if run.o.calib_data is not None:
        _check_calib_disjoint(run.o.calib_data, root)
        return quantize_int8(r.files['fp32'], path, run.o.calib_data, q)
    n = len(scan_images(root)[0])  # calibrate on one part of the images, parity and validate measure the other
    r.calibrated_on[p] = split_indices(n, run.o.calib_images)[0]
    return quantize_int8(r.files['fp32'], path, root, q, indices=r.calibrated_on[p], split_of=n)


def _data_root(run: _Run, r: _Role) -> str:
    """The folder parity and validate measure ``r`` on: ``--data``, else the bundled samples of its model."""
    return run.o.data if run.o.data is not None else bundled_samples_dir(r.source.data_config)


def _check_calib_disjoint(calib_data: str, root: str) -> None:
    """``--calib-data`` must not overlap the measured images: an INT8 file's parity and top-1 on the images it
    was calibrated on would be optimistic (standalone parity refuses the same)."""
    a, b = os.path.realpath(calib_data), os.path.realpath(root)
    if a == b or a.startswith(b + os.sep) or b.startswith(a + os.sep):
        raise DeployError(f'--calib-data {calib_data} overlaps the measured images {root}; calibrate on disjoint '
                          'images (CIFAR-10: calibrate on train, measure on test), or leave --calib-data out to '
                          'split --data in two')


def _quantize(run: _Run) -> None:
    for r in run.roles:
        for p in [p for p in run.o.precisions if p != 'fp32' and p in FILE_PRECISIONS]:
            path = run.path(f"{r.prefix}{r.source.info['architecture']}_{p}.onnx")
            if run.stage('quantize', r.role, p, lambda: _quantize_one(run, r, p, path),
                         json_name=f'{r.prefix}quantize_{p}.json') is not None:
                r.files[p] = path
            else:  # no file: its parity and validation steps will not run
                run.total -= (sum(q == p for _, q in parity_jobs(run.o)) if 'parity' in run.o.stages else 0) + \
                    ('validate' in run.o.stages) + len(builder_runtimes()) * ('engine' in run.o.stages)


def _step(name: str, prefix: str, word: str, p: str, short: bool) -> Tuple[str, str]:
    """``(progress label, JSON name)`` of one step of ``word`` at ``p``: the default row's keep the short forms
    (``parity_fp32.json``), the others name their runtime (``parity_openvino_fp32.json``, ``fp32 (openvino)``)."""
    return (p, f'{prefix}{name}_{p}.json') if short else (f'{p} ({word})', f'{prefix}{name}_{word}_{p}.json')


def _parity_one(run: _Run, r: _Role, word: str, p: str, path: Optional[str]) -> None:
    """One parity check: the file ``path`` under an ONNX runtime, or (``path`` None) a compiled PyTorch runtime
    on the module itself."""
    o = run.o
    label, name = _step('parity', r.prefix, word, p, RUNTIMES[word].onnx_default)
    res = run.stage('parity', r.role, label, lambda: parity_stage(
        r.spec, onnx_path=path, model=r.source.model, data=o.data, img_size=o.img_size, device=o.device,
        threads=o.threads, folder_order=o.folder_order, runtimes=[word], precision=p,
        compile_timeout=o.compile_timeout), json_name=name)
    if res is not None:
        run.parity.append({'role': r.role, 'runtime': word, 'precision': p, 'result': res})


def _parity(run: _Run) -> None:
    jobs = parity_jobs(run.o)
    for r in run.roles:
        for word, p in jobs:
            if RUNTIMES[word].kind == 'model':  # runs the module: no file; an unsupported precision is skipped
                _parity_one(run, r, word, p, None)
                continue
            path = r.files.get('fp32' if p == 'bf16' else p)
            if path is None:
                continue
            if p == 'bf16':
                try:  # a CPU without native BF16: a note, not a failed stage (and not an emulation)
                    open_runtime(word, path, precision='bf16', threads=run.o.threads)
                except NoNativePrecision as e:
                    run.notes.append(f'{r.role} {word} bf16 not checked: {e}')
                    run.total -= 1
                    continue
            _parity_one(run, r, word, p, path)


def _validate(run: _Run) -> None:
    o = run.o
    for r in run.roles:
        images, classes = scan_images(_data_root(run, r))
        if not classes:
            run.notes.append(f'{r.role}: the images have no class folders; validation skipped')
            continue
        jobs = [('pytorch', r.spec, dict(model=r.source.model, img_size=o.img_size, device=o.device, amp=o.amp))]
        jobs += [(p, path, dict(threads=o.threads)) for p, path in r.files.items()]
        # an INT8 file calibrated on part of these images is measured on the others, and so is every other row
        # of the model: the table compares top-1s of the same images
        held = sorted(set().union(*r.calibrated_on.values()))
        for _, _, kw in jobs:
            kw['folder_order'] = o.folder_order
            if held:
                kw['indices'] = spread_indices(len(images), None, exclude=held)
        for what, src, kw in jobs:
            res = run.stage('validate', r.role, what, lambda: validate_stage(src, o.data, **kw),
                            json_name=f'{r.prefix}validate_{what}.json')
            if res is not None:
                run.validate.append({'role': r.role, 'precision': what, 'result': res,
                                     'n_images': res['n_images'],
                                     'calibration_images_excluded': len(held)})


def _bench(run: _Run) -> None:
    o = run.o
    timing = dict(TIMING['quick' if o.quick else 'full'])
    timing.update({k: getattr(o, k) for k in timing if getattr(o, k) is not None})
    target, compare = run.roles[0], (run.roles[1] if len(run.roles) > 1 else None)
    options = BenchOptions(
        compare=compare.spec if compare else None, onnx=list(target.files.values()),
        compare_onnx=list(compare.files.values()) if compare else None, batches=o.batches,
        runtimes=pipeline_runtimes(o), precisions=list(o.precisions), img_size=o.img_size, threads=o.threads,
        device=o.device, amp=o.amp, keep_freed_memory=bool(o.keep_freed_memory),
        **{k: getattr(o, k) for k in Int8Options.__dataclass_fields__}, **timing)
    run.bench = run.stage('bench', ' + '.join(r.role for r in run.roles), ','.join(o.precisions), lambda: bench_stage(
        target.spec, options, model=target.source.model, compare_model=compare.source.model if compare else None,
        log=lambda m: run.log('    ' + m)), json_name='bench.json')


def _build_one(run: _Run, word: str, p: str, path: str, built: Dict[str, Any]) -> Dict[str, Any]:
    """The record of one file built by ``word``'s builder; the file's path (in the folder being built) goes to
    ``built['file']``, since the kept record names the final folder."""
    try:
        build = builder_hook(word)
    except DeployError as e:  # its module's library is not installed here
        raise NotAvailableHere(str(e)) from None
    built['file'], record = build(path, p, max_batch_size=run.o.max_batch_size, log=lambda m: run.log('    ' + m))
    return record


def _engine(run: _Run) -> None:
    """The file of its own (TensorRT's plan) that each runtime with a builder (``RuntimeSpec.builder``) makes from
    each of the target's ONNX files; skipped, with the reason, where it cannot be built (a missing library or
    GPU, a file in a form it does not parse): the stage cannot run here, which is not a failure of the model."""
    target = run.roles[0]
    for i, word in enumerate(builder_runtimes()):
        for p, path in target.files.items():
            label, name = _step('engine', '', word, p, i == 0)
            built: Dict[str, Any] = {}
            res = run.stage('engine', target.role, label, lambda: _build_one(run, word, p, path, built),
                            json_name=name)
            if res is not None:
                run.built[(word, p)] = built['file']
                run.engine.append({'runtime': word, 'precision': p, 'status': 'built', 'result': res,
                                   'file': built['file']})  # what a row without build_columns shows
            elif run.stages[-1]['status'] == 'skipped':
                run.engine.append({'runtime': word, 'precision': p, 'status': 'skipped',
                                   'reason': run.stages[-1]['reason']})


def _triton_source(run: _Run, backend) -> str:
    """The file ``backend`` serves: the FP32 export, the FP32 file its runtime's builder made, or the target's
    package (its ``package`` hook: compiled in a child process once, then cached)."""
    o, target = run.o, run.roles[0]
    if backend.serves == 'model':
        return package_hook(backend)(target.source.model, target.source.info, device=o.device,
                                     timeout=o.compile_timeout, log=lambda m: run.log('    ' + m))
    return run.built[(backend.runtime, 'fp32')] if backend.serves == 'built' else target.files['fp32']


def _triton(run: _Run) -> None:
    """A Triton repository (``triton/``) of what the ``--backend`` row serves (``triton_backends``)."""
    o, target = run.o, run.roles[0]
    backend = triton_backend(o.backend)
    if backend.serves == 'built' and (backend.runtime, 'fp32') not in run.built:
        skipped = [e['reason'] for e in run.engine if e['runtime'] == backend.runtime and e['precision'] == 'fp32'
                   and e['status'] == 'skipped']
        reason = skipped[0] if skipped else (
            f'--backend {o.backend} serves the FP32 file that {runtime_label(backend.runtime)} builds in the engine '
            'stage, which did not build it' + ('' if 'engine' in o.stages else ' (add engine to --stages)'))
        run.skip('triton', target.role, o.backend, reason)
        run.triton = {'status': 'skipped', 'backend': o.backend, 'reason': reason}
        return
    res = run.stage('triton', target.role, o.backend, lambda: write_triton_repository(
        _triton_source(run, backend), run.path('triton'), backend=o.backend, max_batch_size=o.max_batch_size,
        preferred_batch_sizes=o.preferred_batch_sizes, max_queue_delay_us=o.queue_delay_us,
        instance_count=o.instances), json_name='triton.json')
    if res is not None:
        run.triton = {'status': 'written', **{k: v for k, v in res.items() if k != 'config_text'}}


#: each stage of ``PIPELINE_STAGES`` (their order): name -> (function, progress steps for a number of roles)
STAGE_STEPS: Dict[str, Tuple[Callable[[_Run], None], Callable[[PipelineOptions, int], int]]] = {
    'export': (_export, lambda o, roles: roles),
    'quantize': (_quantize, lambda o, roles: roles * sum(p != 'fp32' and p in FILE_PRECISIONS for p in o.precisions)),
    'parity': (_parity, lambda o, roles: roles * len(parity_jobs(o))),
    'validate': (_validate, lambda o, roles: roles * (1 + sum(p in FILE_PRECISIONS for p in o.precisions))),
    'bench': (_bench, lambda o, roles: 1),
    'engine': (_engine, lambda o, roles: len(builder_runtimes()) * sum(p in FILE_PRECISIONS for p in o.precisions)),
    'triton': (_triton, lambda o, roles: 1),
    'report': (lambda run: None, lambda o, roles: 1),  # written last, by ``pipeline`` (it needs every record)
}
assert tuple(STAGE_STEPS) == PIPELINE_STAGES, 'a stage needs its name in options.PIPELINE_STAGES and a row here'


def parse_stages(text: Any) -> List[str]:
    """``'export,parity'`` (or a sequence) -> the stage names in table order; ``export`` is always included."""
    items = text.split(',') if isinstance(text, str) else list(text or [])
    words = [str(w).strip() for w in items if str(w).strip()]
    unknown = [w for w in words if w not in PIPELINE_STAGES]
    if unknown or not words:
        raise DeployError(f"--stages takes comma-separated names from {', '.join(PIPELINE_STAGES)}; "
                          f"got {text!r}")
    return [s for s in PIPELINE_STAGES if s in words or s == 'export']


def _check_triton(o: PipelineOptions, backend) -> None:
    """The triton stage's options, before the export: what it would refuse (or skip) after the slow stages."""
    if backend.batching:
        check_batching(o.max_batch_size, o.preferred_batch_sizes, o.queue_delay_us, o.instances)
    elif o.preferred_batch_sizes or o.queue_delay_us != TritonOptions.queue_delay_us:
        raise DeployError(f'--preferred-batch-sizes and --queue-delay-us do not apply to --backend {o.backend}: it '
                          'does not batch (max_batch_size 0)')
    if backend.serves == 'built' and 'engine' not in o.stages:
        raise DeployError(f'--backend {o.backend} serves the FP32 file that {runtime_label(backend.runtime)} builds '
                          'in the engine stage: add engine to --stages')


def check_models(specs: Sequence[Optional[str]]) -> None:
    """Each MODEL spec names a model that exists (timm name and tag, ``local-dir:`` folder), before the first
    stage: a misspelt ``--compare`` must not cost the target's export. Files are resolved by their stage."""
    for spec in specs:
        if spec is not None and not is_onnx_path(spec) and package_runtime(spec) is None:
            parse_model_spec(spec)


def _check_options(o: PipelineOptions) -> None:
    """Every stage's options, before the first stage starts."""
    o.precisions = check_precisions(o.precisions)
    if 'fp32' not in o.precisions:
        raise DeployError(f"--precision takes fp32 (required) and optionally fp16, bf16, int8; got "
                          f"{','.join(o.precisions)}")
    o.batches = parse_batches(o.batches)
    o.stages = parse_stages(o.stages if o.stages is not None else list(DEFAULT_PIPELINE_STAGES))
    backend = triton_backend(o.backend)
    if 'triton' in o.stages:
        _check_triton(o, backend)
    if o.runtimes is not None:
        o.runtimes = parse_runtimes(o.runtimes)
    if o.compare is None and o.compare_checkpoint:
        raise DeployError('--compare-checkpoint needs --compare')
    for name in ('warmup', 'repeats', 'min_time_s', 'threads'):
        value = getattr(o, name)
        if value is not None and (not 0 <= value < math.inf or (name in ('repeats', 'threads') and value < 1)):
            raise DeployError(f"--{name.replace('_s', '').replace('_', '-')} must be "
                              f"{'>= 1' if name in ('repeats', 'threads') else '>= 0'}, got {value}")
    if o.data is not None:
        scan_images(o.data)
    if o.calib_data is not None:
        scan_images(o.calib_data)
        if o.data is not None and 'int8' in o.precisions:
            _check_calib_disjoint(o.calib_data, o.data)  # before the export; the bundled samples: at quantize


def _record(run: _Run, model: str, t_start: float) -> PipelineResult:
    o = run.o
    failed = [s for s in run.stages if s['status'] in ('error', 'FAILED')]  # 'skipped' is not a failure
    models = {r.role: {'spec': r.spec, 'name': r.source.name, 'weights': r.source.info['weights'],
                       'checkpoint': r.source.info.get('checkpoint'), 'input_size': list(r.source.info['input_size']),
                       'num_classes': r.source.info.get('num_classes'),
                       'onnx': {p: {'path': _relocate(f, run.work, run.final), 'file_bytes': os.path.getsize(f)}
                                for p, f in r.files.items()}}
              for r in run.roles if r.source is not None}
    settings = {'stages': list(o.stages), 'precisions': list(o.precisions), 'batches': list(o.batches),
                'data': o.data or 'bundled samples', 'calib_data': o.calib_data or 'split of the parity images',
                'calib_images': o.calib_images, 'int8_options': {'calib_method': o.calib_method,
                                                                  'moving_average': o.moving_average,
                                                                  'fp32_layers': o.fp32_layers,
                                                                  'gates_float': o.gates_float,
                                                                  'gate_fusion': o.gate_fusion,
                                                                  'symmetric': o.symmetric},
                'exporter': o.exporter, 'device': o.device, 'amp': o.amp, 'threads': o.threads,
                'runtimes': pipeline_runtimes(o), 'quick': bool(o.quick)}
    if 'triton' in o.stages:
        settings['triton'] = {'backend': o.backend, 'max_batch_size': o.max_batch_size,
                              'preferred_batch_sizes': list(o.preferred_batch_sizes),
                              'queue_delay_us': o.queue_delay_us, 'instances': o.instances}
    return PipelineResult(
        model=model, model_name=models['target']['name'], compare=o.compare,
        compare_name=models['compare']['name'] if 'compare' in models else None, output_dir=run.final,
        settings=settings, models=models, parity=run.parity, validate=run.validate, bench=run.bench,
        stages=run.stages, passed=not failed, notes=run.notes,
        engine=_relocate(run.engine, run.work, run.final), triton=_relocate(run.triton, run.work, run.final),
        failed_stages=[f"{s['stage']} {s['role']} {s.get('precision') or ''}".strip() for s in failed],
        seconds=round(time.perf_counter() - t_start, 1),
        recommendation=recommend({'parity': run.parity, 'bench': run.bench}) if run.bench else [])


def pipeline(model: Optional[str] = None, output_dir: str = '', options: Optional[PipelineOptions] = None, *,
             log: Optional[Callable[[str], None]] = None, **overrides) -> PipelineResult:
    """Run the chosen stages into the folder ``output_dir``; returns the record that ``report.json`` holds.

    ``model=None`` takes the embedded default (and ``DEFAULT_COMPARE``) with quick timing. ``data``: images for
    parity and validation (the bundled samples when None; validation needs class folders). ``calib_data``: INT8
    calibration images, disjoint from ``data`` (None: ``data`` is split in two). ``passed`` is True when every
    parity check passed and no stage failed.
    """
    o = with_overrides(PipelineOptions, options, overrides)
    log = log or (lambda msg: None)
    t_start = time.perf_counter()
    notes: List[str] = []
    if model is None:
        model, note = default_model()
        notes += [note] if note else []
        o.compare = DEFAULT_COMPARE if o.compare is None else o.compare
        o.quick = True if o.quick is None else o.quick
    _check_options(o)
    check_models([model, o.compare])
    if not output_dir:
        raise DeployError('pipeline needs an output folder (-o DIR)')
    final = os.path.abspath(output_dir)  # records name it (made relative to the working folder when written)
    roles = [_Role('target', model, o.checkpoint)] + ([_Role('compare', o.compare, o.compare_checkpoint)]
                                                      if o.compare else [])
    total = sum(STAGE_STEPS[s][1](o, len(roles)) for s in o.stages)
    replace = o.force or (os.path.isdir(final) and not os.listdir(final))  # an empty folder holds nothing to lose
    with atomic_folder(output_dir, force=replace) as tmp:  # errors name the folder as the user gave it
        work = os.path.abspath(tmp)
        run = _Run(work, final, o, roles, log, total)
        run.notes += notes
        for name in o.stages:
            STAGE_STEPS[name][0](run)
        record = _record(run, model, t_start)
        if 'report' in o.stages:
            run.log(f'[{len(run.stages) + 1}/{run.total}] report ...')
            record.report = _relocate(write_report(_relocate(record.to_dict(), work, final), work), work, final)
    return record
