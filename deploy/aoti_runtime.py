"""The ``aoti`` runner: an AOTInductor package (``.pt2``) loaded with ``torch._inductor.aoti_load_package``.

Its source is a ``.pt2`` written by ``timm-recal export --format aoti`` (checked against this torch and device
before loading: ``aoti_package.check_package``) or a PyTorch module, which is compiled in a child process
(``aoti_package.cached_package``; the compile time is reported in ``describe()``, never inside a timing window).
Inputs are cast to the package's dtype (weights and inputs in half for fp16, not autocast) and memory format.
A batch the package holds a static model for (``--static-batches``; batch 1 by default on CPU) runs that model;
every other batch runs the dynamic one.
On CUDA, bench batches up to ``CUDA_GRAPH_MAX_BATCH`` replay a CUDA graph captured around the package's call:
AOTInductor does not capture one itself, and at batch 1 the launch overhead is most of the time.
"""
import os
import time
from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np
import torch
from torch import nn

from .aoti_package import (DEFAULT_MAX_BATCH, DYNAMIC_MODEL, cached_package, check_package,
                           package_metadata, static_model_name)
from .compiled import compiled_dtype
from .eager_runtime import check_device
from .errors import BatchNotSupported, DeployError
from .runtimes import Runner, bench_input, device_kind
from .sources import module_info

__all__ = ['AotiRunner', 'open_aoti', 'CUDA_GRAPH_MAX_BATCH']

#: CUDA batches up to this replay a captured CUDA graph in ``prepare`` (fixed shapes; launch-bound sizes)
CUDA_GRAPH_MAX_BATCH = 16


class AotiRunner(Runner):
    """A loaded package; ``meta`` is its ``timm_recal`` metadata."""

    name = 'aoti'

    def __init__(self, path: str, meta: Dict[str, Any], *, threads: Optional[int] = None,
                 compile_seconds: Optional[float] = None, cached: bool = False):
        self.path, self.meta, self.threads = path, meta, threads
        self.precision = meta['precision']
        self.device = device_kind(meta['device'])
        self.input_size = tuple(meta['input_size'])
        self.compile_seconds, self.cached = compile_seconds, cached
        self._dev = torch.device(self.device)
        self._dtype = compiled_dtype(self.precision, self.device)
        self._channels_last = meta.get('memory_format') == 'channels_last'
        self.lo, self.hi = meta.get('batch_range') or (1, DEFAULT_MAX_BATCH)
        self.static_batches = [int(b) for b in meta.get('static_batches', ())]
        t0 = time.perf_counter()
        self.model = self._load(DYNAMIC_MODEL)
        self.static_models = {b: self._load(static_model_name(b)) for b in self.static_batches}
        self.load_seconds = time.perf_counter() - t0
        self.graph_batches: list = []

    def _load(self, name: str) -> Any:
        from torch._inductor.package import load_package
        try:  # single-threaded run: the CUDA graph capture of ``prepare`` needs it (aoti_load_package's doc)
            return load_package(self.path, name, run_single_threaded=self.device == 'cuda')
        except Exception as e:
            raise DeployError(f'{self.path} does not load ({name}): {str(e).strip().splitlines()[0][:300]}') from None

    def _model_for(self, batch: int) -> Any:
        return self.static_models.get(batch, self.model)

    def _tensor(self, images) -> torch.Tensor:
        x = torch.as_tensor(images).to(self._dev, dtype=self._dtype, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self._channels_last else x

    def _check_batch(self, n: int) -> None:
        if not self.lo <= n <= self.hi:
            raise BatchNotSupported(f'the package takes batches {self.lo}..{self.hi}, not {n} (--max-batch)')

    def __call__(self, images: np.ndarray) -> np.ndarray:
        self._check_batch(len(images))
        with torch.no_grad():
            return self._model_for(len(images))(self._tensor(images)).float().cpu().numpy()

    def prepare(self, batch: int) -> Callable[[], Any]:
        self._check_batch(batch)
        x = self._tensor(bench_input(batch, self.input_size))
        model = self._model_for(batch)
        if self.device != 'cuda':
            def call():
                with torch.no_grad():
                    model(x)
            return call
        if batch > CUDA_GRAPH_MAX_BATCH:
            def call_cuda():
                with torch.no_grad():
                    model(x)
                torch.cuda.synchronize()
            return call_cuda
        return self._graph_call(model, x)

    def _graph_call(self, model: Any, x: torch.Tensor) -> Callable[[], Any]:
        """Capture the package's call on ``x`` once (after warm-up on a side stream) and replay it."""
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.no_grad(), torch.cuda.stream(stream):
            for _ in range(3):
                model(x)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(graph):
            model(x)
        self.graph_batches.append(len(x))

        def replay():
            graph.replay()
            torch.cuda.synchronize()
        return replay

    def describe(self) -> Dict[str, Any]:
        return {'runtime': self.name, 'library': 'torch (AOTInductor)', 'torch': torch.__version__,
                'device': self.meta.get('device'), 'precision': self.precision,
                'dtype': self.meta.get('dtype'), 'memory_format': self.meta.get('memory_format'),
                'threads': self.threads or torch.get_num_threads(), 'shape': f'dynamic (batch {self.lo}..{self.hi})'
                + ''.join(f', static batch {b}' for b in self.static_batches),
                'package': os.path.basename(self.path), 'package_bytes': os.path.getsize(self.path),
                'freezing': self.meta.get('freezing'), 'weight_prepack': self.meta.get('weight_prepack'),
                'compile_seconds': self.compile_seconds,
                'compile_cached': self.cached, 'load_seconds': round(self.load_seconds, 3),
                **({'cuda_graph_batches': list(self.graph_batches)} if self.device == 'cuda' else {})}


def open_aoti(source: Any, *, precision: str = 'fp32', threads: Optional[int] = None, device: str = 'cpu',
              input_size: Optional[Sequence[int]] = None, compile_timeout: Optional[float] = None,
              info: Optional[Dict[str, Any]] = None, log: Optional[Callable[[str], None]] = None,
              static_batches: Optional[Sequence[int]] = None, **options) -> AotiRunner:
    """``source``: a ``.pt2`` path (its precision must be ``precision``) or a module compiled here (cached)."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        meta = package_metadata(path)
        check_package(path, meta, None)
        if precision != meta['precision']:
            raise DeployError(f"{path} is a {meta['precision']} package, not {precision}")
        return AotiRunner(path, meta, threads=threads)
    if not isinstance(source, nn.Module):
        raise DeployError(f'aoti runs a MODEL or a .pt2 package, not {type(source).__name__}')
    check_device(device)
    size = input_size[-1] if input_size else None
    info = dict(info or module_info(source, type(source).__name__, size))
    if input_size:
        info['input_size'] = tuple(input_size)
    path, meta, seconds = cached_package(source, info, device=device, precision=precision, timeout=compile_timeout,
                                         static_batches=static_batches, log=log)
    check_package(path, meta, device)
    return AotiRunner(path, meta, threads=threads, compile_seconds=seconds, cached=seconds is None)
