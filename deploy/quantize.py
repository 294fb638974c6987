"""Precision conversion with ONNX Runtime, the precision route of TensorRT 10/11 too (explicit QDQ, FP16).

* INT8: static QDQ quantization (``onnxruntime.quantization.quantize_static``), weights per channel,
  calibrated on real images through the model's own preprocessing. Activations uint8 (asymmetric), weights
  int8 (symmetric): the U8S8 pair that ORT's CPU kernels run fastest on AVX-512 VNNI / AVX2, and that
  TensorRT reads as explicit quantization. ORT's ``quant_pre_process`` (shape inference, BN folding) runs first.
  MinMax ranges are the average of the per-batch ranges (``CalibMovingAverage``), which an outlier image cannot
  stretch. ``fp32_layers=K`` keeps the K nodes (``RANKED_OPS``) whose quantization alone moves the logits most in
  float (mixed precision): each node is quantized on its own with the calibrated ranges, and its relative logit
  error on calibration images ranks it. Depthwise-heavy nets (ShuffleNetV2) need it to keep >= 99% top-1
  agreement with FP32; the ranking is recorded in the file's metadata. ``float_nodes`` keeps named nodes in float
  besides those (``gate_fusion.gate_branch_nodes``: every gate's pool .. multiply, which OpenVINO runs faster so);
  ``gate_fusion='early_squeeze'`` rewrites the gates exactly before quantizing (faster in ONNX Runtime);
  ``symmetric=True`` writes signed INT8 activations with zero points of 0 (S8S8, the form TensorRT reads).
* FP16: all float tensors to float16 except the graph inputs and outputs, which stay float32
  (ORT's bundled converter, ``onnxruntime.transformers.float16``, ``keep_io_types=True``).

Calibrate on images disjoint from those used to measure agreement (CIFAR-10: train vs test); the calibration
folder (and, for a split folder, the split) is recorded in the output file's metadata so ``parity`` can refuse
an overlap or measure on the other part.
"""
import contextlib
import dataclasses
import inspect
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from timm_recal.outputs import resolve_output, temporary_folder
from timm_recal.pause_points import pause_point

from .errors import DeployError
from .export import check_onnx, library_versions
from .gate_fusion import apply_gate_fusion, check_gate_rewrite, gate_branch_nodes
from .images import make_loader
from .metadata import check_metadata, copy_metadata, count_ops, load_onnx, read_metadata, set_metadata
from .onnx_save import save_onnx
from .options import Int8Options, OutputOptions, with_overrides
from .ort_runtime import create_session
from .results import Result
from .sources import onnx_data_config

__all__ = ['CALIB_METHODS', 'QuantizeOptions', 'QuantizeResult', 'quantize', 'quantize_int8', 'convert_fp16',
           'count_ops', 'rank_sensitivity']

CALIB_METHODS = ('minmax', 'percentile', 'entropy')
# nodes that compute new values, so get their own quantization ranges; data movement (Reshape, Transpose, Split,
# MaxPool) and Relu reuse their input's and are left out of the sensitivity ranking
RANKED_OPS = ('Conv', 'ConvTranspose', 'Gemm', 'MatMul', 'Add', 'Mul', 'Sigmoid', 'HardSigmoid', 'Concat',
              'ReduceMean', 'GlobalAveragePool', 'AveragePool')
SENSITIVITY_IMAGES = 128


@dataclass
class QuantizeOptions(Int8Options, OutputOptions):
    precision: str = 'int8'
    batch_size: int = 32
    per_channel: bool = True
    preprocess: bool = True
    seed: int = 0
    progress: bool = False
    #: nodes kept in float besides the ranked ``fp32_layers``, recorded in the metadata; ``gates_float`` (of
    #: ``Int8Options``) adds ``gate_fusion.gate_branch_nodes`` (every gate's pool .. multiply, the measured
    #: OpenVINO INT8 win). ``gate_fusion`` (None or 'early_squeeze'): ``apply_gate_fusion`` on the FP32 source
    #: first (exact; the measured ONNX Runtime INT8 win). ``symmetric``: S8S8 with zero points of 0.
    float_nodes: Sequence[str] = ()
    #: an ``inspect FILE.onnx`` report (gate_diff.json): the nodes of the gates it ranks most damaged stay in float
    #: (``float_gates`` of them, default: those it marks damaged), besides ``fp32_layers`` and ``float_nodes``
    float_gates_from: Optional[str] = None
    float_gates: Optional[int] = None


