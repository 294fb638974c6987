"""AOTInductor packages (``.pt2``): ``torch.export`` with a dynamic batch ``Dim`` and AOTInductor, compiled in a
child process (``compiled.run_child``) and cached.

A package holds the dynamic-batch model (``model``, the one Triton's ``torch_aoti`` and ``aoti_load_package``
load) and a static model per ``--static-batches`` size (``batch_N``; default batch 1 on CPU, none on CUDA),
which the ``aoti`` runner uses for that batch: on CPU a dynamic batch symbol costs most of a small batch's speed
(resnet18 at batch 1 on a 2-core EPYC: 10.8 img/s dynamic, 53.5 static, 40 eager), while from a batch of 16
both run alike. Each static model carries its own copy of the weights, so the package grows by one model's size
per static batch.

A package carries the provenance our ONNX files carry (model spec, weights and their SHA-256, preprocessing,
labels: ``export.PROVENANCE_KEYS``) plus the torch version, device (on the CPU, the vector ISA its code needs),
dtype, memory format and batch range it was compiled for, as JSON under the ``timm_recal`` key of AOTInductor's own ``aot_inductor.metadata`` (the
supported way: it is compiled into the package and written beside it as ``*wrapper_metadata.json``).
``package_metadata`` reads that JSON from the zip without loading the shared library, so a package of another
torch version or device is refused in one line before anything is loaded.

The cache (``compiled.cache_dir('aoti')``) holds one package per (architecture, weights hash after
``prepare_for_compile``, module types and the source files that define them, timm and timm_recal versions, input
size, torch version, device, dtype, memory format, batch range):
bench, parity and the pipeline's stages compile a model once. Packages enter it by one rename; a use marks a
package as recent, and after each compile the least recently used ones are removed until the cache fits in
``$TIMM_RECAL_CACHE_MAX_GB`` (``compiled.trim_cache``).

A package names no local folder (the README's Guarantees): it is compiled without the compiler's line tables
(``aot_inductor.enable_line_tables``), and ``build_package``, the one place packages are written, rewrites the zip
once before it leaves the child: AOTInductor's C++ sources (kept for reading only, with compile commands naming
the Python, torch and cache folders; loading needs the library alone) are left out, and the few header and source
names the library keeps in its strings (``__FILE__`` of the runtime's checks, which no config moves) become
relative paths of the same length, so no byte of the library moves.

``python -m timm_recal_deploy.aoti_package JOB.json`` is the child that compiles.
"""
import hashlib
import json
import os
import platform
import shutil
import struct
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from timm_recal.outputs import call_atomically, public_paths, resolve_output, temporary_folder

from .compiled import (CACHE_MAX_ENV, cache_dir, cache_limit_bytes, code_digest, compiled_dtype,
                       conv_macs_per_image, crash_if_asked, device_name, module_types, prepare_for_compile, run_child,
                       touch_cached, trim_cache, weight_prepack)
from .eager_runtime import check_device
from .errors import DeployError
from .export import PROVENANCE_KEYS, _trial_forward, default_onnx_name, library_versions
from .options import ModelOptions, OutputOptions, with_overrides
from .results import Result
from .runtimes import device_kind
from .sources import HASHED_WEIGHTS, NAMING_KEYS, Source, is_onnx_path, onnx_data_config, open_source, weights_digest

__all__ = ['AotiExportOptions', 'AotiExportResult', 'export_aoti', 'cached_package', 'package_metadata',
           'check_package', 'build_package', 'PACKAGE_KEY', 'DEFAULT_MAX_BATCH', 'PACKAGE_PRECISIONS',
           'is_package_path', 'package_source', 'inspect_package', 'default_static_batches', 'static_model_name',
           'DYNAMIC_MODEL', 'triton_package', 'triton_export', 'check_libraries', 'compiled_cpu_isa',
           'missing_cpu_isa', 'dynamic_model_package']

