"""ONNX Runtime's INT8 gate multiply on its own: ``QLinearMul`` with a per-channel ``[N, C, 1, 1]`` operand (the
QDQ gate after ORT's fusions) against a same-shape ``QLinearMul``, ``QLinearAdd`` (the residual add) and a float
``Mul``, on one ResNet-50 stage-1 map at batch 16 (2 threads, median of 15 runs). Prints JSON.

    python benchmarks/gate_speed/ort_qlinear_mul.py > ort_qlinear_mul.json
"""
import json
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from timm_recal_deploy.timing import machine_info

N, C, H = 16, 256, 56


def _model(op, a_shape, b_shape):
    """One ``op`` node: a com.microsoft QLinear binary op on uint8 (scale 0.02, zero point 128), or a float Mul."""
    if op == 'Mul':
        elem, node, inits = TensorProto.FLOAT, helper.make_node('Mul', ['a', 'b'], ['y']), []
    else:
        elem = TensorProto.UINT8
        inits = [helper.make_tensor(n, TensorProto.FLOAT, [], [0.02]) for n in ('sa', 'sb', 'sy')] + \
                [helper.make_tensor(n, TensorProto.UINT8, [], [128]) for n in ('za', 'zb', 'zy')]
        node = helper.make_node(op, ['a', 'sa', 'za', 'b', 'sb', 'zb', 'sy', 'zy'], ['y'], domain='com.microsoft')
    graph = helper.make_graph([node], op, [helper.make_tensor_value_info('a', elem, a_shape),
                                           helper.make_tensor_value_info('b', elem, b_shape)],
                              [helper.make_tensor_value_info('y', elem, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17), helper.make_opsetid('com.microsoft', 1)])


CASES = {
    'QLinearMul, NCHW map x [N,C,1,1]': ('QLinearMul', [N, C, H, H], [N, C, 1, 1]),
    'QLinearMul, NHWC map x [N,1,1,C] (the layout ORT INT8 runs)': ('QLinearMul', [N, H, H, C], [N, 1, 1, C]),
    'QLinearMul, same shape': ('QLinearMul', [N, C, H, H], [N, C, H, H]),
    'QLinearAdd, same shape (the residual add)': ('QLinearAdd', [N, C, H, H], [N, C, H, H]),
    'float Mul, NCHW map x [N,C,1,1]': ('Mul', [N, C, H, H], [N, C, 1, 1]),
}


def main() -> int:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 2, 1
    rng = np.random.default_rng(0)
    out = {'machine': machine_info(), 'onnxruntime': ort.__version__, 'map': [N, C, H, H], 'threads': 2, 'results': {}}
    for name, (op, a, b) in CASES.items():
        sess = ort.InferenceSession(_model(op, a, b).SerializeToString(), opts, providers=['CPUExecutionProvider'])
        dtype = np.float32 if op == 'Mul' else np.uint8
        feed = {'a': rng.integers(0, 255, a).astype(dtype), 'b': rng.integers(0, 255, b).astype(dtype)}
        for _ in range(3):
            sess.run(None, feed)
        times = []
        for _ in range(15):
            t = time.perf_counter()
            sess.run(None, feed)
            times.append(time.perf_counter() - t)
        ms = statistics.median(times) * 1e3
        out['results'][name] = {'ms': round(ms, 3), 'g_elements_per_s': round(float(np.prod(a)) / ms / 1e6, 2)}
        print(f'{name:60s} {ms:6.2f} ms', file=sys.stderr)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
