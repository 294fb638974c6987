"""What the two compiled PyTorch runtimes (``inductor``: ``torch.compile``; ``aoti``: AOTInductor packages)
share: the one place a module is prepared for compilation, the dtype of each precision, the compile cache
folder, and the child process a compile runs in.

Why a child process: AOTInductor's compile and load of a large model has ended the Python process silently
(no exception, no output) on a CUDA machine, and a compile can run for many minutes on a busy CPU. A compile
run by ``run_child`` that dies by a signal, fails, or exceeds its timeout is one ``DeployError`` line naming
the model, the torch version and the signal; the parent goes on (bench and pipeline report that runtime as
failed). ``TIMM_RECAL_TEST_COMPILE_CRASH=SIGNAME`` makes the child kill itself with that signal before it
compiles (test-only hook: the crash path is tested without a real compiler crash).
"""
import copy
import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
from torch import nn

from timm_recal.outputs import temporary_folder

from .batchnorm_folding import fold_batchnorms
from .compile_fusion import fuse_gates
from .errors import CompileFailed, DeployError, NoNativePrecision
from .runtimes import device_kind, native_bf16

__all__ = ['prepare_for_compile', 'compiled_dtype', 'cache_dir', 'run_child', 'DEFAULT_COMPILE_TIMEOUT_S',
           'CRASH_HOOK_ENV', 'CACHE_ENV', 'CACHE_MAX_ENV', 'DEFAULT_CACHE_MAX_GB', 'cache_limit_bytes', 'touch_cached',
           'trim_cache', 'device_name', 'module_types', 'code_digest', 'conv_macs_per_image', 'weight_prepack',
           'PREPACK_MIN_CONV_MACS', 'RULE_BATCH', 'PREPACK_RULE']

#: a compile (export + AOTInductor + package) longer than this is stopped (``--compile-timeout``)
DEFAULT_COMPILE_TIMEOUT_S = 1800.0
#: the cache root (``$TIMM_RECAL_CACHE``, else ``~/.cache/timm_recal``); packages go to its ``aoti/`` folder
CACHE_ENV = 'TIMM_RECAL_CACHE'
#: the package cache's size limit in GB (``cache_limit_bytes``); least recently used packages go first
CACHE_MAX_ENV = 'TIMM_RECAL_CACHE_MAX_GB'
DEFAULT_CACHE_MAX_GB = 10.0
#: test-only: the compile child kills itself with this signal (e.g. ``SIGKILL``) before compiling
CRASH_HOOK_ENV = 'TIMM_RECAL_TEST_COMPILE_CRASH'
#: FP32 CPU graphs whose convolutions average fewer multiply-accumulates per call than this compile without
#: oneDNN weight prepacking (``weight_prepack``)
PREPACK_MIN_CONV_MACS = 10_000_000
#: the batch a graph for any batch (a dynamic package model, parity's calls) is judged at: bench's other batch
RULE_BATCH = 16
PREPACK_RULE = (f'FP32 on CPU: oneDNN weight prepacking only where convolutions average >= '
                f'{PREPACK_MIN_CONV_MACS / 1e6:g}M MACs per call (a graph for any batch judged at batch {RULE_BATCH})')


def prepare_for_compile(model: nn.Module, input_size: Optional[Sequence[int]] = None,
                        dtype: Optional[torch.dtype] = None) -> nn.Module:
    """A copy of ``model`` made ready for ``torch.compile``/``torch.export``: the one place the compiled
    runtimes change a module before compiling it (exact, compile-friendly rewrites belong here); the caller's
    module is never touched. BatchNorms are folded into their convolutions (in float64, rounded once) before any
    cast to ``dtype`` (BF16/FP16; ``batchnorm_folding``, which leaves a pair whose folded weights ``dtype`` cannot
    hold; the graph is traced at ``input_size``, by default the model's pretrained config's), then the gates are
    rewritten into the form inductor fuses (``compile_fusion.fuse_gates``: the pool reads the narrow map, the
    excitation runs on ``[N, C]`` vectors)."""
    prepared = copy.deepcopy(model).eval()
    if input_size is None:
        input_size = (getattr(model, 'pretrained_cfg', None) or {}).get('input_size')
    fold_batchnorms(prepared, input_size, dtype)
    fuse_gates(prepared)
    return prepared


