"""``timm-recal bench``: images/s and latency (p50/p90/p99) of a model under PyTorch eager (NCHW and
channels_last) and ONNX Runtime (CPU; CUDA and TensorRT execution providers when present), over a batch sweep.

A second model or ONNX file (``--compare``) is timed in the same run, interleaved with the first: every repeat
times each runner once, in alternating order (forward, then backward), so slow drifts of the machine (another
process, clock changes) hit both sides alike. Ratios are computed from those side-by-side medians, which is
what the README's performance numbers are; they are benchmarks, not timed tests.
"""
import argparse
import copy
import os
import platform
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .errors import DeployError

__all__ = [
    'RUNTIMES', 'ORT_PROVIDERS', 'PRECISIONS', 'Runner', 'bench', 'time_interleaved', 'summarize_times',
    'compute_ratios', 'machine_info', 'onnx_precision', 'parse_batches', 'add_bench_args', 'run_bench',
]

#: every runtime label; ``eager_cl`` is eager with channels_last weights and input
RUNTIMES = ('eager', 'eager_cl', 'ort', 'ort_cuda', 'ort_trt')
EAGER_RUNTIMES = ('eager', 'eager_cl')
#: execution providers (in preference order) that each ONNX Runtime label asks for
ORT_PROVIDERS = {
    'ort': ['CPUExecutionProvider'],
    'ort_cuda': ['CUDAExecutionProvider', 'CPUExecutionProvider'],
    'ort_trt': ['TensorrtExecutionProvider', 'CUDAExecutionProvider', 'CPUExecutionProvider'],
}
PRECISIONS = ('fp32', 'fp16', 'int8')
_GPU_RUNTIMES = ('ort_cuda', 'ort_trt')
#: a timing window never runs more iterations than this (guards against a clock that does not advance)
_MAX_ITERS = 100_000


class SkipRunner(Exception):
    """A runner cannot run one batch size (e.g. an ONNX graph with a fixed batch); recorded as a note."""


@dataclass
class Runner:
    """One timed thing: a model (``role`` target/compare) under one runtime and precision.

    ``setup(batch)`` prepares the input and returns a no-argument call that runs one batch to completion.
    """
    role: str
    model: str
    runtime: str
    precision: str
    setup: Callable[[int], Callable[[], Any]]
    info: Dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f'{self.role}/{self.runtime}/{self.precision}'


# --- timing and statistics (pure: a clock and callables in, numbers out) -------------------------------------
def _time_window(fn: Callable[[], Any], clock: Callable[[], float], min_time_s: float, min_iters: int) -> List[float]:
    """Per-call seconds of ``fn`` until both ``min_iters`` calls and ``min_time_s`` seconds have passed."""
    times: List[float] = []
    start = clock()
    while True:
        t0 = clock()
        fn()
        t1 = clock()
        times.append(t1 - t0)
        if (len(times) >= min_iters and t1 - start >= min_time_s) or len(times) >= _MAX_ITERS:
            return times


def time_interleaved(
        calls: Sequence[Tuple[str, Callable[[], Any]]],
        warmup: int = 3,
        repeats: int = 5,
        min_time_s: float = 1.0,
        min_iters: int = 1,
        clock: Callable[[], float] = time.perf_counter,
) -> Dict[str, List[List[float]]]:
    """Time ``calls`` (``(key, fn)``) interleaved: each warms up ``warmup`` calls, then each repeat runs one
    timing window per call, in list order on even repeats and reversed on odd ones (so neither side always
    runs first, right after the other has heated or cooled the machine).

    Returns ``{key: [window_times, ...]}`` with one list of per-call seconds per repeat.
    """
    if repeats < 1:
        raise DeployError(f'repeats must be >= 1, got {repeats}')
    if warmup < 0 or min_time_s < 0 or min_iters < 1:
        raise DeployError('warmup and min_time_s must be >= 0 and min_iters >= 1')
    keys = [k for k, _ in calls]
    if len(set(keys)) != len(keys):
        raise DeployError(f'duplicate runner keys: {keys}')
    for _, fn in calls:
        for _ in range(warmup):
            fn()
    windows: Dict[str, List[List[float]]] = {k: [] for k in keys}
    for r in range(repeats):
        for key, fn in (calls if r % 2 == 0 else list(reversed(calls))):
            windows[key].append(_time_window(fn, clock, min_time_s, min_iters))
    return windows