#: the ``aot_inductor.metadata`` entry holding our JSON
PACKAGE_KEY = 'timm_recal'
#: the batch range a package takes: 1..DEFAULT_MAX_BATCH (``--max-batch``)
DEFAULT_MAX_BATCH = 1024
#: batches compiled as static models beside the dynamic one, per device kind, when ``--static-batches`` is not
#: given: measured on CPU; on CUDA the runner replays a CUDA graph at small batches and a static model would
#: double a compile that the one GPU check (``benchmarks/gpu/run.sh``) must fit in minutes, so none until measured
STATIC_BATCHES_BY_DEVICE: Dict[str, Tuple[int, ...]] = {'cpu': (1,), 'cuda': ()}
#: the package's model names: the dynamic model is AOTInductor's default; static ones are named by their batch
DYNAMIC_MODEL = 'model'
#: the example batch torch.export traces with (a batch of 1 would be specialized away)
EXAMPLE_BATCH = 2
PACKAGE_PRECISIONS = ('fp32', 'bf16', 'fp16')
#: ELF ``e_machine`` numbers by ``platform.machine()``: a library for another machine never loads (unknown: unchecked)
ELF_MACHINES = {'x86_64': 62, 'amd64': 62, 'aarch64': 183, 'arm64': 183, 'ppc64le': 21, 's390x': 22}


@dataclass
class AotiExportOptions(ModelOptions, OutputOptions):
    precision: str = 'fp32'
    max_batch: int = DEFAULT_MAX_BATCH
    static_batches: Optional[Tuple[int, ...]] = None  # None: ``default_static_batches(device)``
    compile_timeout: Optional[float] = None


@dataclass
class AotiExportResult(Result):
    output: str
    architecture: str
    model_spec: str
    weights: str
    checkpoint: Optional[str]
    precision: str
    device: str
    memory_format: str
    batch_range: List[int]
    static_batches: List[int]
    input_size: List[int]
    num_classes: int
    torch: str
    file_bytes: int
    compile_seconds: Optional[float]  # None: taken from the cache
    cached: bool
    format: str = 'aoti'


def _memory_format(device: str) -> str:
    """channels_last on CUDA (cuDNN's fast convolution layout); on CPU freezing lays weights out for oneDNN."""
    return 'channels_last' if device.startswith('cuda') else 'contiguous'


def default_static_batches(device: str) -> Tuple[int, ...]:
    return STATIC_BATCHES_BY_DEVICE[device_kind(device)]


def static_model_name(batch: int) -> str:
    return f'batch_{int(batch)}'


def package_metadata(path: str) -> Dict[str, Any]:
    """Our JSON of a ``.pt2`` package (its dynamic model's), read from the zip without loading the library."""
    try:
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist()
                     if n.endswith('wrapper_metadata.json') and f'/aotinductor/{DYNAMIC_MODEL}/' in n]
            raw = json.loads(z.read(names[0])) if names else {}
    except FileNotFoundError:
        raise DeployError(f'{path} does not exist') from None
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise DeployError(f'{path} is not an AOTInductor package (.pt2): {e}') from None
    if PACKAGE_KEY not in raw:
        raise DeployError(f'{path} is not an AOTInductor package written by timm-recal export --format aoti '
                          '(no timm_recal metadata)')
    meta = json.loads(raw[PACKAGE_KEY])
    meta['aoti_device_key'] = raw.get('AOTI_DEVICE_KEY')
    return meta


def check_package(path: str, meta: Dict[str, Any], device: Optional[str] = None) -> None:
    """Refuse a package this process cannot load safely: another torch version, a CUDA package without CUDA,
    another device kind than ``device``, or compiled libraries missing or not for this machine
    (``check_libraries``; all checked before the shared library is loaded)."""
    built = meta.get('torch')
    if built != torch.__version__:
        raise DeployError(f'{path} was compiled with torch {built}; this is torch {torch.__version__}: compiled '
                          'packages load only in the torch they were built with (re-export it: timm-recal export '
                          'MODEL --format aoti)')
    kind = device_kind(meta.get('device', 'cpu'))
    if kind == 'cuda' and not torch.cuda.is_available():
        raise DeployError(f"{path} is a CUDA package ({meta.get('device')}); no CUDA device is available here")
    if device is not None and kind != device_kind(device):
        raise DeployError(f"{path} was compiled for {meta.get('device')}, not --device {device}")
    if kind == 'cuda' and meta.get('device') != device_name('cuda'):
        raise DeployError(f"{path} was compiled for {meta.get('device')}, this GPU is {device_name('cuda')}")
    missing = missing_cpu_isa(meta.get('cpu_isa') or '') if kind == 'cpu' else []
    if missing:
        raise DeployError(f"{path} was compiled for the CPU instructions {meta['cpu_isa']!r}; this CPU lacks "
                          f"{', '.join(missing)}, so its code would stop at an illegal instruction (re-export it on "
                          'this machine: timm-recal export MODEL --format aoti)')
    check_libraries(path, meta)


