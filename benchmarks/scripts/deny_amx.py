"""Run a command with AMX denied to it: the nearest this Xeon gets to a CPU with AVX-512 BF16/VNNI but no AMX
(an AMD EPYC Zen 4), for issue 12's "measure there too" when no EPYC is at hand.

    python benchmarks/scripts/deny_amx.py bash benchmarks/openvino/run_all.sh benchmarks/openvino/xeon_no_amx

Linux gives a process the AMX tile state only when it asks (``arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA)``);
oneDNN (OpenVINO, PyTorch) and MLAS (ONNX Runtime) ask before their first AMX kernel and fall back to their
AVX-512 kernels when refused. This installs a seccomp filter that refuses that one request with EPERM, then
execs the command; the filter holds for every process the command starts. Everything else (cores, caches,
memory) stays the Xeon's, so the result is the ISA of such a CPU, not its speed. ``bench`` records the outcome
as ``machine.cpu_isa.amx_usable``.
"""
import ctypes
import os
import platform
import struct
import sys

# struct seccomp_data: nr at offset 0, arch at 4, args[0] (low 32 bits on little endian) at 16
_LD_W_ABS, _JEQ_K, _RET_K = 0x20, 0x15, 0x06
_AUDIT_ARCH_X86_64, _NR_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM = 0xC000003E, 158, 0x1023
_RET_ALLOW, _RET_EPERM = 0x7FFF0000, 0x00050000 | 1
_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2


def _insn(code: int, jump_true: int, jump_false: int, k: int) -> bytes:
    return struct.pack('HBBI', code, jump_true, jump_false, k)


# a false jump skips to the last instruction (allow); only arch_prctl(ARCH_REQ_XCOMP_PERM, ...) is refused
_FILTER = b''.join([
    _insn(_LD_W_ABS, 0, 0, 4), _insn(_JEQ_K, 0, 5, _AUDIT_ARCH_X86_64),
    _insn(_LD_W_ABS, 0, 0, 0), _insn(_JEQ_K, 0, 3, _NR_ARCH_PRCTL),
    _insn(_LD_W_ABS, 0, 0, 16), _insn(_JEQ_K, 0, 1, _ARCH_REQ_XCOMP_PERM),
    _insn(_RET_K, 0, 0, _RET_EPERM), _insn(_RET_K, 0, 0, _RET_ALLOW)])


class _SockFprog(ctypes.Structure):
    _fields_ = [('len', ctypes.c_ushort), ('filter', ctypes.c_void_p)]


def deny_amx() -> None:
    """Install the filter in this process (and so in everything it execs or forks from now on)."""
    if platform.system() != 'Linux' or platform.machine() != 'x86_64':
        raise SystemExit('deny_amx: needs Linux on x86_64')
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(_FILTER, len(_FILTER))
    prog = _SockFprog(len(_FILTER) // 8, ctypes.addressof(buf))
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or \
            libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        raise SystemExit(f'deny_amx: the kernel refused the seccomp filter: {os.strerror(ctypes.get_errno())}')


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        raise SystemExit(__doc__)
    deny_amx()
    os.execvp(argv[0], argv)
    return 0  # not reached


if __name__ == '__main__':
    sys.exit(main())