def _percentile(sorted_vals: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method) of an ascending list."""
    if len(sorted_vals) == 1:
        return sorted_vals[0]
    pos = (len(sorted_vals) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)


def summarize_times(windows: Sequence[Sequence[float]], batch: int) -> Dict[str, Any]:
    """Throughput and latency of one runner at one batch size from its timing windows.

    ``images_per_s`` is the median over repeats of ``batch * calls / seconds`` of each window; latency
    percentiles are over every timed call (the time of one whole batch, in ms).
    """
    if not windows or not all(windows):
        raise ValueError('summarize_times needs at least one non-empty timing window')
    per_window = [batch * len(w) / sum(w) if sum(w) > 0 else float('inf') for w in windows]
    lat_ms = sorted(t * 1000.0 for w in windows for t in w)
    return {
        'images_per_s': statistics.median(per_window),
        'images_per_s_repeats': per_window,
        'latency_ms': {
            'p50': _percentile(lat_ms, 50), 'p90': _percentile(lat_ms, 90), 'p99': _percentile(lat_ms, 99),
            'mean': statistics.fmean(lat_ms), 'min': lat_ms[0],
        },
        'iterations': len(lat_ms),
    }


def _ratio(kind: str, num: Dict[str, Any], den: Dict[str, Any], **extra) -> Dict[str, Any]:
    return dict(
        kind=kind, batch=num['batch'], **extra,
        numerator=f"{num['role']}/{num['runtime']}/{num['precision']}",
        denominator=f"{den['role']}/{den['runtime']}/{den['precision']}",
        value=num['images_per_s'] / den['images_per_s'],
    )


def compute_ratios(results: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Speed ratios (``images_per_s`` of numerator / denominator, each the median over repeats) at each batch:

    * ``ort_vs_best_eager``: each ONNX Runtime FP32 runner over the faster FP32 eager layout (NCHW or
      channels_last) of the same model;
    * ``int8_vs_fp32`` / ``fp16_vs_fp32``: a quantized ONNX file over the FP32 file, same runtime and model;
    * ``target_vs_compare``: the target over the compare model at the same runtime and precision (or, for a
      runtime where each side has a single, different precision - two ONNX files - those two).
    """
    idx = {(r['role'], r['runtime'], r['precision'], r['batch']): r for r in results}
    roles = sorted({r['role'] for r in results}, key=lambda s: (s != 'target', s))
    batches = sorted({r['batch'] for r in results})
    ratios: List[Dict[str, Any]] = []
    for role in roles:
        for b in batches:
            eager = [idx[k] for k in idx if k[0] == role and k[1] in EAGER_RUNTIMES and k[2] == 'fp32' and k[3] == b]
            best = max(eager, key=lambda r: r['images_per_s']) if eager else None
            for rt in ORT_PROVIDERS:
                fp32 = idx.get((role, rt, 'fp32', b))
                if fp32 is None:
                    continue
                if best is not None:
                    ratios.append(_ratio('ort_vs_best_eager', fp32, best, role=role, model=fp32['model']))
                for p in ('int8', 'fp16'):
                    low = idx.get((role, rt, p, b))
                    if low is not None:
                        ratios.append(_ratio(f'{p}_vs_fp32', low, fp32, role=role, model=fp32['model']))
    if 'target' in roles and 'compare' in roles:
        for b in batches:
            for rt in RUNTIMES:
                tgt = {k[2]: r for k, r in idx.items() if k[0] == 'target' and k[1] == rt and k[3] == b}
                cmp_ = {k[2]: r for k, r in idx.items() if k[0] == 'compare' and k[1] == rt and k[3] == b}
                pairs = [(tgt[p], cmp_[p]) for p in tgt if p in cmp_]
                if not pairs and len(tgt) == 1 and len(cmp_) == 1:
                    pairs = [(next(iter(tgt.values())), next(iter(cmp_.values())))]
                for t, c in pairs:
                    ratios.append(_ratio('target_vs_compare', t, c, runtime=rt,
                                         model=t['model'], compare_model=c['model']))
    return ratios


