"""Triton's backends as data: which of our runtimes each one is, the file it serves and where that file comes from.

One row per backend, read by ``timm-recal triton`` (``triton.write_triton_repository``), by the command line (this
module imports nothing heavy: ``--backend`` needs no onnx) and by the pipeline's ``triton`` stage, which serves
what a row's ``serves`` names and so never names a backend:

* ``'onnx'``: the FP32 ONNX export, as it is;
* ``'built'``: the FP32 file that the builder of the row's runtime (``runtimes.RuntimeSpec.builder``, the
  pipeline's ``engine`` stage) made from that export;
* ``'model'``: the model itself, made into the served file by the row's ``package`` hook (compiled in a child
  process and cached).

The standalone command (``triton.triton_artifact``) makes a backend's file from a MODEL spec or an ONNX file by the
same row: ``requires`` first (the one-line error when the backend's tools are missing here, before any export),
then the ONNX export, then ``build`` (``'built'``); or ``export`` from the spec (``'model'``).

A new backend is one row here (and, if it serves a file of its own, its runtime's builder or package hook).
References: Triton's ``docs/user_guide/model_configuration.md``, the OpenVINO backend's README
(``default_model_filename``), the PyTorch backend's README (``platform: "torch_aoti"``, Triton 26.03+).
"""
import importlib
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

from .errors import DeployError

__all__ = ['TritonBackend', 'TRITON_BACKENDS', 'DEFAULT_BACKEND', 'triton_backend', 'package_hook', 'backend_hook',
           'SERVES', 'ARTIFACTS', 'ARTIFACT_SUFFIXES', 'STEP_OPTIONS', 'source_kind', 'triton_steps',
           'steps_text', 'check_batching']

#: what a backend's ``serves`` may be (see the module docstring)
SERVES = ('onnx', 'built', 'model')
#: the kinds of file a backend loads (``TritonBackend.artifact``), as messages name them
ARTIFACTS = {'onnx': 'an ONNX file (.onnx)', 'plan': 'a TensorRT engine (.plan)',
             'pt2': 'an AOTInductor package (.pt2)'}
#: the file name suffixes of each kind (lower case)
ARTIFACT_SUFFIXES = {'onnx': ('.onnx',), 'plan': ('.plan', '.engine', '.trt'), 'pt2': ('.pt2',)}
#: the steps of making and serving a backend's file (``triton_steps``), each with the options (``dest`` names of
#: the command line, ``options.TritonOptions`` and the engine keywords) that shape it: an option of a step that
#: does not happen would be ignored, so ``timm-recal triton`` refuses it
STEP_OPTIONS: Dict[str, Tuple[str, ...]] = {
    'export': ('checkpoint', 'use_ema', 'num_classes', 'img_size', 'device', 'exporter', 'verbose'),  # ONNX export
    'package': ('checkpoint', 'use_ema', 'num_classes', 'img_size', 'device'),  # the row's ``export`` hook
    'build': ('batch', 'precision', 'workspace_mb', 'timing_cache', 'tf32', 'check_ops', 'verbose'),
    'batching': ('max_batch_size', 'preferred_batch_sizes', 'queue_delay_us'),
}
#: what each step does to the source, for messages
_STEP_WORDS = {'export': 'exported to ONNX', 'package': 'compiled into the served package',
               'build': 'built into the served engine'}


@dataclass(frozen=True)
class TritonBackend:
    """One row of the Triton backend table."""
    name: str                   # Triton's backend name (``backend:`` of config.pbtxt, ``--backend``)
    runtime: str                # our runtime word that runs the same file (``runtimes.RUNTIMES``)
    filename: str               # the model file in the version folder
    instance_kind: str          # the instance group kind, unless the file says otherwise (a CUDA package)
    artifact: str               # the kind of file it loads: 'onnx', 'plan' or 'pt2' (``triton.artifact_io``)
    serves: str                 # what the pipeline serves with it: one of ``SERVES``
    platform: str = ''          # ``platform:`` of config.pbtxt, where the backend needs one
    default_model_filename: bool = False  # config.pbtxt names the file (the OpenVINO backend loads model.onnx so)
    batching: bool = True       # Triton batches requests (False: ``max_batch_size: 0``, the batch in the dims)
    #: ``serves == 'model'``: 'module:function' ``(model, info, *, device, timeout, log) -> file`` of the package
    package: Optional[str] = None
    #: how to make its file, for the message when given another kind
    hint: str = ''
    #: 'module:function' ``()`` raising the one-line error when what the backend's file needs is missing here
    requires: Optional[str] = None
    #: ``serves == 'built'``: 'module:function' ``(onnx_path, out_path, **engine_options) -> {'output': ...}``
    #: building the served file from the ONNX export (the standalone command; the pipeline runs the runtime's
    #: builder)
    build: Optional[str] = None
    #: ``serves == 'model'``: 'module:function' ``(spec, out_path, export_options, *, log) -> path``, the served
    #: file of a MODEL spec (the standalone command; the pipeline calls ``package`` on its loaded model)
    export: Optional[str] = None


