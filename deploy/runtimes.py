"""The one runtime vocabulary and the one runtime table of the deploy stage.

Every verb that runs a model takes ``--runtimes`` with these words; each word names an opener that returns a
``Runner``. ONNX runtimes share one opener signature::

    open_x(onnx_path: str, *, precision: str = 'fp32', threads: Optional[int] = None, **options) -> Runner

and the eager ones take the PyTorch module instead of a path (``kind == 'model'``). Openers are imported by
module path on first use, so a runtime whose library is missing costs nothing until asked for, and then fails
with a ``DeployError`` that names the package and the extra to install.

A ``Runner`` has ``name`` (its runtime word), ``precision`` and ``input_size``; ``runner(images)`` maps a float32
NCHW batch to float32 logits (numpy); ``describe()`` is a JSON-able dict (library versions, device, precision,
threads, dynamic/fixed shape, notes); ``prepare(batch)`` returns a zero-argument call that runs one prepared
batch (its input built once, outside the timing) for ``bench``. A runner that cannot take a batch size raises
``BatchNotSupported`` from ``prepare``.
"""
import importlib
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .errors import BatchNotSupported, DeployError

__all__ = ['RuntimeSpec', 'RUNTIMES', 'PRECISIONS', 'FILE_PRECISIONS', 'EAGER_PRECISIONS', 'Runner',
           'BatchNotSupported', 'runtime_spec', 'parse_runtimes', 'open_runtime', 'bench_input', 'check_precisions',
           'runtime_label', 'supports_precision', 'native_bf16', 'artifact_hook', 'numbers_hook', 'builder_hook',
           'build_columns_hook', 'numbers_text_hook', 'vs_best_eager_kind',
           'default_runtimes', 'builder_runtimes', 'DEFAULT_ONNX_RUNTIME', 'REFERENCE_RUNTIME', 'PACKAGE_RUNTIME',
           'device_kind', 'package_runtime', 'package_source_hook']

#: precisions a runtime can run (``--precision``); ``eager --amp`` adds ``EAGER_PRECISIONS``
PRECISIONS: Tuple[str, ...] = ('fp32', 'fp16', 'bf16', 'int8')
#: precisions an ONNX file (or a compiled engine) can have; ``bf16`` is a runtime precision of the FP32 file
#: (OpenVINO's inference precision hint, PyTorch eager's CPU autocast), never a file of its own
FILE_PRECISIONS: Tuple[str, ...] = ('fp32', 'fp16', 'int8')
EAGER_PRECISIONS: Tuple[str, ...] = ('amp_bf16', 'amp_fp16')


@dataclass(frozen=True)
class RuntimeSpec:
    """One row of the runtime table."""
    word: str
    label: str                  # for reports and plots
    kind: str                   # 'onnx' (opener takes an ONNX file) or 'model' (takes the PyTorch module)
    opener: str                 # 'module:function', relative to this package
    package: str                # what provides it, for the error when it is missing
    extra: str                  # pip extra of timm-recal that installs it
    gpu: bool = False           # needs a CUDA device
    providers: Tuple[str, ...] = ()  # ONNX Runtime execution providers, in preference order
    precisions: Tuple[str, ...] = FILE_PRECISIONS  # what ``--precision`` may ask of it
    reference: bool = False     # PyTorch eager: what parity compares the others with (never parity-checked)
    #: 'module:function' picking or building the file it opens for one bench side and precision (``artifact_hook``)
    artifact: Optional[str] = None
    #: ``(bench record field, 'module:function')``: numbers beyond images/s of its timed runners (``numbers_hook``)
    extra_numbers: Optional[Tuple[str, str]] = None
    #: 'module:function' ``fn(numbers) -> str``: how ``bench``'s text output shows those numbers
    #: (``numbers_text_hook``)
    numbers_text: Optional[str] = None
    #: the name its FP32-over-best-eager ratio goes by (``<ratio_name>_vs_best_eager``): ONNX Runtime's providers
    #: share 'ort', the name records have always had; its word when None (``vs_best_eager_kind``)
    ratio_name: Optional[str] = None
    #: device kinds ('cpu', 'cuda': ``device_kind``) on which bench runs it when ``--runtimes`` is not given
    default_on: Tuple[str, ...] = ()
    #: device kinds on which the pipeline's default adds it to bench's, when its ``package`` is importable (the
    #: pipeline recommends a runtime; bench's default stays the one every install has)
    pipeline_on: Tuple[str, ...] = ()
    #: the ONNX runtime a run checks its files with when it names none; its parity records keep the short names
    #: (``parity_{precision}.json``) and its FP32 speed is what reports compare with (``DEFAULT_ONNX_RUNTIME``)
    onnx_default: bool = False
    #: 'module:function' building a file of its own from an ONNX file before it can open or serve it (TensorRT's
    #: plan): the pipeline's ``engine`` stage runs every row that has one (``builder_hook``)
    builder: Optional[str] = None
    #: 'module:function' ``fn(build record) -> {column header: value}``: what the report's engines table shows of
    #: one file its ``builder`` made (the same keys for a skipped build's empty record); None: the file's name
    #: (``build_columns_hook``)
    build_columns: Optional[str] = None
    #: its builder parses only signed INT8 QDQ files (zero point 0): the pipeline quantizes symmetrically for it
    int8_symmetric: bool = False
    #: a table header's short name ('ORT'); the label when None
    short_label: Optional[str] = None
    #: a reference row's memory layout, as tables tag the faster of them ('NCHW', 'CL')
    layout: Optional[str] = None
    #: the suffix of a compiled file of its own that it opens as well as a MODEL (AOTInductor's '.pt2'); a
    #: stage given such a file runs it under this row (``PACKAGE_RUNTIME``)
    package_suffix: Optional[str] = None
    #: 'module:function' resolving such a file into a stage's ``Source`` (``kind == 'package'``: its metadata's
    #: preprocessing and naming, checked loadable here) (``package_source_hook``)
    package_source: Optional[str] = None


