"""TensorRT engines from our ONNX exports, for TensorRT 10.x and 11.x, with a sidecar JSON that ties each plan
to the TensorRT version, GPU and ONNX file it was built from.

Precision, per major version (the branching lives in ``build_settings``, a pure function):

* TensorRT 10: an FP32 export builds in FP32 (strongly typed network) or, asked for ``fp16``, in a weakly typed
  network with ``BuilderFlag.FP16``. An FP16 export (``quantize --precision fp16``) and the INT8 QDQ export
  (``quantize``: explicit quantization) build strongly typed, precision from the file, no precision flags
  (NVIDIA: "Use explicit quantization with Strong Typing. Precision-control build flags are not required and
  should not be specified"). No legacy INT8 calibrator is ever used.
* TensorRT 11: networks are always strongly typed and ``BuilderFlag.FP16``/``INT8`` no longer exist, so the
  precision is the ONNX file's; asking for another precision is refused with the command that makes the file.
* ``BuilderFlag.TF32`` (on by default in both) is cleared unless ``tf32=True``, so an FP32 engine computes in
  FP32 and parity with PyTorch holds at FP32 tolerances.

The build: ``Builder.create_network(flags)``, ``OnnxParser.parse_from_file`` (parser errors reported with their
node), ``IBuilderConfig.set_memory_pool_limit(MemoryPoolType.WORKSPACE, ...)``, one ``IOptimizationProfile``
(min/opt/max batch for every network input), a timing cache read from and written back to a file
(``create_timing_cache``/``set_timing_cache``/``get_timing_cache().serialize()``), ``build_serialized_network``.
The plan and its sidecar (``<plan>.json``) are written whole or not at all through ``timm_recal.outputs``.
``load_engine`` refuses a plan whose sidecar names another TensorRT version, GPU or compute capability, another
source ONNX (SHA-256), or whose bytes are not the ones the sidecar describes.

Written against, and reviewed with, the TensorRT Python API documentation (docs.nvidia.com/deeplearning/tensorrt):
``_static/python-api/infer/Core/Builder.html`` (10.x latest and 11.0.0: ``NetworkDefinitionCreationFlag``, 11.0
marks ``STRONGLY_TYPED`` deprecated and ignored), ``infer/Core/BuilderConfig.html`` (``BuilderFlag``,
``MemoryPoolType``, ``set_memory_pool_limit``, timing cache), ``infer/Core/OptimizationProfile.html``,
``infer/Core/Engine.html`` (``num_io_tensors``, ``get_tensor_name/mode/shape/dtype``,
``get_tensor_profile_shape``), ``infer/Core/Runtime.html`` (``deserialize_cuda_engine``),
``parsers/Onnx/pyOnnx.html`` (``OnnxParser``, ``parse_from_file``, ``get_error``), the migration guides
``api/migration/tensorrt-10x-to-11x-python-api-reference.html`` (removed: ``BuilderFlag.FP16/INT8/...``,
``int8_calibrator``, ``platform_has_fast_fp16``) and ``tensorrt-10x-to-11x-python-api-patterns.html``, the 11.0.0
release notes ("Strongly typed networks are now the default ... Weak typing is no longer supported") and
``inference-library/quantized-types-explicit-quantization.html``. TensorRT could not be installed where this was
written (no GPU, NVIDIA's index unreachable): the calls are by construction, checked against those pages and
against the binding names inside the ``tensorrt-cu12-bindings`` wheels 10.13.3.9 and 11.4.0.106 from PyPI (every
attribute used here appears in both, ``BuilderFlag.FP16`` and ``EXPLICIT_BATCH`` only in 10.x, and 11.x documents
``STRONGLY_TYPED`` as "Strongly typed mode is always enabled"); the precision branching and the sidecar checks
are tested without TensorRT.
"""
import datetime
import hashlib
import json
import os
import time
from typing import Any, Callable, Dict, Optional, Tuple

from timm_recal.outputs import OutputError, OutputExistsError, check_writable_folder, resolve_output, write_bytes

