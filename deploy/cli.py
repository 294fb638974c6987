"""Every ``timm-recal`` deploy verb, defined from shared argument groups (model, data, output, runtime, INT8,
timing, ``--json``), one spelling per option.

A verb is one row of ``VERBS``: its name, help, an ``add_args(parser)`` built from the groups below and a
``run(args) -> exit status``; adding a verb is adding a row (and its two functions). Argument definitions are
cheap; each ``run_*`` imports its stage when called (so ``timm-recal --help`` stays light, and a missing
onnx/onnxruntime surfaces as ``ModuleNotFoundError``, which ``timm_recal.cli.main`` turns into "install
timm-recal[deploy]"). An option's ``dest`` is the field name of the stage's options dataclass
(``options.from_args``).
"""
import argparse
import functools
import math
import os
import re
import sys
from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple

from .errors import DeployError
from .options import DEFAULT_PIPELINE_STAGES, EXPORTERS, GATE_REWRITES, PIPELINE_STAGES, TritonOptions, from_args
from .runtimes import PRECISIONS, RUNTIMES, numbers_text_hook, parse_runtimes
from .triton_backends import DEFAULT_BACKEND, TRITON_BACKENDS, triton_backend

# Only these light modules are imported here. Every stage module (export, parity, validate, quantize, bench,
# pipeline, report, info, tensorrt_build, trt_ops, triton) is imported inside the function that runs it, on
# purpose: `timm-recal --help` must not load torch/onnx/onnxruntime, and a missing extra must surface as
# ModuleNotFoundError only for the verb that needs it (see the module docstring).

__all__ = ['Verb', 'VERBS', 'add_parsers', 'add_model_args', 'add_output_args', 'add_runtime_args',
           'add_data_args', 'add_int8_args', 'add_timing_args', 'add_json_arg', 'add_engine_args',
           'add_triton_args', 'csv_list', 'positive_int',
           'non_negative_int', 'non_negative_float', 'print_result']

_PROVIDER_WORDS = {'CPUExecutionProvider': 'ort', 'CUDAExecutionProvider': 'ort_cuda',
                   'TensorrtExecutionProvider': 'ort_trt'}


# --- value types: checked at parse time -----------------------------------------------------------------------
def _number(kind: Callable[[str], Any], low: float, strict: bool, what: str) -> Callable[[str], Any]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'{text!r} is not {what}') from None
        if not math.isfinite(value):  # nan passes every comparison; inf makes a timing window endless
            raise argparse.ArgumentTypeError(f'must be a finite number, got {text}')
        if value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {low:g}, got {text}")
        return value
    parse.__name__ = what
    return parse


positive_int = _number(int, 0, True, 'a positive integer')
non_negative_int = _number(int, 0, False, 'a non-negative integer')
non_negative_float = _number(float, 0, False, 'a non-negative number')


def _percentage(text: str) -> float:
    value = non_negative_float(text)
    if value > 100:
        raise argparse.ArgumentTypeError(f'is a percentage, at most 100; got {text}')
    return value / 100.0


def csv_list(text: str):
    """``'a, b'`` -> ``['a', 'b']``: the one comma-list parser."""
    return [t.strip() for t in text.split(',') if t.strip()]


def _stages(text: str):
    """``--stages``: a non-empty comma list (an empty one would silently mean the default stages)."""
    words = csv_list(text)
    if not words:
        raise argparse.ArgumentTypeError(f"takes comma-separated stages from {','.join(PIPELINE_STAGES)}; "
                                         f'got {text!r}')
    return words


def _runtimes(text: str):
    try:
        return parse_runtimes(text)
    except DeployError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _precisions(text: str):
    words = csv_list(text)
    bad = [w for w in words if w not in PRECISIONS]
    if bad or not words:
        raise argparse.ArgumentTypeError(f"takes comma-separated words from {', '.join(PRECISIONS)}; got {text!r}")
    return words


class _Deprecated(argparse.Action):
    """An old option spelling: stores into the new option's ``dest`` and says to use the new one."""

    def __init__(self, option_strings, dest, new: str, convert: Optional[Callable[[str], Any]] = None, **kw):
        self.new, self.convert = new, convert
        super().__init__(option_strings, dest, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f'note: {option_string} is deprecated; use {self.new}', file=sys.stderr)
        setattr(namespace, self.dest, self.convert(values) if self.convert else values)


def _providers_to_runtimes(text: str):
    words = [_PROVIDER_WORDS.get(p, p) for p in csv_list(text)]
    return _runtimes(','.join(words[:1]))  # the first provider decided where ONNX Runtime ran


# --- shared argument groups -------------------------------------------------------------------------------------
def add_model_args(p: argparse.ArgumentParser, amp: bool = True) -> None:
    """``--checkpoint``, ``--use-ema``, ``--num-classes``, ``--img-size``, ``--device`` (and ``--amp``)."""
    g = p.add_argument_group('model')
    g.add_argument('--checkpoint', metavar='PATH',
                   help='weights: state dict (.pth/.safetensors), timm train.py checkpoint or save_for_hf folder')
    g.add_argument('--use-ema', action='store_true', help="use the checkpoint's state_dict_ema")
    g.add_argument('--num-classes', type=non_negative_int, metavar='N',
                   help="default: the checkpoint classifier's size")
    g.add_argument('--img-size', type=positive_int, metavar='S', help="input size S x S (default: the model's)")
    g.add_argument('--device', default='cpu', choices=['cpu', 'cuda'], help='PyTorch device (default cpu)')
    if amp:
        g.add_argument('--amp', action='store_true', help='PyTorch under autocast (bf16 on CPU, fp16 on CUDA)')


def add_output_args(p: argparse.ArgumentParser, required: bool, what: str) -> None:
    """``-o/--output`` (a file, or a folder that gets the default name) and ``--force``."""
    p.add_argument('-o', '--output', required=required, metavar='PATH', help=f'{what} (a file, or a folder)')
    p.add_argument('--force', action='store_true', help='replace an existing output')


def add_json_arg(p: argparse.ArgumentParser, what: str = 'the result') -> None:
    p.add_argument('--json', action='store_true', help=f'print {what} as JSON')


