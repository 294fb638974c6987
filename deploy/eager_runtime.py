"""PyTorch eager runners (``eager``: NCHW, ``eager_cl``: channels_last weights and input), in the ``Runner``
shape of ``runtimes``; ``amp_bf16``/``amp_fp16`` run under autocast (``--amp``), and ``bf16`` is
``--precision bf16``: CPU (or CUDA) autocast to bfloat16, the comparison point of OpenVINO BF16, refused
(``NoNativePrecision``) on a CPU without native BF16 so that an emulation is never timed as BF16."""
import copy
from contextlib import nullcontext
from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np
import torch
from torch import nn

from .errors import DeployError, NoNativePrecision
from .runtimes import EAGER_PRECISIONS, Runner, bench_input, native_bf16

__all__ = ['EagerRunner', 'open_eager', 'open_eager_cl', 'check_device', 'amp_precision']


def check_device(device: str) -> str:
    """``cpu`` or ``cuda[:N]``, and CUDA must be present."""
    if not isinstance(device, str) or not (device == 'cpu' or device.startswith('cuda')):
        raise DeployError(f"--device must be 'cpu' or 'cuda', got {device!r}")
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise DeployError('--device cuda: no CUDA device is available to PyTorch here; use --device cpu')
    return device


def amp_precision(device: str) -> str:
    """The autocast precision ``--amp`` means on ``device`` (bf16 on CPU, fp16 on CUDA)."""
    return 'amp_fp16' if device.startswith('cuda') else 'amp_bf16'


class EagerRunner(Runner):
    """An eval-mode module on ``device``; ``channels_last`` converts a copy of it and every input."""

    def __init__(self, model: nn.Module, *, channels_last: bool = False, precision: str = 'fp32',
                 device: str = 'cpu', input_size: Optional[Sequence[int]] = None, threads: Optional[int] = None):
        if precision not in ('fp32', 'bf16') + EAGER_PRECISIONS:
            raise DeployError(f"eager runs fp32, bf16 or {', '.join(EAGER_PRECISIONS)} (autocast), not {precision}")
        self.device = check_device(device)
        if precision == 'bf16' and self.device == 'cpu' and native_bf16() is False:
            raise NoNativePrecision('no native BF16 on this CPU (no AMX-BF16/AVX512_BF16 flag): eager bf16 '
                                    'autocast would be an emulation, not timed')
        self.channels_last = channels_last
        self.name = 'eager_cl' if channels_last else 'eager'
        self.precision, self.threads = precision, threads
        model = model.to(self.device).eval()
        self.model = copy.deepcopy(model).to(memory_format=torch.channels_last) if channels_last else model
        self.input_size = tuple(input_size or ())
        self._dev = torch.device(self.device)
        self._amp = {'amp_bf16': torch.bfloat16, 'bf16': torch.bfloat16, 'amp_fp16': torch.float16}.get(precision)

    def _tensor(self, images) -> torch.Tensor:
        x = torch.as_tensor(images).to(self._dev, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        ctx = torch.autocast(self._dev.type, dtype=self._amp) if self._amp else nullcontext()
        with torch.inference_mode(), ctx:
            return self.model(x)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self._forward(self._tensor(images)).float().cpu().numpy()

    def prepare(self, batch: int) -> Callable[[], Any]:
        x = self._tensor(bench_input(batch, self.input_size))
        sync = torch.cuda.synchronize if self._dev.type == 'cuda' else (lambda: None)

        def call():
            self._forward(x)
            sync()
        return call

    def describe(self) -> Dict[str, Any]:
        return {'runtime': self.name, 'library': 'torch', 'torch': torch.__version__, 'device': self.device,
                'precision': self.precision, 'amp': self._amp is not None,
                'memory_format': 'channels_last' if self.channels_last else 'contiguous',
                'threads': self.threads or torch.get_num_threads(), 'shape': 'dynamic',
                **({'autocast': f'torch.autocast({self._dev.type}, {str(self._amp).replace("torch.", "")})'}
                   if self._amp is not None else {})}


def open_eager(model: nn.Module, *, precision: str = 'fp32', threads: Optional[int] = None,
               device: str = 'cpu', input_size: Optional[Sequence[int]] = None, **options) -> EagerRunner:
    return EagerRunner(model, precision=precision, device=device, input_size=input_size, threads=threads)


def open_eager_cl(model: nn.Module, *, precision: str = 'fp32', threads: Optional[int] = None,
                  device: str = 'cpu', input_size: Optional[Sequence[int]] = None, **options) -> EagerRunner:
    return EagerRunner(model, channels_last=True, precision=precision, device=device, input_size=input_size,
                       threads=threads)
