"""OpenVINO as a deploy runtime: our ONNX files (FP32, QDQ INT8) or OpenVINO IR, FP32/BF16/INT8 on the CPU.

Why a runtime of its own: on Intel Xeons with AMX, OpenVINO runs BF16 and INT8 convolutions on the matrix
units, several times faster than ONNX Runtime's FP32 (see issue 12). It reads our ONNX files directly.

* ``open_openvino(path, precision=...)`` is the runtime plug-in: it returns an ``OpenVINORunner`` with
  ``__call__(images) -> logits``, ``describe()`` and ``prepare(batch)`` (the shape every deploy runtime has).
  ``fp32`` pins OpenVINO's inference precision to f32 (on AMX CPUs its default is bf16, which would make an
  "FP32" number a BF16 one); ``bf16`` is the inference precision hint on the FP32 file, refused (``NoNativePrecision``)
  where the CPU has no native BF16, so that an emulation is never timed as BF16; ``int8`` runs a quantized file:
  our QDQ ONNX (``timm-recal quantize``) or an NNCF IR (``quantize_nncf``); its unquantized ops run in f32
  unless ``float_precision='bf16'``.
* Compiled models are cached per batch size with that batch fixed in the shape (OpenVINO's CPU kernels are
  chosen per shape; a fixed shape is what the timings mean), or compiled once with a dynamic batch (``dynamic=True``).
* ``quantize_nncf`` is NNCF post-training quantization of the FP32 file, calibrated on images read the way
  every deploy stage reads them, written as an IR pair (.xml/.bin) whole or not at all, with our metadata inside.
* ``pick_int8`` measures INT8 candidates against FP32 (top-1 agreement) and speed, and keeps the fastest that
  passes the agreement contract, saying why.
* ``EagerAutocastRunner``: PyTorch eager under CPU autocast bf16, the comparison point for OpenVINO BF16.
"""
import contextlib
import json
import os
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from timm_recal.outputs import OutputExistsError, atomic_output, public_paths, resolve_output

from .errors import DeployError, NoNativePrecision
from .export import library_versions
from .images import make_loader
from .metadata import read_metadata
from .signal_stack import kept_signal_stack
from .sources import onnx_data_config

__all__ = [
    'PRECISIONS', 'INSTALL_HINT', 'AGREEMENT_MIN', 'NoNativePrecision', 'OpenVINORunner', 'open_openvino',
    'import_openvino', 'bf16_support', 'read_ir_metadata', 'quantize_nncf', 'top1_agreement', 'pick_int8',
    'EagerAutocastRunner', 'bench_input',
]

PRECISIONS = ('fp32', 'bf16', 'int8')
INSTALL_HINT = "pip install 'timm-recal[openvino]'"
#: the agreement contract of every reduced precision: top-1 equal to FP32's on this share of images
AGREEMENT_MIN = 0.99
#: rt_info path under which our metadata (preprocessing, provenance) is stored in an IR
_RT_KEY = ['timm_recal', 'metadata']
_OV_PRECISION = {'fp32': 'f32', 'bf16': 'bf16'}


def import_openvino():
    """``openvino``, or a DeployError that names the package and the extra that installs it."""
    try:
        import openvino
    except ImportError:
        raise DeployError(f"the OpenVINO runtime needs the 'openvino' package: {INSTALL_HINT}") from None
    return openvino


def _cpu_flags() -> Optional[set]:
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as f:
            for line in f:
                if line.startswith('flags'):
                    return set(line.split(':', 1)[1].split())
    except OSError:
        pass
    return None


def bf16_support(core=None) -> Dict[str, Any]:
    """Whether this CPU runs BF16 natively: OpenVINO lists BF16 among the CPU's optimization capabilities,
    and (where ``/proc/cpuinfo`` is readable) the CPU has AMX-BF16 or AVX512_BF16."""
    if core is None:
        core = import_openvino().Core()
    caps = list(core.get_property('CPU', 'OPTIMIZATION_CAPABILITIES'))
    flags = _cpu_flags()
    isa = sorted(flags & {'amx_bf16', 'amx_int8', 'amx_tile', 'avx512_bf16', 'avx512_vnni', 'avx_vnni'}) \
        if flags is not None else None
    native = 'BF16' in caps and (flags is None or bool(flags & {'amx_bf16', 'avx512_bf16'}))
    return {'native': native, 'capabilities': caps, 'cpu_isa': isa}


