"""``timm-recal engine``: build a TensorRT engine (plan + sidecar JSON) from an exported ONNX file, or, with
``--check-only``, run the static operator check alone (no TensorRT, no GPU needed).

Argument definitions and a ``run_engine`` in the shape ``timm_recal_deploy.cli`` plugs in (``add_engine_args``,
``run_engine``); the work is in ``tensorrt_build`` and ``trt_ops``.
"""
import argparse
import json

from .errors import DeployError

__all__ = ['add_engine_args', 'run_engine']


def add_engine_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.description = ('Build a TensorRT engine from an ONNX export (TensorRT 10.x or 11.x, a CUDA GPU): an '
                     'optimization profile over the batch axis, a workspace limit, a reusable timing cache, and '
                     'a sidecar OUT.plan.json (TensorRT version, GPU, profile, precision, SHA-256 of the ONNX) '
                     'that loading checks. --check-only runs the static ONNX operator check alone, anywhere.')
    p.add_argument('onnx', metavar='IN.onnx', help='an exported ONNX file (export or quantize output)')
    p.add_argument('-o', '--output', metavar='OUT.plan', help='engine file (or folder) to write')
    p.add_argument('-f', '--force', action='store_true', help='overwrite OUT.plan and its sidecar')
    p.add_argument('--check-only', action='store_true',
                   help="static check of the ONNX ops against TensorRT's documented parser support; writes nothing")
    p.add_argument('--trt-major', type=int, choices=[10, 11],
                   help='TensorRT major version for --check-only (default: the installed one, else 10)')
    p.add_argument('--batch', metavar='N|MIN,OPT,MAX',
                   help='optimization profile over the batch axis (default: the ONNX fixed batch, else 1,16,64)')
    p.add_argument('--precision', choices=['fp32', 'fp16', 'int8'],
                   help="default: the ONNX file's own. fp16 from an FP32 file uses TensorRT 10's FP16 flag; "
                        'TensorRT 11 takes precision from the file only (quantize --precision fp16 first); int8 '
                        'needs the QDQ file from quantize')
    p.add_argument('--workspace', type=int, metavar='MiB', help='builder workspace limit in MiB')
    p.add_argument('--timing-cache', metavar='PATH', help='timing cache file, read if present and updated')
    p.add_argument('--tf32', action='store_true', help='allow TF32 in FP32 layers (default off: exact FP32)')
    p.add_argument('--no-op-check', action='store_true', help='build even if the static operator check fails')
    p.add_argument('--verbose', action='store_true', help="TensorRT's log")
    p.add_argument('--json', action='store_true', help='print the result as JSON')
    return p


def run_engine(args: argparse.Namespace) -> int:
    if args.check_only:
        from .tensorrt_build import import_tensorrt, tensorrt_major
        from .trt_ops import check_onnx_for_tensorrt
        major = args.trt_major
        if major is None:
            trt, _ = import_tensorrt()
            major = tensorrt_major(trt) if trt is not None else 10
        r = check_onnx_for_tensorrt(args.onnx, major)
        print(json.dumps(r.to_dict(), indent=2) if args.json else r.summary())
        return 0 if r.passed else 1
    if not args.output:
        raise DeployError('an output path is required (-o/--output), or pass --check-only')
    from .tensorrt_build import build_engine
    r = build_engine(args.onnx, args.output, batch=args.batch, precision=args.precision, workspace_mb=args.workspace,
                     timing_cache=args.timing_cache, tf32=args.tf32, verbose=args.verbose, force=args.force,
                     check_ops=not args.no_op_check)
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        prof = r['profile']
        print(f"wrote {r['output']} and {r['sidecar']} (TensorRT {r['tensorrt_version']}, {r['gpu']['name']} "
              f"sm {r['gpu']['compute_capability']}, {r['precision']}, batch {prof['min'][0]}/{prof['opt'][0]}/"
              f"{prof['max'][0]}, {r['plan_bytes'] / 1e6:.1f} MB, {r['build_seconds']:.1f} s)")
    return 0
