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
``checkpoint``      str      ``--checkpoint``, if any: relative to the working folder, else its file name
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
``weights_sha256``  str      SHA-256 of the exported weights (checkpoint or pretrained weights only)
==================  =======  ===============================================================================

Values are strings in ONNX; keys of type ``json``/``int`` are JSON-encoded and decoded by ``read_metadata``.
A file is meant to be shared, so no value records an absolute local path (``timm_recal.outputs.public_paths``):
a checkpoint or data folder is named relative to the working folder, or by its name alone, and identified by
``weights_sha256`` (a checkpoint) or the image count (a calibration folder).
"""
import json
import math
import os
from typing import Any, Callable, Dict, List, Mapping, Tuple

from timm_recal.outputs import public_paths

from .errors import DeployError
from .runtimes import PRECISIONS

__all__ = ['METADATA_KEYS', 'read_metadata', 'check_metadata', 'metadata_problems', 'set_metadata', 'copy_metadata', 'load_onnx', 'decode_props',
           'graph_precision', 'onnx_precision', 'count_ops']

#: key -> 'str' (stored as is) or 'json' (JSON-encoded)
METADATA_KEYS: Dict[str, str] = {
    'architecture': 'str', 'tag': 'str', 'model_spec': 'str', 'weights': 'str', 'checkpoint': 'str',
    'num_classes': 'json', 'input_size': 'json', 'mean': 'json', 'std': 'json', 'interpolation': 'str',
    'crop_pct': 'json', 'crop_mode': 'str', 'class_labels': 'json', 'input_name': 'str', 'output_name': 'str',
    'exporter': 'str', 'opset': 'json', 'slim': 'json', 'precision': 'str', 'quantization': 'json',
    'versions': 'json', 'weights_sha256': 'str',
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


def decode_props(props: Mapping[str, str]) -> Dict[str, Any]:
    """Decoded metadata from raw string properties (``ModelProto.metadata_props`` or ORT's
    ``session.get_modelmeta().custom_metadata_map``)."""
    return {k: _decode(k, v) for k, v in props.items()}


def set_metadata(model, meta: Mapping[str, Any]) -> None:
    """Merge ``meta`` into ``model``'s metadata (``onnx.helper.set_model_props``; ``None`` values skipped;
    absolute local paths made public)."""
    from onnx.helper import set_model_props
    props = {p.key: p.value for p in model.metadata_props}
    props.update({k: _encode(k, public_paths(v)) for k, v in meta.items() if v is not None})
    set_model_props(model, dict(sorted(props.items())))


def copy_metadata(src, dst) -> None:
    """Carry every metadata entry of ``src`` over to ``dst`` (converters do not all keep them)."""
    from onnx.helper import set_model_props
    props = {p.key: p.value for p in dst.metadata_props}
    props.update({p.key: p.value for p in src.metadata_props})
    set_model_props(dst, dict(sorted(props.items())))


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


#: what a readable value of each typed key is: (check, words for the message). A value that fails its check
#: (truncated, hand-edited) would otherwise surface as a TypeError deep inside a stage.
_VALID: Dict[str, Tuple[Callable[[Any], bool], str]] = {
    'num_classes': (_count, 'a class count'),
    'input_size': (lambda v: isinstance(v, list) and len(v) == 3 and all(_count(x) and x > 0 for x in v),
                   '[C, H, W] of positive integers'),
    'mean': (lambda v: isinstance(v, list) and len(v) in (1, 3) and all(_number(x) for x in v),
             'a list of 1 or 3 numbers'),
    'std': (lambda v: isinstance(v, list) and len(v) in (1, 3) and all(_number(x) and x > 0 for x in v),
            'a list of 1 or 3 positive numbers'),
    'crop_pct': (lambda v: _number(v) and v > 0, 'a positive number'),
    'class_labels': (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v), 'a list of names'),
    'opset': (_count, 'an opset number'),
    'slim': (lambda v: isinstance(v, bool), 'true or false'),
    'precision': (lambda v: v in PRECISIONS, f"one of {', '.join(PRECISIONS)}"),
    'quantization': (lambda v: isinstance(v, dict), 'a JSON object'),
    'versions': (lambda v: isinstance(v, dict), 'a JSON object'),
}


def metadata_problems(meta: Mapping[str, Any]) -> List[str]:
    """``"key: what it should be (got ...)"`` for every recorded value that is not readable (see ``_VALID``)."""
    out = []
    for key, (ok, what) in _VALID.items():
        value = meta.get(key)
        if value is not None and not ok(value):
            shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + '...'
            out.append(f"'{key}' is not {what} (got {shown})")
    return out


def check_metadata(meta: Mapping[str, Any], where: str) -> None:
    """Refuse a file whose metadata values are damaged, naming the first bad key (one line)."""
    problems = metadata_problems(meta)
    if problems:
        more = f' (and {len(problems) - 1} more)' if len(problems) > 1 else ''
        raise DeployError(f'{where}: damaged metadata: {problems[0]}{more}; export the file again '
                          '(`timm-recal info` shows every entry)')


def read_metadata(onnx_path_or_model, check: bool = True) -> Dict[str, Any]:
    """The metadata of an ONNX file (or loaded ``ModelProto``), decoded; ``precision`` defaults to ``fp32``.

    Also reports ``input_name``/``output_name`` and the graph's static input shape (``graph_input_shape``,
    ``None`` for dynamic axes) so callers can check an input size before running anything. A damaged value
    (``check_metadata``) is refused unless ``check=False`` (``info``, which shows it).
    """
    model = onnx_path_or_model
    where = os.fspath(model) if isinstance(model, (str, os.PathLike)) else 'the ONNX model'
    if isinstance(model, (str, os.PathLike)):
        model = load_onnx(os.fspath(model), load_external_data=False)
    meta = decode_props({p.key: p.value for p in model.metadata_props})
    if check:
        check_metadata(meta, where)
    meta.setdefault('precision', 'fp32')
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if inputs:
        meta.setdefault('input_name', inputs[0].name)
        dims = inputs[0].type.tensor_type.shape.dim
        meta['graph_input_shape'] = [d.dim_value if d.HasField('dim_value') else None for d in dims]
    if model.graph.output:
        meta.setdefault('output_name', model.graph.output[0].name)
    return meta


def onnx_precision(path: str) -> str:
    """Precision of an ONNX file: its ``precision`` metadata, else its name (``int8``/``qdq``/``fp16``), else
    its graph (QuantizeLinear nodes mean INT8, float16 initializers FP16), else FP32."""
    import onnx
    model = load_onnx(path, load_external_data=False)
    for p in model.metadata_props:
        if p.key == 'precision' and p.value in PRECISIONS:
            return p.value
    base = os.path.basename(path).lower()
    if 'int8' in base or 'qdq' in base:
        return 'int8'
    if 'fp16' in base or 'half' in base:
        return 'fp16'
    return graph_precision(model)


def graph_precision(model_proto) -> str:
    """Precision of a graph from its nodes and weights alone, for files without ``precision`` metadata:
    quantization nodes mean INT8, float16 initializers FP16, else FP32."""
    import onnx
    ops = {n.op_type for n in model_proto.graph.node}
    if ops & {'QuantizeLinear', 'DequantizeLinear', 'QLinearConv', 'ConvInteger', 'MatMulInteger'}:
        return 'int8'
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in model_proto.graph.initializer):
        return 'fp16'
    return 'fp32'


def count_ops(model_proto) -> Dict[str, int]:
    """Nodes of the graph by op type."""
    counts: Dict[str, int] = {}
    for node in model_proto.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))