# --- the machine ---------------------------------------------------------------------------------------------
def _cpuinfo() -> Dict[str, Any]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                key, _, value = line.partition(':')
                key = key.strip()
                if key == 'model name' and model in (platform.processor(), platform.machine()):
                    model = value.strip()
                elif key == 'flags' and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    notable = ('avx2', 'fma', 'avx512f', 'avx512_vnni', 'avx512_bf16', 'avx_vnni', 'amx_bf16', 'amx_int8')
    return {'cpu_model': model, 'cpu_flags': [f for f in notable if f in flags]}


def _proc_stat_cpu() -> Optional[Tuple[int, int]]:
    """``(busy, total)`` jiffies of all CPUs from /proc/stat (None off Linux)."""
    try:
        with open('/proc/stat') as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_cpus(window_s: float = 0.5) -> Optional[float]:
    """How many CPUs other work keeps busy right now, sampled over ``window_s`` (None where unknown).

    Unlike the 1-minute load average, it does not remember the benchmark that just ended, so back-to-back runs
    are not flagged; this process is idle while it samples.
    """
    a = _proc_stat_cpu()
    time.sleep(window_s)
    b = _proc_stat_cpu()
    if a is None or b is None or b[1] <= a[1]:
        return None
    return round((b[0] - a[0]) / (b[1] - a[1]) * (os.cpu_count() or 1), 2)


def machine_info() -> Dict[str, Any]:
    """CPU model and vector flags, CPU counts, load (1-min average and busy CPUs now) and library versions."""
    import torch
    info: Dict[str, Any] = _cpuinfo()
    info['logical_cpus'] = os.cpu_count()
    try:
        info['usable_cpus'] = len(os.sched_getaffinity(0))
    except AttributeError:
        info['usable_cpus'] = os.cpu_count()
    try:
        info['load_avg_1m'] = os.getloadavg()[0]
    except (AttributeError, OSError):
        info['load_avg_1m'] = None
    info['busy_cpus_at_start'] = busy_cpus()
    info['platform'] = platform.platform()
    versions = {'python': platform.python_version(), 'torch': torch.__version__}
    for mod in ('onnxruntime', 'onnx', 'timm', 'numpy', 'timm_recal'):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            versions[mod] = None
    info['versions'] = versions
    info['cuda'] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return info


# --- runners ------------------------------------------------------------------------------------------------
def _input(batch: int, input_size: Sequence[int]):
    """The benchmark input: standard-normal values, seeded, so every runner sees the same numbers."""
    import torch
    g = torch.Generator().manual_seed(0)
    return torch.randn((batch, *input_size), generator=g)


def _eager_runner(role: str, name: str, model, input_size: Sequence[int], device: str, channels_last: bool,
                  amp_dtype=None) -> Runner:
    import torch
    if channels_last:
        model = copy.deepcopy(model).to(memory_format=torch.channels_last)
    dev_type = device.split(':')[0]
    is_cuda = dev_type == 'cuda'

    def setup(batch: int):
        x = _input(batch, input_size).to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)

        def call():
            with torch.inference_mode(), (torch.autocast(dev_type, dtype=amp_dtype) if amp_dtype else nullcontext()):
                model(x)
            if is_cuda:
                torch.cuda.synchronize()
        return call

    precision = 'fp32' if amp_dtype is None else ('amp_fp16' if amp_dtype == torch.float16 else 'amp_bf16')
    return Runner(role, name, 'eager_cl' if channels_last else 'eager', precision, setup,
                  info={'device': device, 'memory_format': 'channels_last' if channels_last else 'contiguous'})


