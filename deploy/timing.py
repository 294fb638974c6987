"""Timing and statistics of ``bench`` (pure: a clock and callables in, numbers out), speed ratios, and the
machine a benchmark ran on.

Calls are timed interleaved: every repeat times each runner once, in alternating order (forward, then
backward), so slow drifts of the machine (another process, clock changes) hit both sides alike. Ratios are
medians of the per-repeat ratios of those side-by-side windows (``paired_ratio``).
"""
import os
import platform
import statistics
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .errors import DeployError
from .runtimes import PRECISIONS, RUNTIMES, vs_best_eager_kind

__all__ = ['time_interleaved', 'summarize_times', 'compute_ratios', 'paired_ratio', 'machine_info', 'busy_cpus',
           'amx_usable', 'vs_best_eager_kind']

_EAGER = [w for w, r in RUNTIMES.items() if r.reference]
_ONNX = [w for w, r in RUNTIMES.items() if not r.reference]  # every other runtime: ONNX files, compiled PyTorch
#: a timing window never runs more iterations than this (guards against a clock that does not advance)
_MAX_ITERS = 100_000


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


def summarize_times(windows: Sequence[Sequence[float]], batch: int) -> Dict[str, Any]:
    """Throughput and latency of one runner at one batch size from its timing windows.

    ``images_per_s`` is the median over repeats of ``batch * calls / seconds`` of each window; latency
    percentiles are over every timed call (the time of one whole batch, in ms).
    """
    if not windows or not all(windows):
        raise ValueError('summarize_times needs at least one non-empty timing window')
    per_window = [batch * len(w) / sum(w) if sum(w) > 0 else float('inf') for w in windows]
    lat_ms = np.array([t * 1000.0 for w in windows for t in w])
    p50, p90, p99 = (float(v) for v in np.percentile(lat_ms, [50, 90, 99]))
    return {
        'images_per_s': statistics.median(per_window),
        'images_per_s_repeats': per_window,
        'latency_ms': {'p50': p50, 'p90': p90, 'p99': p99, 'mean': float(lat_ms.mean()), 'min': float(lat_ms.min())},
        'iterations': len(lat_ms),
    }


def paired_ratio(num: Dict[str, Any], den: Dict[str, Any]) -> Tuple[float, str]:
    """``(value, estimator)`` of ``num``'s speed over ``den``'s.

    With one window per repeat on both sides, the value is the median over repeats of the ratio of the two
    windows of the same repeat. A shared machine changes speed in steps (another guest on the host's core: the
    same net ran at 3,200 and at 2,300 images/s within one minute, at 1-minute load 0.5), and a ratio of two
    medians mixes whichever step each side's median fell in; windows of the same repeat (``bench`` times the
    two sides of a ratio next to each other) share their step. Records without per-repeat numbers fall back to
    the ratio of the medians.
    """
    a, b = num.get('images_per_s_repeats'), den.get('images_per_s_repeats')
    if a and b and len(a) == len(b) and all(v > 0 for v in b):
        return statistics.median(x / y for x, y in zip(a, b)), 'median of per-repeat ratios'
    return num['images_per_s'] / den['images_per_s'], 'ratio of medians'


def _ratio(kind: str, num: Dict[str, Any], den: Dict[str, Any], **extra) -> Dict[str, Any]:
    value, estimator = paired_ratio(num, den)
    return dict(
        kind=kind, batch=num['batch'], **extra,
        numerator=f"{num['role']}/{num['runtime']}/{num['precision']}",
        denominator=f"{den['role']}/{den['runtime']}/{den['precision']}",
        value=value, estimator=estimator, ratio_of_medians=num['images_per_s'] / den['images_per_s'],
    )