from .errors import DeployError, NotAvailableHere
from .metadata import read_metadata
from .trt_ops import check_onnx_for_tensorrt

__all__ = [
    'INSTALL_HINT', 'DEFAULT_BATCH_PROFILE', 'SIDECAR_FORMAT', 'import_tensorrt', 'cuda_device', 'require_tensorrt',
    'tensorrt_major', 'build_settings', 'create_network_and_config', 'parse_batch_profile', 'sidecar_path',
    'read_sidecar', 'check_sidecar', 'file_sha256', 'build_engine', 'load_engine', 'pipeline_build', 'build_columns',
]

INSTALL_HINT = ("pip install 'timm-recal[tensorrt]' (TensorRT's libraries come from NVIDIA's package index, "
                'https://pypi.nvidia.com, and need an NVIDIA driver)')
#: min/opt/max batch of the optimization profile when neither --batch nor a fixed ONNX batch says otherwise
DEFAULT_BATCH_PROFILE = (1, 16, 64)
SIDECAR_FORMAT = 'timm-recal-tensorrt-engine/1'
PRECISIONS = ('fp32', 'fp16', 'int8')
#: ONNX metadata carried into the sidecar (Triton labels, client preprocessing, reports)
_META_KEYS = ('architecture', 'tag', 'model_spec', 'num_classes', 'input_size', 'mean', 'std', 'interpolation',
              'crop_pct', 'crop_mode', 'class_labels', 'input_name', 'output_name', 'precision')


# --- what is installed ---------------------------------------------------------------------------------------
def import_tensorrt():
    """``(tensorrt module, None)`` or ``(None, reason)``; the bindings without the libraries fail with OSError."""
    try:
        import tensorrt as trt
    except (ImportError, OSError) as e:
        return None, f'{type(e).__name__}: {str(e).splitlines()[0][:200]}' if str(e) else type(e).__name__
    return trt, None


def cuda_device(index: int = 0) -> Optional[Dict[str, Any]]:
    """Name and compute capability of CUDA device ``index`` (through torch), or None without a usable GPU."""
    try:
        import torch
        if not torch.cuda.is_available() or torch.cuda.device_count() <= index:
            return None
        major, minor = torch.cuda.get_device_capability(index)
        return {'index': index, 'name': torch.cuda.get_device_name(index), 'compute_capability': f'{major}.{minor}'}
    except Exception:  # a broken driver reports itself as an exception on first use
        return None


def require_tensorrt(device_index: int = 0):
    """``(tensorrt, gpu)``, or a ``DeployError`` that names what is missing (TensorRT, a GPU, or both) and how to
    install it. Called before anything is written."""
    trt, why = import_tensorrt()
    gpu = cuda_device(device_index)
    missing = []
    if trt is None:
        missing.append(f'TensorRT is not installed ({why}); {INSTALL_HINT}')
    if gpu is None:
        missing.append('no CUDA GPU is visible (torch.cuda.is_available() is False): TensorRT engines are built '
                       'and run on an NVIDIA GPU with its driver and a CUDA build of torch')
    if missing:
        raise DeployError('runtime trt unavailable: ' + '; and '.join(missing))
    return trt, gpu


def tensorrt_major(trt) -> int:
    """Major version of a tensorrt module (``trt.__version__``), checked to be one this code supports."""
    version = str(getattr(trt, '__version__', ''))
    try:
        major = int(version.split('.', maxsplit=1)[0])
    except ValueError:
        raise DeployError(f'cannot read the TensorRT version ({version!r})') from None
    if major not in (10, 11):
        raise DeployError(f'TensorRT {version} is not supported; this code is written for TensorRT 10.x and 11.x')
    return major


