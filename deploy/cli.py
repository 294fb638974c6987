"""``timm-recal`` subcommands of the deploy stage: export, parity, validate, quantize, bench, pipeline.

Argument definitions only (cheap to import); each ``run_*`` imports its stage when called, so a missing
onnx/onnxruntime surfaces as ``ModuleNotFoundError``, which ``timm_recal.cli.main`` turns into
"install timm-recal[deploy]". ``bench`` and ``pipeline`` live in their own modules and are added when present.
``add_model_args``, ``add_output_args`` and ``add_runtime_args`` are shared with those modules.
"""
import argparse
import functools
import importlib
import json
import sys
from typing import Callable

__all__ = ['add_parsers', 'add_model_args', 'add_output_args', 'add_runtime_args', 'add_int8_args', 'int8_options',
           'run_export', 'run_parity', 'run_validate', 'run_quantize']


def add_model_args(p: argparse.ArgumentParser, amp: bool = True) -> None:
    """``--checkpoint``, ``--use-ema``, ``--num-classes``, ``--img-size``, ``--device`` (and ``--amp``)."""
    g = p.add_argument_group('model')
    g.add_argument('--checkpoint', metavar='PATH',
                   help='weights: state dict (.pth/.safetensors), timm train.py checkpoint or save_for_hf folder')
    g.add_argument('--use-ema', action='store_true', help="use the checkpoint's state_dict_ema")
    g.add_argument('--num-classes', type=int, metavar='N', help="default: the checkpoint classifier's size")
    g.add_argument('--img-size', type=int, metavar='S', help="input size S x S (default: the model's)")
    g.add_argument('--device', default='cpu', choices=['cpu', 'cuda'], help='PyTorch device (default cpu)')
    if amp:
        g.add_argument('--amp', action='store_true', help='PyTorch under autocast (bf16 on CPU, fp16 on CUDA)')


def add_output_args(p: argparse.ArgumentParser, required: bool, what: str) -> None:
    """``-o/--output`` (a file or a folder) and ``--force``."""
    p.add_argument('-o', '--output', required=required, metavar='PATH', help=f'{what} (a file, or a folder)')
    p.add_argument('--force', action='store_true', help='overwrite an existing output')


def add_int8_args(p, calib_images: int) -> None:
    """How INT8 files are calibrated (``p``: a parser or an argument group): ``--calib-images``,
    ``--calib-method``, ``--no-moving-average``, ``--fp32-layers``."""
    p.add_argument('--calib-images', type=int, default=calib_images, metavar='N',
                   help=f'INT8 calibration images (default {calib_images})')
    p.add_argument('--calib-method', default='minmax', choices=['minmax', 'percentile', 'entropy'],
                   help='INT8 activation ranges (default minmax)')
    p.add_argument('--no-moving-average', dest='moving_average', action='store_false',
                   help='minmax: extremes over all images instead of the average of per-batch ranges')
    p.add_argument('--fp32-layers', type=int, default=0, metavar='K',
                   help='INT8: keep the K nodes most sensitive to quantization in float (default 0); the '
                        "README's 99%% top-1 agreement recipe for the ShuffleNetV2-CIFAR weights is 48 with "
                        '--calib-method percentile')


def int8_options(args: argparse.Namespace) -> dict:
    """``quantize_int8`` keyword arguments from ``add_int8_args``'s options."""
    return dict(calibrate_method=args.calib_method, moving_average=args.moving_average,
                fp32_layers=args.fp32_layers)


def _providers(text: str):
    return [p.strip() for p in text.split(',') if p.strip()]


def add_runtime_args(p: argparse.ArgumentParser) -> None:
    """``--providers`` and ``--threads`` of ONNX Runtime."""
    g = p.add_argument_group('ONNX Runtime')
    g.add_argument('--providers', type=_providers, metavar='P1,P2',
                   help='execution providers (default: TensorRT, CUDA when present, else CPU)')
    g.add_argument('--threads', type=int, metavar='N', help="intra-op threads (default: ORT's choice)")


def _model_kwargs(args: argparse.Namespace) -> dict:
    return dict(checkpoint=args.checkpoint, num_classes=args.num_classes, use_ema=args.use_ema,
                img_size=args.img_size, device=args.device)