#: inductor's CPU vector ISA words (``str(cpu_vec_isa.pick_vec_isa())``, e.g. ``'avx512 avx512_vnni'``) -> whether
#: this CPU runs code compiled for them (cpuinfo, no compiler needed where a package is loaded); AMX code is also
#: built with AVX-512 BF16. An unknown word (another architecture's) is not checked.
_CPU_ISA_CHECKS: Dict[str, Callable[[], bool]] = {
    'avx2': lambda: torch.cpu._is_avx2_supported(),
    'avx512': lambda: torch.cpu._is_avx512_supported(),
    'avx512_vnni': lambda: torch.cpu._is_vnni_supported(),
    'amx_tile': lambda: torch.cpu._is_amx_tile_supported() and torch.cpu._is_avx512_bf16_supported(),
    'amx_fp16': lambda: torch.cpu._is_amx_fp16_supported(),
}


def compiled_cpu_isa() -> str:
    """The vector ISA inductor compiles CPU code for on this machine (recorded in a CPU package's metadata)."""
    from torch._inductor.cpu_vec_isa import pick_vec_isa
    return str(pick_vec_isa())


def missing_cpu_isa(isa: str) -> List[str]:
    """The words of ``isa`` (``compiled_cpu_isa`` where a package was built) this CPU lacks."""
    return [word for word in isa.split() if word in _CPU_ISA_CHECKS and not _CPU_ISA_CHECKS[word]()]


def _elf_problem(head: bytes, size: int) -> Optional[str]:
    """Why a compiled library (its first 64 bytes, its size) cannot be loaded by this process, or None: not an
    ELF shared object, another word size, byte order or machine, or cut short before its section headers."""
    if len(head) < 52 or head[:4] != b'\x7fELF':
        return 'is not a compiled library (no ELF header)'
    bits, order = {1: 32, 2: 64}.get(head[4]), {1: '<', 2: '>'}.get(head[5])
    if bits is None or order is None:
        return 'has a damaged ELF header'
    ours = struct.calcsize('P') * 8
    if bits != ours:
        return f'is a {bits}-bit library; this Python is {ours}-bit'
    if order != ('<' if sys.byteorder == 'little' else '>'):
        return f"is a {'little' if order == '<' else 'big'}-endian library; this machine is {sys.byteorder}-endian"
    e_type, e_machine = struct.unpack_from(order + 'HH', head, 16)
    if e_type != 3:  # ET_DYN
        return 'is no shared library (ELF type {})'.format(e_type)
    want = ELF_MACHINES.get(platform.machine().lower())
    if want is not None and e_machine != want:
        built = next((m for m, n in ELF_MACHINES.items() if n == e_machine), f'ELF machine {e_machine}')
        return f'was built for {built}; this machine is {platform.machine()}'
    if bits == 64 and len(head) >= 64:
        shoff, = struct.unpack_from(order + 'Q', head, 0x28)
        shentsize, shnum = struct.unpack_from(order + 'HH', head, 0x3A)
    else:
        shoff, = struct.unpack_from(order + 'I', head, 0x20)
        shentsize, shnum = struct.unpack_from(order + 'HH', head, 0x2E)
    if shoff + shentsize * shnum > size:
        return f'is cut short ({size} bytes; its section headers end at {shoff + shentsize * shnum})'
    return None