def add_runtime_args(p: argparse.ArgumentParser, default: str, many: bool = False) -> argparse._ArgumentGroup:
    """``--runtimes`` (words of the runtime table; ``--providers`` a deprecated alias) and ``--threads``."""
    g = p.add_argument_group('runtime')
    g.add_argument('--runtimes', type=_runtimes, metavar='R1,R2' if many else 'R',
                   help=f"{'runtimes' if many else 'runtime'} from {', '.join(RUNTIMES)} (default {default})")
    g.add_argument('--providers', dest='runtimes', action=_Deprecated, new='--runtimes',
                   convert=_providers_to_runtimes, help=argparse.SUPPRESS)
    g.add_argument('--threads', type=positive_int, metavar='N',
                   help="intra-op threads of torch and the runtimes (default: theirs)")
    g.add_argument('--compile-timeout', type=_number(float, 0, True, 'seconds'), metavar='S',
                   help='seconds an aoti compile (in a child process) may take before it is stopped (default 1800)')
    return g


def add_data_args(p: argparse.ArgumentParser, batch_size: Optional[int], required: bool = False,
                  data_help: str = 'ImageFolder DIR/<class>/<image> (default: sample images bundled in the '
                                   'package)') -> argparse._ArgumentGroup:
    """``--data``, and with a ``batch_size`` default ``--limit`` and ``--batch-size``."""
    g = p.add_argument_group('data')
    g.add_argument('--data', required=required, metavar='DIR', help=data_help)
    g.add_argument('--folder-order', action='store_true',
                   help="class folders whose names are not the model's labels: take their sorted order as the "
                        'class order (otherwise refused)')
    if batch_size is not None:
        g.add_argument('--limit', type=positive_int, metavar='N', help='measure N images spread over the classes')
        g.add_argument('--batch-size', '-b', type=positive_int, default=batch_size, help=f'default {batch_size}')
    return g


def add_int8_args(p: argparse.ArgumentParser, calib_images: int,
                  data_help: str = 'INT8 calibration images, disjoint from --data (default: split --data into '
                                   'disjoint calibration and measurement parts)') -> argparse._ArgumentGroup:
    """``--calib-data``, ``--calib-images``, ``--calib-method``, ``--no-moving-average``, ``--fp32-layers``."""
    g = p.add_argument_group('INT8 calibration')
    g.add_argument('--calib-data', metavar='DIR', help=data_help)
    g.add_argument('--calib-images', type=positive_int, default=calib_images, metavar='N',
                   help=f'INT8 calibration images (default {calib_images})')
    g.add_argument('--calib-method', default='minmax', choices=['minmax', 'percentile', 'entropy'],
                   help='INT8 activation ranges (default minmax)')
    g.add_argument('--no-moving-average', dest='moving_average', action='store_false',
                   help='minmax: extremes over all images instead of the average of per-batch ranges')
    g.add_argument('--fp32-layers', type=int, default=0, metavar='K',
                   help='INT8: keep the K nodes most sensitive to quantization in float (default 0); the '
                        "README's 99%% top-1 agreement recipe for the ShuffleNetV2-CIFAR weights is 48 with "
                        '--calib-method percentile')
    g.add_argument('--gates-float', action='store_true',
                   help="INT8: keep every recalibration gate's pool .. multiply branch in float (faster in "
                        'OpenVINO INT8, benchmarks/gate_speed)')
    g.add_argument('--gate-fusion', choices=GATE_REWRITES,
                   help='INT8: rewrite the gates exactly before quantizing (early_squeeze: pool the 1x1 conv input; '
                        'faster in ONNX Runtime INT8)')
    g.add_argument('--symmetric', action='store_true',
                   help='INT8: signed activations with zero points of 0 and symmetric weights (the QDQ form '
                        "TensorRT's ONNX parser needs)")
    return g


def add_timing_args(p: argparse.ArgumentParser, optional: bool = False) -> argparse._ArgumentGroup:
    """``--batch``, ``--warmup``, ``--repeats``, ``--min-time`` (``optional``: no defaults, the caller's apply)."""
    g = p.add_argument_group('timing')
    g.add_argument('--batch', dest='batches', default='1,16', help='comma-separated batch sizes (default 1,16)')
    g.add_argument('--warmup', type=non_negative_int, default=None if optional else 3,
                   help='untimed calls per runner and batch' + ('' if optional else ' (default 3)'))
    g.add_argument('--repeats', type=positive_int, default=None if optional else 5,
                   help='interleaved timing windows per runner' + ('' if optional else ' (default 5)'))
    g.add_argument('--min-time', dest='min_time_s', type=non_negative_float, default=None if optional else 1.0,
                   help='seconds per timing window' + ('' if optional else ' (default 1.0)'))
    g.add_argument('--keep-freed-memory', action='store_true', default=None if optional else False,
                   help="glibc: keep freed memory for the next call instead of mmapping big blocks afresh (what "
                        "jemalloc/tcmalloc do; PyTorch's large-batch calls page-fault without it); recorded")
    return g


def _batch_sizes(text: str):
    try:
        return [positive_int(w) for w in csv_list(text)]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f'takes positive integers like 8,16; got {text!r}') from None


