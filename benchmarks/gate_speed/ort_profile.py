"""Where the time goes in ONNX Runtime (CPU): per-node kernel times from ORT's profiler, summed by op type, as JSON.

Each file gets a session with 2 intra-op threads and all graph optimizations (so NCHWc reorders and fused convs
show as the ops ORT really runs), is warmed up, then profiled over ``--runs`` inferences at one batch; the JSON
gives the wall time per inference and each op type's mean time and count, next to the machine.

    python benchmarks/gate_speed/ort_profile.py --batch 1 resnet50.onnx seresnet50.onnx > prof.json
"""
import argparse
import collections
import json
import os
import sys
import tempfile
import time

import numpy as np

from timm_recal_deploy.timing import machine_info


def profile(path: str, batch: int, threads: int, runs: int):
    import onnxruntime as ort
    with tempfile.TemporaryDirectory(prefix='ort_profile_') as tmp:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        opts.log_severity_level = 3
        opts.enable_profiling = True
        opts.profile_file_prefix = os.path.join(tmp, 'p')
        sess = ort.InferenceSession(path, sess_options=opts, providers=['CPUExecutionProvider'])
        inp = sess.get_inputs()[0]
        x = np.random.default_rng(0).random([batch] + [int(d) for d in inp.shape[1:]], dtype=np.float32)
        for _ in range(5):
            sess.run(None, {inp.name: x})
        wall = []
        for _ in range(runs):
            t = time.perf_counter()
            sess.run(None, {inp.name: x})
            wall.append(time.perf_counter() - t)
        events = json.load(open(sess.end_profiling()))
    runs_seen = runs + 5
    groups, counts = collections.defaultdict(float), collections.Counter()
    for e in events:
        if e.get('cat') == 'Node' and e.get('name', '').endswith('_kernel_time'):
            op = e.get('args', {}).get('op_name', '?')
            groups[op] += e['dur'] / 1e3 / runs_seen   # us -> ms, per inference (warm-up included)
            counts[op] += 1
    rows = sorted(((k, round(v, 4), counts[k] // runs_seen) for k, v in groups.items()), key=lambda r: -r[1])
    return {'wall_ms_median': round(float(np.median(wall)) * 1e3, 3), 'nodes_ms': round(sum(groups.values()), 3),
            'groups': [{'op': k, 'ms': v, 'count': n} for k, v, n in rows]}


def main(argv=None) -> int:
    import onnxruntime as ort
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('files', nargs='+')
    p.add_argument('--batch', type=int, default=1)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--runs', type=int, default=30)
    args = p.parse_args(argv)
    out = {'machine': machine_info(), 'onnxruntime': ort.__version__, 'batch': args.batch,
           'threads': args.threads, 'runs': args.runs, 'files': {}}
    for path in args.files:
        r = out['files'][os.path.basename(path)] = profile(path, args.batch, args.threads, args.runs)
        print(f"{path}: {r['wall_ms_median']} ms/inference", file=sys.stderr)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