# --- the 10 vs 11 branching (pure) -----------------------------------------------------------------------------
def build_settings(major: int, onnx_precision: str, precision: Optional[str] = None,
                   tf32: bool = False) -> Dict[str, Any]:
    """How to build: ``{'precision', 'strongly_typed', 'set_flags', 'clear_flags'}`` (flag names of
    ``tensorrt.BuilderFlag``) for a TensorRT ``major`` version, an ONNX file of ``onnx_precision`` (its metadata)
    and a requested ``precision`` (None: the file's). Refuses what that TensorRT cannot do."""
    if onnx_precision not in PRECISIONS:
        raise DeployError(f'unknown ONNX precision {onnx_precision!r} in the file metadata')
    precision = precision or onnx_precision
    if precision not in PRECISIONS:
        raise DeployError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    clear = [] if tf32 else ['TF32']
    if precision == onnx_precision:  # the file's types decide: strongly typed (the only mode of TensorRT 11)
        return {'precision': precision, 'strongly_typed': True, 'set_flags': [], 'clear_flags': clear}
    if precision == 'int8':
        raise DeployError('TensorRT INT8 is built only from the QDQ ONNX that `timm-recal quantize` writes (explicit '
                          'quantization, no calibrator): quantize first, then build from that file')
    if onnx_precision != 'fp32':
        raise DeployError(f'this ONNX file is {onnx_precision}; build it as {onnx_precision} '
                          'or start from the FP32 export')
    # precision == 'fp16' from an FP32 file
    if major >= 11:
        raise DeployError('TensorRT 11 has no FP16 builder flag (networks are strongly typed: the precision comes '
                          'from the ONNX file); convert first with `timm-recal quantize IN.onnx --precision fp16` '
                          'and build from the FP16 file')
    return {'precision': 'fp16', 'strongly_typed': False, 'set_flags': ['FP16'], 'clear_flags': clear}


def create_network_and_config(trt, builder, major: int, settings: Dict[str, Any]):
    """``(network, config)`` for ``settings``: the network-creation flags and builder flags of this major version.

    TensorRT 10: ``STRONGLY_TYPED`` is requested by flag when the file's types decide; TensorRT 11 is always
    strongly typed and its ``STRONGLY_TYPED`` flag is deprecated and ignored, so no flag is passed.
    """
    flags = 0
    if settings['strongly_typed'] and major == 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    config = builder.create_builder_config()
    for name in settings['set_flags']:
        config.set_flag(getattr(trt.BuilderFlag, name))
    for name in settings['clear_flags']:
        if hasattr(trt.BuilderFlag, name):
            config.clear_flag(getattr(trt.BuilderFlag, name))
    return network, config


def parse_batch_profile(batch: Any, onnx_batch: Optional[int]) -> Tuple[int, int, int]:
    """``(min, opt, max)`` batch of the optimization profile.

    ``batch``: None (from the ONNX file: its fixed batch, or ``DEFAULT_BATCH_PROFILE`` for a dynamic axis), an int
    (a fixed batch), a ``(min, opt, max)`` sequence, or text ``"8"`` / ``"1,16,64"``.
    """
    if batch is None:
        return (onnx_batch,) * 3 if onnx_batch else DEFAULT_BATCH_PROFILE
    if isinstance(batch, str):
        try:
            batch = [int(x) for x in batch.replace(':', ',').split(',') if x.strip()]
        except ValueError:
            raise DeployError(f'--batch must be N or MIN,OPT,MAX, got {batch!r}') from None
    if isinstance(batch, int):
        batch = [batch]
    batch = list(batch)
    if len(batch) == 1:
        batch = batch * 3
    if len(batch) != 3 or not all(isinstance(b, int) and b >= 1 for b in batch) or not batch[0] <= batch[1] <= batch[2]:
        raise DeployError(f'--batch must be N or MIN,OPT,MAX with 1 <= MIN <= OPT <= MAX, got {batch}')
    if onnx_batch and batch != [onnx_batch] * 3:
        raise DeployError(f'the ONNX file has a fixed batch of {onnx_batch}; it cannot build a profile {batch}')
    return tuple(batch)