def _ort_runner(role: str, name: str, path: str, precision: str, runtime: str, input_size: Sequence[int],
                threads: Optional[int]) -> Runner:
    import numpy as np
    from .runtime import create_session, session_info
    sess = create_session(path, providers=ORT_PROVIDERS[runtime], threads=threads)
    inp = sess.get_inputs()[0]
    fixed_batch = inp.shape[0] if inp.shape and isinstance(inp.shape[0], int) else None
    dtype = np.float16 if inp.type == 'tensor(float16)' else np.float32
    used = sess.get_providers()
    wanted = ORT_PROVIDERS[runtime][0]

    def setup(batch: int):
        if fixed_batch is not None and fixed_batch != batch:
            raise SkipRunner(f'{os.path.basename(path)} has a fixed batch of {fixed_batch}')
        feed = {inp.name: np.ascontiguousarray(_input(batch, input_size).numpy().astype(dtype))}

        def call():
            sess.run(None, feed)
        return call

    info = dict(session_info(sess), onnx=os.path.abspath(path))
    if used[0] != wanted:
        info['warning'] = f'{wanted} was asked for but the session runs on {used[0]}'
    if runtime != 'ort':
        info['note'] = 'host-device copies of input and output are included in the time'
    return Runner(role, name, runtime, precision, setup, info=info)


def onnx_precision(path: str) -> str:
    """Precision of an ONNX file: its ``precision`` metadata, else its name (``int8``/``qdq``/``fp16``), else
    its graph (QuantizeLinear nodes mean INT8, float16 initializers FP16), else FP32."""
    from .metadata import load_onnx
    model = load_onnx(path, load_external_data=False)
    for p in model.metadata_props:
        if p.key == 'precision' and p.value in PRECISIONS:
            return p.value
    base = os.path.basename(path).lower()
    if 'int8' in base or 'qdq' in base:
        return 'int8'
    if 'fp16' in base or 'half' in base:
        return 'fp16'
    ops = {n.op_type for n in model.graph.node}
    if ops & {'QuantizeLinear', 'DequantizeLinear', 'QLinearConv', 'ConvInteger', 'MatMulInteger'}:
        return 'int8'
    import onnx
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer):
        return 'fp16'
    return 'fp32'


def _onnx_input_size(path: str, img_size: Optional[int]) -> Tuple[List[int], str]:
    """``([C, H, W], display name)`` of an ONNX file from its metadata (or its static input shape)."""
    from .metadata import read_metadata
    meta = read_metadata(path)
    size = meta.get('input_size')
    if not size:
        shape = meta.get('graph_input_shape') or []
        if len(shape) == 4 and all(isinstance(d, int) and d > 0 for d in shape[1:]):
            size = shape[1:]
        elif img_size:
            size = [3, img_size, img_size]
        else:
            raise DeployError(f'{path} records no input size and has a dynamic image size; pass --img-size')
    elif img_size and list(size[1:]) != [img_size, img_size]:
        raise DeployError(f'{path} was exported for {size[1]}x{size[2]} inputs, not --img-size {img_size}')
    name = meta.get('architecture') or os.path.splitext(os.path.basename(path))[0]
    return [int(v) for v in size], name


def _check_runtimes(runtimes: Optional[Sequence[str]], device: str, notes: List[str]) -> List[str]:
    """The runtimes to time: the given ones (validated) or the default for the device, without the GPU
    execution providers this onnxruntime lacks."""
    import onnxruntime as ort
    available = ort.get_available_providers()
    explicit = runtimes is not None
    if runtimes is None:
        runtimes = list(EAGER_RUNTIMES) + (['ort_cuda', 'ort_trt'] if device.startswith('cuda') else ['ort'])
    runtimes = list(dict.fromkeys(runtimes))
    unknown = [r for r in runtimes if r not in RUNTIMES]
    if unknown:
        raise DeployError(f"unknown runtime(s) {', '.join(unknown)}; choose from {', '.join(RUNTIMES)}")
    kept = []
    for rt in runtimes:
        if rt in _GPU_RUNTIMES:
            ep = ORT_PROVIDERS[rt][0]
            reason = None
            if not device.startswith('cuda'):
                reason = f'{rt} needs --device cuda'
            elif ep not in available:
                reason = f'{rt} skipped: this onnxruntime has no {ep} (it offers {", ".join(available)})'
            if reason:
                if explicit:
                    raise DeployError(reason)
                notes.append(reason)
                continue
        kept.append(rt)
    return kept