def check_libraries(path: str, meta: Dict[str, Any]) -> None:
    """Refuse a package whose compiled libraries cannot load here, read from the zip without loading them: every
    model its metadata names (the dynamic one and each static batch) needs its library, and each library must be
    an ELF shared object of this machine (a load would fail, leave torch's extraction folder behind, or worse)."""
    names = [DYNAMIC_MODEL] + [static_model_name(b) for b in meta.get('static_batches') or ()]
    problems: List[str] = []
    try:
        with zipfile.ZipFile(path) as z:
            libs = [i for i in z.infolist() if i.filename.endswith('.so') and '/aotinductor/' in i.filename]
            problems += [f'it holds no compiled library for its {_model_label(n)}' for n in names
                         if not any(f'/aotinductor/{n}/' in i.filename for i in libs)]
            for info in libs:
                with z.open(info) as f:
                    problem = _elf_problem(f.read(64), info.file_size)
                if problem:
                    name = info.filename.split('/aotinductor/')[1].split('/')[0]
                    problems.append(f"the library of its {_model_label(name)} {problem}")
    except (zipfile.BadZipFile, OSError, RuntimeError, EOFError) as e:  # a member that cannot be read
        raise DeployError(f'{path} is a damaged AOTInductor package: {e}') from None
    if problems:
        raise DeployError(f'{path} cannot load here: {problems[0]} (damaged, or made elsewhere: re-export it on '
                          'this machine with timm-recal export MODEL --format aoti)')


def _model_label(name: str) -> str:
    return 'dynamic-batch model' if name == DYNAMIC_MODEL else f'static model {name}'



def is_package_path(spec: Any) -> bool:
    return str(spec).lower().endswith('.pt2')


def package_source(path: str, device: Optional[str] = None) -> Source:
    """A ``.pt2`` as a stage's source (``kind == 'package'``, ``spec`` its path): the preprocessing and naming its
    metadata records, checked loadable here (and built for ``device``'s kind, the stage's ``--device``: a package
    runs where it was compiled, so another one is refused, not silently ignored)."""
    meta = package_metadata(path)
    check_package(path, meta, device)
    return Source(path, 'package', {**onnx_data_config(meta, path), **{k: meta.get(k) for k in NAMING_KEYS}},
                  meta=meta)


def inspect_package(path: str) -> Dict[str, Any]:
    """``timm-recal info FILE.pt2``: the metadata, the size, and whether this process can load it (and why not):
    ``check_package``'s checks, compiled libraries included, without loading them (a load may end the process)."""
    meta = package_metadata(path)
    try:
        check_package(path, meta)
        loads = 'yes'
    except DeployError as e:
        loads = f'no: {e}'
    return {'file': path, 'format': 'aoti', 'file_bytes': os.path.getsize(path), 'loads_here': loads,
            'metadata': meta}


def _package_meta(info: Dict[str, Any], model: nn.Module, device: str, precision: str,
                  max_batch: int, static_batches: Sequence[int], prepared: nn.Module) -> Dict[str, Any]:
    """The package's provenance; ``weights_sha256`` is the caller's module's (as the checkpoint and the ONNX
    metadata record it), not that of the gate-rewritten copy that is compiled (``prepared``, whose convolutions
    decide each model's ``weight_prepack``)."""
    meta = public_paths({k: info.get(k) for k in PROVENANCE_KEYS})  # no local paths in a shared file
    meta['input_size'] = list(meta['input_size'])
    if info.get('weights') in HASHED_WEIGHTS:
        meta['weights_sha256'] = weights_digest(model)
    meta.update(format='aoti', torch=torch.__version__, device=device_name(device), precision=precision,
                dtype=str(compiled_dtype(precision, device)).replace('torch.', ''),
                memory_format=_memory_format(device), batch_range=[1, int(max_batch)],
                static_batches=sorted({int(b) for b in static_batches}),
                freezing=not device.startswith('cuda'), versions=library_versions())
    if device_kind(device) == 'cpu':  # what its code needs of a CPU (``check_package``)
        meta['cpu_isa'] = compiled_cpu_isa()
    macs = conv_macs_per_image(prepared, meta['input_size']) if device_kind(device) == 'cpu' else None
    meta['weight_prepack'] = {name: weight_prepack(precision, device, macs, batch) for name, batch in
                              [(DYNAMIC_MODEL, None)] + [(static_model_name(b), b) for b in meta['static_batches']]}
    return meta


def _cache_key(meta: Dict[str, Any], prepared: nn.Module) -> str:
    ident = {k: meta.get(k) for k in ('architecture', 'num_classes', 'input_size', 'torch', 'device', 'dtype',
                                      'memory_format', 'batch_range', 'static_batches', 'freezing',
                                      'weight_prepack', 'cpu_isa')}
    ident.update(weights=weights_digest(prepared), modules=module_types(prepared), code=code_digest(prepared),
                 # the code that made the graph, ours and timm's (not onnx's, which the meta records too)
                 versions={k: v for k, v in (meta.get('versions') or {}).items() if k in ('timm', 'timm_recal')},
                 local_paths='removed')  # a package cached before they were is compiled again
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]