def _read_any(core, path: str):
    """An ``ov.Model`` of an ONNX file or an IR .xml, with a one-line error for a missing or unreadable file."""
    if not os.path.isfile(path):
        raise DeployError(f'model file not found: {path}')
    if path.lower().endswith('.xml') and not os.path.isfile(path[:-4] + '.bin'):
        raise DeployError(f'{path} has no weights file {os.path.basename(path[:-4])}.bin beside it')
    try:
        return core.read_model(path)
    except Exception as e:  # OpenVINO raises its own RuntimeError/GeneralFailure types
        raise DeployError(f'OpenVINO cannot read {path}: {str(e).splitlines()[0][:300]}') from None


def read_ir_metadata(model) -> Dict[str, Any]:
    """Our metadata stored in an IR's rt_info by ``quantize_nncf`` ({} when absent)."""
    if model.has_rt_info(_RT_KEY):
        try:
            return json.loads(model.get_rt_info(_RT_KEY).astype(str))
        except ValueError:
            return {}
    return {}


def _file_metadata(path: str, model) -> Dict[str, Any]:
    if path.lower().endswith('.onnx'):
        return read_metadata(path)
    return read_ir_metadata(model)


def _is_quantized(model) -> bool:
    return any(op.get_type_name() == 'FakeQuantize' for op in model.get_ops())


def bench_input(batch: int, input_size: Sequence[int]) -> np.ndarray:
    """Standard-normal values, seeded, the same numbers bench's other runners see."""
    return np.random.default_rng(0).standard_normal((batch, *input_size), dtype=np.float32)