@dataclass
class _Side:
    """What to time for one model (target or compare)."""
    role: str
    spec: str
    checkpoint: Optional[str] = None
    onnx: Optional[Sequence[str]] = None
    module: Any = None  # an already built model (its weights are used; the spec only names it)


def _side_runners(side: _Side, *, runtimes: Sequence[str], precisions: Sequence[str], num_classes, use_ema: bool,
                  img_size, device: str, amp: bool, threads, calib_data, calib_images: int,
                  int8_options: Optional[Dict[str, Any]], workdir: str,
                  notes: List[str], log: Callable[[str], None]) -> Tuple[List[Runner], Dict[str, Any]]:
    from .model_io import is_onnx_path
    ort_rts = [r for r in runtimes if r in ORT_PROVIDERS]
    eager_rts = [r for r in runtimes if r in EAGER_RUNTIMES]
    runners: List[Runner] = []
    desc: Dict[str, Any] = {'spec': side.spec}
    onnx_files: Dict[str, str] = {}

    if is_onnx_path(side.spec):
        if side.onnx or side.module is not None:
            raise DeployError(f'{side.spec} is an ONNX file already; --onnx/--compare-onnx are for model specs')
        if not os.path.isfile(side.spec):
            raise DeployError(f'ONNX file not found: {side.spec}')
        if eager_rts:
            notes.append(f'{side.role} {os.path.basename(side.spec)} is an ONNX file: eager runtimes skipped')
        input_size, name = _onnx_input_size(side.spec, img_size)
        onnx_files[onnx_precision(side.spec)] = side.spec
        desc.update(kind='onnx', name=name)
    else:
        if side.module is not None:
            from .export import _module_info
            model, info = side.module.to(device).eval(), _module_info(side.module, side.spec, img_size)
            info['weights'] = 'module'
        else:
            from .model_io import load_model
            log(f'bench: loading {side.spec}')
            model, info = load_model(side.spec, checkpoint=side.checkpoint, num_classes=num_classes,
                                     use_ema=use_ema, device=device, img_size=img_size)
        input_size, name = list(info['input_size']), info.get('architecture') or side.spec
        desc.update(kind='model', name=name, weights=info.get('weights'), checkpoint=info.get('checkpoint'))
        for rt in eager_rts:
            runners.append(_eager_runner(side.role, name, model, input_size, device, rt == 'eager_cl'))
            if amp:
                import torch
                amp_dtype = torch.float16 if device.startswith('cuda') else torch.bfloat16
                runners.append(_eager_runner(side.role, name, model, input_size, device, rt == 'eager_cl', amp_dtype))
        if ort_rts:
            if side.onnx:
                for path in side.onnx:
                    p = onnx_precision(path)
                    if p in onnx_files:
                        raise DeployError(f'two {p} ONNX files for {side.spec}: {onnx_files[p]} and {path}')
                    size, _ = _onnx_input_size(path, None)
                    if list(size) != list(input_size):
                        raise DeployError(f'{path} takes {size} inputs but {side.spec} is set up for {input_size}')
                    onnx_files[p] = path
            else:
                onnx_files = _export_for_bench(side, model, precisions, img_size, calib_data, calib_images,
                                               int8_options, workdir, log)
                desc['onnx_temporary'] = True
    desc['input_size'] = list(input_size)
    if ort_rts:
        desc['onnx'] = {p: os.path.abspath(f) for p, f in onnx_files.items()}
        for rt in ort_rts:
            for p in [p for p in PRECISIONS if p in onnx_files]:
                runners.append(_ort_runner(side.role, name, onnx_files[p], p, rt, input_size, threads))
    return runners, desc


