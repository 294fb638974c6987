"""Keep a valid alternate signal stack on threads that call OpenVINO.

OpenVINO 2026.4's ``compile_model`` gives the calling thread an alternate signal stack of its own
(``sigaltstack``, about 20 KB) and, when the compiled model is freed, puts back the stack that was set when it
was made. Freed in another order than made (two models, the first freed first), the thread is left pointing at
a stack that has been unmapped, and the next signal with a Python handler (Ctrl-C, our SIGTERM handler, the
SIGCHLD handler a PyTorch DataLoader installs) kills the process with SIGSEGV instead of running the handler.
Reproduced here with two ``Core().compile_model`` calls (tests/test_deploy_openvino.py); in the test suite it
killed the pytest worker at the next DataLoader or subprocess exit.

``kept_signal_stack()`` around every OpenVINO call that may compile pins one stack per thread that is never
freed, before the call (so OpenVINO records it as the one to restore) and after it (replacing the one OpenVINO
set), so whatever order models are freed in, the thread ends on a live stack. Linux only; elsewhere a no-op.
"""
import contextlib
import ctypes
import sys
import threading
from typing import Dict, Iterator

__all__ = ['kept_signal_stack', 'STACK_BYTES']

#: comfortably above glibc's dynamic SIGSTKSZ with AMX tile state in the signal frame (about 11 KB)
STACK_BYTES = 1 << 18
_stacks: Dict[int, ctypes.Array] = {}  # thread id -> its pinned stack; never freed while the process lives
_lock = threading.Lock()


class _StackT(ctypes.Structure):
    _fields_ = [('ss_sp', ctypes.c_void_p), ('ss_flags', ctypes.c_int), ('ss_size', ctypes.c_size_t)]


_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith('linux') else None


def _pin() -> None:
    """Make this thread's alternate signal stack the pinned one (allocated on first use)."""
    if _LIBC is None:
        return
    tid = threading.get_ident()
    with _lock:
        buf = _stacks.get(tid)
        if buf is None:
            buf = _stacks[tid] = ctypes.create_string_buffer(STACK_BYTES)
    stack = _StackT(ctypes.cast(buf, ctypes.c_void_p), 0, STACK_BYTES)
    _LIBC.sigaltstack(ctypes.byref(stack), None)  # fails only while running on the alternate stack: keep it


@contextlib.contextmanager
def kept_signal_stack() -> Iterator[None]:
    """Around an OpenVINO call that may compile a model: the thread keeps a live alternate signal stack."""
    _pin()
    try:
        yield
    finally:
        _pin()