@dataclass
class QuantizeResult(Result):
    output: str
    input: str
    precision: str
    seconds: float
    file_bytes: int
    quantization: Dict[str, Any] = field(default_factory=dict)
    quantize_nodes: int = 0
    dequantize_nodes: int = 0
    float_nodes: int = 0

    def _extra(self) -> Dict[str, Any]:
        return dict(self.quantization)  # the method details at the top level, as before


def _require_fp32(meta: Dict[str, Any], path: str) -> None:
    if meta.get('precision', 'fp32') != 'fp32':
        raise DeployError(f"{path} is already {meta['precision']}; convert the FP32 export instead")


class _ImageReader:
    """ORT ``CalibrationDataReader`` over batches of preprocessed images, with a progress bar.

    The first ``keep`` images it hands out stay in ``kept`` (the sensitivity pass reuses them, unread again).
    """

    def __init__(self, loader, input_name: str, progress: bool = True, keep: int = 0):
        from tqdm import tqdm
        self.loader, self.input_name, self.keep = loader, input_name, keep
        self.bar = tqdm(total=len(loader.dataset), desc='calibrating', unit='img', disable=not progress,
                        leave=False)
        self.it = iter(loader)
        self.seen = 0
        self.kept: List[Any] = []

    def get_next(self) -> Optional[Dict[str, Any]]:
        batch = next(self.it, None)
        if batch is None:
            self.bar.close()
            return None
        images = batch[0].numpy()
        if self.seen < self.keep:
            self.kept.append(images[:self.keep - self.seen])
        if not self.seen:
            pause_point('quantize.calibrating')
        self.seen += len(images)
        self.bar.update(len(images))
        return {self.input_name: images}

    def rewind(self) -> None:
        self.it = iter(self.loader)


def _relative_error(out: np.ndarray, ref: np.ndarray) -> float:
    return float(((out - ref) ** 2).mean() / max(float((ref ** 2).mean()), 1e-12))


def rank_sensitivity(src: str, images: np.ndarray, input_name: str, quantize_one: Callable[..., None], tmp: str,
                     progress: bool = True) -> List[Tuple[str, float]]:
    """``[(node, relative logit error)]`` of every computing node of ``src`` (``RANKED_OPS``), most sensitive first.

    ``quantize_one(out_path, nodes_to_quantize=[node])`` writes ``src`` with only that node quantized (the
    calibrated ranges are cached, so this is cheap); the error is measured against FP32 on ``images``.
    Not ``onnxruntime.quantization.qdq_loss_debug`` (measured, ``benchmarks/qdq_loss_debug_vs_sensitivity.json``):
    its per-tensor SQNR of the fully quantized model ranks 68 of the 114 nodes of the trained SE-ShuffleNetV2
    (errors pile up downstream), and its top 48 in float give 97.8% top-1 agreement against 98.9% with ours.
    """
    import onnx
    from tqdm import tqdm
    names = [n.name for n in onnx.load(src, load_external_data=False).graph.node if n.op_type in RANKED_OPS]
    ref = create_session(src).run(None, {input_name: images})[0]
    path = os.path.join(tmp, 'one.onnx')
    scores = []
    for name in tqdm(names, desc='sensitivity', unit='node', disable=not progress, leave=False):
        quantize_one(path, nodes_to_quantize=[name])
        scores.append((name, _relative_error(create_session(path).run(None, {input_name: images})[0], ref)))
    return sorted(scores, key=lambda t: -t[1])