def _export_for_bench(side: _Side, model, precisions: Sequence[str], img_size, calib_data, calib_images: int,
                      int8_options: Optional[Dict[str, Any]],
                      workdir: str, log: Callable[[str], None]) -> Dict[str, str]:
    """Export (and quantize) ``side`` into ``workdir`` for the ONNX Runtime runners."""
    from .export import export_onnx
    files = {'fp32': os.path.join(workdir, f'{side.role}.onnx')}
    log(f'bench: exporting {side.spec} to ONNX (temporary file)')
    # the already-loaded module (weights included) is exported: no second load of the checkpoint
    export_onnx(side.spec, files['fp32'], img_size=img_size, force=True, model=copy.deepcopy(model).cpu())
    if 'int8' in precisions:
        from .quantize import quantize_int8
        log(f'bench: quantizing {side.spec} to INT8 ({calib_images} calibration images)')
        files['int8'] = os.path.join(workdir, f'{side.role}.int8.onnx')
        quantize_int8(files['fp32'], files['int8'], calib_data, num_images=calib_images, force=True,
                      progress=sys.stderr.isatty(), **(int8_options or {}))
    if 'fp16' in precisions:
        from .quantize import convert_fp16
        log(f'bench: converting {side.spec} to FP16')
        files['fp16'] = os.path.join(workdir, f'{side.role}.fp16.onnx')
        convert_fp16(files['fp32'], files['fp16'], force=True)
    if 'fp32' not in precisions:
        del files['fp32']
    return files


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