def _friendly(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """OS errors (permissions, disk full) as one-line messages like every DeployError."""
    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> int:
        from .errors import DeployError
        try:
            return fn(args)
        except (FileNotFoundError, FileExistsError, ModuleNotFoundError):
            raise
        except OSError as e:
            raise DeployError(str(e)) from None
    return run


def _note_weights(info: dict, spec: str) -> None:
    if info.get('weights') == 'random':
        print(f'note: {spec} has no weights (no --checkpoint, no pretrained tag): randomly initialized',
              file=sys.stderr)


# --- export -------------------------------------------------------------------------------------------------
def _add_export(sub) -> None:
    p = sub.add_parser('export', help='export a timm model to one ONNX file (metadata inside)',
                       description='Export MODEL (timm name[.tag], hf-hub:..., local-dir:...) to ONNX: dynamic '
                                   'batch axis, onnx.checker full check, preprocessing in the metadata.')
    p.add_argument('model', metavar='MODEL')
    add_output_args(p, True, 'ONNX file to write')
    add_model_args(p, amp=False)
    p.add_argument('--exporter', default='dynamo', choices=['dynamo', 'legacy'],
                   help='torch.onnx exporter: dynamo (default, torch.export) or legacy (TorchScript)')
    p.add_argument('--opset', type=int, default=18, help='ONNX opset (default 18; dynamo needs >= 18)')
    p.add_argument('--slim', action='store_true', help='simplify the graph with onnxslim')
    p.add_argument('--json', action='store_true', help='print the summary as JSON')
    p.add_argument('--verbose', action='store_true', help="show the exporter's own output")
    p.set_defaults(func=run_export)


@_friendly
def run_export(args: argparse.Namespace) -> int:
    from .export import export_onnx
    r = export_onnx(args.model, args.output, exporter=args.exporter, opset=args.opset, slim=args.slim,
                    force=args.force, verbose=args.verbose, **_model_kwargs(args))
    _note_weights(r, args.model)
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        print(f"wrote {r['output']} ({r['architecture']}, {r['exporter']} exporter, opset {r['opset']}, input "
              f"{'x'.join(map(str, r['input_size']))}, {r['num_classes']} classes, {r['file_bytes'] / 1e6:.1f} MB, "
              f"{r['export_seconds']:.1f} s)")
    return 0


# --- parity -------------------------------------------------------------------------------------------------
def _add_parity(sub) -> None:
    p = sub.add_parser('parity', help='PyTorch vs ONNX Runtime on real images (FP32/FP16/INT8 tolerances)',
                       description='Compare PyTorch and ONNX Runtime logits on real images through the '
                                   "model's timm preprocessing. Exit 1 when a tolerance is exceeded.")
    p.add_argument('model', metavar='MODEL_OR_ONNX', help='timm MODEL (exported on the fly) or an .onnx file')
    p.add_argument('--onnx', metavar='FILE', help='with a MODEL: compare against this ONNX file')
    p.add_argument('--data', metavar='DIR', help='ImageFolder (default: sample images bundled in the package)')
    p.add_argument('--precision', choices=['fp32', 'fp16', 'int8'],
                   help="ONNX precision (default: the file's; an FP32 file is converted)")
    p.add_argument('--calib-data', metavar='DIR', help='INT8 calibration images, disjoint from --data '
                   '(default: split --data into disjoint calibration and measurement parts)')
    add_int8_args(p, 512)
    p.add_argument('--limit', type=int, metavar='N', help='measure N images spread over the classes')
    p.add_argument('--batch-size', '-b', type=int, default=16)
    p.add_argument('--atol', type=float, help='max abs logit error (default per precision)')
    p.add_argument('--rtol', type=float, help='max relative logit error (default per precision)')
    p.add_argument('--min-top1', type=float, metavar='PCT', help='min top-1 agreement in %% (default per precision)')
    p.add_argument('--exporter', default='dynamo', choices=['dynamo', 'legacy'], help='when exporting a MODEL')
    p.add_argument('--keep-dir', metavar='DIR', help='keep the exported/converted ONNX files there')
    p.add_argument('--json', action='store_true', help='print the report as JSON')
    add_output_args(p, False, 'JSON report')
    add_model_args(p)
    add_runtime_args(p)
    p.set_defaults(func=run_parity)


@_friendly
def run_parity(args: argparse.Namespace) -> int:
    from .parity import format_report, parity
    r = parity(args.model, onnx_path=args.onnx, data=args.data, precision=args.precision, amp=args.amp,
               exporter=args.exporter, batch_size=args.batch_size, limit=args.limit, atol=args.atol,
               rtol=args.rtol, min_top1=None if args.min_top1 is None else args.min_top1 / 100.0,
               providers=args.providers, threads=args.threads, calib_data=args.calib_data,
               calib_images=args.calib_images, int8_options=int8_options(args), output=args.output,
               force=args.force, keep_dir=args.keep_dir, progress=sys.stderr.isatty(), **_model_kwargs(args))
    _note_weights(r['model'], args.model)
    if args.json:
        from .outputs import to_jsonable
        print(json.dumps(to_jsonable(r), indent=2))
    else:
        print(format_report(r))
    return 0 if r['passed'] else 1


# --- validate -----------------------------------------------------------------------------------------------
def _add_validate(sub) -> None:
    p = sub.add_parser('validate', help='top-1/top-5 accuracy on a labelled ImageFolder',
                       description='Accuracy of a MODEL (with --checkpoint) or an ONNX file of any precision.')
    p.add_argument('model', metavar='MODEL_OR_ONNX')
    p.add_argument('--data', required=True, metavar='DIR', help='labelled ImageFolder (DIR/<class>/<image>)')
    p.add_argument('--limit', type=int, metavar='N', help='N images spread over the classes')
    p.add_argument('--batch-size', '-b', type=int, default=64)
    p.add_argument('--workers', '-j', type=int, default=0, help='data loading processes')
    p.add_argument('--per-class', action='store_true', help='also per-class top-1')
    p.add_argument('--json', action='store_true', help='print the metrics as JSON')
    add_output_args(p, False, 'metrics JSON')
    add_model_args(p)
    add_runtime_args(p)
    p.set_defaults(func=run_validate)


@_friendly
def run_validate(args: argparse.Namespace) -> int:
    from .validate import format_metrics, validate
    r = validate(args.model, args.data, amp=args.amp, batch_size=args.batch_size, limit=args.limit,
                 providers=args.providers, threads=args.threads, per_class=args.per_class, output=args.output,
                 force=args.force, workers=args.workers, progress=sys.stderr.isatty(), **_model_kwargs(args))
    _note_weights(r, args.model)
    print(json.dumps(r, indent=2) if args.json else format_metrics(r))
    return 0


# --- quantize -----------------------------------------------------------------------------------------------
def _add_quantize(sub) -> None:
    p = sub.add_parser('quantize', help='INT8 (static QDQ, calibrated) or FP16 copy of an FP32 ONNX export',
                       description='INT8: ONNX Runtime static quantization (QDQ, per-channel weights, U8S8) '
                                   'calibrated on --data; FP16: float16 inside, float32 inputs/outputs.')
    p.add_argument('input', metavar='IN.onnx')
    add_output_args(p, True, 'ONNX file to write')
    p.add_argument('--precision', default='int8', choices=['int8', 'fp16'])
    p.add_argument('--data', metavar='DIR', help='INT8 calibration ImageFolder (disjoint from the test images)')
    add_int8_args(p, 512)
    p.add_argument('--batch-size', '-b', type=int, default=32)
    p.add_argument('--no-per-channel', dest='per_channel', action='store_false', help='per-tensor weight scales')
    p.add_argument('--no-preprocess', dest='preprocess', action='store_false',
                   help="skip ORT's quant_pre_process (shape inference, BN folding)")
    p.add_argument('--json', action='store_true', help='print the summary as JSON')
    p.set_defaults(func=run_quantize)


@_friendly
def run_quantize(args: argparse.Namespace) -> int:
    from .errors import DeployError
    from .quantize import convert_fp16, quantize_int8
    if args.precision == 'fp16':
        r = convert_fp16(args.input, args.output, force=args.force)
    else:
        if not args.data:
            raise DeployError('INT8 quantization needs calibration images: --data DIR (disjoint from the images '
                              'you will measure on, e.g. CIFAR-10 train)')
        r = quantize_int8(args.input, args.output, args.data, num_images=args.calib_images,
                          batch_size=args.batch_size, force=args.force, per_channel=args.per_channel,
                          preprocess=args.preprocess, progress=sys.stderr.isatty(), **int8_options(args))
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        extra = f", calibrated on {r['calib_images']} images" if args.precision == 'int8' else ', FP32 inputs/outputs'
        print(f"wrote {r['output']} ({args.precision}{extra}, {r['file_bytes'] / 1e6:.1f} MB, {r['seconds']:.1f} s)")
    return 0


# --- bench and pipeline (separate modules) -------------------------------------------------------------------
def _add_optional(sub, module: str, name: str, help_text: str) -> None:
    """Add ``name`` from ``timm_recal_deploy.<module>`` (``add_<module>_args``/``run_<module>``) if present."""
    try:
        mod = importlib.import_module(f'{__package__}.{module}')
    except ModuleNotFoundError as e:
        if e.name == f'{__package__}.{module}':
            return  # not written yet / not installed
        raise
    p = sub.add_parser(name, help=help_text)
    getattr(mod, f'add_{module}_args')(p)
    p.set_defaults(func=_friendly(getattr(mod, f'run_{module}')))


def add_parsers(sub) -> None:
    """Register every deploy subcommand on the ``timm-recal`` subparsers."""
    _add_export(sub)
    _add_parity(sub)
    _add_validate(sub)
    _add_quantize(sub)
    _add_optional(sub, 'bench', 'bench', 'throughput/latency of PyTorch and ONNX Runtime')
    _add_optional(sub, 'pipeline', 'pipeline', 'all deploy stages, report in a folder')
