"""``timm-recal info FILE.onnx``: what an ONNX file is (Polygraphy's ``inspect model`` for our files).

Metadata (preprocessing, provenance, precision and how it was made), inputs and outputs with their shapes,
opsets, node counts by op type, initializer count and file size, as text or ``--json``; and the static TensorRT
10/11 operator check (``trt_ops.tensorrt_info``: no TensorRT or GPU needed), with what it cannot know.
"""
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List

from .metadata import count_ops, decode_props, graph_precision, load_onnx, metadata_problems
from .results import Result
from .trt_ops import tensorrt_info

__all__ = ['InfoResult', 'inspect_onnx', 'format_info']


@dataclass
class InfoResult(Result):
    file: str
    file_bytes: int
    external_data_bytes: int
    ir_version: int
    producer: str
    opsets: Dict[str, int]
    precision: str
    inputs: List[Dict[str, Any]]
    outputs: List[Dict[str, Any]]
    nodes: int
    op_counts: Dict[str, int]
    initializers: int
    parameters: int
    metadata: Dict[str, Any]
    tensorrt: Dict[str, Any] = field(default_factory=dict)
    #: damaged metadata values (the other verbs refuse such a file, naming the first)
    metadata_problems: List[str] = field(default_factory=list)


def _values(values, skip=()) -> List[Dict[str, Any]]:
    import onnx
    out = []
    for v in values:
        if v.name in skip:
            continue
        t = v.type.tensor_type
        dims = [d.dim_value if d.HasField('dim_value') else (d.dim_param or None) for d in t.shape.dim]
        out.append({'name': v.name, 'type': onnx.TensorProto.DataType.Name(t.elem_type).lower(), 'shape': dims})
    return out


def inspect_onnx(path: str) -> InfoResult:
    """Describe the ONNX file ``path`` (external data is sized, not loaded)."""
    import numpy as np
    model = load_onnx(path, load_external_data=False)
    # what the file holds, damaged values included (shown, not refused); not ``read_metadata``, whose defaults
    # (precision fp32, the graph's input/output names) would pass for metadata of a file that has none
    meta = decode_props({p.key: p.value for p in model.metadata_props})
    init = {t.name for t in model.graph.initializer}
    data_files = {e.value for t in model.graph.initializer for e in t.external_data if e.key == 'location'}
    folder = os.path.dirname(os.path.abspath(path))
    return InfoResult(
        file=os.path.basename(path), file_bytes=os.path.getsize(path),
        external_data_bytes=sum(os.path.getsize(os.path.join(folder, f)) for f in data_files
                                if os.path.isfile(os.path.join(folder, f))),
        ir_version=int(model.ir_version), producer=f'{model.producer_name} {model.producer_version}'.strip(),
        opsets={(o.domain or 'ai.onnx'): int(o.version) for o in model.opset_import},
        precision=meta.get('precision') or graph_precision(model), inputs=_values(model.graph.input, init),
        outputs=_values(model.graph.output), nodes=len(model.graph.node), op_counts=count_ops(model),
        initializers=len(init), parameters=int(sum(int(np.prod(t.dims)) for t in model.graph.initializer)),
        metadata=meta, tensorrt=tensorrt_info(path),
        metadata_problems=metadata_problems(meta))


def _short(value: Any, limit: int = 100) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit - 3] + '...'


def _provenance(meta: Dict[str, Any]) -> List[str]:
    """Where the file came from: the model spec and its weights (checkpoint name and hash), the exporter and
    the library versions; a file records no local folders, so the hash is what identifies a checkpoint."""
    if not meta.get('model_spec') and not meta.get('architecture'):
        return ['  made from: unknown (no timm-recal metadata)']
    weights = meta.get('weights') or 'unknown weights'
    if meta.get('checkpoint'):
        weights += f" {meta['checkpoint']}"
    if meta.get('weights_sha256'):
        weights += f", sha256 {meta['weights_sha256'][:16]}..."
    made = f"  made from {meta.get('model_spec') or meta.get('architecture')} ({weights})"
    if meta.get('exporter'):
        made += f" by the {meta['exporter']} exporter"
    versions = meta.get('versions') or {}
    lines = [made]
    if isinstance(versions, dict) and versions:
        lines.append('  with ' + ', '.join(f'{k} {v}' for k, v in sorted(versions.items())))
    return lines


def format_info(r: InfoResult) -> str:
    """The text ``timm-recal info`` prints."""
    meta = dict(r.metadata)
    labels = meta.pop('class_labels') if isinstance(meta.get('class_labels'), list) else None
    quant = meta.pop('quantization') if isinstance(meta.get('quantization'), dict) else None
    lines = [f'{r.file}: {r.file_bytes / 1e6:.2f} MB' + (f' + {r.external_data_bytes / 1e6:.2f} MB external data'
                                                          if r.external_data_bytes else ''),
             f"  precision {r.precision}, opsets {', '.join(f'{d} {v}' for d, v in r.opsets.items())}, "
             f'IR {r.ir_version}, producer {r.producer or "-"}']
    lines += _provenance(r.metadata)
    lines += [f"  input  {v['name']}: {v['type']} {v['shape']}" for v in r.inputs]
    lines += [f"  output {v['name']}: {v['type']} {v['shape']}" for v in r.outputs]
    lines.append(f'  {r.nodes} nodes, {r.initializers} initializers, {r.parameters:,} parameters')
    lines.append('  ops: ' + ', '.join(f'{op} {n}' for op, n in sorted(r.op_counts.items(), key=lambda t: -t[1])))
    lines.append('  metadata:' if meta or labels or quant else '  metadata: none')
    lines += [f'    {k}: {_short(v)}' for k, v in sorted(meta.items())]
    if labels:
        lines.append(f'    class_labels: {len(labels)} ({_short(", ".join(map(str, labels[:5])), 60)}, ...)')
    if quant:
        lines.append(f"    quantization: {_short({k: v for k, v in quant.items() if k != 'sensitivity'}, 300)}")
    lines += [f'  damaged metadata: {p}' for p in r.metadata_problems]
    trt = dict(r.tensorrt)
    cannot = trt.pop('cannot_check', [])
    if trt:
        lines.append('  TensorRT (static check of the ops against the ONNX parser\'s documented support):')
        for key, c in trt.items():
            warned = f", {len(c['warnings'])} warning(s)" if c.get('warnings') else ''
            lines.append(f"    {key.replace('tensorrt', 'TensorRT ')}: {'passes' if c['passed'] else 'FAILS'}{warned}")
            lines += [f'      error: {e}' for e in c.get('errors', [])]
            lines += [f'      warning: {w}' for w in c.get('warnings', [])]
        lines += ['    cannot know without TensorRT: ' + '; '.join(cannot)] if cannot else []
    return '\n'.join(lines)