def bench(
        target: str,
        compare: Optional[str] = None,
        batches: Sequence[int] = (1, 16),
        runtimes: Optional[Sequence[str]] = None,
        precisions: Sequence[str] = ('fp32',),
        checkpoint: Optional[str] = None,
        compare_checkpoint: Optional[str] = None,
        onnx: Optional[Sequence[str]] = None,
        compare_onnx: Optional[Sequence[str]] = None,
        num_classes: Optional[int] = None,
        use_ema: bool = False,
        img_size: Optional[int] = None,
        warmup: int = 3,
        repeats: int = 5,
        min_time_s: float = 1.0,
        min_iters: int = 2,
        threads: Optional[int] = None,
        device: str = 'cpu',
        amp: bool = False,
        calib_data: Optional[str] = None,
        calib_images: int = 64,
        int8_options: Optional[Dict[str, Any]] = None,
        output: Optional[str] = None,
        force: bool = False,
        log: Optional[Callable[[str], None]] = None,
        clock: Callable[[], float] = time.perf_counter,
        model=None,
        compare_model=None,
) -> Dict[str, Any]:
    """Time ``target`` (and ``compare``) at each batch size; returns (and writes to ``output``) the record.

    ``target``/``compare`` are a model spec (timm name, ``hf-hub:``, ``local-dir:``; weights from
    ``checkpoint``) or an ``.onnx`` file (ONNX Runtime only; its precision read from its metadata). For a
    model spec the ONNX Runtime runners use ``onnx`` files if given, else a temporary export in each of
    ``precisions`` (INT8 calibrated on ``calib_data``, the bundled samples when None, with ``int8_options``
    passed on to ``quantize_int8``).
    ``runtimes`` defaults to eager, eager_cl and ort (CPU), or the CUDA/TensorRT providers with
    ``device='cuda'``. ``amp`` adds eager runners under autocast (bf16 on CPU, fp16 on CUDA).
    ``threads`` sets torch's and ONNX Runtime's intra-op threads (None: their defaults).
    ``model``/``compare_model``: already built modules for the eager runners (``pipeline`` passes the modules it
    exported), instead of building ``target``/``compare`` again. ``clock`` is for tests.
    """
    import torch
    log = log or (lambda msg: None)
    out_path = None
    if output:
        from .outputs import resolve_output
        out_path = resolve_output(output, force, default_name='bench.json')
    batches = parse_batches(batches)
    if device not in ('cpu', 'cuda') and not device.startswith('cuda:'):
        raise DeployError(f"--device must be cpu or cuda, got {device!r}")
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise DeployError('--device cuda: PyTorch sees no CUDA device here')
    if threads is not None and threads < 1:
        raise DeployError(f'--threads must be >= 1, got {threads}')
    if compare is None and (compare_checkpoint or compare_onnx):
        raise DeployError('--compare-checkpoint/--compare-onnx need --compare')
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad:
        raise DeployError(f"unknown precision(s) {', '.join(bad)}; choose from {', '.join(PRECISIONS)}")
    notes: List[str] = []
    runtimes = _check_runtimes(runtimes, device, notes)
    if not runtimes:
        raise DeployError('no runtime left to time')
    machine = machine_info()
    busy = machine.get('busy_cpus_at_start')
    if busy is not None and machine['usable_cpus'] and busy > 0.5 * machine['usable_cpus']:
        notes.append(f"the machine was busy when the benchmark started ({busy:.2f} CPUs busy with other work "
                     f"on {machine['usable_cpus']} CPUs): absolute numbers are low, ratios less reliable")
    prev_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    sides = [_Side('target', target, checkpoint, onnx, model)]
    if compare:
        sides.append(_Side('compare', compare, compare_checkpoint, compare_onnx, compare_model))
    try:
        with tempfile.TemporaryDirectory(prefix='timm_recal_bench_') as workdir:
            runners: List[Runner] = []
            models: Dict[str, Any] = {}
            for side in sides:
                rs, desc = _side_runners(side, runtimes=runtimes, precisions=precisions, num_classes=num_classes,
                                         use_ema=use_ema, img_size=img_size, device=device, amp=amp, threads=threads,
                                         calib_data=calib_data, calib_images=calib_images,
                                         int8_options=int8_options, workdir=workdir,
                                         notes=notes, log=log)
                runners += rs
                models[side.role] = desc
            if not runners:
                raise DeployError('nothing to time: ' + '; '.join(notes))
            results = _run_batches(runners, batches, warmup, repeats, min_time_s, min_iters, clock, notes, log)
            torch_threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(prev_threads)
    record = {
        'kind': 'timm-recal-bench',
        'models': models,
        'settings': {
            'batches': list(batches), 'runtimes': runtimes, 'precisions': sorted({r.precision for r in runners}),
            'warmup': warmup, 'repeats': repeats, 'min_time_s': min_time_s, 'min_iters': min_iters,
            'device': device, 'amp': amp, 'input': 'standard normal, seed 0',
            'order': 'interleaved: each repeat times every runner once, forward order on even repeats, '
                     'reversed on odd',
            'images_per_s': 'median over repeats of batch * calls / seconds in each timing window',
        },
        'threads': {
            'torch_intra_op': torch_threads,
            'torch_inter_op': torch.get_num_interop_threads(),
            'ort_intra_op': threads if threads else 'default (one per physical core)',
        },
        'machine': machine,
        'runners': [{'key': r.key, 'model': r.model, 'runtime': r.runtime, 'precision': r.precision, **r.info}
                    for r in runners],
        'results': results,
        'ratios': compute_ratios(results),
        'notes': notes,
    }
    if out_path:
        from .outputs import write_json
        record['output'] = write_json(record, out_path, force=True)
    return record


def _run_batches(runners: List[Runner], batches: Sequence[int], warmup: int, repeats: int, min_time_s: float,
                 min_iters: int, clock, notes: List[str], log: Callable[[str], None]) -> List[Dict[str, Any]]:
    results = []
    for b in batches:
        calls, by_key = [], {}
        for r in runners:
            try:
                calls.append((r.key, r.setup(b)))
                by_key[r.key] = r
            except SkipRunner as e:
                notes.append(f'{r.key} batch {b} skipped: {e}')
        if not calls:
            continue
        log(f"bench: batch {b}: timing {', '.join(k for k, _ in calls)}")
        windows = time_interleaved(calls, warmup=warmup, repeats=repeats, min_time_s=min_time_s,
                                   min_iters=min_iters, clock=clock)
        for key, _ in calls:
            r = by_key[key]
            results.append(dict(role=r.role, model=r.model, runtime=r.runtime, precision=r.precision, batch=b,
                                **summarize_times(windows[key], b)))
    return results


