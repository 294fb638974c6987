"""Runtime ``trt``: a TensorRT engine run from Python, and the timing that trtexec users expect.

``open_tensorrt(path)`` takes a plan (checked against its sidecar by ``tensorrt_build.load_engine``) or an ONNX
file (an engine is built into a temporary folder first, deleted with the runner). The runner follows the
deploy stage's runtime contract: ``name``, ``precision``, ``__call__(images) -> logits``, ``describe()``,
``prepare(batch)``. It runs TensorRT's name-based I/O API: device buffers are torch CUDA tensors bound with
``IExecutionContext.set_tensor_address``, the batch shape is set with ``set_input_shape``, and inference is
``execute_async_v3`` on a dedicated CUDA stream (a ``torch.cuda.Stream``), with host copies on that stream.
Batches larger than the profile's max are run in chunks, smaller than its min padded; another image size is
refused with the profile in the message.

``bench_tensorrt`` reports what ``trtexec`` reports: throughput, host latency percentiles (p50/p90/p99, with the
host-to-device and device-to-host copies), GPU compute time from CUDA events around ``execute_async_v3`` alone,
and the copy times, per batch size.

API pages: TensorRT Python ``infer/Core/ExecutionContext.html`` (``set_input_shape``, ``set_tensor_address``,
``get_tensor_shape``, ``execute_async_v3``), ``infer/Core/Engine.html`` (``num_io_tensors``, ``get_tensor_name``,
``get_tensor_mode``, ``get_tensor_dtype``, ``get_tensor_profile_shape``, ``create_execution_context``), the
10.x migration guide's name-based I/O example (``migration-guide/index.html``), for 10.x and 11.x (the 11.x
removals list touches none of these calls). By construction: no TensorRT or GPU where this was written.
"""
import os
import shutil
import statistics
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from .errors import DeployError
from .metadata import read_metadata
from .tensorrt_build import build_engine, load_engine, require_tensorrt

__all__ = ['TrtRunner', 'open_tensorrt', 'bench_tensorrt', 'bench_numbers', 'numbers_text']


def _percentiles(values: Sequence[float]) -> Dict[str, float]:
    vals = sorted(values)
    if not vals:
        return {}
    p50, p90, p99 = (float(v) for v in np.percentile(vals, [50, 90, 99]))
    return {'mean': float(statistics.fmean(vals)), 'min': vals[0], 'p50': p50, 'p90': p90, 'p99': p99,
            'max': vals[-1]}


