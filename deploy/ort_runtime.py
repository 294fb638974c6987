"""ONNX Runtime runners: ``ort`` (CPU), ``ort_cuda`` and ``ort_trt`` (execution providers), in the ``Runner``
shape of ``runtimes``; sessions with a recorded thread count and clear errors for a missing or corrupt file."""
import os
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from .errors import BatchNotSupported, DeployError
from .metadata import check_metadata, decode_props
from .runtimes import RUNTIMES, Runner, bench_input

__all__ = ['create_session', 'OrtRunner', 'open_ort', 'open_ort_cuda', 'open_ort_trt', 'available_providers']


def available_providers() -> List[str]:
    import onnxruntime as ort
    return list(ort.get_available_providers())


def create_session(onnx_path: str, providers: Optional[Sequence[str]] = None, threads: Optional[int] = None):
    """An ``onnxruntime.InferenceSession`` for ``onnx_path`` (CPU unless ``providers`` says otherwise).

    ``threads`` sets ``intra_op_num_threads`` (None: ORT's default, one per physical core).
    """
    import onnxruntime as ort
    if not os.path.isfile(onnx_path):
        raise DeployError(f'ONNX file not found: {onnx_path}')
    available = ort.get_available_providers()
    providers = list(providers or ['CPUExecutionProvider'])
    unknown = [p for p in providers if p not in available]
    if unknown:
        raise DeployError(f"execution provider(s) {', '.join(unknown)} not available; "
                          f"this onnxruntime offers {', '.join(available)}")
    if threads is not None and threads < 0:
        raise DeployError(f'--threads must be >= 0, got {threads}')
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only; warnings about unused initializers are noise here
    try:
        return ort.InferenceSession(onnx_path, sess_options=opts, providers=providers)
    except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf/NotImplemented types
        msg = str(e).splitlines()[0][:400]
        raise DeployError(f'ONNX Runtime cannot load {onnx_path}: {msg}') from None


class OrtRunner(Runner):
    """One ONNX file in one ONNX Runtime session; runs the file at the precision it was converted to."""

    def __init__(self, word: str, onnx_path: str, precision: str = 'fp32', threads: Optional[int] = None):
        self.name, self.path, self.threads = word, onnx_path, threads
        self.session = create_session(onnx_path, RUNTIMES[word].providers, threads)
        self.meta = decode_props(self.session.get_modelmeta().custom_metadata_map)
        check_metadata(self.meta, onnx_path)
        file_precision = self.meta.get('precision', 'fp32')
        if precision == 'bf16':
            raise DeployError('ONNX Runtime has no BF16 precision for our files; run bf16 with --runtimes openvino '
                              '(inference precision hint) or eager (CPU autocast)')
        if precision not in ('fp32', file_precision):  # 'fp32' is every caller's default: the file decides
            raise DeployError(f'{onnx_path} is {file_precision}, not {precision}; convert the FP32 file with '
                              '`timm-recal quantize`')
        self.precision = file_precision
        inp = self.session.get_inputs()[0]
        self.input_name, self.shape = inp.name, list(inp.shape)
        self.dtype = np.float16 if inp.type == 'tensor(float16)' else np.float32
        static = [d for d in self.shape[1:] if isinstance(d, int)]
        self.input_size = tuple(self.meta.get('input_size') or (static if len(static) == 3 else ()))

    def _check(self, images: np.ndarray) -> None:
        exp = self.shape
        if len(exp) != images.ndim or any(isinstance(e, int) and e != g for e, g in zip(exp[1:], images.shape[1:])):
            raise DeployError(f'input of shape {list(images.shape)} does not fit the ONNX input {self.input_name} '
                              f'{exp}; the graph was exported for a fixed image size')

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        self._check(images)
        feed = {self.input_name: np.ascontiguousarray(images, dtype=self.dtype)}
        try:
            out = self.session.run(None, feed)[0]
        except Exception as e:
            raise DeployError(f'ONNX Runtime failed on a {list(images.shape)} batch: '
                              f'{str(e).splitlines()[0][:400]}') from None
        return np.asarray(out, dtype=np.float32)

    def outputs(self, images: np.ndarray) -> List[np.ndarray]:
        """Every graph output of a batch, as float32 (the logits first; ``inspect`` taps gate tensors so)."""
        images = np.asarray(images)
        self._check(images)
        feed = {self.input_name: np.ascontiguousarray(images, dtype=self.dtype)}
        try:
            return [np.asarray(o, dtype=np.float32) for o in self.session.run(None, feed)]
        except Exception as e:
            raise DeployError(f'ONNX Runtime failed on a {list(images.shape)} batch: '
                              f'{str(e).splitlines()[0][:400]}') from None

    def prepare(self, batch: int) -> Callable[[], Any]:
        fixed = self.shape[0] if self.shape and isinstance(self.shape[0], int) else None
        if fixed is not None and fixed != batch:
            raise BatchNotSupported(f'{os.path.basename(self.path)} has a fixed batch of {fixed}')
        feed = {self.input_name: np.ascontiguousarray(bench_input(batch, self.input_size).astype(self.dtype))}
        return lambda: self.session.run(None, feed)

    def describe(self) -> Dict[str, Any]:
        import onnxruntime as ort
        used = self.session.get_providers()
        info: Dict[str, Any] = {
            'runtime': self.name, 'library': 'onnxruntime', 'onnxruntime': ort.__version__,
            'precision': self.precision, 'providers': used, 'threads': self.threads,
            'device': 'cpu' if used[0] == 'CPUExecutionProvider' else 'cuda',
            'shape': 'dynamic batch' if not isinstance(self.shape[0], int) else f'fixed batch {self.shape[0]}',
            'onnx': os.path.basename(self.path),
        }
        wanted = RUNTIMES[self.name].providers[0]
        if used[0] != wanted:
            info['warning'] = f'{wanted} was asked for but the session runs on {used[0]}'
        if self.name != 'ort':
            info['note'] = 'host-device copies of input and output are included in the time'
        return info


def open_ort(onnx_path: str, *, precision: str = 'fp32', threads: Optional[int] = None, **options) -> OrtRunner:
    return OrtRunner('ort', onnx_path, precision, threads)


def open_ort_cuda(onnx_path: str, *, precision: str = 'fp32', threads: Optional[int] = None,
                  **options) -> OrtRunner:
    return OrtRunner('ort_cuda', onnx_path, precision, threads)


def open_ort_trt(onnx_path: str, *, precision: str = 'fp32', threads: Optional[int] = None,
                 **options) -> OrtRunner:
    return OrtRunner('ort_trt', onnx_path, precision, threads)