# --- sidecar ---------------------------------------------------------------------------------------------------
def sidecar_path(plan_path: str) -> str:
    return os.fspath(plan_path) + '.json'


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def read_sidecar(plan_path: str) -> Dict[str, Any]:
    """The sidecar JSON of a plan, with a clear error when it is missing or not ours."""
    path = sidecar_path(plan_path)
    if not os.path.isfile(os.fspath(plan_path)):
        raise DeployError(f'engine file not found: {plan_path}')
    try:
        with open(path) as f:
            side = json.load(f)
    except FileNotFoundError:
        raise DeployError(f'{plan_path} has no sidecar {path}: without it the TensorRT version, GPU and source ONNX '
                          'of the engine are unknown; rebuild it with `timm-recal engine`') from None
    except ValueError as e:
        raise DeployError(f'{path} is not valid JSON ({e})') from None
    if not isinstance(side, dict) or side.get('format') != SIDECAR_FORMAT:
        raise DeployError(f'{path} is not a timm-recal engine sidecar (format {SIDECAR_FORMAT})')
    return side


def check_sidecar(side: Dict[str, Any], *, trt_version: str, gpu: Dict[str, Any],
                  onnx_sha256: Optional[str] = None, plan_sha256: Optional[str] = None) -> None:
    """Refuse an engine built for another TensorRT version, GPU or compute capability, from another ONNX file,
    or whose bytes changed since it was built; one message lists every mismatch."""
    problems = []
    if side.get('tensorrt_version') != trt_version:
        problems.append(f"built with TensorRT {side.get('tensorrt_version')}, this is TensorRT {trt_version}")
    built_gpu = side.get('gpu') or {}
    if built_gpu.get('compute_capability') != gpu.get('compute_capability'):
        problems.append(f"built for compute capability {built_gpu.get('compute_capability')} "
                        f"({built_gpu.get('name')}), this GPU is {gpu.get('compute_capability')} ({gpu.get('name')})")
    elif built_gpu.get('name') != gpu.get('name'):
        problems.append(f"built on a {built_gpu.get('name')}, this GPU is a {gpu.get('name')}")
    source = side.get('source_onnx') or {}
    if onnx_sha256 is not None and source.get('sha256') != onnx_sha256:
        problems.append(f"built from another ONNX file ({source.get('path')}, SHA-256 "
                        f"{str(source.get('sha256'))[:12]}...; the given file is {onnx_sha256[:12]}...)")
    if plan_sha256 is not None and side.get('plan_sha256') != plan_sha256:
        problems.append('the plan file is not the one its sidecar describes (SHA-256 differs)')
    if problems:
        raise DeployError('refusing this TensorRT engine: ' + '; '.join(problems)
                          + '; rebuild it with `timm-recal engine`')


# --- build -----------------------------------------------------------------------------------------------------
def _make_logger(trt, verbose: bool):
    """A ``tensorrt.ILogger`` that keeps errors for the message and prints the rest only with ``verbose``."""
    errors_only = (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR)

    class Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors = []

        def log(self, severity, msg):
            if severity in errors_only:
                self.errors.append(str(msg))
            if verbose or severity in errors_only:
                print(f'[TensorRT] {severity}: {msg}', flush=True)

    return Logger()


def _dims(dims) -> list:
    return [int(d) for d in dims]


def _np_name(trt, dtype) -> str:
    import numpy as np
    if dtype == getattr(trt.DataType, 'BF16', object()):
        return 'bfloat16'
    return np.dtype(trt.nptype(dtype)).name


def _parse_errors(parser) -> str:
    out = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        node = ''
        for attr in ('node_name', 'node_operator'):
            if hasattr(err, attr):
                try:
                    node += f' {getattr(err, attr)()}'
                except Exception:
                    pass
        out.append(f'{err.desc()}{" (node" + node + ")" if node.strip() else ""}')
    return '; '.join(out[:5]) + (f' (and {len(out) - 5} more)' if len(out) > 5 else '')


