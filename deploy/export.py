"""Export a timm model to one self-describing ONNX file.

torch's dynamo exporter by default (opset 18, dynamic batch axis, weights inside the file), the TorchScript
("legacy") exporter selectable; ``onnx.checker`` full check; optional onnxslim; preprocessing and provenance in
the file's metadata (``timm_recal_deploy.metadata``).
"""
import contextlib
import io
import os
import time
import warnings
from typing import Any, Dict, Optional

import torch
from torch import nn

from .errors import DeployError
from .metadata import set_metadata
from .model_io import data_config_of, load_model, class_labels_for
from .outputs import resolve_output

__all__ = ['EXPORTERS', 'export_onnx', 'export_metadata', 'library_versions', 'check_onnx']

EXPORTERS = ('dynamo', 'legacy')
INPUT_NAME, OUTPUT_NAME = 'input', 'logits'


def library_versions(*extra: str) -> Dict[str, str]:
    """Versions of the libraries that shaped an ONNX file (those importable)."""
    import importlib
    names = ('torch', 'timm', 'onnx', 'timm_recal') + extra
    out = {}
    for name in names:
        try:
            out[name] = str(importlib.import_module(name).__version__)
        except Exception:
            pass
    return out


def export_metadata(info: Dict[str, Any], exporter: str, opset: int, slim: bool) -> Dict[str, Any]:
    """The metadata dict written into an exported file (keys documented in ``metadata``)."""
    keys = ('architecture', 'tag', 'model_spec', 'weights', 'checkpoint', 'num_classes', 'input_size', 'mean',
            'std', 'interpolation', 'crop_pct', 'crop_mode', 'class_labels')
    meta = {k: info.get(k) for k in keys}
    meta['input_size'] = list(meta['input_size'])
    meta.update(input_name=INPUT_NAME, output_name=OUTPUT_NAME, exporter=exporter, opset=opset, slim=slim,
                precision='fp32',
                versions=library_versions('onnxscript', 'onnxruntime', *(('onnxslim',) if slim else ())))
    return meta


def check_onnx(model_proto, what: str) -> None:
    """``onnx.checker`` with ``full_check`` (strict shape inference), as a DeployError on failure."""
    import onnx
    try:
        onnx.checker.check_model(model_proto, full_check=True)
    except Exception as e:
        raise DeployError(f'{what} fails the ONNX checker: {str(e).splitlines()[0][:400]}') from None


def _module_info(model: nn.Module, spec: Optional[str], img_size: Optional[int]) -> Dict[str, Any]:
    """Data config and naming for a caller-built module (``model=``)."""
    info = data_config_of(model, img_size)
    pcfg = dict(getattr(model, 'pretrained_cfg', None) or {})
    arch = (pcfg.get('architecture') or (spec or type(model).__name__)).split('.')[0]
    num_classes = int(getattr(model, 'num_classes', 0) or 0)
    info.update(architecture=arch, tag=pcfg.get('tag') or '', model_spec=spec or arch, weights='module',
                checkpoint=None, num_classes=num_classes, class_labels=class_labels_for(num_classes, pcfg))
    return info


def _trial_forward(model: nn.Module, x: torch.Tensor, arch: str) -> torch.Tensor:
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as e:
        raise DeployError(f'{arch} does not run on input {list(x.shape)} (wrong --img-size?): '
                          f'{str(e).splitlines()[0][:300]}') from None
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        raise DeployError(f'{arch} returns {getattr(out, "shape", type(out).__name__)}, expected (batch, classes) '
                          'logits; only classifiers are supported')
    return out


def _run_exporter(model: nn.Module, x: torch.Tensor, path: str, exporter: str, opset: int, verbose: bool) -> None:
    sink = io.StringIO()
    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(sink)
    with quiet, warnings.catch_warnings():
        if not verbose:
            warnings.simplefilter('ignore')
        if exporter == 'dynamo':
            batch = torch.export.Dim('batch', min=1)
            torch.onnx.export(model, (x,), path, dynamo=True, opset_version=opset, external_data=False,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_shapes=({0: batch},),
                              optimize=True)
        else:
            torch.onnx.export(model, (x,), path, dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: {0: 'batch'}, OUTPUT_NAME: {0: 'batch'}},
                              do_constant_folding=True)