class OpenVINORunner:
    """One OpenVINO model on the CPU at one precision; compiled models cached per batch size.

    Built by ``open_openvino``. ``__call__`` runs a float32 NCHW batch and returns float32 logits.
    """

    name = 'openvino'

    def __init__(self, path: str, model, core, precision: str, config: Dict[str, Any], dynamic: bool,
                 meta: Dict[str, Any], notes: List[str]):
        self.path = os.path.abspath(path)
        self.precision = precision
        self.dynamic = dynamic
        self.meta = meta
        self.notes = notes
        self._model = model
        self._core = core
        self._config = config
        self._compiled: Dict[Optional[int], Any] = {}
        self._requests: Dict[Optional[int], Any] = {}
        shape = model.inputs[0].get_partial_shape()
        self.input_size = [d.get_length() if d.is_static else None for d in list(shape)[1:]]
        self.compile_seconds: Dict[str, float] = {}

    def _request(self, batch: int):
        """The infer request of a model compiled for ``batch`` (for every batch when dynamic)."""
        key = None if self.dynamic else batch
        if key not in self._requests:
            model = self._model
            if not self.dynamic:
                model = model.clone()
                shape = model.inputs[0].get_partial_shape()
                shape[0] = batch
                model.reshape({model.inputs[0]: shape})
            t0 = time.perf_counter()
            try:
                with kept_signal_stack():  # OpenVINO swaps the thread's signal stack (deploy/signal_stack.py)
                    compiled = self._core.compile_model(model, 'CPU', self._config)
            except Exception as e:
                raise DeployError(f'OpenVINO cannot compile {self.path} for batch {batch}: '
                                  f'{str(e).splitlines()[0][:300]}') from None
            self.compile_seconds[str(key if key is not None else 'dynamic')] = round(time.perf_counter() - t0, 3)
            self._compiled[key] = compiled
            self._requests[key] = compiled.create_infer_request()
        return self._requests[key]

    def _check(self, images: np.ndarray) -> None:
        size = self.input_size
        if images.ndim != 1 + len(size) or any(s is not None and s != g for s, g in zip(size, images.shape[1:])):
            raise DeployError(f'input of shape {list(images.shape)} does not fit {os.path.basename(self.path)} '
                              f'[batch, {", ".join(str(s) for s in size)}]; the graph was exported for a fixed image size')

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.ascontiguousarray(images, dtype=np.float32)
        self._check(images)
        request = self._request(images.shape[0])
        try:
            request.infer({0: images})
        except Exception as e:
            raise DeployError(f'OpenVINO failed on a {list(images.shape)} batch: {str(e).splitlines()[0][:300]}') from None
        return np.array(request.get_output_tensor(0).data, dtype=np.float32, copy=True)

    def outputs(self, images: np.ndarray) -> List[np.ndarray]:
        """Every model output of a batch, as float32 (the logits first; ``inspect`` taps gate tensors so)."""
        self(images)
        request = self._request(images.shape[0])
        n = len(self._compiled[None if self.dynamic else images.shape[0]].outputs)
        return [np.array(request.get_output_tensor(i).data, dtype=np.float32, copy=True) for i in range(n)]

    def prepare(self, batch: int) -> Callable[[], Any]:
        """A no-argument call that runs one batch of ``batch`` seeded images (input built and model compiled now)."""
        if batch < 1:
            raise DeployError(f'batch size must be >= 1, got {batch}')
        if None in self.input_size:
            raise DeployError(f'{self.path} has a dynamic image size; bench needs a fixed one')
        images = bench_input(batch, self.input_size)
        self._request(batch)  # compiles (and caches) the model for this batch
        request = self._compiled[None if self.dynamic else batch].create_infer_request()
        request.set_input_tensor(0, import_openvino().Tensor(images))

        def call():
            request.infer()
        return call

    def compiled_precision(self) -> Optional[str]:
        """The inference precision a compiled model reports (the hint as the plugin resolved it)."""
        if not self._compiled:
            self._request(1)
        value = next(iter(self._compiled.values())).get_property('INFERENCE_PRECISION_HINT')
        return value.to_string() if hasattr(value, 'to_string') else str(value)

    def describe(self) -> Dict[str, Any]:
        ov = import_openvino()
        compiled = next(iter(self._compiled.values()), None)
        info = {
            'runtime': 'openvino', 'openvino': ov.get_version(), 'device': 'CPU',
            'device_name': self._core.get_property('CPU', 'FULL_DEVICE_NAME'), 'model': self.path,
            'precision': self.precision, 'inference_precision_hint': self._config.get('INFERENCE_PRECISION_HINT'),
            'inference_precision': self.compiled_precision(),
            'threads': self._config.get('INFERENCE_NUM_THREADS'),
            'streams': str(compiled.get_property('NUM_STREAMS')) if compiled is not None else None,
            'performance_hint': self._config.get('PERFORMANCE_HINT'),
            'shape': 'dynamic' if self.dynamic else 'fixed',
            'compiled_batches': sorted(k for k in self._compiled if k is not None),
            'compile_seconds': dict(self.compile_seconds),
            'bf16': bf16_support(self._core),
            'notes': list(self.notes),
        }
        quant = self.meta.get('quantization')
        if quant:
            info['quantization'] = {k: quant.get(k) for k in ('method', 'format', 'calib_images', 'model_type',
                                                              'ignored_scope', 'preset') if k in quant}
        return info


def _check_threads(threads: Optional[int]) -> None:
    if threads is not None and (not isinstance(threads, int) or threads < 0):
        raise DeployError(f'threads must be an integer >= 0, got {threads!r}')