def build_engine(
        onnx_path: str,
        output: str,
        *,
        batch: Any = None,
        precision: Optional[str] = None,
        workspace_mb: Optional[int] = None,
        timing_cache: Optional[str] = None,
        tf32: bool = False,
        verbose: bool = False,
        force: bool = False,
        check_ops: bool = True,
        device_index: int = 0,
) -> Dict[str, Any]:
    """Build a TensorRT engine from ``onnx_path`` into ``output`` (a ``.plan`` file, or a folder) and its sidecar.

    ``batch``: see ``parse_batch_profile``. ``precision``: None builds the ONNX file's own precision; ``fp16`` from
    an FP32 file works on TensorRT 10 only (see ``build_settings``). ``workspace_mb`` caps the builder's
    workspace pool. ``timing_cache``: a file read if present and written back after the build (reused across
    builds). ``check_ops`` runs the static operator check first and stops on its errors. Returns the sidecar
    plus ``output``/``sidecar`` paths.
    """
    onnx_path = os.fspath(onnx_path)
    meta = read_metadata(onnx_path)
    stem = os.path.splitext(os.path.basename(onnx_path))[0]
    path = _resolve_build_outputs(output, force, stem, timing_cache)
    if workspace_mb is not None and workspace_mb <= 0:
        raise DeployError(f'--workspace must be a positive number of MiB, got {workspace_mb}')
    profile = _batch_profile_of(meta, batch)
    trt, gpu = require_tensorrt(device_index)
    major = tensorrt_major(trt)
    settings = build_settings(major, meta.get('precision', 'fp32'), precision, tf32)
    if check_ops:
        ops = check_onnx_for_tensorrt(onnx_path, major)
        if not ops.passed:
            raise DeployError('the static TensorRT operator check failed (pass check_ops=False / --no-op-check to '
                              'try anyway):\n' + ops.summary())

    t0 = time.perf_counter()
    plan, config, inputs, outputs = _build_plan(trt, onnx_path, major, settings, profile, workspace_mb=workspace_mb,
                                                timing_cache=timing_cache, verbose=verbose)
    side = {
        'format': SIDECAR_FORMAT,
        'tensorrt_version': str(trt.__version__),
        'tensorrt_major': major,
        'gpu': gpu,
        'precision': settings['precision'],
        'strongly_typed': settings['strongly_typed'],
        'builder_flags_set': settings['set_flags'],
        'builder_flags_cleared': settings['clear_flags'],
        'profile': _profile_record(inputs, profile),
        'workspace_mb': workspace_mb,
        'timing_cache': os.path.abspath(timing_cache) if timing_cache else None,
        **_provenance(onnx_path, meta, plan, inputs, outputs, time.perf_counter() - t0),
    }
    _publish(plan, path, side, force)
    if timing_cache is not None:
        _save_timing_cache(config, timing_cache)
    return {**side, 'output': path, 'sidecar': sidecar_path(path)}


def pipeline_build(onnx_path: str, precision: str, *, max_batch_size: int = 0,
                   log: Optional[Callable[[str], None]] = None) -> Tuple[str, Dict[str, Any]]:
    """The ``trt`` row's builder (``runtimes.builder_hook``): ``(plan, build record)`` of the plan beside
    ``onnx_path``, with a batch profile that takes every batch Triton may send (``max_batch_size``).
    ``NotAvailableHere`` when TensorRT or a GPU is missing, or for an INT8 file not in the QDQ form TensorRT
    parses: the pipeline reports the step as skipped with the reason."""
    try:
        trt, _ = require_tensorrt()
    except DeployError as e:
        raise NotAvailableHere(str(e)) from None
    check = check_onnx_for_tensorrt(onnx_path, tensorrt_major(trt))
    if not check.passed and precision == 'int8':  # our U8S8 QDQ file: TensorRT wants signed INT8, zero point 0
        raise NotAvailableHere('the INT8 file is not in the QDQ form TensorRT parses (' + check.errors[0]['problem']
                               + '); quantize it with --symmetric (signed INT8 activations, zero point 0)')
    batch = f'1,{min(16, max_batch_size)},{max_batch_size}' if max_batch_size else None
    plan = os.path.splitext(onnx_path)[0] + '.plan'
    record = build_engine(onnx_path, plan, batch=batch)
    return plan, record