def cached_package(model: nn.Module, info: Dict[str, Any], *, device: str = 'cpu', precision: str = 'fp32',
                   max_batch: int = DEFAULT_MAX_BATCH, static_batches: Optional[Sequence[int]] = None,
                   timeout: Optional[float] = None,
                   log: Optional[Callable[[str], None]] = None) -> Tuple[str, Dict[str, Any], Optional[float]]:
    """``(package path, its metadata, compile seconds or None when cached)`` of ``model`` compiled for
    ``device``/``precision``: from the cache, else compiled in a child process and renamed into the cache."""
    log = log or (lambda msg: None)
    dtype = compiled_dtype(precision, device)  # refuses an unsupported precision before any work
    if static_batches is None:
        static_batches = default_static_batches(device)
    check_static_batches(static_batches, max_batch)
    prepared = prepare_for_compile(model, info.get('input_size'), dtype).cpu().float()
    meta = _package_meta(info, model, device, precision, max_batch, static_batches, prepared)
    folder = cache_dir('aoti')
    cache_limit_bytes()  # a bad $TIMM_RECAL_CACHE_MAX_GB is refused before the compile, not after
    arch = str(meta.get('architecture') or type(model).__name__).replace('/', '_')
    path = os.path.join(folder, f"{arch}-{precision}-{device_kind(device)}-"
                                f'{_cache_key(meta, prepared)}.pt2')
    if os.path.isfile(path):
        touch_cached(path)
        return path, package_metadata(path), None
    statics = ''.join(f', static batch {b}' for b in meta['static_batches'])
    log(f'aoti: compiling {arch} ({precision}, {device}, batch 1..{max_batch}{statics}) in a child process; this '
        'can take minutes')
    with temporary_folder(f'.{arch}-', dir=folder) as tmp:
        torch.save(prepared, os.path.join(tmp, 'model.pt'))
        job = dict(model=os.path.join(tmp, 'model.pt'), out=os.path.join(tmp, 'model.pt2'), meta=meta,
                   device=device, precision=precision, max_batch=int(max_batch))  # static batches: in meta
        done = run_child('aoti_package', job, what=f'{arch} for aoti ({precision}, {device})', timeout=timeout)
        os.replace(job['out'], path)
    removed = trim_cache(folder, keep=path)
    if removed:
        log(f'aoti: the package cache is over {CACHE_MAX_ENV}: removed the {len(removed)} least recently used '
            f"({', '.join(os.path.basename(p) for p in removed)})")
    return path, package_metadata(path), done['seconds']


def check_static_batches(static_batches: Sequence[int], max_batch: int) -> None:
    bad = [b for b in static_batches if not 1 <= int(b) <= max_batch]
    if bad:
        raise DeployError(f'--static-batches {bad} must lie in 1..--max-batch ({max_batch})')


def triton_package(model: nn.Module, info: Dict[str, Any], *, device: str = 'cpu', timeout: Optional[float] = None,
                   log: Optional[Callable[[str], None]] = None) -> str:
    """The ``pytorch`` Triton backend's file of ``model`` (``triton_backends``' ``package`` hook): its FP32
    package for ``device``, from the cache or compiled in a child process (the repository copies it)."""
    return cached_package(model, info, device=device, precision='fp32', timeout=timeout, log=log)[0]


def triton_export(spec: str, output: str, export_options: Any = None, *,
                  log: Optional[Callable[[str], None]] = None) -> str:
    """The ``pytorch`` Triton backend's file of a MODEL spec (``triton_backends``' ``export`` hook, the standalone
    ``timm-recal triton``): its FP32 package, with the weights and input options of ``export_options`` (an
    ``ExportOptions``) where it has them."""
    fields = ('checkpoint', 'num_classes', 'use_ema', 'img_size', 'device')
    options = AotiExportOptions(**({k: getattr(export_options, k) for k in fields} if export_options else {}))
    return export_aoti(spec, output, options, log=log).output


