"""Exact ONNX graph rewrites that make a channel-recalibration gate cheaper for CPU runtimes (issue 12).

A gate multiplies a feature map ``z`` ``[N, C, H, W]`` by a per-sample channel vector ``g`` ``[N, C, 1, 1]``
computed from a pooled copy of ``z`` (SE, AB) or of another map (SLE). Runtimes fuse conv -> add -> relu into
one kernel in the plain net; the gate breaks that chain, and ONNX Runtime's NCHWc layout cannot broadcast the
multiply, so each gate costs reorders of the largest tensors. Every rewrite here keeps the function (outputs
equal to float round-off; the tests check FP32 parity):

* ``early_squeeze``: ``GAP(conv1x1(h)) == conv1x1(GAP(h))`` (a 1x1 conv with stride 1 and no padding is linear
  per pixel), so the squeeze pools the conv's (smaller) input and no longer reads its output.
* ``nchwc_gate``: the pool becomes ``GlobalAveragePool`` and the gate vector is repeated to ``[N, C, H, W]`` by a
  nearest ``Resize`` with integer scales, so that ``Mul`` sees two same-shaped maps: ONNX Runtime keeps the whole
  gate in its NCHWc layout (Resize, pool, conv and same-shape Mul are NCHWc ops there) instead of reordering.

``find_gates`` lists the gate multiplies of a graph; ``rewrite_gates`` applies named rewrites to a loaded graph
(``export --gate-fusion`` writes the file users get that way), ``apply_gate_fusion`` to a file, writing the result
through ``timm_recal.outputs`` (whole or not at all).
"""
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from timm_recal.outputs import resolve_output

from .errors import DeployError
from .metadata import load_onnx, read_metadata, set_metadata
from .onnx_save import save_onnx
from .options import GATE_REWRITES

__all__ = ['REWRITES', 'find_gates', 'gate_branch_nodes', 'early_squeeze', 'nchwc_gate', 'check_gate_rewrite',
           'rewrite_gates', 'apply_gate_fusion']


def _shapes(model) -> Dict[str, List[Optional[int]]]:
    """Static dims of every value (None for dynamic ones), from ONNX shape inference."""
    import onnx
    inferred = onnx.shape_inference.infer_shapes(model)
    out = {}
    for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dims = v.type.tensor_type.shape.dim
        out[v.name] = [d.dim_value if d.HasField('dim_value') else None for d in dims]
    return out