def build_columns(record: Dict[str, Any]) -> Dict[str, Any]:
    """The ``trt`` row's columns of the pipeline report's engines table (``runtimes.build_columns_hook``) from one
    ``pipeline_build`` record; a skipped build's record is empty and every cell None (shown as '-')."""
    prof = record.get('profile') or {}
    return {'TensorRT': record.get('tensorrt_version'), 'GPU': (record.get('gpu') or {}).get('name'),
            'Batch min/opt/max': '/'.join(str(prof[k][0]) for k in ('min', 'opt', 'max') if prof.get(k)) or None,
            'Plan': f"`{os.path.basename(record['output'])}`" if record.get('output') else None}


def _resolve_build_outputs(output: str, force: bool, stem: str, timing_cache: Optional[str]) -> str:
    """The plan's path; refuse, before the slow build, a sidecar or timing cache that could not be written."""
    path = resolve_output(output, force, default_name=f'{stem}.plan')
    if os.path.lexists(sidecar_path(path)) and not force:
        raise OutputExistsError(f'{sidecar_path(path)} exists; pass --force to overwrite it')
    if timing_cache is not None:  # it is rewritten after the build: refuse an unwritable place now
        if os.path.isdir(timing_cache):
            raise OutputError(f'--timing-cache {timing_cache} is a folder, expected a file')
        check_writable_folder(os.path.dirname(os.path.abspath(timing_cache)))
    return path


def _batch_profile_of(meta: Dict[str, Any], batch: Any) -> Tuple[int, int, int]:
    """The min/opt/max batch for the file's input; only the batch axis may be dynamic."""
    shape = meta.get('graph_input_shape') or []
    profile = parse_batch_profile(batch, shape[0] if shape else None)
    if any(d is None for d in shape[1:]):
        raise DeployError(f'the ONNX input {meta.get("input_name")} has dynamic axes besides the batch ({shape}); '
                          'export with a fixed image size')
    return profile


def _build_plan(trt, onnx_path: str, major: int, settings: Dict[str, Any], profile: Tuple[int, int, int], *,
                workspace_mb: Optional[int], timing_cache: Optional[str], verbose: bool):
    """Parse ``onnx_path`` and build the serialized engine: ``(plan bytes, builder config, inputs, outputs)``."""
    logger = _make_logger(trt, verbose)
    builder = trt.Builder(logger)
    network, config = create_network_and_config(trt, builder, major, settings)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(onnx_path):
        raise DeployError(f'the TensorRT ONNX parser rejected {onnx_path}: {_parse_errors(parser)}')
    if workspace_mb is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if verbose:
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    inputs, outputs = _add_batch_profile(trt, builder, network, config, profile)
    _attach_timing_cache(config, timing_cache)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        detail = '; '.join(logger.errors[-3:]) or 'no error message; rerun with --verbose'
        raise DeployError(f'TensorRT could not build an engine from {onnx_path}: {detail}')
    return bytes(memoryview(serialized)), config, inputs, outputs


def _add_batch_profile(trt, builder, network, config, profile: Tuple[int, int, int]) -> Tuple[list, list]:
    """Give every network input the min/opt/max batch ``profile``; return the inputs' and outputs' records."""
    opt_profile = builder.create_optimization_profile()
    inputs, outputs = [], []
    for i in range(network.num_inputs):
        t = network.get_input(i)
        dims = _dims(t.shape)
        shapes = [[b] + dims[1:] for b in profile]
        opt_profile.set_shape(t.name, *shapes)
        inputs.append({'name': t.name, 'shape': [-1] + dims[1:] if dims and dims[0] == -1 else dims,
                       'dtype': _np_name(trt, t.dtype)})
    for i in range(network.num_outputs):
        t = network.get_output(i)
        outputs.append({'name': t.name, 'shape': _dims(t.shape), 'dtype': _np_name(trt, t.dtype)})
    config.add_optimization_profile(opt_profile)
    return inputs, outputs


