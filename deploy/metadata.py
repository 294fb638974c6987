"""Preprocessing and provenance stored inside the ONNX file (``ModelProto.metadata_props``).

An exported file is self-describing: ``parity``, ``validate``, ``bench`` and ``quantize`` read the input size
and normalization from it, so no sidecar file can get lost or out of sync. Keys (all optional on read):

==================  =======  ===============================================================================
key                 type     meaning
==================  =======  ===============================================================================
``architecture``    str      timm architecture name (``timm.create_model`` name without tag)
``tag``             str      pretrained tag of the model spec (``resnet50.a1_in1k`` -> ``a1_in1k``), or ''
``model_spec``      str      the MODEL argument as given (timm name, ``hf-hub:...``, ``local-dir:...``)
``weights``         str      where the weights came from: ``checkpoint``, ``pretrained``, ``random`` or ``module``
``checkpoint``      str      absolute path of ``--checkpoint``, if any
``num_classes``     int      classifier outputs
``input_size``      json     ``[C, H, W]`` the graph was exported for (the batch axis is dynamic)
``mean``, ``std``   json     per-channel normalization, ``[r, g, b]``, applied after scaling to [0, 1]
``interpolation``   str      resize interpolation (``bilinear``, ``bicubic``, ...)
``crop_pct``        json     center-crop fraction (resize to ``H / crop_pct``, then crop ``H``)
``crop_mode``       str      timm crop mode (``center``, ``squash``, ``border``)
``class_labels``    json     list of ``num_classes`` label strings (synsets, class names), if known
``input_name``      str      graph input name (``input``)
``output_name``     str      graph output name (``logits``)
``exporter``        str      ``dynamo`` or ``legacy`` (``torch.onnx.export(dynamo=...)``)
``opset``           int      default-domain opset
``slim``            json     whether onnxslim simplified the graph
``precision``       str      ``fp32``, ``fp16`` (FP32 inputs/outputs kept) or ``int8`` (QDQ)
``quantization``    json     for ``int8``/``fp16``: how it was made (calibration folder, image count, types)
``versions``        json     ``{"torch", "timm", "onnx", "onnxruntime", "onnxscript", "timm_recal", ...}``
==================  =======  ===============================================================================

Values are strings in ONNX; keys of type ``json``/``int`` are JSON-encoded and decoded by ``read_metadata``.
"""
import json
import os
from typing import Any, Dict, Mapping

from .errors import DeployError

__all__ = ['METADATA_KEYS', 'read_metadata', 'set_metadata', 'copy_metadata', 'update_metadata_file', 'load_onnx']

#: key -> 'str' (stored as is) or 'json' (JSON-encoded)
METADATA_KEYS: Dict[str, str] = {
    'architecture': 'str', 'tag': 'str', 'model_spec': 'str', 'weights': 'str', 'checkpoint': 'str',
    'num_classes': 'json', 'input_size': 'json', 'mean': 'json', 'std': 'json', 'interpolation': 'str',
    'crop_pct': 'json', 'crop_mode': 'str', 'class_labels': 'json', 'input_name': 'str', 'output_name': 'str',
    'exporter': 'str', 'opset': 'json', 'slim': 'json', 'precision': 'str', 'quantization': 'json',
    'versions': 'json',
}


def load_onnx(path: str, load_external_data: bool = True):
    """``onnx.load`` with a clear error for a missing, empty or corrupt file."""
    import onnx
    if not os.path.isfile(path):
        raise DeployError(f'ONNX file not found: {path}')
    if os.path.getsize(path) == 0:
        raise DeployError(f'{path} is empty, not an ONNX model')
    try:
        model = onnx.load(path, load_external_data=load_external_data)
    except Exception as e:  # protobuf DecodeError and friends
        raise DeployError(f'{path} is not a readable ONNX model ({type(e).__name__}: {e})') from None
    if not model.graph.node:
        raise DeployError(f'{path} is not a valid ONNX model (empty graph)')
    return model


def _encode(key: str, value: Any) -> str:
    if METADATA_KEYS.get(key, 'json') == 'str':
        return '' if value is None else str(value)
    return json.dumps(value)


def _decode(key: str, value: str) -> Any:
    if METADATA_KEYS.get(key) == 'str':
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value  # a foreign key that is not JSON


def set_metadata(model, meta: Mapping[str, Any]) -> None:
    """Write ``meta`` into ``model.metadata_props`` (replacing keys already there; ``None`` values skipped)."""
    props = {p.key: p.value for p in model.metadata_props}
    for key, value in meta.items():
        if value is None:
            continue
        props[key] = _encode(key, value)
    del model.metadata_props[:]
    for key in sorted(props):
        model.metadata_props.add(key=key, value=props[key])


def copy_metadata(src, dst) -> None:
    """Carry every metadata entry of ``src`` over to ``dst`` (converters do not all keep them)."""
    props = {p.key: p.value for p in dst.metadata_props}
    props.update({p.key: p.value for p in src.metadata_props})
    del dst.metadata_props[:]
    for key in sorted(props):
        dst.metadata_props.add(key=key, value=props[key])


def read_metadata(onnx_path_or_model) -> Dict[str, Any]:
    """The metadata of an ONNX file (or loaded ``ModelProto``), decoded; ``precision`` defaults to ``fp32``.

    Also reports ``input_name``/``output_name`` and the graph's static input shape (``graph_input_shape``,
    ``None`` for dynamic axes) so callers can check an input size before running anything.
    """
    model = onnx_path_or_model
    if isinstance(model, (str, os.PathLike)):
        model = load_onnx(os.fspath(model), load_external_data=False)
    meta = {p.key: _decode(p.key, p.value) for p in model.metadata_props}
    meta.setdefault('precision', 'fp32')
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if inputs:
        meta.setdefault('input_name', inputs[0].name)
        dims = inputs[0].type.tensor_type.shape.dim
        meta['graph_input_shape'] = [d.dim_value if d.HasField('dim_value') else None for d in dims]
    if model.graph.output:
        meta.setdefault('output_name', model.graph.output[0].name)
    return meta


def update_metadata_file(path: str, meta: Mapping[str, Any]) -> None:
    """Rewrite ``path`` with ``meta`` merged into its metadata (single file, no external data)."""
    import onnx
    model = load_onnx(path)
    set_metadata(model, meta)
    onnx.save(model, path)