def _check_int8(o: QuantizeOptions) -> None:
    if o.calib_method not in CALIB_METHODS:
        raise DeployError(f"--calib-method must be one of {', '.join(CALIB_METHODS)}, got {o.calib_method!r}")
    if o.fp32_layers < 0:
        raise DeployError(f'--fp32-layers: fp32_layers must be >= 0, got {o.fp32_layers}')
    if o.calib_images < 1:
        raise DeployError(f'--calib-images must be >= 1, got {o.calib_images}')
    check_gate_rewrite(o.gate_fusion)


#: per-channel QDQ writes ``DequantizeLinear(axis=...)``, an attribute from opset 13 on
PER_CHANNEL_MIN_OPSET = 13


def _check_int8_opset(source, in_onnx: str, per_channel: bool) -> None:
    """Refuse, before calibrating, a graph whose QDQ copy the ONNX checker would reject at the very end: per-channel
    scales below opset 13, and IR version 3 files (opset 7/8 exports), whose initializers must be graph inputs."""
    opset = next((int(i.version) for i in source.opset_import if i.domain in ('', 'ai.onnx')), 0)
    if source.ir_version < 4:
        raise DeployError(f'{in_onnx} is ONNX IR version {source.ir_version} (opset {opset}), which INT8 QDQ cannot '
                          f'be written in; re-export it with --opset {PER_CHANNEL_MIN_OPSET} or newer')
    if per_channel and opset < PER_CHANNEL_MIN_OPSET:
        raise DeployError(f'{in_onnx} has opset {opset}: per-channel INT8 weights need opset '
                          f'{PER_CHANNEL_MIN_OPSET} or newer; re-export it with --opset {PER_CHANNEL_MIN_OPSET} (or '
                          'quantize with --no-per-channel)')


def _default_name(in_onnx: str, suffix: str) -> str:
    """``m_int8.onnx`` for ``m.onnx`` (or ``M.ONNX``): the last extension only is replaced, whatever its case, so
    ``a.onnx.onnx`` gives ``a.onnx_int8.onnx`` and a folder ``-o`` never gets a file named like the input."""
    name = os.path.basename(in_onnx)
    return (name[:-len('.onnx')] if name.lower().endswith('.onnx') else name) + suffix


def _replaces(path: str, in_onnx: str) -> bool:
    """Whether writing ``path`` (a rename onto that name) replaces the input file, also when the input is reached
    through a symlink (``-o`` naming the file a linked input points to)."""
    folder = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    return os.path.join(folder, os.path.basename(path)) == os.path.realpath(in_onnx)


def _resolve(in_onnx: str, out_onnx: Optional[str], o: QuantizeOptions, suffix: str) -> str:
    path = resolve_output(out_onnx, o.force, default_name=_default_name(in_onnx, suffix), suffix='.onnx')
    if _replaces(path, in_onnx):
        raise DeployError('the output would overwrite the input ONNX file')
    return path


class _Quantizer:
    """``quantize_static`` of one source file with fixed settings; calibrates once, then reuses the ranges."""

    def __init__(self, src: str, in_onnx: str, loader, input_name: str, o: QuantizeOptions, tmp: str):
        from onnxruntime.quantization import CalibrationMethod, quantize_static
        self.src, self.in_onnx, self.loader, self.input_name, self.o = src, in_onnx, loader, input_name, o
        self.method = {'minmax': CalibrationMethod.MinMax, 'percentile': CalibrationMethod.Percentile,
                       'entropy': CalibrationMethod.Entropy}[o.calib_method]
        self.moving_average = bool(o.moving_average and o.calib_method == 'minmax')
        # ORT versions with calibration_cache_path calibrate once; older ones calibrate again on every call
        self.cached = 'calibration_cache_path' in inspect.signature(quantize_static).parameters
        self.cache = {'calibration_cache_path': os.path.join(tmp, 'ranges.json')} if self.cached else {}

    def __call__(self, out: str, reader=None, **nodes) -> None:
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
        if reader is None and not self.cached:
            reader = _ImageReader(self.loader, self.input_name, progress=False)
        extra = {'ActivationSymmetric': bool(self.o.symmetric), 'WeightSymmetric': True,
                 'CalibMovingAverage': self.moving_average}
        activations = QuantType.QInt8 if self.o.symmetric else QuantType.QUInt8
        try:  # ORT prints calibration progress to stdout, which must stay clean for --json
            with contextlib.redirect_stdout(sys.stderr):
                quantize_static(self.src, out, reader, quant_format=QuantFormat.QDQ, per_channel=self.o.per_channel,
                                activation_type=activations, weight_type=QuantType.QInt8,
                                calibrate_method=self.method, calibration_providers=['CPUExecutionProvider'],
                                extra_options=extra, **self.cache, **nodes)
        except Exception as e:
            raise DeployError(f'INT8 quantization of {self.in_onnx} failed: {str(e).splitlines()[0][:300]}') from None


