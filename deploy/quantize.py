"""Precision conversion with ONNX Runtime, the precision route of TensorRT 10/11 too (explicit QDQ, FP16).

* INT8: static QDQ quantization (``onnxruntime.quantization.quantize_static``), weights per channel,
  calibrated on real images through the model's own preprocessing. Activations uint8 (asymmetric), weights
  int8 (symmetric): the U8S8 pair that ORT's CPU kernels run fastest on AVX-512 VNNI / AVX2, and that
  TensorRT reads as explicit quantization. ORT's ``quant_pre_process`` (shape inference, BN folding) runs first.
  MinMax ranges are the average of the per-batch ranges (``CalibMovingAverage``), which an outlier image cannot
  stretch. ``fp32_layers=K`` keeps the K nodes (``RANKED_OPS``) whose quantization alone moves the logits most in
  float (mixed precision): each node is quantized on its own with the calibrated ranges, and its relative logit
  error on calibration images ranks it. Depthwise-heavy nets (ShuffleNetV2) need it to keep >= 99% top-1
  agreement with FP32; the ranking is recorded in the file's metadata.
* FP16: all float tensors to float16 except the graph inputs and outputs, which stay float32
  (ORT's bundled converter, ``onnxruntime.transformers.float16``, ``keep_io_types=True``).

Calibrate on images disjoint from those used to measure agreement (CIFAR-10: train vs test); the calibration
folder is recorded in the output file's metadata so ``parity`` can refuse an overlap.
"""
import contextlib
import inspect
import os
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .errors import DeployError
from .images import make_loader
from .metadata import copy_metadata, load_onnx, read_metadata, set_metadata
from .outputs import resolve_output

__all__ = ['CALIB_METHODS', 'quantize_int8', 'convert_fp16', 'count_ops', 'rank_sensitivity']

CALIB_METHODS = ('minmax', 'percentile', 'entropy')
# nodes that compute new values, so get their own quantization ranges; data movement (Reshape, Transpose, Split,
# MaxPool) and Relu reuse their input's and are left out of the sensitivity ranking
RANKED_OPS = ('Conv', 'ConvTranspose', 'Gemm', 'MatMul', 'Add', 'Mul', 'Sigmoid', 'HardSigmoid', 'Concat',
              'ReduceMean', 'GlobalAveragePool', 'AveragePool')
SENSITIVITY_IMAGES = 128


def _require_fp32(meta: Dict[str, Any], path: str) -> None:
    if meta.get('precision', 'fp32') != 'fp32':
        raise DeployError(f"{path} is already {meta['precision']}; convert the FP32 export instead")


def count_ops(model_proto) -> Dict[str, int]:
    counts: Dict[str, int] = {}
    for node in model_proto.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


class _ImageReader:
    """ORT ``CalibrationDataReader`` over batches of preprocessed images, with a progress bar.

    The first ``keep`` images it hands out stay in ``kept`` (the sensitivity pass reuses them, unread again).
    """

    def __init__(self, loader, input_name: str, progress: bool = True, keep: int = 0):
        from tqdm import tqdm
        self.loader = loader
        self.input_name = input_name
        self.bar = tqdm(total=len(loader.dataset), desc='calibrating', unit='img', disable=not progress,
                        leave=False)
        self.it = iter(loader)
        self.seen = 0
        self.keep = keep
        self.kept: List[Any] = []

    def get_next(self) -> Optional[Dict[str, Any]]:
        batch = next(self.it, None)
        if batch is None:
            self.bar.close()
            return None
        images = batch[0].numpy()
        if self.seen < self.keep:
            self.kept.append(images[:self.keep - self.seen])
        self.seen += len(images)
        self.bar.update(len(images))
        return {self.input_name: images}

    def rewind(self) -> None:
        self.it = iter(self.loader)


def _relative_error(out: 'np.ndarray', ref: 'np.ndarray') -> float:
    return float(((out - ref) ** 2).mean() / max(float((ref ** 2).mean()), 1e-12))


def rank_sensitivity(src: str, images: 'np.ndarray', input_name: str, quantize: Callable[..., None], tmp: str,
                     progress: bool = True) -> List[Tuple[str, float]]:
    """``[(node, relative logit error)]`` of every computing node of ``src`` (``RANKED_OPS``), most sensitive first.

    ``quantize(out_path, nodes_to_quantize=[node])`` writes ``src`` with only that node quantized (the
    calibrated ranges are cached, so this is cheap); the error is measured against FP32 on ``images``.
    """
    import onnx
    from tqdm import tqdm
    from .runtime import create_session
    names = [n.name for n in onnx.load(src, load_external_data=False).graph.node if n.op_type in RANKED_OPS]
    ref = create_session(src).run(None, {input_name: images})[0]
    path = os.path.join(tmp, 'one.onnx')
    scores = []
    for name in tqdm(names, desc='sensitivity', unit='node', disable=not progress, leave=False):
        quantize(path, nodes_to_quantize=[name])
        scores.append((name, _relative_error(create_session(path).run(None, {input_name: images})[0], ref)))
    return sorted(scores, key=lambda t: -t[1])