def add_engine_args(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """How a TensorRT engine is built: ``--batch`` (its profile), ``--precision``, ``--workspace``,
    ``--timing-cache``, ``--tf32``, ``--no-op-check``, ``--verbose`` (``tensorrt_build.build_engine`` keywords)."""
    g = p.add_argument_group('TensorRT engine')
    g.add_argument('--batch', metavar='N|MIN,OPT,MAX',
                   help='optimization profile over the batch axis (default: the ONNX fixed batch, else 1,16,64)')
    g.add_argument('--precision', choices=['fp32', 'fp16', 'int8'],
                   help="default: the ONNX file's own. fp16 from an FP32 file uses TensorRT 10's FP16 flag; "
                        'TensorRT 11 takes precision from the file only (quantize --precision fp16 first); int8 '
                        'needs the QDQ file from quantize')
    g.add_argument('--workspace', dest='workspace_mb', type=positive_int, metavar='MiB',
                   help='builder workspace limit in MiB')
    g.add_argument('--timing-cache', metavar='PATH', help='timing cache file, read if present and updated')
    g.add_argument('--tf32', action='store_true', help='allow TF32 in FP32 layers (default off: exact FP32)')
    g.add_argument('--no-op-check', dest='check_ops', action='store_false',
                   help='build even if the static operator check fails')
    g.add_argument('--verbose', action='store_true', help="TensorRT's log")
    return g


def _engine_kwargs(args: argparse.Namespace) -> dict:
    return {k: getattr(args, k) for k in ('batch', 'precision', 'workspace_mb', 'timing_cache', 'tf32', 'verbose',
                                          'check_ops', 'force') if hasattr(args, k)}


def add_triton_args(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """A Triton model repository: ``--backend`` (Triton's names), batching and instances (``TritonOptions``)."""
    g = p.add_argument_group('Triton repository')
    g.add_argument('--backend', default=DEFAULT_BACKEND, choices=list(TRITON_BACKENDS),
                   help='Triton backend: onnxruntime = our runtime ort (KIND_CPU), tensorrt = trt (KIND_GPU, '
                        'a .plan built by the engine stage), openvino = openvino (KIND_CPU), pytorch = aoti '
                        '(platform torch_aoti, Triton 26.03+, a .pt2; max_batch_size 0); default onnxruntime')
    g.add_argument('--max-batch-size', type=non_negative_int, default=64,
                   help='Triton max_batch_size (0: no batching; default 64)')
    g.add_argument('--preferred-batch-sizes', type=_batch_sizes, default=[], metavar='B1,B2',
                   help='dynamic batcher preferred sizes')
    g.add_argument('--queue-delay-us', type=non_negative_int, default=100,
                   help='dynamic batcher max queue delay in microseconds (default 100)')
    g.add_argument('--instances', type=positive_int, default=1, help='instance group count (default 1)')
    return g


def _require_trt_runtime(args: argparse.Namespace) -> None:
    """``--runtimes trt`` on a machine without TensorRT or a GPU: say which is missing before any work."""
    if 'trt' in (getattr(args, 'runtimes', None) or []):
        from .tensorrt_build import require_tensorrt
        require_tensorrt()


def print_result(result: Any, as_json: bool, text: Callable[[Any], str]) -> None:
    """``--json``: the result as its ``-o`` file records it (``timm_recal.outputs.json_text``: paths relative to
    the working folder, as the user typed them); else its text form."""
    from timm_recal.outputs import json_text
    print(json_text(result) if as_json else text(result))


def _note_weights(weights: Optional[str], spec: str) -> None:
    if weights == 'random':
        print(f'note: {spec} has no weights (no --checkpoint, no pretrained tag): randomly initialized',
              file=sys.stderr)


def _progress() -> bool:
    return sys.stderr.isatty()


# --- the verbs ------------------------------------------------------------------------------------------------
def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument('model', metavar='MODEL', help='timm name[.tag], hf-hub:ORG/REPO or local-dir:FOLDER')
    add_output_args(p, True, 'ONNX file to write')
    add_model_args(p, amp=False)
    g = p.add_argument_group('export')
    g.add_argument('--exporter', default='dynamo', choices=EXPORTERS,
                   help='torch.onnx exporter: dynamo (default, torch.export) or legacy (TorchScript)')
    g.add_argument('--opset', type=positive_int, default=18, help='ONNX opset (default 18; dynamo needs >= 18)')
    g.add_argument('--slim', action='store_true', help='simplify the graph with onnxslim')
    g.add_argument('--gate-fusion', choices=GATE_REWRITES,
                   help='rewrite the recalibration gates exactly in the file (early_squeeze: pool the 1x1 conv input '
                        'instead of its output; faster in OpenVINO FP32/BF16 at batch 16, benchmarks/gate_speed)')
    g.add_argument('--verbose', action='store_true', help="show the exporter's own output")
    g = p.add_argument_group('aoti (--format aoti: an AOTInductor package, .pt2)')
    g.add_argument('--format', default='onnx', choices=('onnx', 'aoti'),
                   help='onnx (default) or aoti: torch.export (dynamic batch) + AOTInductor, compiled in a child '
                        'process for --device and cached')
    g.add_argument('--precision', default='fp32', choices=('fp32', 'bf16', 'fp16'),
                   help='aoti: fp32, bf16 (a CPU with native BF16, or CUDA) or fp16 (CUDA); weights and inputs')
    g.add_argument('--max-batch', type=positive_int, default=1024, metavar='N', help='aoti: batches 1..N (1024)')
    g.add_argument('--static-batches', type=_static_batches, default=None, metavar='N,..',
                   help='aoti: batches also compiled as static models in the package, which the aoti runner uses '
                        'for them (a dynamic batch costs most of a small batch\'s speed on CPU); default 1 on CPU, '
                        'none on CUDA (where small batches replay a CUDA graph); "none" for none')
    g.add_argument('--compile-timeout', type=_number(float, 0, True, 'seconds'), metavar='S',
                   help='aoti: seconds the compile may take before it is stopped (default 1800)')
    add_json_arg(p, 'the summary')


def _static_batches(text: str) -> Tuple[int, ...]:
    if text.strip().lower() == 'none':
        return ()
    try:
        batches = tuple(sorted({int(t) for t in text.split(',') if t.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f'wants comma-separated batch sizes or none, got {text!r}') from None
    if not batches or min(batches) < 1:
        raise argparse.ArgumentTypeError(f'wants batch sizes >= 1 or none, got {text!r}')
    return batches


def _run_export_aoti(args: argparse.Namespace) -> int:
    from .aoti_package import AotiExportOptions, export_aoti
    if args.exporter != 'dynamo' or args.slim or args.gate_fusion or args.opset != 18:
        raise DeployError('--exporter, --opset, --slim and --gate-fusion shape ONNX files, not --format aoti')
    r = export_aoti(args.model, options=from_args(AotiExportOptions, args),
                    log=lambda msg: print(msg, file=sys.stderr, flush=True))
    _note_weights(r.weights, args.model)
    print_result(r, args.json, lambda r: (
        f"wrote {r.output} ({r.architecture}, AOTInductor, {r.precision} {r.memory_format} on {r.device}, torch "
        f"{r.torch}, batch {r.batch_range[0]}..{r.batch_range[1]}"
        + ''.join(f', static batch {b}' for b in r.static_batches) + f", {r.file_bytes / 1e6:.1f} MB, "
        + ('from the compile cache)' if r.cached else f'compiled in {r.compile_seconds:.0f} s)')))
    return 0


#: ``export`` options of ``--format aoti`` alone (``dest`` -> flag): an ONNX export refuses them, as the aoti
#: format refuses the ONNX-only ones (``_run_export_aoti``)
_AOTI_ONLY = {'max_batch': '--max-batch', 'static_batches': '--static-batches', 'compile_timeout': '--compile-timeout'}


@functools.lru_cache(maxsize=None)
def _export_defaults() -> argparse.Namespace:
    """The ``export`` verb's defaults, to tell an option given from one left alone."""
    p = argparse.ArgumentParser(add_help=False)
    _export_args(p)
    return p.parse_args(['MODEL', '-o', 'x'])


def run_export(args: argparse.Namespace) -> int:
    from .export import ExportOptions, export_onnx
    if args.format == 'aoti':
        return _run_export_aoti(args)
    given = [flag for dest, flag in _AOTI_ONLY.items() if getattr(args, dest) != getattr(_export_defaults(), dest)]
    if given:
        raise DeployError(f"{', '.join(given)} {'shapes' if len(given) == 1 else 'shape'} an AOTInductor package "
                          '(--format aoti), not an ONNX file')
    if args.precision != 'fp32':
        raise DeployError('an ONNX export is FP32; make FP16/INT8 files with timm-recal quantize')
    r = export_onnx(args.model, options=from_args(ExportOptions, args),
                    log=lambda msg: print(msg, file=sys.stderr, flush=True))
    _note_weights(r.weights, args.model)
    print_result(r, args.json, lambda r: (
        f"wrote {r.output} ({r.architecture}, {r.exporter} exporter, opset {r.opset}, input "
        f"{'x'.join(map(str, r.input_size))}, {r.num_classes} classes, {r.file_bytes / 1e6:.1f} MB, "
        f"{r.export_seconds:.1f} s)" + (f"; gates rewritten: {', '.join(f'{k} {v}' for k, v in r.gate_fusion.items())}"
                                        if r.gate_fusion else '')))
    return 0


def _parity_args(p: argparse.ArgumentParser) -> None:
    p.add_argument('model', metavar='MODEL_OR_ONNX', help='timm MODEL (exported on the fly) or an .onnx file')
    p.add_argument('--onnx', dest='onnx_path', metavar='FILE', help='with a MODEL: compare against this ONNX file')
    p.add_argument('--precision', choices=PRECISIONS,
                   help="ONNX precision (default: the file's; an FP32 file is converted)")
    add_data_args(p, 16)
    add_int8_args(p, 512)
    g = p.add_argument_group('gates')
    g.add_argument('--atol', type=non_negative_float, help='max abs logit error (default per precision)')
    g.add_argument('--rtol', type=non_negative_float, help='max relative logit error (default per precision)')
    g.add_argument('--min-top1', type=_percentage, metavar='PCT',
                   help='min top-1 agreement in %% (default per precision)')
    g = p.add_argument_group('export')
    g.add_argument('--exporter', default='dynamo', choices=EXPORTERS, help='when exporting a MODEL')
    g.add_argument('--keep-dir', metavar='DIR', help='keep the exported/converted ONNX files there')
    add_json_arg(p, 'the report')
    add_output_args(p, False, 'JSON report')
    add_model_args(p)
    add_runtime_args(p, 'ort')


def run_parity(args: argparse.Namespace) -> int:
    _require_trt_runtime(args)
    from .parity import ParityOptions, format_report, parity
    o = from_args(ParityOptions, args)
    o.progress = _progress()
    r = parity(args.model, args.onnx_path, o)
    _note_weights(r.model.get('weights'), args.model)
    print_result(r, args.json, format_report)
    return 0 if r.passed else 1


def _validate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument('model', metavar='MODEL_OR_ONNX')
    add_data_args(p, 64, required=True, data_help='labelled ImageFolder (DIR/<class>/<image>)')
    p.add_argument('--workers', '-j', type=non_negative_int, default=0, help='data loading processes')
    p.add_argument('--per-class', action='store_true',
                   help='also per-class top-1: a table, worst class first (the 10 worst of more than 20; '
                        'every class in --json/-o)')
    g = p.add_argument_group('paired comparison')
    g.add_argument('--compare', metavar='MODEL_OR_ONNX',
                   help="a second model or file on the same images: both top-1s, McNemar's exact test and a "
                        'bootstrap 95%% CI of the top-1 difference (MODEL minus this)')
    g.add_argument('--compare-checkpoint', metavar='PATH', help='weights for the --compare model')
    g.add_argument('--resamples', type=positive_int, default=10_000, metavar='N',
                   help='bootstrap resamples (default 10000)')
    g.add_argument('--seed', type=non_negative_int, default=0, metavar='N', help='bootstrap seed (default 0)')
    add_json_arg(p, 'the metrics')
    add_output_args(p, False, 'metrics JSON')
    add_model_args(p)
    add_runtime_args(p, 'eager for a MODEL, ort for an ONNX file')


def run_validate(args: argparse.Namespace) -> int:
    _require_trt_runtime(args)
    from .validate import ValidateOptions, format_metrics, validate
    o = from_args(ValidateOptions, args)
    o.progress = _progress()
    r = validate(args.model, args.data, o)
    _note_weights(r.weights, args.model)
    if r.compare is not None:
        _note_weights(r.compare.weights, args.compare)
    print_result(r, args.json, format_metrics)
    return 0


def _quantize_args(p: argparse.ArgumentParser) -> None:
    p.add_argument('input', metavar='IN.onnx')
    add_output_args(p, True, 'ONNX file to write')
    p.add_argument('--precision', default='int8', choices=['int8', 'fp16'])
    g = add_int8_args(p, 512, data_help='INT8 calibration ImageFolder (disjoint from the test images)')
    g.add_argument('--data', dest='calib_data', action=_Deprecated, new='--calib-data', help=argparse.SUPPRESS)
    g.add_argument('--batch-size', '-b', type=positive_int, default=32)
    g.add_argument('--float-gates-from', metavar='REPORT',
                   help='keep in float the gates that `timm-recal inspect FILE.onnx` ranks most damaged (its '
                        'gate_diff.json or folder)')
    g.add_argument('--float-gates', type=non_negative_int, metavar='K',
                   help='with --float-gates-from: the K most damaged gates (default: those the report marks damaged)')
    g.add_argument('--no-per-channel', dest='per_channel', action='store_false', help='per-tensor weight scales')
    g.add_argument('--no-preprocess', dest='preprocess', action='store_false',
                   help="skip ORT's quant_pre_process (shape inference, BN folding)")
    add_json_arg(p, 'the summary')


def run_quantize(args: argparse.Namespace) -> int:
    from .quantize import QuantizeOptions, quantize
    o = from_args(QuantizeOptions, args)
    o.progress = _progress()
    if o.precision == 'int8' and not o.calib_data:
        raise DeployError('INT8 quantization needs calibration images: --calib-data DIR (disjoint from the images '
                          'you will measure on, e.g. CIFAR-10 train)')
    r = quantize(args.input, args.output, o)
    extra = (f", calibrated on {r.quantization['calib_images']} images" if r.precision == 'int8'
             else ', FP32 inputs/outputs')
    print_result(r, args.json, lambda r: f"wrote {r.output} ({r.precision}{extra}, {r.file_bytes / 1e6:.1f} MB, "
                                         f"{r.seconds:.1f} s)")
    return 0


def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument('target', metavar='MODEL_OR_FILE',
                   help='timm name, hf-hub:ORG/REPO, local-dir:FOLDER, FILE.onnx or a compiled FILE.pt2')
    p.add_argument('--compare', metavar='MODEL_OR_FILE', help='a second model or file, timed interleaved')
    p.add_argument('--precision', dest='precisions', type=_precisions, default=None, metavar='P1,P2',
                   help=f"precisions to time for a MODEL: {','.join(PRECISIONS)} (default fp32); bf16 is OpenVINO's "
                        'hint on the FP32 file and eager CPU autocast (ONNX Runtime has none: skipped with a note); '
                        'openvino int8 times the faster of our QDQ file and an NNCF IR that passes 99%% agreement; '
                        'a .pt2 runs at the precision it was built for, which a given list must include')
    p.add_argument('--onnx', nargs='+', metavar='FILE', help="MODEL's ONNX files to time instead of exporting")
    p.add_argument('--compare-checkpoint', metavar='PATH', help='weights for the --compare model')
    p.add_argument('--compare-onnx', nargs='+', metavar='FILE', help="the --compare model's ONNX files")
    add_runtime_args(p, 'eager,eager_cl,ort; with --device cuda eager,eager_cl,ort_cuda,ort_trt', many=True)
    add_timing_args(p)
    add_int8_args(p, 64, data_help='calibration images (default: the bundled samples)')
    add_model_args(p)
    add_output_args(p, False, 'bench JSON to write')
    add_json_arg(p, 'the record')


def run_bench(args: argparse.Namespace) -> int:
    _require_trt_runtime(args)
    from .bench import BenchOptions, bench
    from .report import bench_results_markdown
    r = bench(args.target, from_args(BenchOptions, args), log=lambda msg: print(msg, file=sys.stderr, flush=True))
    print_result(r, args.json, lambda r: bench_results_markdown(r.to_dict()) + _extra_numbers_text(r))
    if r.output:
        print(f'wrote {r.output}', file=sys.stderr)
    return 0


def _pipeline_args(p: argparse.ArgumentParser) -> None:
    p.add_argument('model', nargs='?', metavar='MODEL',
                   help='timm name, hf-hub:ORG/REPO or local-dir:FOLDER (default: the bundled trained model)')
    p.add_argument('--compare', metavar='BASE', help='a base model run through the same stages and benchmarked beside')
    p.add_argument('--compare-checkpoint', metavar='PATH', help='weights for the --compare model')
    p.add_argument('-o', '--output', required=True, metavar='DIR',
                   help='output folder (ONNX files, one JSON per stage, report.md, report.json, throughput.png)')
    p.add_argument('--force', action='store_true', help='replace the folder of an earlier run, all of it')
    g = p.add_argument_group('stages')
    g.add_argument('--stages', type=_stages, metavar='S1,S2',
                   help=f"stages to run, from {','.join(PIPELINE_STAGES)} (default "
                        f"{','.join(DEFAULT_PIPELINE_STAGES)}; export always runs). engine builds a TensorRT "
                        'engine of each ONNX file; where TensorRT or a GPU is missing it is reported as skipped '
                        'with the reason and does not fail the run. triton writes a Triton repository of the '
                        'FP32 export (--backend; tensorrt serves the FP32 engine, pytorch an AOTInductor package '
                        'of the model, compiled once and cached)')
    g.add_argument('--no-validate', dest='skip', action='append_const', const='validate',
                   help='skip the validation stage (alias of --stages without validate)')
    g.add_argument('--no-bench', dest='skip', action='append_const', const='bench',
                   help='skip the bench stage (alias of --stages without bench)')
    g.add_argument('--precision', dest='precisions', type=_precisions, default=list(PRECISIONS), metavar='P1,P2',
                   help='fp32 plus any of fp16,bf16,int8 (default all; bf16 runs the FP32 file under OpenVINO\'s '
                        'BF16 hint and eager CPU autocast; ONNX Runtime has none)')
    g.add_argument('--exporter', default='dynamo', choices=EXPORTERS)
    add_data_args(p, None, data_help='images for parity and validation, DIR/<class>/<image> (default: the bundled '
                                     'samples)')
    add_int8_args(p, 512, data_help='INT8 calibration images, disjoint from --data (default: half of --data)')
    add_runtime_args(p, 'see timm-recal bench --help', many=True)
    g = add_timing_args(p, optional=True)
    speed = g.add_mutually_exclusive_group()
    speed.add_argument('--quick', dest='quick', action='store_true', default=None,
                       help='short timing windows (the default without MODEL)')
    speed.add_argument('--full', dest='quick', action='store_false', help='full timing (the default with MODEL)')
    add_model_args(p)
    add_triton_args(p)
    add_json_arg(p, 'the record')


def run_pipeline(args: argparse.Namespace) -> int:
    """Exit 0 when every check passed, 1 when a parity check or a stage failed."""
    _require_trt_runtime(args)
    from .pipeline import PipelineOptions, pipeline
    o = from_args(PipelineOptions, args)
    stages = list(DEFAULT_PIPELINE_STAGES) if args.stages is None else args.stages
    o.stages = [s for s in stages if s not in (args.skip or [])]
    r = pipeline(args.model, args.output, o, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    for note in r.notes:
        print(f'note: {note}', file=sys.stderr)
    print_result(r, args.json, lambda r: f"report: {r.report['md']}" if r.report else f'wrote {r.output_dir}')
    if not r.passed:
        print(f"FAILED: {', '.join(r.failed_stages)}", file=sys.stderr)
        return 1
    return 0


def _extra_numbers_text(record: Any) -> str:
    """``bench``'s text after its tables: each row's ``extra_numbers`` in the record as its ``numbers_text`` hook
    shows them (``trt``: trtexec's summary lines); a hook's module is imported only when its numbers are there."""
    text = ''
    for word, spec in RUNTIMES.items():
        numbers = record.get(spec.extra_numbers[0]) if spec.extra_numbers else None
        hook = numbers_text_hook(word) if numbers else None
        text += hook[1](numbers) if hook else ''
    return text


def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument('kind', choices=['table', 'details'],
                   help="table: the README's ratio table of bench JSON files; details: every table of each file")
    p.add_argument('files', nargs='+', metavar='BENCH.json', help='bench JSON files (timm-recal bench -o)')
    onnx_words = [w for w, r in RUNTIMES.items() if r.kind == 'onnx']
    p.add_argument('--runtimes', default='ort', choices=onnx_words, help='the runtime of the table (default ort)')
    p.add_argument('--runtime', dest='runtimes', action=_Deprecated, new='--runtimes', help=argparse.SUPPRESS)


def run_report(args: argparse.Namespace) -> int:
    from .report import report_files
    print(report_files(args.kind, args.files, args.runtimes))
    return 0


def _info_args(p: argparse.ArgumentParser) -> None:
    p.add_argument('file', metavar='FILE.onnx')
    add_json_arg(p, 'the description')


def run_info(args: argparse.Namespace) -> int:
    from .info import format_info, inspect_onnx
    if args.file.lower().endswith('.pt2'):
        from .aoti_package import inspect_package
        r = inspect_package(args.file)
        print_result(r, args.json, lambda r: '\n'.join(
            [f"{args.file}: AOTInductor package, {r['file_bytes'] / 1e6:.1f} MB; loads here: {r['loads_here']}"]
            + [f'  {k}: {v}' for k, v in r['metadata'].items()]))
        return 0
    print_result(inspect_onnx(args.file), args.json, format_info)
    return 0


def _engine_verb_args(p: argparse.ArgumentParser) -> None:
    p.add_argument('onnx', metavar='IN.onnx', help='an exported ONNX file (export or quantize output)')
    add_output_args(p, False, 'engine file to write, with its sidecar OUT.plan.json')
    g = p.add_argument_group('static check')
    g.add_argument('--check-only', action='store_true',
                   help="static check of the ONNX ops against TensorRT's documented parser support; writes "
                        'nothing, needs neither TensorRT nor a GPU')
    g.add_argument('--trt-major', type=int, choices=[10, 11],
                   help='TensorRT major version for --check-only (default: the installed one, else 10)')
    add_engine_args(p)
    add_json_arg(p, 'the result')


def run_engine(args: argparse.Namespace) -> int:
    from .tensorrt_build import build_engine, import_tensorrt, require_tensorrt, tensorrt_major
    if args.check_only:
        from .trt_ops import check_onnx_for_tensorrt
        major = args.trt_major
        if major is None:
            trt, _ = import_tensorrt()
            major = tensorrt_major(trt) if trt is not None else 10
        r = check_onnx_for_tensorrt(args.onnx, major)
        print_result(r, args.json, lambda r: r.summary())
        return 0 if r.passed else 1
    if not args.output:
        raise DeployError('an output path is required (-o/--output OUT.plan), or pass --check-only')
    require_tensorrt()  # which of TensorRT / a GPU is missing, before anything is read or written
    r = build_engine(args.onnx, args.output, **_engine_kwargs(args))
    if args.json:
        print_result(r, True, str)
    else:
        prof = r['profile']
        print(f"wrote {r['output']} and {r['sidecar']} (TensorRT {r['tensorrt_version']}, {r['gpu']['name']} "
              f"sm {r['gpu']['compute_capability']}, {r['precision']}, batch {prof['min'][0]}/{prof['opt'][0]}/"
              f"{prof['max'][0]}, {r['plan_bytes'] / 1e6:.1f} MB, {r['build_seconds']:.1f} s)")
    return 0


def _triton_verb_args(p: argparse.ArgumentParser) -> None:
    p.add_argument('source', metavar='SOURCE',
                   help='an exported .onnx file, a TensorRT .plan (with its sidecar), or a MODEL spec (timm '
                        'name[.tag], hf-hub:..., local-dir:...) exported first; for --backend tensorrt an ONNX '
                        'file or MODEL is built into an engine first')
    add_output_args(p, False, 'model repository folder to write (REPO_DIR)')
    p.add_argument('--name', help='model name in the repository (default: the architecture)')
    p.add_argument('--client-example', action='store_true',
                   help='print a tritonclient script that returns the top-5 labels of an image, and write nothing')
    add_triton_args(p)
    add_model_args(p, amp=False)
    p.add_argument('--exporter', default='dynamo', choices=EXPORTERS, help='when exporting a MODEL')
    add_engine_args(p)
    add_json_arg(p, 'the summary')


@functools.lru_cache(maxsize=None)
def _triton_parser() -> argparse.ArgumentParser:
    """The ``triton`` verb's parser alone: each option's spelling and default, by ``dest``."""
    p = argparse.ArgumentParser(add_help=False)
    _triton_verb_args(p)
    return p


def _check_triton_steps(args: argparse.Namespace, backend: str, batching: bool = True) -> None:
    """Refuse, before any work, options of a step that serving ``args.source`` with ``backend`` does not take
    (``triton_backends.triton_steps``): a model's options for a file, an engine's for a file not built, batching
    for a backend that does not batch. Each would be silently ignored."""
    from .triton_backends import STEP_OPTIONS, source_kind, steps_text, triton_steps
    row = triton_backend(backend)
    steps = triton_steps(row, source_kind(args.source))
    spelling = {a.dest: a.option_strings[0] for a in _triton_parser()._actions if a.option_strings}

    def given(dests) -> str:
        flags = [spelling[d] for d in dict.fromkeys(dests) if getattr(args, d, None) != _triton_parser().get_default(d)
                 and not (d == 'max_batch_size' and args.max_batch_size == 0)]  # 0: what a non-batching row writes
        return ', '.join(flags) + (' does' if len(flags) == 1 else ' do') if flags else ''

    if not batching and given(STEP_OPTIONS['batching']):  # the example writes no config.pbtxt
        raise DeployError(f"{given(STEP_OPTIONS['batching'])} not apply with --client-example, which prints a "
                          'client and writes no repository')
    taken = {d for s in steps for d in STEP_OPTIONS[s]}
    flags = given(d for ds in STEP_OPTIONS.values() for d in ds if d not in taken)
    if flags:
        raise DeployError(f'{flags} not apply: {args.source} {steps_text(row, steps)}')


def _scratch_named(error: BaseException, work: str, output: str) -> BaseException:
    """A write error inside the scratch folder, naming the output the user gave instead of a hidden file."""
    from timm_recal.outputs import OutputWriteError
    if isinstance(error, OSError) and work in str(error):
        return OutputWriteError(re.sub(re.escape(work) + r'[^\s:]*', lambda m: output, str(error)))
    return error


def run_triton(args: argparse.Namespace) -> int:
    from timm_recal.outputs import temporary_folder
    from .export import ExportOptions
    from .triton import artifact_io, triton_artifact, triton_client_example, triton_model_name, write_triton_repository
    from .triton_backends import check_batching
    o = from_args(TritonOptions, args)
    if args.name is not None:
        triton_model_name(args.name, {}, args.source)  # a name the repository could not hold: before any export
    if not args.client_example and not args.output:
        raise DeployError('an output folder is required (-o/--output REPO_DIR), or pass --client-example')
    backend = DEFAULT_BACKEND if args.client_example else o.backend  # the example needs the I/O names only
    _check_triton_steps(args, backend, batching=not args.client_example)
    if triton_backend(backend).batching and not args.client_example:
        check_batching(o.max_batch_size, o.preferred_batch_sizes, o.queue_delay_us, o.instances)
    engine = _engine_kwargs(args)
    if engine.get('batch') is None and o.max_batch_size:  # the engine must take every batch Triton may send
        engine['batch'] = f'1,{min(16, o.max_batch_size)},{o.max_batch_size}'
    if not args.client_example:  # before the export: an existing or unwritable folder costs nothing
        from timm_recal.outputs import OutputExistsError, check_writable_folder
        if os.path.lexists(args.output) and not args.force:
            raise OutputExistsError(f'{args.output} exists; pass --force to replace it')
        check_writable_folder(os.path.dirname(os.path.abspath(args.output)), target=args.output)
    with temporary_folder('timm-recal-triton-') as work:
        export = from_args(ExportOptions, args)
        export.output, export.force = None, False
        try:
            artifact = triton_artifact(args.source, backend, work, export_options=export,
                                       engine_options=dict(engine, force=False),
                                       log=lambda m: print(m, file=sys.stderr, flush=True))
        except OSError as e:  # a full disk or a size limit while exporting: the user's folder named
            raise _scratch_named(e, work, args.output or args.source) from None
        if args.client_example:
            meta = artifact_io(artifact)['metadata']
            print(triton_client_example(triton_model_name(args.name, meta, artifact), meta))
            return 0
        r = write_triton_repository(artifact, args.output, backend=o.backend, name=args.name,
                                    max_batch_size=o.max_batch_size, preferred_batch_sizes=o.preferred_batch_sizes,
                                    max_queue_delay_us=o.queue_delay_us, instance_count=o.instances,
                                    force=args.force)
    if args.json:
        print_result(r, True, str)
    else:
        print(f"wrote {r['repository']} (model {r['model_name']}, backend {r['backend']} = runtime {r['runtime']}); "
              f"serve with: {r['serve']}")
    return 0


def _inspect_args(p: argparse.ArgumentParser) -> None:
    p.add_argument('model', metavar='MODEL_OR_ONNX',
                   help='a MODEL with recalibration gates (ours or timm SE-style), or an ONNX file to compare gate by '
                        'gate with its PyTorch model')
    p.add_argument('--reference', metavar='MODEL', help='with an ONNX file: the PyTorch model it was exported from '
                                                        '(default: the one its metadata records)')
    p.add_argument('--precision', choices=PRECISIONS,
                   help="with an ONNX file: the runtime's precision (default the file's; bf16 needs --runtimes "
                        'openvino)')
    add_data_args(p, 64, required=True, data_help='labelled ImageFolder (DIR/<class>/<image>)')
    g = p.add_argument_group('analyses')
    g.add_argument('--no-importance', dest='importance', action='store_false',
                   help='skip the channel-zeroing curves (11 passes over the images)')
    g.add_argument('--no-cost', dest='cost', action='store_false', help='skip parameters, MACs and time shares')
    g.add_argument('--no-ort-profile', dest='ort_profile', action='store_false',
                   help='time shares in PyTorch only (no ONNX export and ONNX Runtime profile)')
    add_output_args(p, True, 'output folder (OUT_DIR)')
    add_json_arg(p, 'the result')
    add_model_args(p, amp=False)
    add_runtime_args(p, 'ort (for an ONNX file)')


def run_inspect(args: argparse.Namespace) -> int:
    from .inspect_gates import GateDiffResult, InspectOptions, format_gate_diff, format_inspect, inspect
    o = from_args(InspectOptions, args)
    o.progress = _progress()
    r = inspect(args.model, o)
    print_result(r, args.json, format_gate_diff if isinstance(r, GateDiffResult) else format_inspect)
    return 0


@dataclass(frozen=True)
class Verb:
    """One ``timm-recal`` deploy verb."""
    name: str
    help: str
    add_args: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str = ''


#: every deploy verb; a new verb is one more row
VERBS = (
    Verb('export', 'export a timm model to one ONNX file (metadata inside)', _export_args, run_export,
         'Export MODEL (timm name[.tag], hf-hub:..., local-dir:...) to ONNX: dynamic batch axis, onnx.checker '
         'full check, preprocessing in the metadata.'),
    Verb('parity', 'PyTorch vs a runtime on real images (FP32/FP16/INT8 tolerances)', _parity_args, run_parity,
         "Compare PyTorch logits with an ONNX file's under a runtime, on real images through the model's timm "
         'preprocessing. Exit 1 when a tolerance is exceeded.'),
    Verb('validate', 'top-1/top-5 accuracy on a labelled ImageFolder', _validate_args, run_validate,
         'Accuracy of a MODEL (with --checkpoint) or an ONNX file of any precision, under one runtime.'),
    Verb('quantize', 'INT8 (static QDQ, calibrated) or FP16 copy of an FP32 ONNX export', _quantize_args,
         run_quantize, 'INT8: ONNX Runtime static quantization (QDQ, per-channel weights, U8S8) calibrated on '
         '--calib-data; FP16: float16 inside, float32 inputs/outputs.'),
    Verb('bench', 'throughput/latency under every runtime of --runtimes', _bench_args, run_bench,
         'Images/s and latency p50/p90/p99 per runtime over a batch sweep; --compare times a second model or file '
         'interleaved and reports ratios.'),
    Verb('pipeline', 'the deploy stages for one model, report in a folder', _pipeline_args, run_pipeline,
         'Export, quantize (FP16, INT8), parity, validation, bench and a Markdown report with a throughput plot, '
         'for MODEL and optionally a base model (--compare). Without MODEL: the bundled default model and sample '
         'images, offline, in a few minutes on 2 CPU cores.'),
    Verb('report', 'Markdown tables from bench JSON files', _report_args, run_report,
         "The README's ratio table (table) or every table (details) of timm-recal bench -o files."),
    Verb('info', 'what an ONNX file is: metadata, inputs/outputs, opset, precision, ops, size', _info_args, run_info,
         'Describe an ONNX file: its metadata, inputs and outputs, opsets, precision, node counts by op type and '
         'file size, as text or --json, and the static TensorRT 10/11 operator check.'),
    Verb('engine', 'build a TensorRT engine (plan + sidecar JSON) from an ONNX file; --check-only anywhere',
         _engine_verb_args, run_engine,
         'Build a TensorRT engine from an ONNX export (TensorRT 10.x or 11.x, a CUDA GPU): an optimization profile '
         'over the batch axis, a workspace limit, a reusable timing cache, and a sidecar OUT.plan.json (TensorRT '
         'version, GPU, profile, precision, SHA-256 of the ONNX) that loading checks. --check-only runs the static '
         'ONNX operator check alone, without TensorRT or a GPU. Without them a build says which is missing and '
         'how to install it, and writes nothing.'),
    Verb('triton', 'a Triton Inference Server model repository for a model, ONNX file or engine', _triton_verb_args,
         run_triton,
         "Write REPO_DIR/<name>/config.pbtxt, REPO_DIR/<name>/1/model.onnx|model.plan and labels.txt (Triton's "
         "classification extension). Backends use Triton's names: onnxruntime (our runtime ort), tensorrt (trt), "
         'openvino (openvino). --client-example prints the tritonclient request for the top-5 labels.'),
    Verb('inspect', "what a model's gates do and cost, or how a deployed file changes them, gate by gate",
         _inspect_args, run_inspect,
         "MODEL: forward hooks on every gate over a labelled ImageFolder: excitation statistics per class (Hu et "
         "al. 7.2), channel-zeroing curves (Singh et al. Table 16), parameters, MACs and time shares (PyTorch "
         "profiler, ONNX Runtime profile); PNGs, JSON and Markdown in OUT_DIR. FILE.onnx: the file's gate outputs "
         "(ONNX Runtime or OpenVINO, any precision) against PyTorch FP32 on the same images, per gate, and which "
         "gate the precision damages first (quantize --float-gates-from reads it)."),
)


def _friendly(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """OS errors (permissions, disk full) as one-line messages like every DeployError."""
    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> int:
        try:
            status = fn(args)
            sys.stdout.flush()  # here, not at exit: a closed pipe is then one more case below
            return status
        except (FileNotFoundError, FileExistsError, ModuleNotFoundError):
            raise
        except BrokenPipeError:  # stdout closed by its reader (`| head`): stop quietly, as Unix tools do
            _silence_stdout()
            return 128 + 13  # what a shell reports for a tool that SIGPIPE ended
        except OSError as e:
            raise DeployError(str(e)) from None
    return run


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the flush at exit does not raise a second BrokenPipeError."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # a stdout without a file descriptor (captured in tests)
        pass


def add_parsers(sub) -> None:
    """Register every deploy verb on the ``timm-recal`` subparsers."""
    for verb in VERBS:
        p = sub.add_parser(verb.name, help=verb.help, description=verb.description or verb.help)
        verb.add_args(p)
        p.set_defaults(func=_friendly(verb.run))
