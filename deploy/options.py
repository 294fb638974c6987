"""Small typed option groups shared by the deploy stages and their command line.

Each stage takes one options object built from these groups (``ParityOptions(ModelOptions, RuntimeOptions,
...)``); an argparse option's ``dest`` is the field name, so ``from_args`` builds any stage's options from the
parsed command line, and ``with_overrides`` lets Python callers pass single fields as keywords.
"""
import argparse
import dataclasses
from dataclasses import dataclass
from typing import Any, List, Optional, Type, TypeVar

from .triton_backends import DEFAULT_BACKEND

__all__ = ['EXPORTERS', 'GATE_REWRITES', 'PIPELINE_STAGES', 'DEFAULT_PIPELINE_STAGES', 'TritonOptions', 'ModelOptions', 'RuntimeOptions', 'Int8Options', 'OutputOptions', 'DataOptions', 'TimingOptions',
           'from_args', 'with_overrides', 'int8_kwargs']

T = TypeVar('T')

#: the torch.onnx exporters ``export`` offers (here, so that the command line needs no torch)
EXPORTERS = ('dynamo', 'legacy')
#: the exact gate rewrites a user can ask for (``export``/``quantize --gate-fusion``; ``gate_fusion.REWRITES``)
GATE_REWRITES = ('early_squeeze',)
#: the pipeline's stages in the order they run (``pipeline.STAGE_STEPS`` has each one's function)
PIPELINE_STAGES = ('export', 'quantize', 'parity', 'validate', 'bench', 'engine', 'triton', 'report')
#: what ``--stages`` defaults to: the serving stages (TensorRT engine, Triton repository) run only when named
DEFAULT_PIPELINE_STAGES = tuple(s for s in PIPELINE_STAGES if s not in ('engine', 'triton'))


@dataclass
class ModelOptions:
    """How to build the PyTorch model of a MODEL spec (the ``model`` argument group)."""
    checkpoint: Optional[str] = None
    num_classes: Optional[int] = None
    use_ema: bool = False
    img_size: Optional[int] = None
    device: str = 'cpu'
    amp: bool = False


@dataclass
class RuntimeOptions:
    """Which runtimes run the model (words of ``runtimes.RUNTIMES``) and their intra-op threads."""
    runtimes: Optional[List[str]] = None
    threads: Optional[int] = None
    compile_timeout: Optional[float] = None  # seconds a compiled runtime's compile may take (inductor, aoti)


@dataclass
class DataOptions:
    """Images to measure on (None: the bundled samples), how many, in which batches."""
    data: Optional[str] = None
    limit: Optional[int] = None
    batch_size: int = 16
    folder_order: bool = False


@dataclass
class Int8Options:
    """How an INT8 file is calibrated (``quantize_int8``)."""
    calib_data: Optional[str] = None
    calib_images: int = 512
    calib_method: str = 'minmax'
    moving_average: bool = True
    fp32_layers: int = 0
    gates_float: bool = False           # every gate's pool .. multiply branch left in float (OpenVINO INT8)
    gate_fusion: Optional[str] = None   # None or 'early_squeeze', applied to the FP32 source (ORT INT8)
    symmetric: bool = False             # signed INT8 activations, zero points 0 (TensorRT's QDQ form)


@dataclass
class TimingOptions:
    """Bench timing windows."""
    warmup: int = 3
    repeats: int = 5
    min_time_s: float = 1.0
    min_iters: int = 2
    #: glibc keeps freed memory while timing (``malloc_policy.keep_freed_memory``), as jemalloc/tcmalloc would
    keep_freed_memory: bool = False


@dataclass
class TritonOptions:
    """A Triton model repository (``triton.write_triton_repository``): backend and batching."""
    backend: str = DEFAULT_BACKEND
    max_batch_size: int = 64
    preferred_batch_sizes: List[int] = dataclasses.field(default_factory=list)
    queue_delay_us: int = 100
    instances: int = 1


@dataclass
class OutputOptions:
    """``-o`` (a file or a folder) and ``--force``."""
    output: Optional[str] = None
    force: bool = False


def from_args(cls: Type[T], args: argparse.Namespace) -> T:
    """``cls`` filled from the parsed command line: every field whose name is an argument ``dest``."""
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)})


def with_overrides(cls: Type[T], options: Optional[T], overrides: dict) -> T:
    """``options`` (or ``cls()``) with the keyword ``overrides`` applied; an unknown name is a TypeError."""
    base = options if options is not None else cls()
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"{cls.__name__} has no option(s) {', '.join(unknown)}")
    return dataclasses.replace(base, **overrides)


def int8_kwargs(options: Any) -> Int8Options:
    """The ``Int8Options`` part of a larger options object."""
    return Int8Options(**{f.name: getattr(options, f.name) for f in dataclasses.fields(Int8Options)})