def _pre_process(in_onnx: str, tmp: str, enabled: bool) -> Tuple[str, str]:
    if not enabled:
        return in_onnx, 'skipped'
    from onnxruntime.quantization import quant_pre_process
    pre = os.path.join(tmp, 'pre.onnx')
    try:
        quant_pre_process(in_onnx, pre, skip_symbolic_shape=False)
        return pre, 'done'
    except Exception as e:  # symbolic shape inference cannot handle every graph; quantize as is
        return in_onnx, f'failed ({type(e).__name__}), quantized without it'


def _quantize_graph(in_onnx: str, loader, input_name: str, o: QuantizeOptions):
    """``(ModelProto, float node names, sensitivity ranking, pre-process note)``."""
    import onnx
    with temporary_folder('timm_recal_q_') as tmp:
        fused: Optional[Dict[str, int]] = None
        if o.gate_fusion:
            fused_path = os.path.join(tmp, 'fused.onnx')
            fused = apply_gate_fusion(in_onnx, fused_path, [o.gate_fusion], force=True)['rewrites']
            in_onnx = fused_path
        src, pre_note = _pre_process(in_onnx, tmp, o.preprocess)
        quantize_with = _Quantizer(src, in_onnx, loader, input_name, o, tmp)
        reader = _ImageReader(loader, input_name, o.progress, keep=SENSITIVITY_IMAGES if o.fp32_layers else 0)
        q = os.path.join(tmp, 'q.onnx')
        given = list(dict.fromkeys(o.float_nodes))
        # calibrates once, the ranges are cached for the sensitivity pass
        quantize_with(q, reader, **({'nodes_to_exclude': given} if given else {}))
        ranking: List[Tuple[str, float]] = []
        if o.fp32_layers:
            ranking = rank_sensitivity(src, np.concatenate(reader.kept), input_name, quantize_with, tmp, o.progress)
            ranked = [name for name, _ in ranking[:o.fp32_layers]]
            quantize_with(q, nodes_to_exclude=ranked + [n for n in given if n not in ranked])
        ranked = [name for name, _ in ranking[:o.fp32_layers]]
        return onnx.load(q), ranked, ranking, pre_note, fused


def _save_converted(source, proto, path: str, precision: str, how: Dict[str, Any], meta: Dict[str, Any],
                    in_onnx: str, force: bool) -> None:
    """Metadata of the FP32 source plus ``precision``/``quantization``, checked, written atomically."""
    versions = dict(meta.get('versions') or {})
    versions.update(library_versions('onnxruntime'))
    copy_metadata(source, proto)
    set_metadata(proto, {'precision': precision, 'quantization': how, 'versions': versions})
    check_onnx(proto, f'the {precision.upper()} model of {in_onnx}')
    save_onnx(proto, path, force=force)