# --- command line -------------------------------------------------------------------------------------------
def _csv(text: str) -> List[str]:
    return [t.strip() for t in text.split(',') if t.strip()]


def add_bench_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``timm-recal bench`` (cheap: no heavy imports)."""
    from .cli import add_int8_args, add_model_args, add_output_args
    p.description = ('Images/s and latency p50/p90/p99 of PyTorch eager (NCHW, channels_last) and ONNX Runtime '
                     'over a batch sweep; --compare times a second model or file interleaved and reports ratios.')
    p.add_argument('target', metavar='MODEL_OR_ONNX', help='timm name, hf-hub:ORG/REPO, local-dir:FOLDER or FILE.onnx')
    p.add_argument('--compare', metavar='MODEL_OR_ONNX',
                   help='a second model or file, timed interleaved with the first')
    p.add_argument('--batch', default='1,16', help='comma-separated batch sizes (default 1,16)')
    p.add_argument('--runtimes', type=_csv, default=None, metavar='R1,R2',
                   help=f"from {','.join(RUNTIMES)} (default eager,eager_cl,ort; with --device cuda "
                        f"eager,eager_cl,ort_cuda,ort_trt where present)")
    p.add_argument('--precision', type=_csv, default=['fp32'], metavar='P1,P2',
                   help='ONNX precisions to export and time for a MODEL: fp32,fp16,int8 (default fp32)')
    p.add_argument('--onnx', nargs='+', metavar='FILE', help="MODEL's ONNX files to time instead of exporting")
    p.add_argument('--compare-checkpoint', metavar='PATH', help='weights for the --compare model')
    p.add_argument('--compare-onnx', nargs='+', metavar='FILE', help="the --compare model's ONNX files")
    g = p.add_argument_group('timing')
    g.add_argument('--warmup', type=int, default=3, help='untimed calls per runner and batch (default 3)')
    g.add_argument('--repeats', type=int, default=5, help='interleaved timing windows per runner (default 5)')
    g.add_argument('--min-time', type=float, default=1.0, help='seconds per timing window (default 1.0)')
    g.add_argument('--threads', type=int, help='torch and ONNX Runtime intra-op threads (default: theirs)')
    g = p.add_argument_group('INT8 export')
    g.add_argument('--calib-data', metavar='DIR', help='calibration images (default: the bundled samples)')
    add_int8_args(g, 64)
    add_model_args(p)  # --checkpoint --use-ema --num-classes --img-size --device --amp
    add_output_args(p, False, 'bench JSON to write')
    p.set_defaults(func=run_bench)
    return p


def run_bench(args: argparse.Namespace) -> int:
    """``timm-recal bench``: time, print a table, write the JSON with ``-o``."""
    from .cli import int8_options
    from .report import bench_results_markdown
    record = bench(
        args.target, compare=args.compare, batches=args.batch, runtimes=args.runtimes, precisions=args.precision,
        checkpoint=args.checkpoint, compare_checkpoint=args.compare_checkpoint, onnx=args.onnx,
        compare_onnx=args.compare_onnx, num_classes=args.num_classes, use_ema=args.use_ema, img_size=args.img_size,
        warmup=args.warmup,
        repeats=args.repeats, min_time_s=args.min_time, threads=args.threads, device=args.device, amp=args.amp,
        calib_data=args.calib_data, calib_images=args.calib_images, int8_options=int8_options(args),
        output=args.output, force=args.force,
        log=lambda msg: print(msg, file=sys.stderr, flush=True),
    )
    print(bench_results_markdown(record))
    if record.get('output'):
        print(f"wrote {record['output']}", file=sys.stderr)
    return 0