def conv_macs_per_image(model: nn.Module, input_size) -> Optional[float]:
    """The mean multiply-accumulates per convolution of ``model`` for one image of ``input_size`` (a forward at
    batch 1 with hooks, in FP32 on the CPU); None for a model without convolutions."""
    macs: List[int] = []

    def count(conv: nn.Module, _inputs, out: torch.Tensor) -> None:
        macs.append(out.numel() * conv.in_channels // conv.groups * math.prod(conv.kernel_size))
    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_size))
    finally:
        for h in hooks:
            h.remove()
    return sum(macs) / len(macs) if macs else None


def weight_prepack(precision: str, device: str, macs_per_conv: Optional[float], batch: Optional[int]) -> bool:
    """Whether inductor prepacks the convolution weights for oneDNN (``cpp.weight_prepack``, its default) for a
    graph of ``batch`` (None: any batch, judged at ``RULE_BATCH``).

    Why not always: a prepacked oneDNN convolution call has a fixed cost that small convolutions do not earn
    back. Measured with ``torch.compile`` and freezing, FP32, 2 threads (one run each, ms per call, prepacked /
    not): shufflenetv2_x0_5_cifar (0.19M MACs per conv and image) 2.90 / 1.96 at batch 1, 7.73 / 5.71 at 16;
    shufflenetv2_x1_0 (2.6M) 7.83 / 6.03 at 1, 40.5 / 46.3 at 16; resnet18 (91M) 17.7 / 24.1 at 1; resnet50 (77M)
    41.8 / 64.5 at 1. In BF16 prepacking won even for the CIFAR net (2.95 / 4.70 at batch 1), so only FP32 CPU
    graphs below ``PREPACK_MIN_CONV_MACS`` per call go without it.
    """
    if device_kind(device) != 'cpu' or precision != 'fp32' or macs_per_conv is None:
        return True
    return macs_per_conv * (batch or RULE_BATCH) >= PREPACK_MIN_CONV_MACS


def module_types(model: nn.Module) -> str:
    """The sorted module class names of ``model``: part of a compile cache key, so that a rewrite in
    ``prepare_for_compile`` (other modules, same weights) never hits a package compiled before it."""
    return ','.join(sorted({type(m).__module__ + '.' + type(m).__qualname__ for m in model.modules()}))


def code_digest(model: nn.Module) -> str:
    """SHA-256 of the source files that define ``model``'s module classes (ours, timm's, torch's): part of a
    compile cache key, so that a changed ``forward`` or rewrite (the same classes and weights, other code, as
    between two commits of one version) never hits a package compiled from the old code. A class without a
    readable file counts by its name only."""
    files = sorted({getattr(sys.modules.get(type(m).__module__), '__file__', None) or type(m).__module__
                    for m in model.modules()})
    h = hashlib.sha256()
    for name in files:
        h.update(name.encode())
        try:
            with open(name, 'rb') as f:
                h.update(f.read())
        except OSError:
            pass
    return h.hexdigest()


def compiled_dtype(precision: str, device: str) -> torch.dtype:
    """The weights/input dtype of ``precision`` on ``device``: fp32 anywhere, bf16 on CUDA or a CPU with native
    BF16 (an emulation is refused, as eager refuses it), fp16 on CUDA (weights and inputs in half)."""
    if precision == 'fp32':
        return torch.float32
    if precision == 'bf16':
        if device == 'cpu' and native_bf16() is False:
            raise NoNativePrecision('no native BF16 on this CPU (no AMX-BF16/AVX512_BF16 flag): a compiled bf16 '
                                    'model would be an emulation, not timed')
        return torch.bfloat16
    if precision == 'fp16':
        if not device.startswith('cuda'):
            raise NoNativePrecision('fp16 compiles for CUDA only (--device cuda); on a CPU use fp32 or bf16')
        return torch.float16
    raise DeployError(f'the compiled runtimes run fp32, bf16 (CPU with native BF16, CUDA) or fp16 (CUDA), '
                      f'not {precision}')


def device_name(device: str) -> str:
    """``cpu`` or ``cuda (<GPU name>, sm_XY)``: what a package was compiled for, in its metadata and cache key."""
    if not device.startswith('cuda'):
        return 'cpu'
    index = torch.device(device).index or 0
    major, minor = torch.cuda.get_device_capability(index)
    return f'cuda ({torch.cuda.get_device_name(index)}, sm_{major}{minor})'


def cache_dir(kind: str = 'aoti') -> str:
    """Where compiled artifacts of ``kind`` are kept between runs (a pipeline compiles each model once)."""
    root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser('~'), '.cache', 'timm_recal')
    path = os.path.join(root, kind)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise DeployError(f'the compile cache folder {path} cannot be created ({e.strerror}); set {CACHE_ENV} '
                          'to a writable folder') from None
    return path