def quantize_int8(
        in_onnx: str,
        out_onnx: str,
        calib_data: Optional[str],
        num_images: Optional[int] = 512,
        batch_size: int = 32,
        force: bool = False,
        per_channel: bool = True,
        calibrate_method: str = 'minmax',
        preprocess: bool = True,
        seed: int = 0,
        indices: Optional[Sequence[int]] = None,
        progress: bool = True,
        moving_average: bool = True,
        fp32_layers: int = 0,
        float_nodes: Sequence[str] = (),
) -> Dict[str, Any]:
    """Static INT8 (QDQ) quantization of an FP32 export, calibrated on ``num_images`` images of ``calib_data``.

    ``calib_data=None`` calibrates on the bundled samples (few images: for smoke tests only). ``indices``
    selects exact images of the folder (``parity`` uses it to split one folder into disjoint halves).
    ``moving_average``: MinMax ranges averaged over batches. ``fp32_layers``: keep that many of the most
    sensitive nodes (``RANKED_OPS``) in float (ranked on up to 128 of the calibration images). ``float_nodes``:
    nodes kept in float besides those (``gate_fusion.gate_branch_nodes``: a gate's pool .. multiply).
    """
    import onnx
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType, quant_pre_process,
                                          quantize_static)
    if calibrate_method not in CALIB_METHODS:
        raise DeployError(f"calibration method must be one of {', '.join(CALIB_METHODS)}, got {calibrate_method!r}")
    if fp32_layers < 0:
        raise DeployError(f'fp32_layers must be >= 0, got {fp32_layers}')
    path = resolve_output(out_onnx, force, default_name=os.path.basename(in_onnx).replace('.onnx', '_int8.onnx'),
                          suffix='.onnx')
    if os.path.abspath(path) == os.path.abspath(in_onnx):
        raise DeployError('the output would overwrite the input ONNX file')
    source = load_onnx(in_onnx, load_external_data=False)
    meta = read_metadata(source)
    _require_fp32(meta, in_onnx)
    from .predict import onnx_data_config
    cfg = onnx_data_config(meta, in_onnx)
    loader = make_loader(calib_data, cfg, batch_size, limit=None if indices is not None else num_images,
                         seed=seed, indices=indices)
    n_calib = len(loader.dataset)
    method = {'minmax': CalibrationMethod.MinMax, 'percentile': CalibrationMethod.Percentile,
              'entropy': CalibrationMethod.Entropy}[calibrate_method]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix='timm_recal_q_') as tmp:
        src = in_onnx
        pre_note = 'skipped'
        if preprocess:
            pre = os.path.join(tmp, 'pre.onnx')
            try:
                quant_pre_process(in_onnx, pre, skip_symbolic_shape=False)
                src, pre_note = pre, 'done'
            except Exception as e:  # symbolic shape inference cannot handle every graph; quantize as is
                pre_note = f'failed ({type(e).__name__}), quantized without it'
        q = os.path.join(tmp, 'q.onnx')
        input_name = meta.get('input_name') or 'input'
        reader = _ImageReader(loader, input_name, progress, keep=SENSITIVITY_IMAGES if fp32_layers else 0)
        moving_average = bool(moving_average and calibrate_method == 'minmax')
        # ORT versions with calibration_cache_path calibrate once; older ones calibrate again on every call
        cached = 'calibration_cache_path' in inspect.signature(quantize_static).parameters
        cache = {'calibration_cache_path': os.path.join(tmp, 'ranges.json')} if cached else {}

        def quantize(out: str, reader=None, **nodes) -> None:
            if reader is None and not cached:
                reader = _ImageReader(loader, input_name, progress=False)
            try:  # ORT prints calibration progress to stdout, which must stay clean for --json
                with contextlib.redirect_stdout(sys.stderr):
                    quantize_static(src, out, reader, quant_format=QuantFormat.QDQ, per_channel=per_channel,
                                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                    calibrate_method=method, calibration_providers=['CPUExecutionProvider'],
                                    **cache, extra_options={
                                        'ActivationSymmetric': False, 'WeightSymmetric': True,
                                        'CalibMovingAverage': moving_average}, **nodes)
            except DeployError:
                raise
            except Exception as e:
                raise DeployError(f'INT8 quantization of {in_onnx} failed: {str(e).splitlines()[0][:300]}') from None

        extra = {'nodes_to_exclude': list(float_nodes)} if float_nodes else {}
        quantize(q, reader, **extra)  # calibrates once, the ranges are cached for the sensitivity pass
        ranking: List[Tuple[str, float]] = []
        if fp32_layers:
            import numpy as np
            ranking = rank_sensitivity(src, np.concatenate(reader.kept), input_name, quantize, tmp, progress)
            quantize(q, nodes_to_exclude=[name for name, _ in ranking[:fp32_layers]] + list(float_nodes))
        ranked = [name for name, _ in ranking[:fp32_layers]]
        float_nodes = ranked + [n for n in float_nodes if n not in ranked]
        proto = onnx.load(q)
    quant = {
        'method': 'onnxruntime.quantize_static', 'format': 'QDQ', 'activation_type': 'uint8',
        'weight_type': 'int8', 'per_channel': per_channel, 'calibrate_method': calibrate_method,
        'moving_average': moving_average, 'fp32_layers': float_nodes,
        'sensitivity': [[name, float(f'{err:.3g}')] for name, err in ranking],
        'calib_data': os.path.abspath(loader.dataset.root), 'calib_images': n_calib,
        'calib_split': indices is not None, 'pre_process': pre_note, 'source': os.path.basename(in_onnx),
    }
    from .export import check_onnx, library_versions
    versions = dict(meta.get('versions') or {})
    versions.update(library_versions('onnxruntime'))
    copy_metadata(source, proto)
    set_metadata(proto, {'precision': 'int8', 'quantization': quant, 'versions': versions})
    check_onnx(proto, f'the INT8 model of {in_onnx}')
    onnx.save(proto, path)
    ops = count_ops(proto)
    return {'output': os.path.abspath(path), 'input': os.path.abspath(in_onnx), 'precision': 'int8',
            **quant, 'seconds': round(time.perf_counter() - t0, 2), 'file_bytes': os.path.getsize(path),
            'quantize_nodes': ops.get('QuantizeLinear', 0), 'dequantize_nodes': ops.get('DequantizeLinear', 0),
            'float_nodes': len(float_nodes)}


