"""``timm-recal pipeline``: every deploy stage for one model (and a base model beside it), with a report.

export FP32 -> parity FP32 -> FP16 and INT8 files, each checked for parity -> validation (labelled images) ->
bench (target and ``--compare`` model, every precision, interleaved) -> ``report.md`` + ``report.json`` +
``throughput.png``. Each stage writes its JSON into the output folder as it finishes.

Without a MODEL it runs on the embedded default: the trained CIFAR model bundled in the package
(``timm_recal/assets/default_model``, a ``save_for_hf`` folder) and the bundled sample images, offline and in
a few minutes on 2 CPU cores.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time
from importlib import resources
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .errors import DeployError, OutputExistsError

__all__ = ['DEFAULT_MODEL_DIR', 'FALLBACK_MODEL', 'DEFAULT_COMPARE', 'TIMING', 'default_model', 'pipeline',
           'add_pipeline_args', 'run_pipeline']

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
_PRECISIONS = ('fp32', 'fp16', 'int8')


def default_model() -> Tuple[str, Optional[str]]:
    """``(model spec, note)`` of the embedded default: ``local-dir:`` the bundled trained model, else the
    fallback architecture with random weights (the note says so)."""
    root = resources.files('timm_recal.assets').joinpath(DEFAULT_MODEL_DIR)
    path = os.fspath(root) if isinstance(root, os.PathLike) else str(root)
    if os.path.isfile(os.path.join(path, 'config.json')):
        return f'local-dir:{path}', None
    return FALLBACK_MODEL, (f'no trained default model is bundled (timm_recal/assets/{DEFAULT_MODEL_DIR}); '
                            f'the default run falls back to {FALLBACK_MODEL}')


class _Run:
    """Stage bookkeeping: numbered progress lines, timing, per-stage JSON paths and status."""

    def __init__(self, out_dir: str, log: Callable[[str], None], total: int):
        self.out_dir = out_dir
        self.log = log
        self.total = total
        self.stages: List[Dict[str, Any]] = []
        self.notes: List[str] = []

    def json_path(self, name: str) -> str:
        return os.path.join(self.out_dir, name)

    def stage(self, stage: str, role: str, precision: Optional[str], fn: Callable[[], Dict[str, Any]],
              json_name: Optional[str] = None, fatal: bool = False) -> Optional[Dict[str, Any]]:
        """Run ``fn``; record it. A DeployError ends the pipeline if ``fatal``, else is recorded as an error."""
        what = ' '.join(x for x in (stage, role, precision) if x)
        self.log(f'[{len(self.stages) + 1}/{self.total}] {what} ...')
        rec: Dict[str, Any] = dict(stage=stage, role=role, precision=precision,
                                   json=self.json_path(json_name) if json_name else None)
        t0 = time.perf_counter()
        try:
            result = fn()
        except DeployError as e:
            rec.update(status='error', error=str(e), seconds=round(time.perf_counter() - t0, 2))
            self.stages.append(rec)
            self.log(f'    error: {e}')
            if fatal:
                raise
            return None
        rec['seconds'] = round(time.perf_counter() - t0, 2)
        rec['status'] = ('passed' if result.get('passed') else 'FAILED') if 'passed' in result else 'ok'
        self.stages.append(rec)
        self.log(f'    {rec["status"]} ({rec["seconds"]:.1f} s)')
        return result


def _check_out_dir(output_dir: str, force: bool) -> str:
    if not output_dir:
        raise DeployError('pipeline needs an output folder (-o DIR)')
    if os.path.isfile(output_dir):
        raise DeployError(f'{output_dir} is a file; pipeline writes a folder (-o DIR)')
    if os.path.isdir(output_dir) and os.listdir(output_dir) and not force:
        raise OutputExistsError(f'{output_dir} exists and is not empty; pass --force to overwrite its files')
    os.makedirs(output_dir, exist_ok=True)
    return os.path.abspath(output_dir)


def _file_entry(path: str) -> Dict[str, Any]:
    return {'path': os.path.abspath(path), 'file_bytes': os.path.getsize(path)}


def _side(run: _Run, role: str, spec: str, checkpoint: Optional[str], *, precisions: Sequence[str], data, calib_data,
          calib_images: int, int8_options: Optional[Dict[str, Any]], num_classes, use_ema: bool, img_size,
          exporter: str, device: str, threads, parity_records: List[Dict[str, Any]],
          workdir: str) -> Tuple[Dict[str, Any], Any, Dict[str, Any]]:
    """Export, convert and check one model; returns its description (with the ONNX files made), the PyTorch
    module and its ``load_model`` info.

    The model is built once and that module is the PyTorch side of every parity check, so a model with random
    weights (no checkpoint) is compared with its own export, not with a second random draw.
    """
    from .export import export_onnx
    from .model_io import load_model
    from .parity import parity
    prefix = '' if role == 'target' else f'{role}_'
    module, info = load_model(spec, checkpoint, num_classes, use_ema=use_ema, device='cpu', img_size=img_size)
    arch = info['architecture']
    fp32 = os.path.join(run.out_dir, f'{prefix}{arch}.onnx')
    if info['weights'] == 'random':
        run.notes.append(f'{role} {spec} has random weights (no checkpoint): its accuracy means nothing, '
                         'and quantized parity on near-constant logits may miss its gates')

    def export() -> Dict[str, Any]:
        if info['weights'] == 'random':  # this very module: a second build would draw other weights
            return export_onnx(spec, fp32, img_size=img_size, exporter=exporter, force=True, model=module)
        # from the spec, so the file's metadata records where the weights came from
        return export_onnx(spec, fp32, checkpoint=checkpoint, num_classes=num_classes, img_size=img_size,
                           exporter=exporter, force=True, use_ema=use_ema)
    exported = run.stage('export', role, 'fp32', export, json_name=f'{prefix}export.json', fatal=True)
    _write(exported, run.json_path(f'{prefix}export.json'))
    desc = {'spec': spec, 'name': arch, 'weights': info['weights'], 'checkpoint': info.get('checkpoint'),
            'input_size': list(info['input_size']), 'num_classes': info.get('num_classes'),
            'onnx': {'fp32': _file_entry(fp32)}}
    common = dict(data=data, img_size=img_size, device=device, threads=threads, force=True, model=module)

    res = run.stage('parity', role, 'fp32', lambda: parity(
        spec, onnx_path=fp32, output=run.json_path(f'{prefix}parity_fp32.json'), **common),
        json_name=f'{prefix}parity_fp32.json')
    if res is not None:
        parity_records.append({'role': role, 'precision': 'fp32', 'result': res})

    for p in [p for p in ('fp16', 'int8') if p in precisions]:
        # parity converts the FP32 file itself (INT8: calibrated on images disjoint from those it measures)
        # and keeps the file it checked, which becomes the deliverable
        keep = os.path.join(workdir, f'{role}_{p}')
        res = run.stage('convert+parity', role, p, lambda: parity(
            spec, onnx_path=fp32, precision=p, calib_data=calib_data, calib_images=calib_images,
            int8_options=int8_options, keep_dir=keep,
            output=run.json_path(f'{prefix}parity_{p}.json'), **common), json_name=f'{prefix}parity_{p}.json')
        if res is None:
            continue
        parity_records.append({'role': role, 'precision': p, 'result': res})
        if not res.get('onnx') or not os.path.isfile(res['onnx']):
            raise DeployError(f'parity kept no {p} file for {spec}; cannot continue')
        path = os.path.join(run.out_dir, f'{prefix}{arch}_{p}.onnx')
        shutil.move(res['onnx'], path)
        desc['onnx'][p] = _file_entry(path)
        from .metadata import read_metadata
        how = read_metadata(path).get('quantization') or {}
        _write(dict(how, output=path, precision=p, source=fp32), run.json_path(f'{prefix}quantize_{p}.json'))
    return desc, module, info


def _write(obj: Dict[str, Any], path: str) -> None:
    from .outputs import write_json
    write_json(obj, path, force=True)


def _validate_side(run: _Run, role: str, desc: Dict[str, Any], module, *, data, img_size, device: str, amp: bool,
                   threads, records: List[Dict[str, Any]]) -> None:
    """Top-1/top-5 of the PyTorch model (the module checked for parity) and of each ONNX file."""
    from .validate import validate
    prefix = '' if role == 'target' else f'{role}_'
    jobs = [('pytorch', desc['spec'])] + [(p, f['path']) for p, f in desc['onnx'].items()]
    for what, src in jobs:
        kw = dict(model=module, img_size=img_size, device=device, amp=amp) if what == 'pytorch' \
            else dict(threads=threads)
        res = run.stage('validate', role, what, lambda: validate(
            src, data, output=run.json_path(f'{prefix}validate_{what}.json'), force=True, **kw),
            json_name=f'{prefix}validate_{what}.json')
        if res is not None:
            records.append({'role': role, 'precision': what, 'result': res})


def _labelled(data: Optional[str], info: Dict[str, Any]) -> bool:
    """Whether the images validation would read (``data``, or the bundled samples for this model) have classes."""
    from .images import bundled_samples_dir, scan_images
    root = data if data is not None else bundled_samples_dir(info)
    return bool(scan_images(root)[1])


def pipeline(
        model: Optional[str] = None,
        output_dir: str = '',
        compare: Optional[str] = None,
        checkpoint: Optional[str] = None,
        compare_checkpoint: Optional[str] = None,
        data: Optional[str] = None,
        calib_data: Optional[str] = None,
        calib_images: int = 512,
        int8_options: Optional[Dict[str, Any]] = None,
        num_classes: Optional[int] = None,
        use_ema: bool = False,
        img_size: Optional[int] = None,
        precisions: Sequence[str] = _PRECISIONS,
        batches: Sequence[int] = (1, 16),
        runtimes: Optional[Sequence[str]] = None,
        exporter: str = 'dynamo',
        device: str = 'cpu',
        amp: bool = False,
        threads: Optional[int] = None,
        quick: Optional[bool] = None,
        warmup: Optional[int] = None,
        repeats: Optional[int] = None,
        min_time_s: Optional[float] = None,
        validate: bool = True,
        bench: bool = True,
        force: bool = False,
        log: Optional[Callable[[str], None]] = None,
) -> Dict[str, Any]:
    """Run every deploy stage into ``output_dir``; returns the record that ``report.json`` holds.

    ``model=None`` takes the embedded default (and ``DEFAULT_COMPARE``) with quick timing. ``data``: images
    for parity and validation (the bundled samples when None; validation needs class folders).
    ``calib_data``: INT8 calibration images, disjoint from ``data`` (None: ``data`` is split in two).
    ``int8_options``: further ``quantize_int8`` arguments (``calibrate_method``, ``fp32_layers``...).
    ``quick``: short bench timing (``TIMING['quick']``); ``warmup``/``repeats``/``min_time_s`` override it.
    ``passed`` in the result is True when every parity check passed and no stage failed.
    """
    from .bench import bench as run_bench_fn, parse_batches
    log = log or (lambda msg: None)
    t_start = time.perf_counter()
    notes: List[str] = []
    if model is None:
        model, note = default_model()
        if note:
            notes.append(note)
        if compare is None:
            compare = DEFAULT_COMPARE
        quick = True if quick is None else quick
    precisions = list(dict.fromkeys(precisions))
    bad = [p for p in precisions if p not in _PRECISIONS]
    if bad or 'fp32' not in precisions:
        raise DeployError(f"--precision takes fp32 (required) and optionally fp16, int8; got {','.join(precisions)}")
    batches = parse_batches(batches)
    timing = dict(TIMING['quick' if quick else 'full'])
    for key, val in (('warmup', warmup), ('repeats', repeats), ('min_time_s', min_time_s)):
        if val is not None:
            timing[key] = val
    if compare is None and compare_checkpoint:
        raise DeployError('--compare-checkpoint needs --compare')
    roles = [('target', model, checkpoint)] + ([('compare', compare, compare_checkpoint)] if compare else [])
    out_dir = _check_out_dir(output_dir, force)
    # per model: export, one parity per precision, validation of PyTorch and each file; then bench, report
    per_model = 1 + len(precisions) + (1 + len(precisions) if validate else 0)
    run = _Run(out_dir, log, total=len(roles) * per_model + (1 if bench else 0) + 1)
    parity_records: List[Dict[str, Any]] = []
    validate_records: List[Dict[str, Any]] = []
    models: Dict[str, Any] = {}
    modules: Dict[str, Any] = {}
    infos: Dict[str, Dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix='timm_recal_pipeline_') as workdir:
        for role, spec, ckpt in roles:
            models[role], modules[role], infos[role] = _side(
                run, role, spec, ckpt, precisions=precisions, data=data, calib_data=calib_data,
                calib_images=calib_images, int8_options=int8_options, num_classes=num_classes,
                use_ema=use_ema and role == 'target',
                img_size=img_size, exporter=exporter, device=device, threads=threads,
                parity_records=parity_records, workdir=workdir)
            if validate:  # a precision whose conversion failed has no file to validate
                run.total -= len(precisions) - len(models[role]['onnx'])
    if validate:
        for role, spec, ckpt in roles:
            desc = models[role]
            if not _labelled(data, infos[role]):
                notes.append(f'{role}: the images have no class folders; validation skipped')
                continue
            _validate_side(run, role, desc, modules[role], data=data, img_size=img_size, device=device, amp=amp,
                           threads=threads, records=validate_records)
    bench_rec = None
    if bench:
        files = {role: [f['path'] for f in models[role]['onnx'].values()] for role in models}
        bench_rec = run.stage('bench', ' + '.join(models), ','.join(models['target']['onnx']), lambda: run_bench_fn(
            model, compare=compare, batches=batches, runtimes=runtimes, onnx=files['target'],
            compare_onnx=files.get('compare'), model=modules['target'], compare_model=modules.get('compare'),
            img_size=img_size, threads=threads, device=device, amp=amp, output=run.json_path('bench.json'),
            force=True, log=lambda m: log('    ' + m), **timing), json_name='bench.json')
    failed = [s for s in run.stages if s['status'] in ('error', 'FAILED')]
    record = {
        'kind': 'timm-recal-pipeline',
        'model': model, 'model_name': models['target']['name'],
        'compare': compare, 'compare_name': models['compare']['name'] if 'compare' in models else None,
        'output_dir': out_dir,
        'settings': {'precisions': precisions, 'batches': list(batches), 'data': data or 'bundled samples',
                     'calib_data': calib_data or 'split of the parity images', 'calib_images': calib_images,
                     'int8_options': int8_options or {},
                     'exporter': exporter, 'device': device, 'amp': amp, 'threads': threads,
                     'timing': timing, 'quick': bool(quick)},
        'models': models,
        'parity': parity_records,
        'validate': validate_records,
        'bench': bench_rec,
        'stages': run.stages,
        'failed_stages': [f"{s['stage']} {s['role']} {s.get('precision') or ''}".strip() for s in failed],
        'passed': not failed,
        'notes': notes + run.notes,
    }
    run.log(f'[{len(run.stages) + 1}/{run.total}] report ...')
    record['seconds'] = round(time.perf_counter() - t_start, 1)
    from .report import write_report
    record['report'] = write_report(record, out_dir, force=True)
    return record


# --- command line -------------------------------------------------------------------------------------------
def _csv(text: str) -> List[str]:
    return [t.strip() for t in text.split(',') if t.strip()]


def add_pipeline_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``timm-recal pipeline`` (cheap: no heavy imports)."""
    from .cli import add_int8_args, add_model_args
    p.description = ('Export, parity (FP32, FP16, INT8), validation, bench and a Markdown report with a throughput '
                     'plot, for MODEL and optionally a base model (--compare). Without MODEL: the bundled default '
                     'model and sample images, offline, in a few minutes on 2 CPU cores.')
    p.add_argument('model', nargs='?', metavar='MODEL',
                   help='timm name, hf-hub:ORG/REPO or local-dir:FOLDER (default: the bundled trained model)')
    p.add_argument('--compare', metavar='BASE', help='a base model run through the same stages and benchmarked beside')
    p.add_argument('--compare-checkpoint', metavar='PATH', help='weights for the --compare model')
    p.add_argument('-o', '--output', required=True, metavar='DIR',
                   help='output folder (ONNX files, one JSON per stage, report.md, report.json, throughput.png)')
    p.add_argument('--force', action='store_true', help='write into a non-empty output folder, replacing files')
    g = p.add_argument_group('data')
    g.add_argument('--data', metavar='DIR', help='images for parity and validation, DIR/<class>/<image> '
                   '(default: the bundled samples)')
    g.add_argument('--calib-data', metavar='DIR', help='INT8 calibration images, disjoint from --data '
                   '(default: half of --data)')
    add_int8_args(g, 512)
    g = p.add_argument_group('stages')
    g.add_argument('--precision', type=_csv, default=list(_PRECISIONS), metavar='P1,P2',
                   help='fp32 plus any of fp16,int8 (default fp32,fp16,int8)')
    g.add_argument('--exporter', default='dynamo', choices=['dynamo', 'legacy'])
    g.add_argument('--no-validate', dest='validate', action='store_false', help='skip the validation stage')
    g.add_argument('--no-bench', dest='bench', action='store_false', help='skip the bench stage')
    g = p.add_argument_group('bench')
    g.add_argument('--batch', default='1,16', help='batch sizes (default 1,16)')
    g.add_argument('--runtimes', type=_csv, default=None, metavar='R1,R2', help='see timm-recal bench --help')
    g.add_argument('--threads', type=int, help='torch and ONNX Runtime intra-op threads')
    speed = g.add_mutually_exclusive_group()
    speed.add_argument('--quick', dest='quick', action='store_true', default=None,
                       help='short timing windows (the default without MODEL)')
    speed.add_argument('--full', dest='quick', action='store_false', help='full timing (the default with MODEL)')
    g.add_argument('--warmup', type=int, help='untimed calls per runner and batch')
    g.add_argument('--repeats', type=int, help='interleaved timing windows per runner')
    g.add_argument('--min-time', type=float, help='seconds per timing window')
    add_model_args(p)  # --checkpoint --use-ema --num-classes --img-size --device --amp
    p.set_defaults(func=run_pipeline)
    return p


def run_pipeline(args: argparse.Namespace) -> int:
    """``timm-recal pipeline``: exit 0 when every check passed, 1 when a parity check or a stage failed."""
    from .cli import int8_options
    record = pipeline(
        args.model, args.output, compare=args.compare, checkpoint=args.checkpoint,
        compare_checkpoint=args.compare_checkpoint, data=args.data, calib_data=args.calib_data,
        calib_images=args.calib_images, int8_options=int8_options(args), num_classes=args.num_classes,
        use_ema=args.use_ema, img_size=args.img_size,
        precisions=args.precision, batches=args.batch, runtimes=args.runtimes, exporter=args.exporter,
        device=args.device, amp=args.amp, threads=args.threads, quick=args.quick, warmup=args.warmup,
        repeats=args.repeats, min_time_s=args.min_time, validate=args.validate, bench=args.bench, force=args.force,
        log=lambda msg: print(msg, file=sys.stderr, flush=True),
    )
    for note in record['notes']:
        print(f'note: {note}', file=sys.stderr)
    print(f"report: {record['report']['md']}")
    if not record['passed']:
        print(f"FAILED: {', '.join(record['failed_stages'])}", file=sys.stderr)
        return 1
    return 0
