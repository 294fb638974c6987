"""Export a timm model to one self-describing ONNX file.

torch's dynamo exporter by default (opset 18, dynamic batch axis, weights inside the file), the TorchScript
("legacy") exporter selectable; ``onnx.checker`` full check; optional onnxslim; preprocessing and provenance in
the file's metadata (``timm_recal_deploy.metadata``). The file is written whole or not at all
(``timm_recal.outputs``).
"""
import contextlib
import importlib
import io
import os
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

import torch
from torch import nn

from timm_recal.outputs import resolve_output

from .errors import DeployError
from .metadata import read_metadata, set_metadata
from .onnx_save import save_onnx
from .gate_fusion import check_gate_rewrite, rewrite_gates
from .options import EXPORTERS, ModelOptions, OutputOptions, with_overrides
from .results import Result
from .sources import HASHED_WEIGHTS, Source, is_onnx_path, open_source, weights_digest

__all__ = ['EXPORTERS', 'ExportOptions', 'ExportResult', 'export_onnx', 'export_source', 'export_metadata',
           'library_versions', 'check_onnx', 'default_onnx_name']

INPUT_NAME, OUTPUT_NAME = 'input', 'logits'
#: what an exported file records of its model: naming, weights and preprocessing (ONNX and ``.pt2`` alike)
PROVENANCE_KEYS = ('architecture', 'tag', 'model_spec', 'weights', 'checkpoint', 'num_classes', 'input_size', 'mean',
                   'std', 'interpolation', 'crop_pct', 'crop_mode', 'class_labels')
#: lowest opset each exporter writes
MIN_OPSET = {'dynamo': 18, 'legacy': 7}


@dataclass
class ExportOptions(ModelOptions, OutputOptions):
    exporter: str = 'dynamo'
    opset: int = 18
    slim: bool = False
    verbose: bool = False
    #: an exact rewrite of the recalibration gates written into the file (``options.GATE_REWRITES``; None: none)
    gate_fusion: Optional[str] = None


@dataclass
class ExportResult(Result):
    output: str
    architecture: str
    tag: str
    model_spec: str
    weights: str
    checkpoint: Optional[str]
    exporter: str
    opset: int
    slim: bool
    input_size: List[int]
    num_classes: int
    file_bytes: int
    export_seconds: float
    nodes: int
    checker: str = 'full'
    gate_fusion: Optional[Dict[str, int]] = None  # per rewrite asked for, the gates it changed


def library_versions(*extra: str) -> Dict[str, str]:
    """Versions of the libraries that shaped an ONNX file (those importable)."""
    out = {}
    for name in ('torch', 'timm', 'onnx', 'timm_recal') + extra:
        try:
            out[name] = str(importlib.import_module(name).__version__)
        except Exception:
            pass
    return out


def export_metadata(info: Dict[str, Any], exporter: str, opset: int, slim: bool) -> Dict[str, Any]:
    """The metadata dict written into an exported file (keys documented in ``metadata``)."""
    meta = {k: info.get(k) for k in PROVENANCE_KEYS}
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


def default_onnx_name(spec: Optional[str]) -> str:
    """``resnet50.onnx`` for ``resnet50``, ``org_repo.onnx`` for ``hf-hub:org/repo``, ``FOLDER.onnx`` for
    ``local-dir:PATH/FOLDER``: the folder's own name, since its path (``/home/NAME/...``, ``..``) would put a
    local folder into a file name that records and reports publish."""
    spec = spec or 'model'
    if spec.startswith('local-dir:'):
        folder = os.path.basename(os.path.realpath(os.path.expanduser(spec[len('local-dir:'):] or '.')))
        spec = folder or 'model'
    return os.path.basename(spec.split(':')[-1].rstrip('/').replace('/', '_').replace('.', '_') + '.onnx')


def _check_options(o: ExportOptions) -> None:
    import onnx
    if o.exporter not in EXPORTERS:
        raise DeployError(f"--exporter must be one of {', '.join(EXPORTERS)}, got {o.exporter!r}")
    newest = onnx.defs.onnx_opset_version()
    if o.exporter == 'dynamo' and o.opset < MIN_OPSET['dynamo']:
        raise DeployError(f'the dynamo exporter needs opset >= 18, got {o.opset}; use --exporter legacy for older '
                          'opsets')
    check_gate_rewrite(o.gate_fusion)
    if not MIN_OPSET[o.exporter] <= o.opset <= newest:
        raise DeployError(f'--opset {o.opset} is outside {MIN_OPSET[o.exporter]}..{newest} (the {o.exporter} '
                          f'exporter and onnx {onnx.__version__})')


def _trial_forward(model: nn.Module, x: torch.Tensor, arch: str) -> None:
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as e:
        raise DeployError(f'{arch} does not run on input {list(x.shape)} (wrong --img-size?): '
                          f'{str(e).splitlines()[0][:300]}') from None
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        raise DeployError(f'{arch} returns {getattr(out, "shape", type(out).__name__)}, expected (batch, classes) '
                          'logits; only classifiers are supported')
    declared = getattr(model, 'num_classes', None)  # timm's; 0 (``--num-classes 0``) means no classifier at all
    if isinstance(declared, int) and declared != out.shape[1]:
        why = (f'has no classifier (--num-classes 0): it returns {out.shape[1]} pooled features, not class logits'
               if declared == 0 else f'declares {declared} classes but returns {out.shape[1]} outputs')
        raise DeployError(f'{arch} {why}; only classifiers are supported (the file would record '
                          f'{declared} classes beside an output named {OUTPUT_NAME!r})')