def quantize_int8(in_onnx: str, out_onnx: Optional[str], calib_data: Optional[str] = None,
                  options: Optional[QuantizeOptions] = None, *, indices: Optional[Sequence[int]] = None,
                  split_of: Optional[int] = None, **overrides) -> QuantizeResult:
    """Static INT8 (QDQ) quantization of an FP32 export, calibrated on ``calib_images`` images of ``calib_data``.

    ``calib_data=None`` calibrates on the bundled samples (few images: for smoke tests only). ``indices``
    selects exact images of the folder: the calibration part of ``images.split_indices(split_of, ...)`` when
    one folder is split into disjoint calibration and measurement parts (recorded, so parity measures the rest).
    """
    o = with_overrides(QuantizeOptions, options, dict(overrides, precision='int8'))
    o.calib_data = calib_data if calib_data is not None else o.calib_data
    _check_int8(o)
    path = _resolve(in_onnx, out_onnx, o, '_int8.onnx')
    source = load_onnx(in_onnx, load_external_data=False)
    meta = read_metadata(source, check=False)
    check_metadata(meta, in_onnx)
    _require_fp32(meta, in_onnx)
    _check_int8_opset(source, in_onnx, o.per_channel)
    n_ranked = sum(n.op_type in RANKED_OPS for n in source.graph.node)
    if o.fp32_layers > n_ranked:
        raise DeployError(f'--fp32-layers {o.fp32_layers}: {in_onnx} has {n_ranked} ranked nodes '
                          f"({', '.join(RANKED_OPS[:4])}, ...); keep at most that many in float")
    gates_kept: List[str] = []
    if o.float_gates is not None and not o.float_gates_from:
        raise DeployError('--float-gates K needs --float-gates-from REPORT (the gate ranking it counts from)')
    if o.float_gates_from:
        from .float_gates import damaged_gate_nodes
        gates_kept, nodes = damaged_gate_nodes(o.float_gates_from, o.float_gates, source, meta, in_onnx)
        o.float_nodes = list(o.float_nodes) + [n for n in nodes if n not in o.float_nodes]
    if o.gates_float:
        # a net without gates (the base of a comparison) has nothing to leave out: the same recipe for both
        gate_nodes = gate_branch_nodes(load_onnx(in_onnx, load_external_data=False))
        o.float_nodes = list(o.float_nodes) + [n for n in gate_nodes if n not in o.float_nodes]
    # ORT's histogram calibrators (percentile, entropy) stack every batch's outputs into one array: a smaller last
    # batch failed ("inhomogeneous shape"); their histogram is of all values however batched, MinMax goes by batch
    loader = make_loader(o.calib_data, onnx_data_config(meta, in_onnx), o.batch_size,
                         limit=None if indices is not None else o.calib_images, seed=o.seed, indices=indices,
                         even=o.calib_method != 'minmax')
    t0 = time.perf_counter()
    proto, ranked, ranking, pre_note, fused = _quantize_graph(in_onnx, loader, meta.get('input_name') or 'input', o)
    given = [n for n in dict.fromkeys(o.float_nodes) if n not in ranked]
    float_nodes = ranked + given
    how = {
        'method': 'onnxruntime.quantize_static', 'format': 'QDQ',
        'activation_type': 'int8' if o.symmetric else 'uint8', 'symmetric': bool(o.symmetric),
        'weight_type': 'int8', 'per_channel': o.per_channel, 'calibrate_method': o.calib_method,
        'moving_average': bool(o.moving_average and o.calib_method == 'minmax'), 'fp32_layers': ranked,
        'float_node_names': given, 'gates_float': bool(o.gates_float),
        'float_gates': ({'report': os.path.basename(o.float_gates_from), 'gates': gates_kept}
                        if o.float_gates_from else None),
        'gate_fusion': {'rewrite': o.gate_fusion, 'rewrites': fused} if o.gate_fusion else None,
        'sensitivity': [[name, float(f'{err:.3g}')] for name, err in ranking],
        'calib_data': os.path.abspath(loader.dataset.root), 'calib_images': len(loader.dataset),
        'calib_split': indices is not None, 'calib_split_of': split_of, 'calib_seed': o.seed, 'pre_process': pre_note,
        'source': os.path.basename(in_onnx),
    }
    _save_converted(source, proto, path, 'int8', how, meta, in_onnx, o.force)
    ops = count_ops(proto)
    return QuantizeResult(output=os.path.abspath(path), input=os.path.abspath(in_onnx), precision='int8',
                          seconds=round(time.perf_counter() - t0, 2), file_bytes=os.path.getsize(path),
                          quantization=how, quantize_nodes=ops.get('QuantizeLinear', 0),
                          dequantize_nodes=ops.get('DequantizeLinear', 0), float_nodes=len(float_nodes))


