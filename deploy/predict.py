"""One call signature for PyTorch and ONNX Runtime: float32 NCHW batch in, float32 logits (numpy) out.

Also rebuilds the PyTorch model an ONNX file was exported from (its metadata names the architecture, tag and
checkpoint), which ``parity`` needs as reference.
"""
import contextlib
import os
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from .errors import DeployError
from .model_io import load_model

__all__ = ['TorchPredictor', 'OnnxPredictor', 'check_device', 'reference_from_metadata', 'check_img_size',
           'onnx_data_config']


def check_device(device: str) -> str:
    """``cpu`` or ``cuda[:N]``, and CUDA must be present."""
    if not isinstance(device, str) or not (device == 'cpu' or device.startswith('cuda')):
        raise DeployError(f"--device must be 'cpu' or 'cuda', got {device!r}")
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise DeployError('--device cuda: no CUDA device is available to PyTorch here; use --device cpu')
    return device


class TorchPredictor:
    """An eval-mode module on ``device``; ``amp`` runs it under autocast (bf16 on CPU, fp16 on CUDA)."""

    kind = 'pytorch'

    def __init__(self, model: nn.Module, device: str = 'cpu', amp: bool = False):
        self.device = check_device(device)
        self.model = model.to(self.device).eval()
        self.amp = amp

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        dev = torch.device(self.device)
        ctx = (torch.autocast(dev.type, dtype=torch.float16 if dev.type == 'cuda' else torch.bfloat16)
               if self.amp else contextlib.nullcontext())
        with torch.no_grad(), ctx:
            out = self.model(images.to(dev, non_blocking=True))
        return out.float().cpu().numpy()

    def describe(self) -> Dict[str, Any]:
        return {'runtime': 'pytorch', 'device': self.device, 'amp': self.amp, 'torch': torch.__version__}


class OnnxPredictor:
    """An ONNX Runtime session (``runtime.create_session``)."""

    kind = 'onnx'

    def __init__(self, onnx_path: str, providers: Optional[List[str]] = None, threads: Optional[int] = None):
        from .runtime import create_session
        self.path = onnx_path
        self.session = create_session(onnx_path, providers, threads)

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        from .runtime import run_session
        return run_session(self.session, images.cpu().numpy())

    def describe(self) -> Dict[str, Any]:
        import onnxruntime as ort
        from .runtime import session_info
        return {'runtime': 'onnxruntime', 'onnxruntime': ort.__version__, **session_info(self.session)}


def check_img_size(meta: Dict[str, Any], img_size: Optional[int], onnx_path: str) -> None:
    """An ONNX graph has the spatial size it was exported for; refuse another ``--img-size``."""
    size = meta.get('input_size') or meta.get('graph_input_shape')
    if img_size is not None and size and tuple(size[-2:]) != (img_size, img_size) and None not in size[-2:]:
        raise DeployError(f'{onnx_path} was exported for {size[-2]}x{size[-1]} inputs, not --img-size {img_size}; '
                          're-export with --img-size to change it')


def onnx_data_config(meta: Dict[str, Any], onnx_path: str) -> Dict[str, Any]:
    """The preprocessing recorded in an ONNX file; files without it are refused (no silent guessing)."""
    missing = [k for k in ('input_size', 'mean', 'std') if meta.get(k) is None]
    if missing:
        raise DeployError(f"{onnx_path} has no preprocessing metadata ({', '.join(missing)}); "
                          'export it with `timm-recal export` so the image pipeline matches the model')
    cfg = {k: meta.get(k) for k in ('input_size', 'mean', 'std', 'interpolation', 'crop_pct', 'crop_mode',
                                    'num_classes', 'class_labels')}
    cfg['input_size'] = tuple(cfg['input_size'])
    cfg.setdefault('interpolation', 'bilinear')
    if cfg.get('crop_pct') is None:
        cfg['crop_pct'] = 0.875
    return cfg


def reference_from_metadata(meta: Dict[str, Any], onnx_path: str, checkpoint: Optional[str] = None,
                            use_ema: bool = False, device: str = 'cpu') -> Tuple[nn.Module, Dict[str, Any]]:
    """The PyTorch model an ONNX file was exported from: its spec, with ``checkpoint`` or the one recorded."""
    spec = meta.get('model_spec') or meta.get('architecture')
    if not spec:
        raise DeployError(f'{onnx_path} does not name its timm architecture (no metadata); '
                          'give the MODEL instead of the ONNX file, with --onnx')
    weights = meta.get('weights')
    if checkpoint is None and weights == 'checkpoint':
        recorded = meta.get('checkpoint')
        if recorded and os.path.exists(recorded):
            checkpoint = recorded
        else:
            raise DeployError(f'{onnx_path} was exported from checkpoint {recorded}, which is not there; '
                              'pass --checkpoint')
    if checkpoint is None and weights in ('random', 'module'):
        raise DeployError(f"{onnx_path} was exported with {'random' if weights == 'random' else 'in-memory'} "
                          'weights, so the PyTorch reference cannot be rebuilt; pass --checkpoint, or run parity '
                          'on the MODEL so that it exports its own ONNX file')
    size = (meta.get('input_size') or [None])[-1]
    return load_model(spec, checkpoint, num_classes=meta.get('num_classes') if checkpoint is None else None,
                      use_ema=use_ema, device=device, img_size=size)