def _attach_timing_cache(config, timing_cache: Optional[str]) -> None:
    """Start from the cache file when there is one (a new cache when it was made on another GPU/version)."""
    if timing_cache is None:
        return
    cache_blob = b''
    if os.path.isfile(timing_cache):
        with open(timing_cache, 'rb') as f:
            cache_blob = f.read()
    cache = config.create_timing_cache(cache_blob)
    if not config.set_timing_cache(cache, ignore_mismatch=False):  # made on another GPU/version: start anew
        print(f'note: timing cache {timing_cache} does not match this GPU/TensorRT; starting a new one',
              flush=True)
        config.set_timing_cache(config.create_timing_cache(b''), ignore_mismatch=False)


def _save_timing_cache(config, timing_cache: str) -> None:
    """Write the cache back for the next build; the engine is already in place, so say only the cache failed."""
    blob = config.get_timing_cache().serialize()
    try:
        write_bytes(bytes(memoryview(blob)), timing_cache, force=True)
    except OutputError as e:
        raise DeployError(f'the engine was written but not the timing cache: {e}') from None


def _profile_record(inputs: list, profile: Tuple[int, int, int]) -> Dict[str, Any]:
    """The sidecar's ``profile``: the first input's min/opt/max shapes."""
    if not inputs:
        return {'input': None, 'min': None, 'opt': None, 'max': None}
    rest = inputs[0]['shape'][1:]
    return {'input': inputs[0]['name'], 'min': [profile[0]] + rest, 'opt': [profile[1]] + rest,
            'max': [profile[2]] + rest}


def _provenance(onnx_path: str, meta: Dict[str, Any], plan: bytes, inputs: list, outputs: list,
                build_s: float) -> Dict[str, Any]:
    """The sidecar's record of what the plan was built from, what it holds and when."""
    return {
        'source_onnx': {'path': os.path.abspath(onnx_path), 'sha256': file_sha256(onnx_path),
                        'bytes': os.path.getsize(onnx_path)},
        'inputs': inputs,
        'outputs': outputs,
        'metadata': {k: meta[k] for k in _META_KEYS if k in meta},
        'plan_sha256': hashlib.sha256(plan).hexdigest(),
        'plan_bytes': len(plan),
        'build_seconds': round(build_s, 3),
        'built_at': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
    }


def _publish(plan: bytes, path: str, side: Dict[str, Any], force: bool) -> None:
    """Plan and sidecar whole or not at all: the sidecar is published inside the plan's atomic write, and if the
    plan then cannot be renamed into place the new sidecar is taken away again (the previous one restored)."""
    import contextlib
    import shutil
    from timm_recal.outputs import atomic_output, temp_name, write_json
    side_path = sidecar_path(path)
    backup = None
    side_written = False
    try:
        with atomic_output(path, force) as tmp:
            with open(tmp, 'wb') as f:
                f.write(plan)
                f.flush()
                os.fsync(f.fileno())
            if force and os.path.isfile(side_path):
                backup = temp_name(side_path)
                shutil.copy2(side_path, backup)
            write_json(side, side_path, force)
            side_written = True
    except BaseException:
        if side_written:
            if backup:
                os.replace(backup, side_path)
                backup = None
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(side_path)
        raise
    finally:
        if backup:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(backup)


# --- load ------------------------------------------------------------------------------------------------------
def load_engine(plan_path: str, onnx_path: Optional[str] = None, device_index: int = 0, verbose: bool = False):
    """``(engine, sidecar, tensorrt, keepalive)`` for a plan (hold ``keepalive``, the runtime and logger, as long as
    the engine: the engine must not outlive its runtime), after refusing one built for another TensorRT version, GPU
    or (when ``onnx_path`` is given) another ONNX file; see ``check_sidecar``."""
    side = read_sidecar(plan_path)
    trt, gpu = require_tensorrt(device_index)
    with open(plan_path, 'rb') as f:
        plan = f.read()
    check_sidecar(side, trt_version=str(trt.__version__), gpu=gpu,
                  onnx_sha256=file_sha256(onnx_path) if onnx_path else None,
                  plan_sha256=hashlib.sha256(plan).hexdigest())
    logger = _make_logger(trt, verbose)
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        detail = '; '.join(logger.errors[-3:]) or 'no error message'
        raise DeployError(f'TensorRT could not deserialize {plan_path}: {detail}')
    return engine, side, trt, (runtime, logger)