class TrtRunner:
    """One engine, one execution context, one CUDA stream; buffers are allocated per batch size and reused."""
    name = 'trt'

    def __init__(self, engine, sidecar: Dict[str, Any], trt, keepalive: Any = None, engine_path: str = '',
                 tmpdir: Optional[str] = None, device_index: int = 0):
        import torch
        self.engine, self.sidecar, self.trt = engine, sidecar, trt
        self._keepalive, self._tmpdir = keepalive, tmpdir
        self.engine_path = engine_path
        self.precision = sidecar.get('precision', 'fp32')
        self.device = torch.device('cuda', device_index)
        self.context = engine.create_execution_context()
        if self.context is None:
            raise DeployError('TensorRT could not create an execution context (out of GPU memory?)')
        self.stream = torch.cuda.Stream(device=self.device)
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(self.inputs) != 1 or not self.outputs:
            raise DeployError(f'expected an engine with one input and at least one output, got inputs {self.inputs} '
                              f'and outputs {self.outputs}')
        self.input_name = self.inputs[0]
        self.output_name = self.outputs[0]
        lo, _, hi = (list(s) for s in engine.get_tensor_profile_shape(self.input_name, 0))
        self.min_shape, self.max_shape = lo, hi
        self._bound: Dict[int, Dict[str, Any]] = {}

    # --- buffers -------------------------------------------------------------------------------------------------
    def _torch_dtype(self, name: str):
        import torch
        return torch.from_numpy(np.empty(0, dtype=self.trt.nptype(self.engine.get_tensor_dtype(name)))).dtype

    def _bind(self, batch: int) -> Dict[str, Any]:
        """Device tensors for ``batch`` and their addresses set on the context (re-set on every batch change)."""
        import torch
        buf = self._bound.get(batch)
        if buf is None:
            shape = [batch] + self.max_shape[1:]
            if not self.context.set_input_shape(self.input_name, shape):
                raise DeployError(f'TensorRT refused input shape {shape} (profile {self.min_shape}..{self.max_shape})')
            buf = {self.input_name: torch.empty(shape, dtype=self._torch_dtype(self.input_name), device=self.device)}
            for name in self.outputs:
                out_shape = [int(d) for d in self.context.get_tensor_shape(name)]
                if any(d < 0 for d in out_shape):
                    raise DeployError(f'output {name} has an unresolved shape {out_shape} for batch {batch}')
                buf[name] = torch.empty(out_shape, dtype=self._torch_dtype(name), device=self.device)
            self._bound[batch] = buf
        if getattr(self, '_current', None) != batch:
            self.context.set_input_shape(self.input_name, list(buf[self.input_name].shape))
            for name, tensor in buf.items():
                self.context.set_tensor_address(name, tensor.data_ptr())
            self._current = batch
        return buf

    def _enqueue(self) -> None:
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise DeployError('TensorRT execute_async_v3 failed (see the TensorRT log above)')

    def _check(self, images: np.ndarray) -> None:
        if images.ndim != len(self.max_shape) or list(images.shape[1:]) != self.max_shape[1:]:
            raise DeployError(f'input of shape {list(images.shape)} does not fit the engine input {self.input_name} '
                              f'(profile {self.min_shape}..{self.max_shape}); the engine was built for a fixed '
                              'image size')

    # --- the runtime contract ------------------------------------------------------------------------------------
    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Logits (float32) of a float32 NCHW batch of any size: over the profile max it runs in chunks, under the
        profile min it is padded (and the padding's logits dropped)."""
        images = np.ascontiguousarray(images, dtype=np.float32)
        self._check(images)
        step = self.max_shape[0]
        outs: List[np.ndarray] = []
        for start in range(0, images.shape[0], step):
            chunk = images[start:start + step]
            if chunk.shape[0] < self.min_shape[0]:  # a short last chunk: pad to the profile min, drop the padding
                pad = np.zeros((self.min_shape[0] - chunk.shape[0],) + chunk.shape[1:], np.float32)
                outs.append(self._run(np.concatenate([chunk, pad]))[:chunk.shape[0]])
            else:
                outs.append(self._run(chunk))
        return np.concatenate(outs).astype(np.float32, copy=False)

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        import torch
        buf = self._bind(chunk.shape[0])
        host = torch.from_numpy(chunk)
        with torch.cuda.stream(self.stream):
            buf[self.input_name].copy_(host.to(buf[self.input_name].dtype), non_blocking=False)
            self._enqueue()
            out = buf[self.output_name].cpu()  # a blocking copy on this stream, after the engine's work
        self.stream.synchronize()
        return out.float().numpy()

    def prepare(self, batch: int) -> Callable[[], Any]:
        """A call that runs one ``batch`` end to end as a user would: host images in, host logits out."""
        if not self.min_shape[0] <= batch <= self.max_shape[0]:
            raise DeployError(f'batch {batch} is outside the engine profile {self.min_shape[0]}..{self.max_shape[0]}; '
                              'rebuild with another --batch MIN,OPT,MAX')
        images = np.random.default_rng(0).standard_normal([batch] + self.max_shape[1:]).astype(np.float32)
        return lambda: self._run(images)

    def describe(self) -> Dict[str, Any]:
        side = self.sidecar
        return {'runtime': 'trt', 'engine': self.engine_path, 'tensorrt_version': side.get('tensorrt_version'),
                'gpu': side.get('gpu'), 'precision': self.precision, 'strongly_typed': side.get('strongly_typed'),
                'builder_flags_set': side.get('builder_flags_set'), 'profile': side.get('profile'),
                'source_onnx': (side.get('source_onnx') or {}).get('path'), 'threads': None}

    def close(self) -> None:
        self._bound.clear()
        self.context = None
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def open_tensorrt(engine_or_onnx_path: str, *, precision: str = 'fp32', threads: Optional[int] = None,
                  **options) -> TrtRunner:
    """Runner for a TensorRT plan, or for an ONNX file (built into a temporary engine first).

    ``precision``: for a plan, must match the sidecar; for an ONNX file, what to build (see
    ``tensorrt_build.build_settings``: the file's precision, or ``fp16`` from FP32 on TensorRT 10). ``threads``
    is accepted for the common contract and ignored (GPU). ``options``: ``onnx`` (the source ONNX of a plan, to
    check its SHA-256), ``batch``, ``workspace_mb``, ``timing_cache``, ``verbose``, ``device_index``.
    Without TensorRT or a GPU: ``DeployError`` naming what is missing, before anything is written.
    """
    del threads  # the GPU runs the engine; kept for the runtime contract shared with ort/openvino
    path = os.fspath(engine_or_onnx_path)
    device_index = int(options.get('device_index', 0))
    require_tensorrt(device_index)
    if not os.path.isfile(path):
        raise DeployError(f'model file not found: {path}')
    tmpdir = None
    onnx_path = options.get('onnx')
    if path.lower().endswith('.onnx'):
        tmpdir = tempfile.mkdtemp(prefix='timm-recal-trt-')
        try:
            file_precision = read_metadata(path).get('precision', 'fp32')
            built = build_engine(path, os.path.join(tmpdir, 'model.plan'), batch=options.get('batch'),
                                 precision=precision if precision != file_precision else None,
                                 workspace_mb=options.get('workspace_mb'), timing_cache=options.get('timing_cache'),
                                 verbose=bool(options.get('verbose')), device_index=device_index)
        except BaseException:
            shutil.rmtree(tmpdir, ignore_errors=True)
            raise
        onnx_path, path = path, built['output']
    engine, side, trt, keepalive = load_engine(path, onnx_path=onnx_path, device_index=device_index,
                                               verbose=bool(options.get('verbose')))
    if precision and side.get('precision') != precision:
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)
        raise DeployError(f"{engine_or_onnx_path} is a {side.get('precision')} engine, not {precision}")
    return TrtRunner(engine, side, trt, keepalive=keepalive, engine_path=path, tmpdir=tmpdir,
                     device_index=device_index)