#: the runtime table; a new runtime is one row here plus its opener module
RUNTIMES: Dict[str, RuntimeSpec] = {r.word: r for r in (
    RuntimeSpec('eager', 'PyTorch eager (NCHW)', 'model', 'eager_runtime:open_eager', 'torch', 'deploy',
                precisions=('fp32', 'bf16'), reference=True, default_on=('cpu', 'cuda'), layout='NCHW'),
    RuntimeSpec('eager_cl', 'PyTorch eager (channels_last)', 'model', 'eager_runtime:open_eager_cl', 'torch',
                'deploy', precisions=('fp32', 'bf16'), reference=True, default_on=('cpu', 'cuda'), layout='CL'),
    RuntimeSpec('ort', 'ONNX Runtime CPU', 'onnx', 'ort_runtime:open_ort', 'onnxruntime', 'deploy',
                providers=('CPUExecutionProvider',), default_on=('cpu',), onnx_default=True, short_label='ORT',
                ratio_name='ort'),
    RuntimeSpec('ort_cuda', 'ONNX Runtime CUDA', 'onnx', 'ort_runtime:open_ort_cuda', 'onnxruntime-gpu', 'deploy',
                gpu=True, providers=('CUDAExecutionProvider', 'CPUExecutionProvider'), default_on=('cuda',),
                ratio_name='ort'),
    RuntimeSpec('ort_trt', 'ONNX Runtime TensorRT', 'onnx', 'ort_runtime:open_ort_trt', 'onnxruntime-gpu',
                'deploy', gpu=True,
                providers=('TensorrtExecutionProvider', 'CUDAExecutionProvider', 'CPUExecutionProvider'),
                default_on=('cuda',), ratio_name='ort'),
    RuntimeSpec('openvino', 'OpenVINO CPU', 'onnx', 'openvino_runtime:open_openvino', 'openvino', 'openvino',
                precisions=('fp32', 'bf16', 'int8'), artifact='openvino_int8:bench_artifact', pipeline_on=('cpu',)),
    RuntimeSpec('trt', 'TensorRT', 'onnx', 'tensorrt_runtime:open_tensorrt', 'tensorrt', 'tensorrt', gpu=True,
                extra_numbers=('tensorrt', 'tensorrt_runtime:bench_numbers'),
                numbers_text='tensorrt_runtime:numbers_text',
                builder='tensorrt_build:pipeline_build', build_columns='tensorrt_build:build_columns',
                int8_symmetric=True),
    # compiled PyTorch (CPU and CUDA): torch.compile in this process; an AOTInductor package built in a child
    RuntimeSpec('inductor', 'PyTorch inductor (torch.compile)', 'model', 'inductor_runtime:open_inductor', 'torch',
                'deploy', precisions=('fp32', 'bf16', 'fp16')),
    RuntimeSpec('aoti', 'PyTorch AOTInductor (.pt2)', 'model', 'aoti_runtime:open_aoti', 'torch', 'deploy',
                precisions=('fp32', 'bf16', 'fp16'), package_suffix='.pt2',
                package_source='aoti_package:package_source'),
)}
#: the ONNX runtime of a run that names none (parity's files, the speed reports compare with)
DEFAULT_ONNX_RUNTIME: str = next(w for w, r in RUNTIMES.items() if r.onnx_default)
#: the PyTorch side of every parity check, and what validate runs a module with when no runtime is named
REFERENCE_RUNTIME: str = next(w for w, r in RUNTIMES.items() if r.reference)
#: the runtime that runs a compiled package file (a ``.pt2``) given to a stage
PACKAGE_RUNTIME: str = next(w for w, r in RUNTIMES.items() if r.package_suffix)