def build_package(model: nn.Module, meta: Dict[str, Any], out: str, *, device: str, precision: str,
                  max_batch: int) -> str:
    """Export and compile ``model`` into the package ``out`` in this process (the child's work): the dynamic
    model, then one static model per ``meta['static_batches']``, packaged together."""
    from torch._inductor.package import package_aoti
    dtype = compiled_dtype(precision, device)
    model = model.to(device=device, dtype=dtype).eval()
    channels_last = meta['memory_format'] == 'channels_last'
    if channels_last:
        model = model.to(memory_format=torch.channels_last)

    def example(batch: int) -> torch.Tensor:
        x = torch.randn(batch, *meta['input_size'], device=device, dtype=dtype)
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x
    configs = {'aot_inductor.metadata': {PACKAGE_KEY: json.dumps(meta)}, 'freezing': bool(meta['freezing']),
               'aot_inductor.enable_line_tables': False,  # debug info names every header by its absolute path
               'aot_inductor.package': True}
    files = {}
    with torch.no_grad():
        _trial_forward(model, example(EXAMPLE_BATCH), meta.get('architecture') or 'model')
        batch = torch.export.Dim('batch', min=1, max=int(max_batch))
        programs = {DYNAMIC_MODEL: torch.export.export(model, (example(EXAMPLE_BATCH),),
                                                       dynamic_shapes=({0: batch},))}
        for b in meta.get('static_batches', ()):
            programs[static_model_name(b)] = torch.export.export(model, (example(b),))
        prepack = meta.get('weight_prepack') or {}
        for name, program in programs.items():  # aoti_compile_and_package's steps, once per model
            args, kwargs = program.example_inputs
            files[name] = torch._inductor.aot_compile(program.module(check_guards=False), args, kwargs,
                                                      options=dict(configs, **{'cpp.weight_prepack':
                                                                               prepack.get(name, True)}))
    package_aoti(out, files)
    return call_atomically(out, lambda tmp: _without_local_paths(out, tmp), force=True)


def _member_model(name: str) -> Optional[str]:
    """The model a package member belongs to (``ARCHIVE/data/aotinductor/MODEL/...``), or None (the archive's own
    files)."""
    head, sep, rest = name.partition('/data/aotinductor/')
    return rest.split('/')[0] if sep and '/' in rest else None


def dynamic_model_package(src: str, dst: str) -> None:
    """Copy the package ``src`` to ``dst`` with its dynamic model alone, the one Triton's ``torch_aoti`` platform
    (and ``aoti_load_package``) loads: each static model is another copy of the weights that a server never runs
    (a resnet50 FP32 package: about half its bytes). The dynamic model's members are copied byte for byte; its
    metadata then lists no static batches."""
    def member(name: str, data: bytes) -> Optional[bytes]:
        model = _member_model(name)
        if model not in (None, DYNAMIC_MODEL):
            return None
        if model is None or not name.endswith('wrapper_metadata.json'):
            return data
        raw = json.loads(data)
        if PACKAGE_KEY in raw:
            meta = json.loads(raw[PACKAGE_KEY])
            meta['static_batches'] = []
            meta['weight_prepack'] = {k: v for k, v in (meta.get('weight_prepack') or {}).items()
                                      if k == DYNAMIC_MODEL}
            raw[PACKAGE_KEY] = json.dumps(meta)
        return json.dumps(raw).encode()
    _rewrite_members(src, dst, member)