def cache_limit_bytes() -> Optional[int]:
    """The most bytes of packages the cache keeps (``$TIMM_RECAL_CACHE_MAX_GB``, default ``DEFAULT_CACHE_MAX_GB``;
    ``0`` keeps everything): a ResNet-50 package is about 200 MB, and every weights, torch version or batch range
    adds one."""
    raw = os.environ.get(CACHE_MAX_ENV, '').strip()
    try:
        gb = float(raw) if raw else DEFAULT_CACHE_MAX_GB
    except ValueError:
        raise DeployError(f'{CACHE_MAX_ENV} must be a number of GB (0: no limit), got {raw!r}') from None
    if not (gb >= 0 and math.isfinite(gb)):
        raise DeployError(f'{CACHE_MAX_ENV} must be a number of GB >= 0 (0: no limit), got {raw!r}')
    return int(gb * 1e9) if gb > 0 else None


def touch_cached(path: str) -> None:
    """Mark a cached file as just used: ``trim_cache`` removes the least recently used first."""
    try:
        os.utime(path)
    except OSError:
        pass  # a read-only cache still serves; it is only not reordered


def trim_cache(folder: str, keep: str, suffix: str = '.pt2', max_bytes: Optional[int] = None) -> List[str]:
    """Remove the least recently used ``*suffix`` files of ``folder`` (never ``keep``, the one just made) until
    they take at most ``max_bytes`` (``cache_limit_bytes()`` when None; no limit: nothing removed); returns the
    removed paths. Another process may remove or use the same files: a file gone already is skipped."""
    limit = cache_limit_bytes() if max_bytes is None else max_bytes
    if not limit:
        return []
    entries = []
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if not name.endswith(suffix) or not os.path.isfile(path):
            continue
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        entries.append((st.st_mtime, st.st_size, path))
    total = sum(size for _, size, _ in entries)
    removed = []
    for _, size, path in sorted(entries):
        if total <= limit:
            break
        if os.path.abspath(path) == os.path.abspath(keep):
            continue
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
        total -= size
        removed.append(path)
    return removed


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f'signal {number}'


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:400] if lines else 'no output'


def run_child(module: str, job: Dict[str, Any], *, what: str, timeout: Optional[float] = None,
              log: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
    """Run ``python -m timm_recal_deploy.<module> JOB.json`` and return the JSON it writes to ``job['result']``.

    The child runs in its own session (a timeout stops its compiler processes too). A signal, a non-zero exit
    or the timeout is a ``DeployError`` naming ``what`` (the model), the torch version and the signal or the
    child's last line. ``job`` may name files; the child writes its result JSON last, so a result means done.
    """
    timeout = DEFAULT_COMPILE_TIMEOUT_S if timeout is None else float(timeout)
    if not timeout > 0:
        raise DeployError(f'--compile-timeout must be > 0 seconds, got {timeout:g}')
    where = f'{what} (torch {torch.__version__})'
    with temporary_folder('timm_recal_child_') as tmp:
        job = dict(job, result=os.path.join(tmp, 'result.json'))
        job_path = os.path.join(tmp, 'job.json')
        with open(job_path, 'w', encoding='utf-8') as f:
            json.dump(job, f)
        err_path = os.path.join(tmp, 'stderr.txt')
        t0 = time.perf_counter()
        with open(err_path, 'wb') as err:
            proc = subprocess.Popen([sys.executable, '-m', f'{__package__}.{module}', job_path],
                                    stdout=err, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                raise CompileFailed(f'compiling {where} exceeded --compile-timeout {timeout:g} s; the child was '
                                  'stopped (SIGKILL)') from None
            except BaseException:  # Ctrl-C / SIGTERM of the parent: never leave a compiler running
                _kill_group(proc)
                raise
        with open(err_path, encoding='utf-8', errors='replace') as f:
            output = f.read()
        if rc < 0:
            raise CompileFailed(f'compiling {where} died with {_signal_name(-rc)} after '
                              f'{time.perf_counter() - t0:.0f} s (no Python error; last output: '
                              f'{_last_line(output)})')
        if rc != 0 or not os.path.isfile(job['result']):
            raise CompileFailed(f'compiling {where} failed (exit {rc}): {_last_line(output)}')
        with open(job['result'], encoding='utf-8') as f:
            return json.load(f)


def _kill_group(proc: 'subprocess.Popen') -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def crash_if_asked() -> None:
    """The test-only hook (``CRASH_HOOK_ENV``): kill this process with the named signal."""
    name = os.environ.get(CRASH_HOOK_ENV)
    if name:
        os.kill(os.getpid(), getattr(signal, name, signal.SIGKILL))