def convert_fp16(in_onnx: str, out_onnx: Optional[str], options: Optional[QuantizeOptions] = None, *,
                 op_block_list: Optional[List[str]] = None, **overrides) -> QuantizeResult:
    """FP16 copy of an FP32 export whose inputs and outputs stay float32 (``keep_io_types``)."""
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel
    o = with_overrides(QuantizeOptions, options, dict(overrides, precision='fp16'))
    path = _resolve(in_onnx, out_onnx, o, '_fp16.onnx')
    proto = load_onnx(in_onnx)
    meta = read_metadata(proto, check=False)
    check_metadata(meta, in_onnx)
    _require_fp32(meta, in_onnx)
    t0 = time.perf_counter()
    blocked = list(DEFAULT_OP_BLOCK_LIST) + list(op_block_list or [])
    try:
        half = convert_float_to_float16(proto, keep_io_types=True, op_block_list=blocked)
    except Exception as e:
        raise DeployError(f'FP16 conversion of {in_onnx} failed: {str(e).splitlines()[0][:300]}') from None
    OnnxModel(half).topological_sort()  # keep_io_types inserts Cast nodes after their consumers
    if any(v.type.tensor_type.elem_type != onnx.TensorProto.FLOAT for v in [*half.graph.input, *half.graph.output]):
        raise DeployError('FP16 conversion changed the input/output type; expected float32 I/O')
    how = {'method': 'onnxruntime.transformers.float16', 'keep_io_types': True,
           'op_block_list': sorted(set(blocked)), 'source': os.path.basename(in_onnx)}
    _save_converted(proto, half, path, 'fp16', how, meta, in_onnx, o.force)
    return QuantizeResult(output=os.path.abspath(path), input=os.path.abspath(in_onnx), precision='fp16',
                          seconds=round(time.perf_counter() - t0, 2), file_bytes=os.path.getsize(path),
                          quantization={'keep_io_types': True})


#: the options that shape INT8 calibration and quantization only (``convert_fp16`` reads none of them, the gate
#: rewrite included): ``--precision fp16`` refuses them instead of ignoring them
INT8_ONLY = tuple(f.name for f in dataclasses.fields(Int8Options)) + (
    'batch_size', 'per_channel', 'preprocess', 'seed', 'float_nodes', 'float_gates_from', 'float_gates')


def _check_fp16_options(o: QuantizeOptions) -> None:
    """Refuse, before any work, INT8 options given with ``precision='fp16'`` (each named by its flag)."""
    defaults = QuantizeOptions()
    given = [f"--{'no-' if getattr(defaults, n) is True else ''}{n.replace('_', '-')}" for n in INT8_ONLY
             if getattr(o, n) != getattr(defaults, n) and not (n == 'float_nodes' and not o.float_nodes)]
    if given:
        raise DeployError(f"{', '.join(given)} {'shapes' if len(given) == 1 else 'shape'} INT8 quantization only; "
                          '--precision fp16 converts every float tensor and takes none of them')


def quantize(in_onnx: str, out_onnx: Optional[str], options: Optional[QuantizeOptions] = None,
             **overrides) -> QuantizeResult:
    """The quantize stage: ``options.precision`` 'int8' (calibrated on ``calib_data``) or 'fp16'."""
    o = with_overrides(QuantizeOptions, options, overrides)
    if o.precision == 'fp16':
        _check_fp16_options(o)
        return convert_fp16(in_onnx, out_onnx, o)
    if o.precision != 'int8':
        raise DeployError(f"quantize --precision takes int8 or fp16, got {o.precision!r}")
    return quantize_int8(in_onnx, out_onnx, o.calib_data, o)
