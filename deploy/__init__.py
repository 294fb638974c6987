"""timm-recal deploy stage: export, quantize, parity, validate, bench, report and pipeline for timm models.

Layout: the source lives in the repository's top-level ``deploy/`` folder and installs as the package
``timm_recal_deploy`` (``[tool.setuptools.package-dir]`` in pyproject.toml), so it never collides with a
generic ``deploy`` module in site-packages. Its dependencies come with ``pip install 'timm-recal[deploy]'``;
importing this package is cheap (torch, onnx and onnxruntime load when a stage runs).

One shape for every stage: one module, one function, a small options dataclass (``options``), one typed result
with ``to_dict()`` (what ``--json`` prints and the pipeline stores):

* ``export_onnx`` (``export``): dynamo (default) or legacy exporter, one file, dynamic batch, preprocessing
  metadata inside the file (``metadata``).
* ``quantize`` (``quantize``): ORT static QDQ INT8 (``quantize_int8``), FP16 with FP32 I/O (``convert_fp16``).
* ``parity`` (``parity``): PyTorch vs an ONNX file under a runtime on real images, FP32/FP16/INT8 tolerances.
* ``validate`` (``validate``): top-1/top-5 of a model or ONNX file on an ImageFolder.
* ``bench`` (``bench``): throughput and latency under every runtime of ``--runtimes``.
* ``report`` (``report``), ``info`` (``info``), and ``pipeline`` (``pipeline``), which only orchestrates.

Shared parts: ``sources`` resolves what the user names (timm name, ``hf-hub:``, ``local-dir:``, checkpoint,
ONNX file) into a model or file plus its data config; ``runtimes`` is the one runtime table (``Runner``
shape); ``timm_recal.outputs`` writes every file; ``cli`` defines every verb from shared argument groups.
"""
from .errors import DeployError, OutputExistsError

__all__ = ['DeployError', 'OutputExistsError', 'export_onnx', 'parity', 'validate', 'quantize', 'quantize_int8',
           'convert_fp16', 'bench', 'pipeline', 'inspect_onnx', 'load_model', 'open_source', 'read_metadata',
           'open_runtime', 'create_session', 'make_loader']

_LAZY = {
    'export_onnx': 'export', 'parity': 'parity', 'validate': 'validate', 'quantize': 'quantize',
    'quantize_int8': 'quantize', 'convert_fp16': 'quantize', 'bench': 'bench', 'pipeline': 'pipeline',
    'inspect_onnx': 'info', 'load_model': 'model_io', 'open_source': 'sources', 'read_metadata': 'metadata',
    'open_runtime': 'runtimes', 'create_session': 'ort_runtime', 'make_loader': 'images',
}


def __getattr__(name: str):
    """Import stage functions on first use, keeping ``import timm_recal_deploy`` light."""
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f'.{_LAZY[name]}', __name__), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
