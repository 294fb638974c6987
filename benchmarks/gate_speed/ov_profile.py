"""Where the time goes in OpenVINO: per-node times (``PERF_COUNT``) summed by node and kernel type, as JSON.

Each file is compiled at one fixed batch with 2 threads and the LATENCY hint, warmed up, then profiled over
``--runs`` inferences; the JSON gives the wall time per inference and each (node type, kernel) group's mean
time and count, next to the machine. Profiling adds a little overhead: compare groups, not walls, with ``bench``.

    python benchmarks/gate_speed/ov_profile.py --precision bf16 --batch 1 resnet50.onnx seresnet50.onnx > prof.json
"""
import argparse
import collections
import json
import sys
import time

import numpy as np

from timm_recal_deploy.openvino_runtime import bf16_support
from timm_recal_deploy.timing import machine_info

HINTS = {'fp32': 'f32', 'bf16': 'bf16', 'int8': 'f32'}  # int8: the file's Q/DQ decide; the rest stays f32


def profile(core, path: str, precision: str, batch: int, threads: int, runs: int):
    model = core.read_model(path)
    shape = list(model.inputs[0].get_partial_shape().get_min_shape())
    model.reshape([batch] + [int(d) for d in shape[1:]])
    compiled = core.compile_model(model, 'CPU', {'PERF_COUNT': True, 'INFERENCE_NUM_THREADS': threads,
                                                 'PERFORMANCE_HINT': 'LATENCY',
                                                 'INFERENCE_PRECISION_HINT': HINTS[precision]})
    request = compiled.create_infer_request()
    x = np.random.default_rng(0).random([batch] + [int(d) for d in shape[1:]], dtype=np.float32)
    for _ in range(5):
        request.infer({0: x})
    groups, counts, wall = collections.defaultdict(float), collections.Counter(), []
    for _ in range(runs):
        t = time.perf_counter()
        request.infer({0: x})
        wall.append(time.perf_counter() - t)
        for p in request.profiling_info:
            key = f'{p.node_type} / {p.exec_type}'
            groups[key] += p.real_time.total_seconds() * 1e3 / runs
            counts[key] += 1
    rows = sorted(((k, round(v, 4), counts[k] // runs) for k, v in groups.items() if v > 0), key=lambda r: -r[1])
    return {'wall_ms_median': round(float(np.median(wall)) * 1e3, 3), 'nodes_ms': round(sum(groups.values()), 3),
            'groups': [{'group': k, 'ms': v, 'count': n} for k, v, n in rows]}


def main(argv=None) -> int:
    import openvino as ov
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('files', nargs='+')
    p.add_argument('--precision', choices=sorted(HINTS), default='bf16')
    p.add_argument('--batch', type=int, default=1)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--runs', type=int, default=30)
    args = p.parse_args(argv)
    core = ov.Core()
    out = {'machine': machine_info(), 'bf16': bf16_support(core), 'openvino': ov.__version__,
           'precision': args.precision, 'batch': args.batch, 'threads': args.threads, 'runs': args.runs, 'files': {}}
    for path in args.files:
        out['files'][path] = profile(core, path, args.precision, args.batch, args.threads, args.runs)
        r = out['files'][path]
        print(f"{path}: {r['wall_ms_median']} ms/inference", file=sys.stderr)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