def compute_ratios(results: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Speed ratios at each batch (numerator / denominator, ``paired_ratio``: the median of per-repeat ratios;
    ``ratio_of_medians`` beside it):

    * ``ort_vs_best_eager`` (``<runtime>_vs_best_eager`` for other ONNX runtimes): each ONNX runtime's FP32 runner over the faster FP32 eager layout (NCHW or
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
            ratios += _ratios_within(idx, role, b)
    if 'target' in roles and 'compare' in roles:
        for b in batches:
            ratios += _ratios_between(idx, b)
    return ratios


def _ratios_within(idx: Dict[Tuple, Dict[str, Any]], role: str, b: int) -> List[Dict[str, Any]]:
    """One model at one batch: each ONNX runtime's FP32 over the best FP32 eager, its INT8/FP16 over its FP32."""
    eager = [idx[k] for k in idx if k[0] == role and k[1] in _EAGER and k[2] == 'fp32' and k[3] == b]
    best = max(eager, key=lambda r: r['images_per_s']) if eager else None
    out = []
    for rt in _ONNX:
        fp32 = idx.get((role, rt, 'fp32', b))
        if fp32 is None:
            continue
        if best is not None:
            out.append(_ratio(vs_best_eager_kind(rt), fp32, best, role=role, model=fp32['model']))
        for p in [p for p in PRECISIONS if p != 'fp32']:
            low = idx.get((role, rt, p, b))
            if low is not None:
                out.append(_ratio(f'{p}_vs_fp32', low, fp32, role=role, model=fp32['model']))
    return out


def _ratios_between(idx: Dict[Tuple, Dict[str, Any]], b: int) -> List[Dict[str, Any]]:
    """Target over compare at one batch, per runtime: same precision, or the single file of each side."""
    out = []
    for rt in RUNTIMES:
        tgt = {k[2]: r for k, r in idx.items() if k[0] == 'target' and k[1] == rt and k[3] == b}
        cmp_ = {k[2]: r for k, r in idx.items() if k[0] == 'compare' and k[1] == rt and k[3] == b}
        pairs = [(tgt[p], cmp_[p]) for p in tgt if p in cmp_]
        if not pairs and len(tgt) == 1 and len(cmp_) == 1:
            pairs = [(next(iter(tgt.values())), next(iter(cmp_.values())))]
        out += [_ratio('target_vs_compare', t, c, runtime=rt, model=t['model'], compare_model=c['model'])
                for t, c in pairs]
    return out


# --- the machine ---------------------------------------------------------------------------------------------
def amx_usable(flags: Sequence[str]) -> Optional[bool]:
    """Whether this process may run AMX instructions: Linux hands out the tile state only on request
    (``arch_prctl(ARCH_REQ_XCOMP_PERM)``, the call oneDNN and MLAS make before their first AMX kernel), and a
    kernel older than 5.16 or a seccomp filter refuses it, so ``amx_tile`` in the flags alone does not mean the
    runtimes use AMX. None where this cannot be asked (not Linux on x86_64)."""
    if 'amx_tile' not in flags:
        return False
    if platform.system() != 'Linux' or platform.machine() != 'x86_64':
        return None
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    sys_arch_prctl, arch_req_xcomp_perm, xfeature_xtiledata = 158, 0x1023, 18
    return libc.syscall(sys_arch_prctl, arch_req_xcomp_perm, xfeature_xtiledata) == 0


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
    notable = ('avx2', 'fma', 'avx512f', 'avx512_vnni', 'avx512_bf16', 'avx_vnni', 'amx_tile', 'amx_bf16',
               'amx_int8')
    # the ISA the BF16/INT8 numbers depend on: AMX tiles, AVX-512 BF16, VNNI (None where /proc/cpuinfo is unread)
    isa = {'amx': 'amx_tile' in flags, 'amx_bf16': 'amx_bf16' in flags, 'amx_int8': 'amx_int8' in flags,
           'avx512_bf16': 'avx512_bf16' in flags, 'vnni': bool(flags & {'avx512_vnni', 'avx_vnni'}),
           'native_bf16': bool(flags & {'amx_bf16', 'avx512_bf16'}), 'amx_usable': amx_usable(flags)} \
        if flags else None
    return {'cpu_model': model, 'cpu_flags': [f for f in notable if f in flags], 'cpu_isa': isa}


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
    for mod in ('onnxruntime', 'onnx', 'timm', 'numpy', 'timm_recal', 'openvino', 'nncf'):
        try:
            mod_ = __import__(mod)
            versions[mod] = mod_.get_version() if mod == 'openvino' else mod_.__version__
        except ImportError:
            versions[mod] = None
    info['versions'] = versions
    info['cuda'] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return info
