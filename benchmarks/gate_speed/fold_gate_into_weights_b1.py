"""Experiment: batch-1 folding of the gate into conv3's weights: g*(W h + b) = (g W) h + g b (exact).
Writes a batch-1-only file (the gate [1,C,1,1] becomes a per-output-channel weight scale)."""
import sys, onnx, numpy as np
from onnx import helper, numpy_helper
from timm_recal_deploy.gate_fusion import find_gates, _producers, _initializers, _is_pointwise_conv, _unique
src, dst = sys.argv[1], sys.argv[2]
m = onnx.load(src)
prod, inits = _producers(m), _initializers(m)
n = 0
for g in find_gates(m):
    conv = prod.get(g['feature'])
    if conv is None or not _is_pointwise_conv(conv, inits): continue
    mul = g['mul']
    # scale [1,C,1,1] -> [C,1,1,1]
    shp = _unique(m, mul.name + '_wshape'); m.graph.initializer.append(numpy_helper.from_array(np.array([-1, 1, 1, 1], np.int64), shp))
    s4 = _unique(m, mul.name + '_s4'); bs = _unique(m, mul.name + '_bshape')
    m.graph.initializer.append(numpy_helper.from_array(np.array([-1], np.int64), bs))
    w2 = _unique(m, mul.name + '_w'); s1 = _unique(m, mul.name + '_s1'); b2 = _unique(m, mul.name + '_b')
    new = [helper.make_node('Reshape', [g['gate'], shp], [s4]),
           helper.make_node('Mul', [conv.input[1], s4], [w2]),
           helper.make_node('Reshape', [g['gate'], bs], [s1]),
           helper.make_node('Mul', [conv.input[2], s1], [b2]),
           helper.make_node('Conv', [conv.input[0], w2, b2], [mul.output[0]], name=_unique(m, conv.name + '_gated'))]
    new[-1].attribute.extend(conv.attribute)
    idx = list(m.graph.node).index(mul)
    m.graph.node.remove(mul)
    for k, nd in enumerate(new): m.graph.node.insert(idx + k, nd)
    n += 1
used = {i for nd in m.graph.node for i in nd.input}
for nd in [nd for nd in m.graph.node if nd.op_type == 'Conv' and nd.output[0] not in used and nd.output[0] not in {o.name for o in m.graph.output}]:
    m.graph.node.remove(nd)
# fix the batch to 1
m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
onnx.save(m, dst); print('folded', n)
