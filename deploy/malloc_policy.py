"""Whether freed memory is kept for the next call (``bench --keep-freed-memory``): glibc's malloc serves every
block over 32 MiB with a fresh ``mmap`` and unmaps it on ``free``, so each call of a PyTorch model at a large
batch page-faults (and the kernel zeroes) every big activation again. ONNX Runtime and OpenVINO keep their own
arenas; PyTorch on CPU allocates through malloc, which is why its CPU launcher (``torch.backends.xeon.run_cpu``)
offers jemalloc or tcmalloc, whose caches keep freed memory.

Measured (2-core EPYC, ``torch.compile`` with freezing, batch 16): resnet50 faulted 123 MB per call and
seresnet50 282 MB (a gate turns conv3's in-place residual sum into a new out-of-place conv output); keeping
freed memory took both to 0 and the calls from 675 / 732 ms to 623 / 646 ms. The same effect without a
preloaded allocator: ``mallopt(M_MMAP_MAX, 0)`` (big blocks come from the heap) and ``M_TRIM_THRESHOLD`` at its
maximum (the heap is not given back), for the duration of a block.
"""
import ctypes
import ctypes.util
import platform
from contextlib import contextmanager
from typing import Iterator

from .errors import DeployError

__all__ = ['keep_freed_memory', 'DEFAULT_POLICY', 'KEPT_POLICY']

#: the record's ``malloc`` entry without and with the option
DEFAULT_POLICY = 'default (glibc: blocks over 32 MiB mmapped per call)'
KEPT_POLICY = 'glibc, freed memory kept (mallopt M_MMAP_MAX=0, M_TRIM_THRESHOLD=2^31-1)'

# glibc's <malloc.h>
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536
_MAX_INT = 2 ** 31 - 1


def _glibc() -> ctypes.CDLL:
    if platform.libc_ver()[0] != 'glibc':
        raise DeployError('--keep-freed-memory sets glibc malloc options; this Python does not run on glibc '
                          '(preload jemalloc or tcmalloc instead)')
    libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
    libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    return libc


@contextmanager
def keep_freed_memory(enabled: bool = True) -> Iterator[str]:
    """Run the block with glibc keeping freed memory for reuse (``enabled``); yields the policy in force, as
    the bench record states it. Afterwards the defaults are set again and the kept memory is given back
    (``malloc_trim``); glibc's dynamic mmap threshold stays off once a threshold was set explicitly."""
    if not enabled:
        yield DEFAULT_POLICY
        return
    libc = _glibc()
    if not (libc.mallopt(_M_MMAP_MAX, 0) and libc.mallopt(_M_TRIM_THRESHOLD, _MAX_INT)):
        raise DeployError('--keep-freed-memory: glibc refused the malloc options (mallopt returned 0)')
    try:
        yield KEPT_POLICY
    finally:
        libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
        libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
        libc.malloc_trim(0)