def export_onnx(
        spec: Optional[str],
        output: str,
        checkpoint: Optional[str] = None,
        num_classes: Optional[int] = None,
        img_size: Optional[int] = None,
        exporter: str = 'dynamo',
        opset: int = 18,
        slim: bool = False,
        force: bool = False,
        model: Optional[nn.Module] = None,
        use_ema: bool = False,
        device: str = 'cpu',
        verbose: bool = False,
        info: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Export ``spec`` (or the given ``model``) to ``output`` and return a JSON-able summary.

    ``output`` is a ``.onnx`` file or a folder (the file is then ``<architecture>.onnx``); an existing file
    needs ``force``. With ``model=`` the module is exported as is (its weights, e.g. randomized for a test);
    ``spec`` then only names it, or ``info`` (as returned by ``load_model``) describes it fully.
    """
    import onnx
    if exporter not in EXPORTERS:
        raise DeployError(f"--exporter must be one of {', '.join(EXPORTERS)}, got {exporter!r}")
    if exporter == 'dynamo' and opset < 18:
        raise DeployError(f'the dynamo exporter needs opset >= 18, got {opset}; use --exporter legacy for older opsets')
    if model is None and not spec:
        raise DeployError('give a MODEL spec or a model')
    default_name = (spec or 'model').split(':')[-1].rstrip('/').replace('/', '_').replace('.', '_') + '.onnx'
    path = resolve_output(output, force, default_name=os.path.basename(default_name), suffix='.onnx')

    if model is None:
        model, info = load_model(spec, checkpoint, num_classes, use_ema=use_ema, device=device, img_size=img_size)
    else:
        if checkpoint is not None:
            raise DeployError('pass either model= or checkpoint=, not both')
        model = model.eval()
        info = dict(info) if info is not None else _module_info(model, spec, img_size)
    arch = info['architecture']
    dev = next(iter(model.parameters()), torch.empty(0)).device
    x = torch.randn(2, *info['input_size'], device=dev)  # batch 2: a batch of 1 would be specialized away
    _trial_forward(model, x, arch)

    tmp = path + '.export.tmp'
    t0 = time.perf_counter()
    try:
        _run_exporter(model, x, tmp, exporter, opset, verbose)
    except DeployError:
        raise
    except Exception as e:
        hint = '; try --exporter legacy' if exporter == 'dynamo' else ''
        raise DeployError(f'the {exporter} exporter failed for {arch}: {str(e).splitlines()[0][:300]}{hint}') from None
    finally:
        export_seconds = time.perf_counter() - t0
    try:
        proto = onnx.load(tmp)
    finally:
        for f in (tmp, tmp + '.data'):
            if os.path.exists(f):
                os.remove(f)
    if slim:
        import onnxslim
        with contextlib.redirect_stdout(io.StringIO()):
            proto = onnxslim.slim(proto)
    set_metadata(proto, export_metadata(info, exporter, opset, slim))
    check_onnx(proto, f'the exported {arch}')
    dim0 = proto.graph.input[0].type.tensor_type.shape.dim[0]
    if dim0.HasField('dim_value'):
        raise DeployError(f'the {exporter} exporter fixed the batch axis of {arch} to {dim0.dim_value}')
    onnx.save(proto, path)
    return {
        'output': os.path.abspath(path), 'architecture': arch, 'tag': info['tag'], 'model_spec': info['model_spec'],
        'weights': info['weights'], 'checkpoint': info['checkpoint'], 'exporter': exporter, 'opset': opset,
        'slim': slim, 'input_size': list(info['input_size']), 'num_classes': info['num_classes'],
        'file_bytes': os.path.getsize(path), 'export_seconds': round(export_seconds, 3),
        'nodes': len(proto.graph.node), 'checker': 'full',
    }