def runtime_spec(word: str) -> RuntimeSpec:
    """The table row of ``word``; an unknown word lists the known ones."""
    spec = RUNTIMES.get(word)
    if spec is None:
        raise DeployError(f"unknown runtime {word!r}; choose from {', '.join(RUNTIMES)}")
    return spec


def runtime_label(word: str) -> str:
    return RUNTIMES[word].label if word in RUNTIMES else word


def device_kind(device: str) -> str:
    """``'cuda'`` for ``cuda``/``cuda:N``, else ``'cpu'``: the key of a row's ``default_on``/``pipeline_on``."""
    return 'cuda' if str(device).startswith('cuda') else 'cpu'


def default_runtimes(device: str, *, pipeline: bool = False) -> List[str]:
    """The runtimes a run on ``device`` times without ``--runtimes``, in table order: the rows whose
    ``default_on`` names its kind; with ``pipeline``, then those whose ``pipeline_on`` does and whose package
    is importable (nothing is imported)."""
    import importlib.util
    kind = device_kind(device)
    words = [w for w, r in RUNTIMES.items() if kind in r.default_on]
    if pipeline:
        words += [w for w, r in RUNTIMES.items() if kind in r.pipeline_on and w not in words
                  and importlib.util.find_spec(r.package) is not None]
    return words


def builder_runtimes() -> List[str]:
    """The runtimes that build a file of their own from an ONNX file (``builder``), in table order."""
    return [w for w, r in RUNTIMES.items() if r.builder]


def parse_runtimes(text: Any) -> List[str]:
    """``'eager,ort'`` (or a sequence) -> checked, de-duplicated runtime words; the ``--runtimes`` parser."""
    items = text.split(',') if isinstance(text, str) else list(text or [])
    words = list(dict.fromkeys(str(w).strip() for w in items if str(w).strip()))
    unknown = [w for w in words if w not in RUNTIMES]
    if unknown:
        raise DeployError(f"unknown runtime(s) {', '.join(unknown)}; choose from {', '.join(RUNTIMES)}")
    if not words:
        raise DeployError(f"--runtimes wants comma-separated words from {', '.join(RUNTIMES)}")
    return words


def check_precisions(precisions: Sequence[str]) -> List[str]:
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad:
        raise DeployError(f"unknown precision(s) {', '.join(bad)}; choose from {', '.join(PRECISIONS)}")
    return list(dict.fromkeys(precisions))


def supports_precision(word: str, precision: str) -> bool:
    """Whether runtime ``word`` runs ``precision`` (``bf16``: OpenVINO's hint and eager autocast; not ONNX Runtime)."""
    return precision in runtime_spec(word).precisions


def native_bf16() -> Optional[bool]:
    """Whether this CPU has native BF16 (AMX-BF16 or AVX512_BF16) per ``/proc/cpuinfo`` (None where unreadable)."""
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as f:
            for line in f:
                if line.startswith('flags'):
                    return bool(set(line.split(':', 1)[1].split()) & {'amx_bf16', 'avx512_bf16'})
    except OSError:
        pass
    return None


def _opener(spec: RuntimeSpec) -> Callable[..., 'Runner']:
    return _hook(spec, spec.opener)


def artifact_hook(word: str) -> Optional[Callable[..., Any]]:
    """``fn(path, precision, files, src, options, workdir, notes, log, role) -> (path to open, record or None)``:
    the file runtime ``word`` opens for one bench side (the given ``path`` unless it picks or builds its own;
    the record says what and why), or None when it opens the given file."""
    spec = runtime_spec(word)
    return _hook(spec, spec.artifact) if spec.artifact else None


def numbers_hook(word: str) -> Optional[Tuple[str, Callable[..., Any]]]:
    """``(bench record field, fn(timed, batches, options, notes, log) -> list)``: the numbers a runtime's users
    expect beyond images/s (``trt``: trtexec's), or None."""
    spec = runtime_spec(word)
    return (spec.extra_numbers[0], _hook(spec, spec.extra_numbers[1])) if spec.extra_numbers else None