def _run_exporter(model: nn.Module, x: torch.Tensor, o: ExportOptions):
    """The exporter's ``ModelProto``, made in memory: no scratch file, so a failed write (a full disk) is never
    mistaken for an exporter failure; the file is written once, by ``save_onnx``."""
    import onnx
    quiet = contextlib.nullcontext() if o.verbose else contextlib.redirect_stdout(io.StringIO())
    with quiet, warnings.catch_warnings():
        if not o.verbose:
            warnings.simplefilter('ignore')
        if o.exporter == 'dynamo':
            batch = torch.export.Dim('batch', min=1)
            program = torch.onnx.export(model, (x,), dynamo=True, opset_version=o.opset, input_names=[INPUT_NAME],
                                        output_names=[OUTPUT_NAME], dynamic_shapes=({0: batch},), optimize=True)
            return program.model_proto
        buffer = io.BytesIO()
        torch.onnx.export(model, (x,), buffer, dynamo=False, opset_version=o.opset,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: 'batch'}, OUTPUT_NAME: {0: 'batch'}},
                          do_constant_folding=True)
        return onnx.load_from_string(buffer.getvalue())


def _export_proto(source: Source, o: ExportOptions):
    """``(ModelProto, seconds)``: the checked graph of ``source.model`` with its metadata."""
    model, info, arch = source.model, source.info, source.info['architecture']
    dev = next(iter(model.parameters()), torch.empty(0)).device
    x = torch.randn(2, *info['input_size'], device=dev)  # batch 2: a batch of 1 would be specialized away
    _trial_forward(model, x, arch)
    t0 = time.perf_counter()
    try:
        proto = _run_exporter(model, x, o)
    except Exception as e:
        hint = '; try --exporter legacy' if o.exporter == 'dynamo' else ''
        raise DeployError(f'the {o.exporter} exporter failed for {arch}: '
                          f'{str(e).splitlines()[0][:300]}{hint}') from None
    seconds = time.perf_counter() - t0
    if o.slim:
        import onnxslim
        with contextlib.redirect_stdout(io.StringIO()):
            proto = onnxslim.slim(proto)
    opset = {i.domain: i.version for i in proto.opset_import}.get('', o.opset)  # what the file really has
    meta = export_metadata(info, o.exporter, opset, o.slim)
    if info.get('weights') in HASHED_WEIGHTS:  # lets parity and bench refuse a file paired with other weights
        meta['weights_sha256'] = weights_digest(model)
    set_metadata(proto, meta)
    if o.gate_fusion:
        rewrite_gates(proto, [o.gate_fusion])
    check_onnx(proto, f'the exported {arch}')
    dim0 = proto.graph.input[0].type.tensor_type.shape.dim[0]
    if dim0.HasField('dim_value'):
        raise DeployError(f'the {o.exporter} exporter fixed the batch axis of {arch} to {dim0.dim_value}')
    return proto, seconds


def export_source(source: Source, path: str, o: ExportOptions) -> ExportResult:
    """Export an already resolved model ``source`` to ``path`` (resolved with ``resolve_output``)."""
    proto, seconds = _export_proto(source, o)
    save_onnx(proto, path, force=o.force)
    info = source.info
    return ExportResult(
        output=os.path.abspath(path), architecture=info['architecture'], tag=info['tag'],
        model_spec=info['model_spec'], weights=info['weights'], checkpoint=info['checkpoint'], exporter=o.exporter,
        opset=int(next(i.version for i in proto.opset_import if i.domain == '')), slim=o.slim,
        input_size=list(info['input_size']), num_classes=info['num_classes'], file_bytes=os.path.getsize(path),
        export_seconds=round(seconds, 3), nodes=len(proto.graph.node),
        gate_fusion=read_metadata(proto).get('gate_fusion') if o.gate_fusion else None)


def export_onnx(spec: Optional[str], output: Optional[str] = None, options: Optional[ExportOptions] = None, *,
                model: Optional[nn.Module] = None, info: Optional[Dict[str, Any]] = None,
                log: Optional[Callable[[str], None]] = None, **overrides) -> ExportResult:
    """Export ``spec`` (or the given ``model``) to ``output``: a ``.onnx`` file, or a folder (the file is then
    ``default_onnx_name(spec)``); an existing file needs ``force``. With ``model=`` the module is exported as is
    (its weights, e.g. randomized for a test); ``spec`` then only names it, or ``info`` (as ``load_model``
    returns it) describes it fully. ``log`` gets a progress line when the exporter starts. ``overrides`` set single
    ``ExportOptions`` fields."""
    o = with_overrides(ExportOptions, options, overrides)
    if output is not None:
        o.output = output
    _check_options(o)
    if model is None and not spec:
        raise DeployError('give a MODEL spec or a model')
    if model is None and is_onnx_path(spec):
        raise DeployError(f'{spec} is an ONNX file already; export takes a MODEL (timm name, hf-hub:ORG/REPO or '
                          'local-dir:FOLDER)')
    path = resolve_output(o.output, o.force, default_name=default_onnx_name(spec), suffix='.onnx')
    source = open_source(spec, o, module=model)
    if model is not None and info is not None:
        source.info = dict(info)
    if log is not None:  # the exporter runs for seconds to minutes, silently
        log(f"exporting {source.info['architecture']} ({o.exporter} exporter) ...")
    return export_source(source, path, o)