def open_openvino(onnx_path: str, *, precision: str = 'fp32', threads: Optional[int] = None, **options) -> OpenVINORunner:
    """Open ``onnx_path`` (our ONNX export, its QDQ INT8 file, or an NNCF IR .xml) in OpenVINO on the CPU.

    ``precision``: ``fp32``/``bf16`` need an unquantized file, ``int8`` a quantized one. ``threads``: OpenVINO's
    ``INFERENCE_NUM_THREADS`` (None or 0: its default). Options: ``dynamic`` (bool, default False: compile per
    batch size with a fixed shape), ``float_precision`` (``fp32``/``bf16``: precision of the ops an INT8 model
    leaves unquantized, default ``fp32``), ``performance_hint`` (default ``LATENCY``: one stream, the way the
    other runtimes are timed), ``allow_emulation`` (run ``bf16`` even without native BF16; OpenVINO then runs
    f32, said in ``describe()``), ``config`` (extra OpenVINO properties, for experiments).
    """
    ov = import_openvino()
    if precision not in PRECISIONS:
        raise DeployError(f"OpenVINO precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    _check_threads(threads)
    dynamic = bool(options.pop('dynamic', False))
    float_precision = options.pop('float_precision', 'fp32')
    hint = options.pop('performance_hint', 'LATENCY')
    allow_emulation = bool(options.pop('allow_emulation', False))
    extra = dict(options.pop('config', None) or {})
    if options:
        raise DeployError(f"unknown OpenVINO option(s): {', '.join(sorted(options))}")
    if float_precision not in _OV_PRECISION:
        raise DeployError(f"float_precision must be fp32 or bf16, got {float_precision!r}")
    core = ov.Core()
    model = _read_any(core, os.fspath(onnx_path))
    meta = _file_metadata(os.fspath(onnx_path), model)
    quantized = _is_quantized(model)
    notes: List[str] = []
    if precision == 'int8' and not quantized:
        raise DeployError(f'{onnx_path} is not quantized; for int8 give a QDQ file (timm-recal quantize '
                          '--precision int8) or an NNCF IR (quantize_nncf)')
    if precision != 'int8' and quantized:
        raise DeployError(f"{onnx_path} is an INT8 model; open it with precision='int8'")
    wants_bf16 = precision == 'bf16' or (precision == 'int8' and float_precision == 'bf16')
    if wants_bf16:
        support = bf16_support(core)
        if not support['native']:
            msg = (f"no native BF16 on this CPU (OpenVINO capabilities {support['capabilities']}, "
                   f"ISA {support['cpu_isa']}): not timed as an emulation")
            if not allow_emulation:
                raise NoNativePrecision(msg)
            notes.append(msg)
    ov_precision = _OV_PRECISION['bf16' if precision == 'bf16' else float_precision]
    config: Dict[str, Any] = {'INFERENCE_PRECISION_HINT': ov_precision, 'PERFORMANCE_HINT': hint}
    if threads:
        config['INFERENCE_NUM_THREADS'] = int(threads)
    config.update(extra)
    if precision == 'int8':
        notes.append(f'unquantized ops run in {ov_precision}')
    runner = OpenVINORunner(os.fspath(onnx_path), model, core, precision, config, dynamic, meta, notes)
    used = runner.compiled_precision()  # compiles batch 1 now: errors surface at open, not at the first call
    if precision == 'bf16' and 'bf16' not in used:
        runner.notes.append(f'OpenVINO resolved the bf16 hint to {used}')
    return runner


# --- NNCF post-training quantization ------------------------------------------------------------------------
def _calibration_batches(onnx_path: str, meta: Dict[str, Any], calib_images, num_images: Optional[int],
                         seed: int, indices: Optional[Sequence[int]]) -> Tuple[List[np.ndarray], Dict[str, Any]]:
    """Single-image batches for NNCF: a float32 NCHW array, or a folder read like every deploy stage reads one."""
    if isinstance(calib_images, np.ndarray):
        if calib_images.ndim != 4:
            raise DeployError(f'calibration images must be a float32 NCHW array, got shape {calib_images.shape}')
        arr = calib_images[:num_images] if num_images else calib_images
        return [np.ascontiguousarray(a[None], dtype=np.float32) for a in arr], {'calib_data': 'array'}
    cfg = onnx_data_config(meta, onnx_path)
    loader = make_loader(calib_images, cfg, 1, limit=None if indices is not None else num_images, seed=seed,
                         indices=indices)
    batches = [x.numpy() for x, _ in loader]
    return batches, {'calib_data': os.path.abspath(loader.dataset.root), 'calib_split': indices is not None}


def _save_ir(model, xml_path: str, force: bool) -> None:
    """Write ``model`` as ``xml_path`` + its .bin, whole or not at all (the .bin lands first, the .xml that makes
    the pair readable last; a failure removes what this call wrote)."""
    import tempfile
    ov = import_openvino()
    bin_path = xml_path[:-4] + '.bin'
    folder = os.path.dirname(os.path.abspath(xml_path))
    bin_published = False
    try:
        with atomic_output(xml_path, force) as tmp_xml:
            with atomic_output(bin_path, force) as tmp_bin:
                with tempfile.TemporaryDirectory(prefix='.timm_recal_ir_', dir=folder) as tmp:
                    ov.save_model(model, os.path.join(tmp, 'model.xml'), compress_to_fp16=False)
                    os.replace(os.path.join(tmp, 'model.xml'), tmp_xml)
                    os.replace(os.path.join(tmp, 'model.bin'), tmp_bin)
            bin_published = True
    except BaseException:
        if bin_published:
            try:
                os.unlink(bin_path)
            except OSError:
                pass
        raise


def quantize_nncf(
        onnx_path: str,
        calib_images: Union[str, np.ndarray, None],
        output: str,
        *,
        num_images: Optional[int] = 300,
        seed: int = 0,
        indices: Optional[Sequence[int]] = None,
        force: bool = False,
        model_type: Optional[str] = None,
        ignored_scope: Optional[Dict[str, List[str]]] = None,
        preset: str = 'performance',
        fast_bias_correction: bool = True,
) -> Dict[str, Any]:
    """NNCF post-training INT8 quantization of an FP32 ONNX export; writes an OpenVINO IR (``output``, .xml).

    ``calib_images``: an ImageFolder (None: the bundled samples, for smoke tests) read through the file's own
    preprocessing, or a float32 NCHW array; ``num_images`` of them (NNCF's ``subset_size``), or exactly
    ``indices`` of the folder. ``model_type``: None or ``transformer`` (NNCF's ``ModelType``); ``ignored_scope``:
    ``{'names': [...], 'types': [...], 'patterns': [...]}`` of OpenVINO node names/types left in float;
    ``preset``: ``performance`` (symmetric activations) or ``mixed``. The file's metadata (preprocessing,
    provenance) is stored in the IR's rt_info with ``precision: int8`` and how it was quantized.
    """
    ov = import_openvino()
    try:
        import nncf
    except ImportError:
        raise DeployError(f"NNCF quantization needs the 'nncf' package: {INSTALL_HINT}") from None
    onnx_path = os.fspath(onnx_path)
    path, bin_path = _resolve_ir_outputs(onnx_path, output, force)
    _check_nncf_choices(preset, model_type)
    core = ov.Core()
    model = _read_any(core, onnx_path)
    if not onnx_path.lower().endswith('.onnx'):
        raise DeployError(f'{onnx_path}: quantize_nncf reads an FP32 ONNX export')
    meta = read_metadata(onnx_path)
    if meta.get('precision', 'fp32') != 'fp32' or _is_quantized(model):
        raise DeployError(f"{onnx_path} is already {meta.get('precision')}; quantize the FP32 export")
    batches, calib = _calibration_batches(onnx_path, meta, calib_images, num_images, seed, indices)
    if not batches:
        raise DeployError('no calibration images')
    scope = _ignored_scope(nncf, ignored_scope)
    t0 = time.perf_counter()
    quantized = _run_nncf(nncf, model, batches, onnx_path, preset=preset, model_type=model_type, scope=scope,
                          fast_bias_correction=fast_bias_correction)
    quant = {'method': 'nncf.quantize', 'format': 'openvino-ir', 'preset': preset, 'model_type': model_type,
             'ignored_scope': ignored_scope or {}, 'fast_bias_correction': fast_bias_correction,
             'calib_images': len(batches), **calib, 'source': os.path.basename(onnx_path)}
    quantized.set_rt_info(json.dumps(public_paths(_int8_rt_info(meta, quant, ov.get_version(), nncf.__version__))),
                          _RT_KEY)
    _save_ir(quantized, path, force)
    fq = sum(op.get_type_name() == 'FakeQuantize' for op in quantized.get_ops())
    return {'output': os.path.abspath(path), 'weights': os.path.abspath(bin_path), 'input': os.path.abspath(onnx_path),
            'precision': 'int8', **quant, 'fake_quantize_nodes': fq, 'seconds': round(time.perf_counter() - t0, 2),
            'file_bytes': os.path.getsize(path) + os.path.getsize(bin_path)}


def _check_nncf_choices(preset: str, model_type: Optional[str]) -> None:
    if preset not in ('performance', 'mixed'):
        raise DeployError(f"preset must be 'performance' or 'mixed', got {preset!r}")
    if model_type not in (None, 'transformer'):
        raise DeployError(f"model_type must be None or 'transformer', got {model_type!r}")


def _int8_rt_info(meta: Dict[str, Any], quant: Dict[str, Any], openvino_version: str,
                  nncf_version: str) -> Dict[str, Any]:
    """The IR's rt_info: the ONNX file's metadata, now ``int8``, with how it was quantized and by which versions."""
    versions = dict(meta.get('versions') or {})
    versions.update(library_versions())
    versions.update({'openvino': openvino_version, 'nncf': nncf_version})
    keep = {k: v for k, v in meta.items() if k != 'graph_input_shape'}
    keep.update({'precision': 'int8', 'quantization': quant, 'versions': versions})
    return keep


def _resolve_ir_outputs(onnx_path: str, output: str, force: bool) -> Tuple[str, str]:
    """The IR's .xml and .bin paths, refused before the slow work when the .bin exists without ``force``."""
    default = os.path.basename(onnx_path).rsplit('.', 1)[0] + '_nncf_int8.xml'
    path = resolve_output(output, force, default_name=default, suffix='.xml')
    bin_path = path[:-4] + '.bin'
    if os.path.lexists(bin_path) and not force:
        raise OutputExistsError(f'{bin_path} exists; pass --force to overwrite it')
    return path, bin_path


def _ignored_scope(nncf, ignored_scope: Optional[Dict[str, List[str]]]):
    """NNCF's ``IgnoredScope`` from ``{'names'|'types'|'patterns': [...]}``; None when nothing is left in float."""
    if not ignored_scope:
        return None
    unknown = set(ignored_scope) - {'names', 'types', 'patterns'}
    if unknown:
        raise DeployError(f"ignored_scope keys are names, types and patterns, not {', '.join(sorted(unknown))}")
    return nncf.IgnoredScope(**{k: list(v) for k, v in ignored_scope.items()}, validate=False)


def _run_nncf(nncf, model, batches: List[np.ndarray], onnx_path: str, *, preset: str, model_type: Optional[str],
              scope, fast_bias_correction: bool):
    """``nncf.quantize`` with its progress on stderr (stdout must stay clean for --json), failures one line."""
    kwargs: Dict[str, Any] = {'subset_size': len(batches), 'fast_bias_correction': fast_bias_correction,
                              'preset': nncf.QuantizationPreset.PERFORMANCE if preset == 'performance'
                              else nncf.QuantizationPreset.MIXED}
    if model_type:
        kwargs['model_type'] = nncf.ModelType.TRANSFORMER
    if scope is not None:
        kwargs['ignored_scope'] = scope
    try:
        with contextlib.redirect_stdout(sys.stderr), kept_signal_stack():  # NNCF compiles models too
            return nncf.quantize(model, nncf.Dataset(batches), **kwargs)
    except Exception as e:
        raise DeployError(f'NNCF quantization of {onnx_path} failed: {str(e).splitlines()[0][:300]}') from None


# --- choosing an INT8 variant -------------------------------------------------------------------------------
def top1_agreement(logits: np.ndarray, reference: np.ndarray) -> float:
    """Share of images whose top-1 class equals the reference's."""
    if logits.shape != reference.shape:
        raise DeployError(f'logits of shape {logits.shape} cannot be compared with {reference.shape}')
    return float((logits.argmax(1) == reference.argmax(1)).mean())


def _run_all(runner: Callable[[np.ndarray], np.ndarray], images: np.ndarray, batch: int) -> np.ndarray:
    return np.concatenate([runner(images[i:i + batch]) for i in range(0, len(images), batch)])


def _median_seconds(call: Callable[[], Any], min_time_s: float) -> float:
    for _ in range(2):
        call()
    times = []
    start = time.perf_counter()
    while len(times) < 5 or time.perf_counter() - start < min_time_s:
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def pick_int8(
        fp32_path: str,
        candidates: Dict[str, str],
        images: np.ndarray,
        *,
        threads: Optional[int] = None,
        batch: int = 1,
        min_agreement: float = AGREEMENT_MIN,
        min_time_s: float = 1.0,
        rounds: int = 3,
        **options,
) -> Dict[str, Any]:
    """The fastest INT8 file among ``candidates`` (``{label: path}``, e.g. ``{'qdq': ..., 'nncf': ...}``) whose
    top-1 agreement with the FP32 file on ``images`` is at least ``min_agreement``.

    Speeds are medians at ``batch``, measured interleaved over ``rounds`` rounds (the machine may be shared).
    Returns ``{'picked': label or None, 'reason', 'candidates': {label: {agreement, passed, images_per_s}}}``.
    """
    if not candidates:
        raise DeployError('no INT8 candidates to pick from')
    images = np.ascontiguousarray(images, dtype=np.float32)
    ref = _run_all(open_openvino(fp32_path, precision='fp32', threads=threads), images, 64)
    runners = {label: open_openvino(path, precision='int8', threads=threads, **options)
               for label, path in candidates.items()}
    result: Dict[str, Dict[str, Any]] = {}
    for label, runner in runners.items():
        agree = top1_agreement(_run_all(runner, images, 64), ref)
        result[label] = {'path': os.path.abspath(candidates[label]), 'agreement': round(agree, 5),
                         'passed': agree >= min_agreement, 'images': len(images)}
    # every candidate is timed (the record shows what a failing one would have given); only passing ones are kept
    calls = {label: runners[label].prepare(batch) for label in runners}
    times: Dict[str, List[float]] = {label: [] for label in calls}
    for r in range(rounds):
        order = list(calls) if r % 2 == 0 else list(reversed(list(calls)))
        for label in order:
            times[label].append(_median_seconds(calls[label], min_time_s))
    for label, ts in times.items():
        result[label]['images_per_s'] = round(batch / statistics.median(ts), 2)
    passed = [label for label in calls if result[label]['passed']]
    if not passed:
        return {'picked': None, 'batch': batch, 'candidates': result,
                'reason': f'no INT8 variant reached {min_agreement:.0%} top-1 agreement with FP32'}
    best = max(passed, key=lambda k: result[k]['images_per_s'])
    failed = [k for k in result if not result[k]['passed']]
    reason = f"fastest of those with >= {min_agreement:.0%} top-1 agreement at batch {batch}"
    if failed:
        reason += f" ({', '.join(failed)} below the contract)"
    return {'picked': best, 'path': result[best]['path'], 'batch': batch, 'reason': reason, 'candidates': result}


# --- PyTorch eager under CPU autocast, the BF16 comparison point ------------------------------------------
class EagerAutocastRunner:
    """A PyTorch module under ``torch.autocast('cpu', dtype=torch.bfloat16)``, in the runner shape."""

    name = 'eager'
    precision = 'bf16'

    def __init__(self, model, input_size: Sequence[int], threads: Optional[int] = None):
        import torch
        _check_threads(threads)
        if threads:
            torch.set_num_threads(threads)
        self.model = model.eval()
        self.input_size = list(input_size)
        self.threads = threads

    def __call__(self, images: np.ndarray) -> np.ndarray:
        import torch
        with torch.inference_mode(), torch.autocast('cpu', dtype=torch.bfloat16):
            out = self.model(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)))
        return out.float().numpy()

    def prepare(self, batch: int) -> Callable[[], Any]:
        import torch
        x = torch.from_numpy(bench_input(batch, self.input_size))

        def call():
            with torch.inference_mode(), torch.autocast('cpu', dtype=torch.bfloat16):
                self.model(x)
        return call

    def describe(self) -> Dict[str, Any]:
        import torch
        support = _cpu_flags()
        native = bool(support & {'amx_bf16', 'avx512_bf16'}) if support is not None else None
        return {'runtime': 'eager', 'torch': torch.__version__, 'device': 'cpu', 'precision': 'bf16',
                'autocast': 'torch.autocast(cpu, bfloat16)', 'threads': self.threads or torch.get_num_threads(),
                'native_bf16': native}