def bench_tensorrt(runner: TrtRunner, batches: Sequence[int] = (1, 16), warmup: int = 10, iterations: int = 200,
                   min_time_s: float = 1.0) -> List[Dict[str, Any]]:
    """trtexec-style numbers per batch: throughput (images/s and inferences/s from host wall time), host latency
    percentiles in ms (H2D + compute + D2H, what a caller waits), GPU compute time (CUDA events around
    ``execute_async_v3`` only), and H2D / D2H copy times, each as mean/min/p50/p90/p99/max in ms."""
    import torch
    results = []
    for batch in batches:
        if batch > runner.max_shape[0] or batch < runner.min_shape[0]:
            raise DeployError(f'batch {batch} is outside the engine profile '
                              f'{runner.min_shape[0]}..{runner.max_shape[0]}')
        buf = runner._bind(batch)
        images = torch.from_numpy(
            np.random.default_rng(0).standard_normal([batch] + runner.max_shape[1:]).astype(np.float32))
        host_in = images.to(buf[runner.input_name].dtype).pin_memory()
        host_out = torch.empty(buf[runner.output_name].shape, dtype=buf[runner.output_name].dtype).pin_memory()
        ev = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
        wall, compute, h2d, d2h = [], [], [], []
        total_start = time.perf_counter()
        i = 0
        while True:
            t0 = time.perf_counter()
            with torch.cuda.stream(runner.stream):
                ev[0].record(runner.stream)
                buf[runner.input_name].copy_(host_in, non_blocking=True)
                ev[1].record(runner.stream)
                runner._enqueue()
                ev[2].record(runner.stream)
                host_out.copy_(buf[runner.output_name], non_blocking=True)
                ev[3].record(runner.stream)
            runner.stream.synchronize()
            t1 = time.perf_counter()
            if i >= warmup:
                wall.append((t1 - t0) * 1e3)
                h2d.append(ev[0].elapsed_time(ev[1]))
                compute.append(ev[1].elapsed_time(ev[2]))
                d2h.append(ev[2].elapsed_time(ev[3]))
            i += 1
            if len(wall) >= iterations and time.perf_counter() - total_start >= min_time_s:
                break
        mean_s = statistics.fmean(wall) / 1e3
        results.append({
            'batch': batch, 'iterations': len(wall),
            'throughput_images_per_s': batch / mean_s, 'throughput_qps': 1.0 / mean_s,
            'latency_ms': _percentiles(wall), 'gpu_compute_ms': _percentiles(compute),
            'h2d_ms': _percentiles(h2d), 'd2h_ms': _percentiles(d2h),
            'gpu_with_transfers_ms': _percentiles([a + b + c for a, b, c in zip(h2d, compute, d2h)]),
        })
    return results


def bench_numbers(timed: Sequence[Any], batches: Sequence[int], o: Any, notes: List[str], log) -> List[Dict[str, Any]]:
    """The runtime table's ``extra_numbers`` hook of ``trt``: what trtexec users expect of each timed TensorRT
    runner (``bench_tensorrt``): throughput, host latency and GPU compute percentiles, with and without
    transfers; batches outside its profile are noted. ``timed``: bench's runners of this runtime (``key``,
    ``model``, ``runner``)."""
    out = []
    for t in timed:
        lo, hi = t.runner.min_shape[0], t.runner.max_shape[0]
        inside = [b for b in batches if lo <= b <= hi]
        if len(inside) < len(batches):
            notes.append(f'{t.key}: batches outside the engine profile {lo}..{hi} have no trtexec-style numbers')
        log(f'trtexec-style timing of {t.key} ...')
        out.append({'key': t.key, 'model': t.model, 'results': bench_tensorrt(
            t.runner, inside, warmup=max(o.warmup, 1), min_time_s=o.min_time_s)})
    return out


def numbers_text(numbers: Sequence[Dict[str, Any]]) -> str:
    """The runtime table's ``numbers_text`` hook of ``trt``: ``bench``'s text output of ``bench_numbers``,
    trtexec's summary lines per engine and batch (ms, p50/p90/p99)."""
    lines = []
    for n in numbers or []:
        for r in n['results']:
            lat, gpu, full = r['latency_ms'], r['gpu_compute_ms'], r['gpu_with_transfers_ms']
            lines.append(f"\n{n['key']} batch {r['batch']}: throughput {r['throughput_images_per_s']:.1f} images/s "
                         f"({r['throughput_qps']:.1f} qps); latency p50/p90/p99 {lat['p50']:.3f}/{lat['p90']:.3f}/"
                         f"{lat['p99']:.3f} ms; GPU compute p50/p90/p99 {gpu['p50']:.3f}/{gpu['p90']:.3f}/"
                         f"{gpu['p99']:.3f} ms; with H2D+D2H {full['p50']:.3f}/{full['p90']:.3f}/{full['p99']:.3f} ms")
    return ''.join(lines)
