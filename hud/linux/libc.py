"""ctypes access to libc: raw syscalls, ioctl, mmap; errno becomes HudError here only."""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
from typing import Optional

from hud.errors import HudError, from_errno

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

MACHINE = platform.machine()
ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}.get(
    MACHINE, MACHINE)

# Syscall numbers per architecture (arch/x86/entry/syscalls/syscall_64.tbl and the
# asm-generic table aarch64 uses).
_NR = {
    "x86_64": {"bpf": 321, "perf_event_open": 298, "memfd_create": 319, "gettid": 186,
               "pidfd_open": 434},
    "aarch64": {"bpf": 280, "perf_event_open": 241, "memfd_create": 279, "gettid": 178,
                "pidfd_open": 434},
}


def syscall_nr(name: str) -> int:
    """The syscall number of `name` on this architecture."""
    try:
        return _NR[ARCH][name]
    except KeyError:
        raise HudError(f"no syscall number for {name} on {MACHINE}",
                       "hud supports x86_64 and aarch64", exit_code=5) from None


_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


def raw_syscall(name: str, *args: int) -> int:
    """Call syscall `name`; returns the result or -errno (never raises)."""
    ctypes.set_errno(0)
    ret = _syscall(ctypes.c_long(syscall_nr(name)),
                   *[a if isinstance(a, ctypes._SimpleCData) else ctypes.c_long(a)
                     for a in args])
    if ret < 0:
        return -ctypes.get_errno()
    return ret


def check(ret: int, what: str, hint: str = "") -> int:
    """Return `ret` when >= 0; otherwise raise the HudError for -ret, naming `what`."""
    if ret < 0:
        raise from_errno(-ret, what, hint)
    return ret


_ioctl = _libc.ioctl
_ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
_ioctl.restype = ctypes.c_int


def ioctl(fd: int, request: int, arg: Optional[int] = 0) -> int:
    """ioctl(fd, request, arg) with an integer or pointer argument; -errno on failure."""
    ctypes.set_errno(0)
    ret = _ioctl(fd, request, arg)
    if ret < 0:
        return -ctypes.get_errno()
    return ret


_mmap = _libc.mmap
_mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                  ctypes.c_long]
_mmap.restype = ctypes.c_void_p
_munmap = _libc.munmap
_munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_munmap.restype = ctypes.c_int

MAP_FAILED = ctypes.c_void_p(-1).value
PROT_READ, PROT_WRITE = 1, 2
MAP_SHARED = 1
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def mmap(fd: int, length: int, prot: int, offset: int = 0, what: str = "mmap") -> int:
    """mmap(NULL, length, prot, MAP_SHARED, fd, offset) -> address; raises HudError.

    Python's mmap module cannot give addresses of PROT_READ mappings, and ring buffers
    need stable addresses for single 8-byte loads of head/tail, hence libc directly.
    """
    ctypes.set_errno(0)
    addr = _mmap(None, length, prot, MAP_SHARED, fd, offset)
    if addr is None or addr == MAP_FAILED:
        raise from_errno(ctypes.get_errno() or 22, what)
    return addr


def munmap(addr: int, length: int) -> None:
    """Unmap what mmap() returned; failures are ignored (nothing useful to do)."""
    _munmap(addr, length)


def errno_name(err: int) -> str:
    import errno as _e
    return _e.errorcode.get(err, "ENOTSUPP" if err == 524 else str(err))