def numbers_text_hook(word: str) -> Optional[Tuple[str, Callable[[Any], str]]]:
    """``(bench record field, fn(numbers) -> str)``: how ``bench``'s text output shows runtime ``word``'s
    ``extra_numbers`` (``trt``: trtexec's summary lines), or None."""
    spec = runtime_spec(word)
    return (spec.extra_numbers[0], _hook(spec, spec.numbers_text)) if spec.extra_numbers and spec.numbers_text \
        else None


def vs_best_eager_kind(word: str) -> str:
    """The ratio kind of runtime ``word``'s FP32 over the best FP32 eager: ``<ratio_name>_vs_best_eager`` of its
    row (``ort_vs_best_eager`` for every ONNX Runtime provider), ``<word>_vs_best_eager`` for a row without one
    or a word not in the table (a record of another version)."""
    spec = RUNTIMES.get(word)
    return f'{(spec.ratio_name if spec and spec.ratio_name else word)}_vs_best_eager'


def package_runtime(path: Any) -> Optional[str]:
    """The runtime whose compiled file ``path`` is (by its row's ``package_suffix``), or None."""
    name = str(path).lower()
    return next((w for w, r in RUNTIMES.items() if r.package_suffix and name.endswith(r.package_suffix)), None)


def package_source_hook(word: str) -> Callable[..., Any]:
    """``fn(path, device) -> Source``: a compiled file of runtime ``word`` as a stage's source, refused unless it
    runs on ``device`` (the stage's ``--device``)."""
    spec = runtime_spec(word)
    if not spec.package_source:
        raise DeployError(f'runtime {word} has no compiled file of its own')
    return _hook(spec, spec.package_source)


def builder_hook(word: str) -> Optional[Callable[..., Any]]:
    """``fn(onnx_path, precision, *, max_batch_size, log) -> (built file, JSON-able record)``: the file runtime
    ``word`` builds from an ONNX file (beside it), or None when it opens ONNX files as they are. It raises
    ``NotAvailableHere`` (the reason) when this machine or this file cannot be built for: a skip, not a failure."""
    spec = runtime_spec(word)
    return _hook(spec, spec.builder) if spec.builder else None


def build_columns_hook(word: str) -> Optional[Callable[[Dict[str, Any]], Dict[str, Any]]]:
    """``fn(build record) -> {column header: value}``: the columns of the report's engines table that runtime
    ``word`` fills from a record of its ``builder``, or None (the table then shows the built file alone)."""
    spec = runtime_spec(word)
    return _hook(spec, spec.build_columns) if spec.build_columns else None


def _hook(spec: RuntimeSpec, ref: str) -> Callable[..., Any]:
    module, _, function = ref.partition(':')
    try:
        mod = importlib.import_module(f'{__package__}.{module}')
    except ModuleNotFoundError as e:
        missing = e.name or module
        raise DeployError(f"runtime {spec.word} needs the '{spec.package}' package (missing: {missing}); "
                          f"install it with: pip install 'timm-recal[{spec.extra}]'") from None
    return getattr(mod, function)


def open_runtime(word: str, source: Any, *, precision: str = 'fp32', threads: Optional[int] = None,
                 **options) -> 'Runner':
    """Open ``source`` (an ONNX path, or the PyTorch module for ``kind == 'model'``) under runtime ``word``."""
    spec = runtime_spec(word)
    return _opener(spec)(source, precision=precision, threads=threads, **options)


def bench_input(batch: int, input_size: Sequence[int]) -> 'np.ndarray':
    """The benchmark input: standard-normal float32 values, seeded, so every runner sees the same numbers."""
    import numpy as np  # lazily: the command line reads this table without numpy
    return np.random.default_rng(0).standard_normal((batch, *input_size), dtype=np.float32)


class Runner:
    """The shape every runtime's runner has (see the module docstring); subclasses implement ``__call__``."""

    name: str = ''
    precision: str = 'fp32'
    input_size: Tuple[int, ...] = ()

    def __call__(self, images: 'np.ndarray') -> 'np.ndarray':
        raise NotImplementedError

    def describe(self) -> Dict[str, Any]:
        return {'runtime': self.name, 'precision': self.precision}

    def prepare(self, batch: int) -> Callable[[], Any]:
        """A zero-argument call running one batch of ``bench_input``; subclasses move more work out of it."""
        x = bench_input(batch, self.input_size)
        return lambda: self(x)