def _rewrite_members(src: str, dst: str, member: Callable[[str, bytes], Optional[bytes]]) -> None:
    """Copy the zip ``src`` to ``dst``, each member as ``member(name, data)`` makes it (None: left out), with its
    original entry (name, compression, times)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, 'w') as zout:
        for item in zin.infolist():
            data = member(item.filename, zin.read(item))
            if data is not None:
                zout.writestr(item, data)


def _local_roots() -> List[bytes]:
    """The folders a compiled package may name (inductor's cache, torch's site-packages, the Python prefixes,
    temp, home, the working folder), each with its separator, as given and resolved; longest first."""
    from torch._inductor.runtime.cache_dir_utils import cache_dir as inductor_cache_dir
    roots = {inductor_cache_dir(), os.path.dirname(os.path.dirname(torch.__file__)), sys.prefix, sys.base_prefix,
             tempfile.gettempdir(), os.path.expanduser('~'), os.getcwd()}
    roots |= {os.path.realpath(r) for r in roots}
    return sorted({(r.rstrip(os.sep) + os.sep).encode() for r in roots if r.strip(os.sep)}, key=len, reverse=True)


def _without_local_paths(src: str, dst: str) -> None:
    """Copy the package ``src`` to ``dst`` without its C++ sources, every local root in the other members
    replaced by ``././``... of the same length (a relative path: offsets in the library stay where they were)."""
    roots = _local_roots()

    def member(name: str, data: bytes) -> Optional[bytes]:
        if name.endswith('.cpp'):
            return None
        for root in roots:
            data = data.replace(root, (b'./' * len(root))[:len(root) - 1] + b'/')
        return data
    _rewrite_members(src, dst, member)


def export_aoti(spec: Optional[str], output: Optional[str] = None, options: Optional[AotiExportOptions] = None, *,
                model: Optional[nn.Module] = None, log: Optional[Callable[[str], None]] = None,
                **overrides) -> AotiExportResult:
    """``timm-recal export MODEL --format aoti -o m.pt2``: the package of ``spec`` (or ``model``), from the
    cache or compiled in a child process, copied to ``output`` whole or not at all."""
    o = with_overrides(AotiExportOptions, options, overrides)
    if output is not None:
        o.output = output
    if o.precision not in PACKAGE_PRECISIONS:
        raise DeployError(f"--format aoti compiles {', '.join(PACKAGE_PRECISIONS)}, not {o.precision} "
                          '(int8 is an ONNX file: timm-recal quantize)')
    check_device(o.device)
    compiled_dtype(o.precision, o.device)
    if not 1 <= o.max_batch <= 65536:
        raise DeployError(f'--max-batch must be 1..65536, got {o.max_batch}')
    if o.static_batches is None:
        o.static_batches = default_static_batches(o.device)
    check_static_batches(o.static_batches, o.max_batch)
    if model is None and (not spec or is_onnx_path(spec)):
        raise DeployError('--format aoti takes a MODEL (timm name, hf-hub:ORG/REPO or local-dir:FOLDER)')
    name = os.path.splitext(default_onnx_name(spec))[0]
    path = resolve_output(o.output, o.force, default_name=f'{name}.pt2', suffix='.pt2')
    source = open_source(spec, ModelOptions(o.checkpoint, o.num_classes, o.use_ema, o.img_size, 'cpu'),
                         module=model)
    cached, meta, seconds = cached_package(source.model, source.info, device=o.device, precision=o.precision,
                                           max_batch=o.max_batch, static_batches=o.static_batches,
                                           timeout=o.compile_timeout, log=log)
    call_atomically(path, lambda tmp: shutil.copyfile(cached, tmp), force=o.force)
    return AotiExportResult(
        output=os.path.abspath(path), architecture=meta.get('architecture'), model_spec=meta.get('model_spec'),
        weights=meta.get('weights'), checkpoint=meta.get('checkpoint'), precision=o.precision,
        device=meta['device'], memory_format=meta['memory_format'], batch_range=meta['batch_range'],
        static_batches=meta.get('static_batches', []),
        input_size=meta['input_size'], num_classes=meta.get('num_classes'), torch=meta['torch'],
        file_bytes=os.path.getsize(path), compile_seconds=None if seconds is None else round(seconds, 1),
        cached=seconds is None)


def main(argv: Optional[List[str]] = None) -> int:
    """The compile child: ``JOB.json`` names the pickled module, the package to write and its metadata."""
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0], encoding='utf-8') as f:
        job = json.load(f)
    crash_if_asked()
    try:
        t0 = time.perf_counter()
        model = torch.load(job['model'], weights_only=False)  # our own file, written by the parent just now
        build_package(model, job['meta'], job['out'], device=job['device'], precision=job['precision'],
                      max_batch=job['max_batch'])
        seconds = time.perf_counter() - t0
    except Exception as e:  # one line for the parent: the child's traceback would be noise in its message
        print(f'{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ""}'[:400],
              file=sys.stderr)
        return 1
    with open(job['result'], 'w', encoding='utf-8') as f:
        json.dump({'seconds': seconds, 'package': job['out']}, f)
    return 0


if __name__ == '__main__':
    sys.exit(main())