def _consumers(model) -> Dict[str, List[Any]]:
    users: Dict[str, List[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    return users


def _producers(model) -> Dict[str, Any]:
    return {o: node for node in model.graph.node for o in node.output}


def _initializers(model) -> Dict[str, Any]:
    return {t.name: t for t in model.graph.initializer}


def find_gates(model) -> List[Dict[str, Any]]:
    """Gate multiplies: ``Mul(z, g)`` with ``z`` ``[N, C, H, W]`` (H*W > 1) and ``g`` ``[N, C, 1, 1]``.

    Each entry: ``{'mul', 'feature', 'gate', 'shape'}`` (node, the map's name, the vector's name, the map's dims).
    """
    shapes = _shapes(model)
    inits = _initializers(model)
    gates = []
    for node in model.graph.node:
        if node.op_type != 'Mul' or len(node.input) != 2:
            continue
        for zi, gi in ((0, 1), (1, 0)):
            z, g = node.input[zi], node.input[gi]
            zs, gs = shapes.get(z), shapes.get(g)
            if g in inits or not zs or not gs or len(zs) != 4 or len(gs) != 4:
                continue
            if gs[2:] == [1, 1] and gs[1] == zs[1] and None not in zs[1:] and zs[2] * zs[3] > 1:
                gates.append({'mul': node, 'feature': z, 'gate': g, 'shape': zs})
                break
    return gates


def _constant(model, name: str, inits) -> Optional[np.ndarray]:
    """The value of an initializer or of a Constant node's output (exporters write axes either way)."""
    import onnx
    from onnx import numpy_helper
    if name in inits:
        return numpy_helper.to_array(inits[name])
    for node in model.graph.node:
        if node.op_type == 'Constant' and node.output[0] == name:
            attr = next((a for a in node.attribute if a.name == 'value'), None)
            return None if attr is None else numpy_helper.to_array(onnx.helper.get_attribute_value(attr))
    return None


def gate_branch_nodes(model) -> List[str]:
    """Names of every gate's own nodes: the multiply and the branch that computes its vector, back to the pool.

    For ``quantize_int8(float_nodes=...)``: OpenVINO runs a QDQ file faster with the gate in float (measured).
    """
    prod = _producers(model)
    names: List[str] = []
    for gate in find_gates(model):
        names.append(gate['mul'].name)
        todo = [gate['gate']]
        while todo:
            node = prod.get(todo.pop())
            if node is None or node.name in names:
                continue
            names.append(node.name)
            if node.op_type not in ('ReduceMean', 'GlobalAveragePool'):
                todo += [i for i in node.input if i in prod]
    return names


def _reduce_axes(node, inits, model=None) -> Optional[List[int]]:
    import onnx
    if len(node.input) > 1 and node.input[1]:
        value = _constant(model, node.input[1], inits) if model is not None else None
        return None if value is None else sorted(int(a) for a in value.ravel())
    for a in node.attribute:
        if a.name == 'axes':
            return sorted(onnx.helper.get_attribute_value(a))
    return None


def _is_spatial_mean(node, inits, model=None) -> bool:
    """A ReduceMean over H, W (of a 4-d map) that keeps dims, or a GlobalAveragePool."""
    if node.op_type == 'GlobalAveragePool':
        return True
    if node.op_type != 'ReduceMean':
        return False
    keep = next((a.i for a in node.attribute if a.name == 'keepdims'), 1)
    return keep == 1 and _reduce_axes(node, inits, model) in ([2, 3], [-2, -1])


def _is_pointwise_conv(node, inits) -> bool:
    """A Conv that is a per-pixel linear map: 1x1 kernel, stride 1, no padding, no groups or dilation issues."""
    if node.op_type != 'Conv' or node.input[1] not in inits:
        return False
    w = inits[node.input[1]]
    if list(w.dims[2:]) != [1, 1]:
        return False
    for a in node.attribute:
        import onnx
        v = onnx.helper.get_attribute_value(a)
        if a.name == 'strides' and any(s != 1 for s in v):
            return False
        if a.name == 'pads' and any(p != 0 for p in v):
            return False
        if a.name == 'auto_pad' and v not in (b'NOTSET', b'VALID', 'NOTSET', 'VALID'):
            return False
    return True


def _unique(model, base: str) -> str:
    taken = {o for n in model.graph.node for o in n.output} | {t.name for t in model.graph.initializer} | \
        {n.name for n in model.graph.node} | {i.name for i in model.graph.input}
    name, i = base, 0
    while name in taken:
        i += 1
        name = f'{base}_{i}'
    return name


def early_squeeze(model) -> int:
    """Pool a pointwise conv's input instead of its output where the gate pools that output; returns the count.

    ``mean(conv(h)) = conv(mean(h))`` for a 1x1, stride-1, unpadded conv (bias included: mean of a constant).
    """
    import onnx
    inits = _initializers(model)
    prod = _producers(model)
    done = 0
    for gate in find_gates(model):
        conv = prod.get(gate['feature'])
        if conv is None or not _is_pointwise_conv(conv, inits):
            continue
        for pool in [n for n in model.graph.node if gate['feature'] in n.input and _is_spatial_mean(n, inits, model)]:
            pooled_in = _unique(model, pool.output[0] + '_early_in')
            new_pool = onnx.helper.make_node('GlobalAveragePool', [conv.input[0]], [pooled_in],
                                             name=_unique(model, pool.name + '_early'))
            new_conv = onnx.helper.make_node('Conv', [pooled_in, *conv.input[1:]], [pool.output[0]],
                                             name=_unique(model, conv.name + '_squeeze'))
            new_conv.attribute.extend(a for a in conv.attribute if a.name != 'auto_pad')
            idx = list(model.graph.node).index(pool)
            model.graph.node.remove(pool)
            model.graph.node.insert(idx, new_conv)
            model.graph.node.insert(idx, new_pool)
            done += 1
    return done


def nchwc_gate(model) -> int:
    """Gate pools as GlobalAveragePool and the gate vector repeated to the map's shape before the multiply."""
    import onnx
    from onnx import numpy_helper
    inits = _initializers(model)
    shapes = _shapes(model)
    for node in list(model.graph.node):  # ReduceMean(H, W) -> GlobalAveragePool, the NCHWc-capable form
        if node.op_type == 'ReduceMean' and _is_spatial_mean(node, inits, model):
            if len(shapes.get(node.input[0]) or []) != 4:
                continue
            idx = list(model.graph.node).index(node)
            model.graph.node.remove(node)
            model.graph.node.insert(idx, onnx.helper.make_node('GlobalAveragePool', [node.input[0]],
                                                               list(node.output), name=node.name))
    done = 0
    for gate in find_gates(model):
        mul, (_, _, h, w) = gate['mul'], gate['shape']
        scales = _unique(model, f'{mul.name}_repeat_scales')
        model.graph.initializer.append(numpy_helper.from_array(np.array([1, 1, h, w], np.float32), scales))
        full = _unique(model, f"{gate['gate']}_full")
        resize = onnx.helper.make_node('Resize', [gate['gate'], '', scales], [full], name=_unique(model, f'{mul.name}_repeat'),
                                       mode='nearest', coordinate_transformation_mode='asymmetric',
                                       nearest_mode='floor')
        idx = list(model.graph.node).index(mul)
        model.graph.node.insert(idx, resize)
        for i, name in enumerate(mul.input):
            if name == gate['gate']:
                mul.input[i] = full
        done += 1
    return done


def _drop_unused_initializers(model) -> None:
    used = {name for node in model.graph.node for name in node.input}
    for t in [t for t in model.graph.initializer if t.name not in used]:
        model.graph.initializer.remove(t)


REWRITES = {'early_squeeze': early_squeeze, 'nchwc_gate': nchwc_gate}


def check_gate_rewrite(name: Optional[str]) -> None:
    """Refuse a ``--gate-fusion`` value users may not ask for (None: no rewrite); ``options.GATE_REWRITES``."""
    if name is not None and name not in GATE_REWRITES:
        raise DeployError(f"--gate-fusion takes {', '.join(GATE_REWRITES)}, got {name!r}")


def rewrite_gates(model, rewrites: Sequence[str]) -> Dict[str, int]:
    """Apply ``rewrites`` (names of ``REWRITES``, in order) to ``model`` in place; per rewrite, the gates it changed.

    The counts are added to the model's metadata (``gate_fusion``), so a file says how its gates were written,
    also after a second pass (an early-squeezed export quantized with ``--gate-fusion early_squeeze`` again).
    """
    unknown = [r for r in rewrites if r not in REWRITES]
    if unknown:
        raise DeployError(f"unknown gate rewrite(s) {', '.join(unknown)}; known: {', '.join(REWRITES)}")
    counts = {name: REWRITES[name](model) for name in rewrites}
    _drop_unused_initializers(model)
    recorded = dict(read_metadata(model).get('gate_fusion') or {})
    for name, n in counts.items():
        recorded[name] = recorded.get(name, 0) + n
    set_metadata(model, {'gate_fusion': recorded})
    return counts


def apply_gate_fusion(in_onnx: str, out_onnx: str, rewrites: Sequence[str] = ('early_squeeze',),
                      force: bool = False) -> Dict[str, Any]:
    """Write ``in_onnx`` with ``rewrites`` applied (in order) to ``out_onnx``; metadata kept and extended."""
    import onnx
    path = resolve_output(out_onnx, force, suffix='.onnx')
    if os.path.abspath(path) == os.path.abspath(in_onnx):
        raise DeployError('the output would overwrite the input ONNX file')
    model = load_onnx(in_onnx)
    meta = read_metadata(model)
    if meta.get('precision', 'fp32') != 'fp32':
        raise DeployError(f"{in_onnx} is {meta['precision']}; rewrite the FP32 export, then quantize")
    counts = rewrite_gates(model, rewrites)
    onnx.checker.check_model(model)
    save_onnx(model, path, force)
    return {'output': os.path.abspath(path), 'input': os.path.abspath(in_onnx), 'rewrites': counts,
            'gates': len(find_gates(model))}
