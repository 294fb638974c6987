"""The ``inductor`` runner: ``torch.compile(model, fullgraph=True)`` of the module, in this process.

The mode is chosen per batch (``compile_mode``): on CUDA, fixed small batches replay CUDA graphs
(``reduce-overhead``: launch overhead dominates there); larger CUDA batches and every CPU batch use the default
mode (``max-autotune`` would spend minutes autotuning GEMM templates for convolution nets). On CPU the graph is
compiled with freezing (weights folded as constants, oneDNN layouts) under ``torch.no_grad()``, with oneDNN
weight prepacking unless its convolutions are too small to earn it back (``compiled.weight_prepack``). Weights
and inputs are cast to the precision's dtype (bf16: a CPU with native BF16 or CUDA; fp16: CUDA), not autocast.

Compilation happens in ``prepare`` (bench's set-up, outside every timing window) or on the first call; its
seconds per batch are in ``describe()['compile_seconds']``.
"""
import time
from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np
import torch
from torch import nn

from .compiled import PREPACK_RULE, compiled_dtype, conv_macs_per_image, prepare_for_compile, weight_prepack
from .eager_runtime import check_device
from .errors import CompileFailed
from .runtimes import Runner, bench_input

__all__ = ['InductorRunner', 'open_inductor', 'compile_mode', 'CUDA_GRAPH_MAX_BATCH']

#: CUDA batches up to this compile with ``reduce-overhead`` (CUDA graphs)
CUDA_GRAPH_MAX_BATCH = 16


def compile_mode(device: str, batch: Optional[int]) -> str:
    """The ``torch.compile`` mode for a fixed ``batch`` (None: any batch, e.g. parity's and validate's)."""
    if device.startswith('cuda') and batch is not None and batch <= CUDA_GRAPH_MAX_BATCH:
        return 'reduce-overhead'
    return 'default'


class InductorRunner(Runner):
    name = 'inductor'

    def __init__(self, model: nn.Module, *, precision: str = 'fp32', device: str = 'cpu',
                 input_size: Optional[Sequence[int]] = None, threads: Optional[int] = None):
        self.device = check_device(device)
        self.precision, self.threads = precision, threads
        self._dtype = compiled_dtype(precision, self.device)
        self._dev = torch.device(self.device)
        self.channels_last = self.device.startswith('cuda')
        model = prepare_for_compile(model, input_size, self._dtype)
        self.input_size = tuple(input_size or ())
        self._macs = conv_macs_per_image(model, self.input_size) if self._dev.type == 'cpu' and input_size else None
        model = model.to(device=self._dev, dtype=self._dtype)
        self.model = model.to(memory_format=torch.channels_last) if self.channels_last else model
        self.prepacked: Dict[str, bool] = {}
        self._compiled: Dict[str, Callable] = {}
        self.compile_seconds: Dict[str, float] = {}
        self.modes: Dict[str, str] = {}

    def _fn(self, mode: str) -> Callable:
        if mode not in self._compiled:
            self._compiled[mode] = torch.compile(self.model, fullgraph=True, mode=mode, dynamic=False)
        return self._compiled[mode]

    def _run(self, mode: str, x: torch.Tensor, key: str, batch: Optional[int] = None) -> torch.Tensor:
        """One call; the first of a key compiles (timed into ``compile_seconds``). Freezing on CPU; the weight
        prepacking of ``batch``'s graph (``compiled.weight_prepack``)."""
        prepack = weight_prepack(self.precision, self.device, self._macs, batch)
        config = torch._inductor.config.patch({'freezing': not self.device.startswith('cuda'),
                                               'cpp.weight_prepack': prepack})
        with torch.no_grad(), config:
            if key in self.compile_seconds:
                return self._fn(mode)(x)
            t0 = time.perf_counter()
            try:
                out = self._fn(mode)(x)
            except Exception as e:
                raise CompileFailed(f'torch.compile (inductor, mode {mode}) failed: '
                                  f'{str(e).strip().splitlines()[0][:300]}') from None
            if self._dev.type == 'cuda':
                torch.cuda.synchronize()
            self.compile_seconds[key] = round(time.perf_counter() - t0, 2)
            self.modes[key], self.prepacked[key] = mode, prepack
            return out

    def _tensor(self, images) -> torch.Tensor:
        x = torch.as_tensor(images).to(self._dev, dtype=self._dtype, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def __call__(self, images: np.ndarray) -> np.ndarray:
        mode = compile_mode(self.device, None)
        return self._run(mode, self._tensor(images), 'any batch').float().cpu().numpy()

    def prepare(self, batch: int) -> Callable[[], Any]:
        x = self._tensor(bench_input(batch, self.input_size))
        mode = compile_mode(self.device, batch)
        key = f'batch {batch}'
        self._run(mode, x, key, batch)
        for _ in range(2):  # reduce-overhead records its CUDA graph on the calls after the compile
            self._run(mode, x, key, batch)
        fn = self._fn(mode)
        sync = torch.cuda.synchronize if self._dev.type == 'cuda' else (lambda: None)

        def call():
            with torch.no_grad():
                fn(x)
            sync()
        return call

    def describe(self) -> Dict[str, Any]:
        return {'runtime': self.name, 'library': 'torch (inductor)', 'torch': torch.__version__,
                'device': self.device, 'precision': self.precision,
                'dtype': str(self._dtype).replace('torch.', ''),
                'memory_format': 'channels_last' if self.channels_last else 'contiguous',
                'threads': self.threads or torch.get_num_threads(), 'shape': 'dynamic (recompiled per batch)',
                'fullgraph': True, 'freezing': not self.device.startswith('cuda'),
                'modes': dict(self.modes), 'compile_seconds': dict(self.compile_seconds),
                'weight_prepack': dict(self.prepacked), 'weight_prepack_rule': PREPACK_RULE,
                'mode_rule': f'reduce-overhead (CUDA graphs) for CUDA batches <= {CUDA_GRAPH_MAX_BATCH}, '
                             'default otherwise'}


def open_inductor(model: nn.Module, *, precision: str = 'fp32', threads: Optional[int] = None,
                  device: str = 'cpu', input_size: Optional[Sequence[int]] = None, **options) -> InductorRunner:
    return InductorRunner(model, precision=precision, device=device, input_size=input_size, threads=threads)
