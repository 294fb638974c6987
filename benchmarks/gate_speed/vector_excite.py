"""Experiment: the gate's excitation on ``[N, C]`` vectors instead of 1x1 convs on ``[N, C, 1, 1]`` maps (exact).

Each gate branch pool -> (Conv 1x1 | activation)* -> multiply becomes pool -> Flatten -> Gemm (a full 1x1 conv)
or Mul + Add (a depthwise 1x1 conv: AB's per-channel affine) -> activations -> Unsqueeze -> multiply, so that
OpenVINO runs FullyConnected / eltwise nodes instead of convolutions on 1x1 maps (with their reorders), and
ONNX Runtime Gemm instead of NCHWc convs. ``es`` as third argument applies early squeeze first.

    python benchmarks/gate_speed/vector_excite.py seresnet50.onnx seresnet50_vec.onnx [es]
"""
import sys
from typing import List, Optional

import numpy as np
import onnx
from onnx import helper, numpy_helper

from timm_recal_deploy.gate_fusion import (_drop_unused_initializers, _initializers, _producers, _unique,
                                           early_squeeze, find_gates)

ACTIVATIONS = ('Relu', 'Sigmoid', 'HardSigmoid', 'Clip')


def _branch(prod, gate_vector: str) -> Optional[List]:
    """The gate's nodes from its pool to the vector, pool first; None if it holds anything but convs/activations."""
    chain, name = [], gate_vector
    while True:
        node = prod.get(name)
        if node is None or node.op_type not in ('ReduceMean', 'GlobalAveragePool', 'Conv') + ACTIVATIONS:
            return None
        chain.append(node)
        if node.op_type in ('ReduceMean', 'GlobalAveragePool'):
            return chain[::-1]
        name = node.input[0]


def vector_excite(model) -> int:
    inits, prod, done = _initializers(model), _producers(model), 0
    for gate in find_gates(model):
        chain = _branch(prod, gate['gate'])
        if not chain:
            continue
        pool, cur = chain[0], _unique(model, chain[0].output[0] + '_vec')
        new = [helper.make_node('Flatten', [pool.output[0]], [cur], axis=1, name=_unique(model, pool.name + '_flat'))]
        for node in chain[1:]:
            out = _unique(model, node.output[0] + '_vec')
            if node.op_type != 'Conv':
                attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
                new.append(helper.make_node(node.op_type, [cur], [out], name=_unique(model, node.name + '_vec'), **attrs))
                cur = out
                continue
            w = numpy_helper.to_array(inits[node.input[1]])
            b = numpy_helper.to_array(inits[node.input[2]]) if len(node.input) > 2 else np.zeros(w.shape[0], w.dtype)
            group = next((a.i for a in node.attribute if a.name == 'group'), 1)
            wn, bn = _unique(model, node.input[1] + '_vec_w'), _unique(model, node.input[1] + '_vec_b')
            if group == 1:
                model.graph.initializer.extend([numpy_helper.from_array(np.ascontiguousarray(w[:, :, 0, 0].T), wn),
                                                numpy_helper.from_array(b, bn)])
                new.append(helper.make_node('Gemm', [cur, wn, bn], [out], name=_unique(model, node.name + '_gemm')))
            elif group == w.shape[0] and w.shape[1] == 1:
                mid = _unique(model, out + '_scaled')
                model.graph.initializer.extend([numpy_helper.from_array(w.reshape(-1), wn), numpy_helper.from_array(b, bn)])
                new += [helper.make_node('Mul', [cur, wn], [mid], name=_unique(model, node.name + '_scale')),
                        helper.make_node('Add', [mid, bn], [out], name=_unique(model, node.name + '_shift'))]
            else:
                raise SystemExit(f'{node.name}: grouped conv with {group} groups is neither full nor depthwise')
            cur = out
        axes, vec4 = _unique(model, gate['gate'] + '_axes'), _unique(model, gate['gate'] + '_4d')
        model.graph.initializer.append(numpy_helper.from_array(np.array([2, 3], np.int64), axes))
        new.append(helper.make_node('Unsqueeze', [cur, axes], [vec4], name=_unique(model, gate['mul'].name + '_unsq')))
        mul = gate['mul']
        mul.input[list(mul.input).index(gate['gate'])] = vec4
        idx = list(model.graph.node).index(mul)
        for node in reversed(new):
            model.graph.node.insert(idx, node)
        for node in chain[1:]:
            model.graph.node.remove(node)
        done += 1
    return done


if __name__ == '__main__':
    src, dst = sys.argv[1], sys.argv[2]
    m = onnx.load(src)
    if sys.argv[3:] == ['es']:
        print('early squeeze', early_squeeze(m))
    print('vector excitation', vector_excite(m))
    _drop_unused_initializers(m)
    onnx.checker.check_model(m)
    onnx.save(m, dst)
