"""timm-recal deploy stage: export, parity, validate, quantize (and bench, pipeline) for timm models.

Layout: the source lives in the repository's top-level ``deploy/`` folder and installs as the package
``timm_recal_deploy`` (``[tool.setuptools.package-dir]`` in pyproject.toml), so it never collides with a
generic ``deploy`` module in site-packages. Its dependencies come with ``pip install 'timm-recal[deploy]'``;
importing this package is cheap (onnx/onnxruntime load when a stage runs).

Each stage is a plain function that returns a JSON-able dict and, given ``output``, writes it as JSON; the
``timm-recal`` command exposes each as a subcommand (``timm_recal_deploy.cli``):

* ``export_onnx`` (``timm-recal export``): dynamo (default) or legacy exporter, one file, dynamic batch,
  preprocessing metadata inside the file (``timm_recal_deploy.metadata``).
* ``parity`` (``timm-recal parity``): PyTorch vs ONNX Runtime on real images, FP32/FP16/INT8 tolerances.
* ``validate`` (``timm-recal validate``): top-1/top-5 of a checkpoint or ONNX file on an ImageFolder.
* ``quantize_int8`` / ``convert_fp16`` (``timm-recal quantize``): ORT static QDQ INT8, FP16 with FP32 I/O.
"""
from .errors import DeployError, OutputExistsError

__all__ = ['DeployError', 'OutputExistsError', 'export_onnx', 'parity', 'validate', 'quantize_int8',
           'convert_fp16', 'load_model', 'read_metadata', 'create_session', 'make_loader']

_LAZY = {
    'export_onnx': 'export', 'parity': 'parity', 'validate': 'validate', 'quantize_int8': 'quantize',
    'convert_fp16': 'quantize', 'load_model': 'model_io', 'read_metadata': 'metadata',
    'create_session': 'runtime', 'make_loader': 'images',
}


def __getattr__(name: str):
    """Import stage functions on first use, keeping ``import timm_recal_deploy`` light."""
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f'.{_LAZY[name]}', __name__), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
