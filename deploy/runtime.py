"""ONNX Runtime sessions: the best execution provider present (TensorRT, CUDA, else CPU), a recorded thread
count, and clear errors for a missing or corrupt file."""
import os
from typing import Any, Dict, List, Optional

import numpy as np

from .errors import DeployError

__all__ = ['DEFAULT_PROVIDERS', 'default_providers', 'create_session', 'session_info', 'run_session']

#: preference order; only those the installed onnxruntime offers are used
DEFAULT_PROVIDERS = ('TensorrtExecutionProvider', 'CUDAExecutionProvider', 'CPUExecutionProvider')


def default_providers() -> List[str]:
    import onnxruntime as ort
    available = ort.get_available_providers()
    return [p for p in DEFAULT_PROVIDERS if p in available] or ['CPUExecutionProvider']


def create_session(onnx_path: str, providers: Optional[List[str]] = None, threads: Optional[int] = None):
    """An ``onnxruntime.InferenceSession`` for ``onnx_path``.

    ``providers`` defaults to ``default_providers()``; ``threads`` sets ``intra_op_num_threads`` (None: ORT's
    default, one per physical core). The session carries ``timm_recal_threads`` (the requested count, or
    None) for reports; ``session_info`` formats both.
    """
    import onnxruntime as ort
    if not os.path.isfile(onnx_path):
        raise DeployError(f'ONNX file not found: {onnx_path}')
    available = ort.get_available_providers()
    providers = list(providers) if providers else default_providers()
    unknown = [p for p in providers if p not in available]
    if unknown:
        raise DeployError(f"execution provider(s) {', '.join(unknown)} not available; "
                          f"this onnxruntime offers {', '.join(available)}")
    if threads is not None and threads < 0:
        raise DeployError(f'threads must be >= 0, got {threads}')
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only; warnings about unused initializers are noise here
    try:
        session = ort.InferenceSession(onnx_path, sess_options=opts, providers=providers)
    except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf/NotImplemented types
        msg = str(e).splitlines()[0][:400]
        raise DeployError(f'ONNX Runtime cannot load {onnx_path}: {msg}') from None
    session.timm_recal_threads = threads
    return session


def session_info(session) -> Dict[str, Any]:
    """Providers in use and the thread setting (None means ORT's default)."""
    return {'providers': session.get_providers(), 'threads': getattr(session, 'timm_recal_threads', None)}


def run_session(session, images: np.ndarray) -> np.ndarray:
    """Logits of a float32 NCHW batch, as float32, with a readable error for a wrong input shape."""
    inp = session.get_inputs()[0]
    expected = list(inp.shape)
    if len(expected) != images.ndim or any(isinstance(e, int) and e != g for e, g in zip(expected[1:], images.shape[1:])):
        raise DeployError(f'input of shape {list(images.shape)} does not fit the ONNX input {inp.name} '
                          f'{expected}; the graph was exported for a fixed image size')
    try:
        out = session.run(None, {inp.name: np.ascontiguousarray(images, dtype=np.float32)})[0]
    except Exception as e:
        raise DeployError(f'ONNX Runtime failed on a {list(images.shape)} batch: {str(e).splitlines()[0][:400]}') from None
    return np.asarray(out, dtype=np.float32)
