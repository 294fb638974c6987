"""Gate cost at inference: images/s of gated nets against their base, side by side, in OpenVINO and ONNX Runtime.

Every (file, runtime, precision) runs interleaved with the others in one process (``bench.time_interleaved``:
alternating order, one window per runner per repeat), so a shared machine hits all alike; ratios are of medians.
Files are given as ``label=path`` (an FP32 ONNX export; ``label_int8=path`` for its INT8 file, a QDQ ONNX or an
NNCF IR). Prints one JSON document: machine, CPU flags, and per batch the images/s and ratios to ``--base``.

    python benchmarks/scripts/gate_speed.py --base resnet50 resnet50=r.onnx resnet50_int8=r_int8.onnx \
        seresnet50=se.onnx seresnet50_int8=se_int8.onnx --runs ov:fp32,ov:bf16,ov:int8,ort:fp32,ort:int8
"""
import argparse
import json
import os
import statistics
import sys
from typing import Any, Callable, Dict, List, Tuple

from timm_recal_deploy.bench import machine_info, time_interleaved
from timm_recal_deploy.openvino_runtime import bench_input, bf16_support, open_openvino


def _ort_call(path: str, batch: int, threads: int) -> Callable[[], Any]:
    from timm_recal_deploy.ort_runtime import create_session
    sess = create_session(path, ['CPUExecutionProvider'], threads=threads)
    inp = sess.get_inputs()[0]
    size = [int(d) for d in inp.shape[1:]]
    feed = {inp.name: bench_input(batch, size)}
    return lambda: sess.run(None, feed)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('files', nargs='+', help='label=path (label_int8=path for INT8 files)')
    p.add_argument('--base', required=True, help='label of the base net')
    p.add_argument('--runs', default='ov:fp32,ov:bf16,ov:int8,ort:fp32,ort:int8')
    p.add_argument('--batches', default='1,16')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--min-time', type=float, default=0.5)
    args = p.parse_args(argv)
    files = dict(f.split('=', 1) for f in args.files)
    labels = [k for k in files if not k.endswith('_int8')]
    runs = [tuple(r.split(':')) for r in args.runs.split(',')]
    out: Dict[str, Any] = {'machine': machine_info(), 'bf16': bf16_support(), 'threads': args.threads,
                           'files': {k: os.path.basename(v) for k, v in files.items()}, 'results': {}}
    for batch in [int(b) for b in args.batches.split(',')]:
        calls: List[Tuple[str, Callable[[], Any]]] = []
        for label in labels:
            for rt, prec in runs:
                path = files.get(label + '_int8') if prec == 'int8' else files[label]
                if path is None:
                    continue
                if rt == 'ov':
                    fn = open_openvino(path, precision=prec, threads=args.threads).prepare(batch)
                else:
                    if prec == 'bf16' or not path.endswith('.onnx'):  # no BF16 on ORT's CPU EP; IR is OpenVINO's
                        continue
                    fn = _ort_call(path, batch, args.threads)
                calls.append((f'{label}/{rt}:{prec}', fn))
        windows = time_interleaved(calls, warmup=3, repeats=args.repeats, min_time_s=args.min_time)
        ips = {k: batch / statistics.median([statistics.median(w) for w in ws]) for k, ws in windows.items()}
        rows = {}
        for key, v in ips.items():
            label, run = key.split('/')
            base = ips.get(f'{args.base}/{run}')
            rows[key] = {'images_per_s': round(v, 1), 'ratio': round(v / base, 3) if base else None}
        out['results'][str(batch)] = rows
        print(f'batch {batch}', file=sys.stderr)
        for k, r in rows.items():
            print(f"  {k:40s} {r['images_per_s']:8.1f}  {r['ratio']}", file=sys.stderr)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