#: the Triton backend table
TRITON_BACKENDS: Dict[str, TritonBackend] = {b.name: b for b in (
    TritonBackend('onnxruntime', 'ort', 'model.onnx', 'KIND_CPU', 'onnx', 'onnx'),
    TritonBackend('tensorrt', 'trt', 'model.plan', 'KIND_GPU', 'plan', 'built',
                  hint='build one first with `timm-recal engine MODEL.onnx -o model.plan` and pass the .plan',
                  requires='tensorrt_build:require_tensorrt', build='tensorrt_build:build_engine'),
    TritonBackend('openvino', 'openvino', 'model.onnx', 'KIND_CPU', 'onnx', 'onnx', default_model_filename=True),
    # Triton 26.03+: the PyTorch backend's AOTInductor platform; the instance kind follows the package's device
    TritonBackend('pytorch', 'aoti', 'model.pt2', 'KIND_CPU', 'pt2', 'model', platform='torch_aoti', batching=False,
                  package='aoti_package:triton_package', export='aoti_package:triton_export',
                  hint='timm-recal export MODEL --format aoti, or pass the MODEL'),
)}
#: the backend of ``timm-recal triton`` and the pipeline's ``triton`` stage when none is named (every install can
#: serve its file; ``--client-example`` reads the I/O names through it)
DEFAULT_BACKEND = 'onnxruntime'
assert DEFAULT_BACKEND in TRITON_BACKENDS
assert all(b.serves in SERVES and b.artifact in ARTIFACTS and (b.serves == 'model') == bool(b.package)
           and (b.serves == 'model') == bool(b.export) and (b.serves == 'built') == bool(b.build)
           for b in TRITON_BACKENDS.values())


def triton_backend(name: Any) -> TritonBackend:
    """The row of Triton backend ``name``; an unknown name is one line listing the table's names."""
    row = TRITON_BACKENDS.get(name) if isinstance(name, str) else None
    if row is None:
        raise DeployError(f"--backend must be one of {', '.join(TRITON_BACKENDS)}, got {name!r}")
    return row


def backend_hook(ref: str) -> Callable[..., Any]:
    """The function a row names as ``'module:function'`` (a module of this package), imported when called."""
    module, _, function = ref.partition(':')
    return getattr(importlib.import_module(f'{__package__}.{module}'), function)


def package_hook(backend: TritonBackend) -> Callable[..., str]:
    """The ``package`` function of a backend that serves the model itself."""
    if not backend.package:
        raise DeployError(f'the {backend.name} backend serves a file, not the model')
    return backend_hook(backend.package)


def source_kind(path: str) -> Optional[str]:
    """The kind of file ``path`` names by its suffix (``ARTIFACT_SUFFIXES``), None for a MODEL spec."""
    lower = str(path).lower()
    return next((kind for kind, suffixes in ARTIFACT_SUFFIXES.items() if lower.endswith(suffixes)), None)


def triton_steps(backend: TritonBackend, kind: Optional[str]) -> Tuple[str, ...]:
    """The steps (keys of ``STEP_OPTIONS``) that serving a source of ``kind`` (``source_kind``; None: a MODEL
    spec) with ``backend`` takes: a file of another kind than the row makes is served as it is; a MODEL is
    ``package``d by a row that serves the model, else ``export``ed; an ONNX file is ``build``t by a row that
    serves a built file; Triton batches (``batching``) where the row says so. ``triton.triton_artifact`` follows
    the same steps, so what a command refuses as not applying is what it would have ignored."""
    if kind is not None and not (kind == 'onnx' and backend.serves == 'built'):
        steps: Tuple[str, ...] = ()
    elif backend.serves == 'model':
        steps = ('package',)
    else:
        steps = (('export',) if kind is None else ()) + (('build',) if backend.serves == 'built' else ())
    return steps + (('batching',) if backend.batching else ())


def steps_text(backend: TritonBackend, steps: Sequence[str]) -> str:
    """What happens to the source, in words: ``'is exported to ONNX, and Triton does not batch it'``."""
    made = [_STEP_WORDS[s] for s in steps if s in _STEP_WORDS]
    what = 'is ' + ' and '.join(made) if made else 'is served as it is'
    return what + ('' if 'batching' in steps else f', and the {backend.name} backend does not batch (max_batch_size 0)')


def check_batching(max_batch_size: int, preferred_batch_sizes: Sequence[int] = (), max_queue_delay_us: int = 0,
                   instance_count: int = 1) -> None:
    """Refuse batching settings Triton would refuse, before anything is exported or built (the command line and
    the pipeline call it up front; ``triton.triton_config_text`` again)."""
    if max_batch_size < 0 or instance_count < 1 or max_queue_delay_us < 0:
        raise DeployError('max_batch_size and the queue delay must be >= 0 and instance_count >= 1')
    if preferred_batch_sizes and max_batch_size == 0:
        raise DeployError('preferred batch sizes need batching (max_batch_size > 0)')
    bad = [b for b in preferred_batch_sizes if b < 1 or b > max_batch_size]
    if bad:
        raise DeployError(f'preferred batch sizes {list(bad)} must lie in 1..max_batch_size ({max_batch_size})')