def convert_fp16(in_onnx: str, out_onnx: str, force: bool = False,
                 op_block_list: Optional[List[str]] = None) -> Dict[str, Any]:
    """FP16 copy of an FP32 export whose inputs and outputs stay float32 (``keep_io_types``)."""
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16
    path = resolve_output(out_onnx, force, default_name=os.path.basename(in_onnx).replace('.onnx', '_fp16.onnx'),
                          suffix='.onnx')
    if os.path.abspath(path) == os.path.abspath(in_onnx):
        raise DeployError('the output would overwrite the input ONNX file')
    proto = load_onnx(in_onnx)
    meta = read_metadata(proto)
    _require_fp32(meta, in_onnx)
    t0 = time.perf_counter()
    blocked = list(DEFAULT_OP_BLOCK_LIST) + list(op_block_list or [])
    try:
        half = convert_float_to_float16(proto, keep_io_types=True, op_block_list=blocked)
    except Exception as e:
        raise DeployError(f'FP16 conversion of {in_onnx} failed: {str(e).splitlines()[0][:300]}') from None
    # keep_io_types inserts Cast nodes after their consumers; ONNX requires a topologically sorted graph
    from onnxruntime.transformers.onnx_model import OnnxModel
    OnnxModel(half).topological_sort()
    float32 = onnx.TensorProto.FLOAT
    io = list(half.graph.input) + list(half.graph.output)
    if any(v.type.tensor_type.elem_type != float32 for v in io):
        raise DeployError('FP16 conversion changed the input/output type; expected float32 I/O')
    from .export import check_onnx, library_versions
    versions = dict(meta.get('versions') or {})
    versions.update(library_versions('onnxruntime'))
    quant = {'method': 'onnxruntime.transformers.float16', 'keep_io_types': True,
             'op_block_list': sorted(set(blocked)), 'source': os.path.basename(in_onnx)}
    copy_metadata(proto, half)
    set_metadata(half, {'precision': 'fp16', 'quantization': quant, 'versions': versions})
    check_onnx(half, f'the FP16 model of {in_onnx}')
    onnx.save(half, path)
    return {'output': os.path.abspath(path), 'input': os.path.abspath(in_onnx), 'precision': 'fp16',
            'keep_io_types': True, 'seconds': round(time.perf_counter() - t0, 2),
            'file_bytes': os.path.getsize(path)}
