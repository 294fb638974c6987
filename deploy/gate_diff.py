"""Gate-level comparison of a deployed file (FP32, FP16, INT8 QDQ; ONNX Runtime or OpenVINO) with PyTorch FP32.

Final-output comparisons (``parity``) say *that* a reduced precision moved the logits; this says *where*: each
gate's output tensor is made a graph output of a copy of the file (``tap_gates``), the runtime returns it beside the
logits, and it is compared with the gate values the PyTorch model computes on the same images (``GateProbe``).

The ONNX tensor of a gate is found by the module scope the dynamo exporter records on every node
(``pkg.torch.onnx.name_scopes``; quantize and FP16 conversion keep it): the output of the last node inside
``<gate>.gate`` (the sigmoid), followed through any Quantize/Dequantize/Cast to the value the multiply reads, so an
INT8 file's gate includes its own quantization. Files without scopes (the legacy exporter) fall back to the gate
multiplies ``gate_fusion.find_gates`` finds, in graph order, when there are as many as the model has gates.

Per gate (vectors of per-channel values, spatial positions averaged):

* ``cosine``: mean (and ``cosine_min``) over images of the cosine similarity of the file's and PyTorch's vectors;
* ``max_error``: largest absolute difference; ``rel_error``: RMS difference over the RMS of the PyTorch values;
* ``saturation`` / ``saturation_ref``: share of values above ``excitation.SATURATED`` in the file / in PyTorch;
* ``rank_flips``: share of channel pairs (all, or ``RANK_PAIRS`` sampled) whose order differs (a tie in the file
  where PyTorch has an order counts half), averaged over images.

``ranking`` sorts the gates by ``rel_error`` (most damaged first); ``first_damaged`` is the earliest gate, in the
order the gates run, whose ``rel_error`` exceeds ``DAMAGE_THRESHOLD``.
"""
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .errors import DeployError
from .excitation import SATURATED
from .gate_cost import node_scopes

__all__ = ['DAMAGE_THRESHOLD', 'RANK_PAIRS', 'gate_tensors', 'tap_gates', 'compare_gates', 'rank_damage']

#: a gate whose relative RMS error against PyTorch FP32 exceeds this counts as damaged
DAMAGE_THRESHOLD = 0.01
#: channel pairs sampled per gate for ``rank_flips`` when a gate has more
RANK_PAIRS = 4096
_PASS_THROUGH = ('QuantizeLinear', 'DequantizeLinear', 'Cast')


def _follow(proto, tensor: str) -> str:
    """The tensor a gate value reaches the multiply as, after Quantize/Dequantize/Cast nodes."""
    users: Dict[str, List[Any]] = {}
    for node in proto.graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    while True:
        nxt = users.get(tensor, [])
        if len(nxt) != 1 or nxt[0].op_type not in _PASS_THROUGH:
            return tensor
        tensor = nxt[0].output[0]


def gate_tensors(proto, gate_names: Sequence[str], path: str) -> Dict[str, str]:
    """Gate module name -> the ONNX tensor of its gate values (see the module docstring)."""
    last: Dict[str, str] = {}
    wanted = {f'{g}.gate': g for g in gate_names}
    for node in proto.graph.node:
        for sc in node_scopes(node):
            if sc in wanted:
                last[wanted[sc]] = node.output[0]
    if last:
        missing = [g for g in gate_names if g not in last]
        if missing:
            raise DeployError(f"{path} has no nodes of gate(s) {', '.join(missing[:4])} of the reference model; "
                              'was it exported from another model?')
        return {g: _follow(proto, last[g]) for g in gate_names}
    from .gate_fusion import find_gates
    found = [g['gate'] for g in find_gates(proto)]
    if len(found) != len(gate_names):
        raise DeployError(f'{path} carries no module scopes (not a dynamo export) and has {len(found)} gate '
                          f'multiplies against the model\'s {len(gate_names)} gates; export it with '
                          '`timm-recal export` (dynamo)')
    return dict(zip(gate_names, found))


def tap_gates(proto, tensors: Sequence[str]) -> None:
    """Make ``tensors`` graph outputs of ``proto`` (in place), after the existing outputs, typed by shape inference."""
    import onnx
    inferred = onnx.shape_inference.infer_shapes(proto)
    types = {v.name: v.type.tensor_type.elem_type
             for v in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input)}
    existing = {o.name for o in proto.graph.output}
    for name in tensors:
        if name not in existing:
            proto.graph.output.append(onnx.helper.make_tensor_value_info(
                name, types.get(name, onnx.TensorProto.FLOAT), None))


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    num = (a * b).sum(1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(den > 0, num / np.maximum(den, 1e-30), 1.0)


def _rank_flips(ref: np.ndarray, out: np.ndarray, seed: int = 0) -> float:
    c = ref.shape[1]
    if c < 2:
        return 0.0
    i, j = np.triu_indices(c, 1)
    if len(i) > RANK_PAIRS:
        pick = np.random.default_rng(seed).choice(len(i), RANK_PAIRS, replace=False)
        i, j = i[pick], j[pick]
    sr, so = np.sign(ref[:, i] - ref[:, j]), np.sign(out[:, i] - out[:, j])
    ordered = sr != 0
    if not ordered.any():
        return 0.0
    flips = np.where(so == 0, 0.5, (sr != so).astype(np.float64))
    return float(flips[ordered].mean())


def compare_gates(ref: Dict[str, np.ndarray], out: Dict[str, np.ndarray], order: Sequence[str]) -> List[Dict[str, Any]]:
    """One record per gate in ``order``: the metrics of the module docstring."""
    rows = []
    for depth, g in enumerate(order):
        r, o = ref[g].astype(np.float64), out[g].astype(np.float64)
        if r.shape != o.shape:
            raise DeployError(f'gate {g}: the file gives {list(o.shape)} values, PyTorch {list(r.shape)}')
        diff = o - r
        cos = _cosine(r, o)
        rows.append({'gate': g, 'depth': depth, 'channels': int(r.shape[1]), 'cosine': float(cos.mean()),
                     'cosine_min': float(cos.min()), 'max_error': float(np.abs(diff).max()),
                     'rel_error': float(np.sqrt((diff ** 2).mean()) / max(float(np.sqrt((r ** 2).mean())), 1e-12)),
                     'saturation': float((o > SATURATED).mean()), 'saturation_ref': float((r > SATURATED).mean()),
                     'rank_flips': _rank_flips(r, o)})
    return rows


def rank_damage(rows: List[Dict[str, Any]], threshold: float = DAMAGE_THRESHOLD) -> Dict[str, Any]:
    """``{'ranking': gates by rel_error, worst first, 'damaged': those above threshold, 'first_damaged'}``."""
    ranking = [r['gate'] for r in sorted(rows, key=lambda r: -r['rel_error'])]
    damaged = [g for g in ranking if next(r for r in rows if r['gate'] == g)['rel_error'] > threshold]
    first: Optional[str] = next((r['gate'] for r in rows if r['rel_error'] > threshold), None)
    return {'ranking': ranking, 'damaged': damaged, 'first_damaged': first, 'threshold': threshold}
