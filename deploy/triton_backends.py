"""Triton's backends as data: which of our runtimes each one is, the file it serves and where that file comes from.

One row per backend, read by ``timm-recal triton`` (``triton.write_triton_repository``), by the command line (this
module imports nothing heavy: ``--backend`` needs no onnx) and by the pipeline's ``triton`` stage, which serves
what a row's ``serves`` names and so never names a backend:

* ``'onnx'``: the FP32 ONNX export, as it is;
* ``'built'``: the FP32 file that the builder of the row's runtime (``runtimes.RuntimeSpec.builder``, the
  pipeline's ``engine`` stage) made from that export;
* ``'model'``: the model itself, made into the served file by the row's ``package`` hook (compiled in a child
  process and cached).

A new backend is one row here (and, if it serves a file of its own, its runtime's builder or package hook).
References: Triton's ``docs/user_guide/model_configuration.md``, the OpenVINO backend's README
(``default_model_filename``), the PyTorch backend's README (``platform: "torch_aoti"``, Triton 26.03+).
"""
import importlib
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

from .errors import DeployError

__all__ = ['TritonBackend', 'TRITON_BACKENDS', 'triton_backend', 'package_hook', 'SERVES', 'ARTIFACTS']

#: what a backend's ``serves`` may be (see the module docstring)
SERVES = ('onnx', 'built', 'model')
#: the kinds of file a backend loads (``TritonBackend.artifact``), as messages name them
ARTIFACTS = {'onnx': 'an ONNX file (.onnx)', 'plan': 'a TensorRT engine (.plan)',
             'pt2': 'an AOTInductor package (.pt2)'}


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


#: the Triton backend table
TRITON_BACKENDS: Dict[str, TritonBackend] = {b.name: b for b in (
    TritonBackend('onnxruntime', 'ort', 'model.onnx', 'KIND_CPU', 'onnx', 'onnx'),
    TritonBackend('tensorrt', 'trt', 'model.plan', 'KIND_GPU', 'plan', 'built',
                  hint='build one first with `timm-recal engine MODEL.onnx -o model.plan` and pass the .plan'),
    TritonBackend('openvino', 'openvino', 'model.onnx', 'KIND_CPU', 'onnx', 'onnx', default_model_filename=True),
    # Triton 26.03+: the PyTorch backend's AOTInductor platform; the instance kind follows the package's device
    TritonBackend('pytorch', 'aoti', 'model.pt2', 'KIND_CPU', 'pt2', 'model', platform='torch_aoti', batching=False,
                  package='aoti_package:triton_package',
                  hint='timm-recal export MODEL --format aoti, or pass the MODEL'),
)}
assert all(b.serves in SERVES and b.artifact in ARTIFACTS and (b.serves == 'model') == bool(b.package)
           for b in TRITON_BACKENDS.values())


def triton_backend(name: Any) -> TritonBackend:
    """The row of Triton backend ``name``; an unknown name is one line listing the table's names."""
    row = TRITON_BACKENDS.get(name) if isinstance(name, str) else None
    if row is None:
        raise DeployError(f"--backend must be one of {', '.join(TRITON_BACKENDS)}, got {name!r}")
    return row


def package_hook(backend: TritonBackend) -> Callable[..., str]:
    """The ``package`` function of a backend that serves the model itself."""
    if not backend.package:
        raise DeployError(f'the {backend.name} backend serves a file, not the model')
    module, _, function = backend.package.partition(':')
    return getattr(importlib.import_module(f'{__package__}.{module}'), function)
