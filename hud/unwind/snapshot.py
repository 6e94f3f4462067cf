"""Stacks of threads blocked in a syscall, read without stopping them (attach-time view).

/proc/PID/task/TID/syscall gives a blocked thread's user sp and pc, /proc/PID/mem its
stack bytes. Only the frame pointer is missing: CFI needs it wherever a frame's CFA is
rbp/x29-based (frame-pointer builds), so it is recovered by searching the copied stack
for a frame record whose chain runs through code, and the candidate that unwinds
furthest wins. Idle Tokio workers park for long stretches and may never switch out while
hud watches; this is how discovery still sees their stacks at once.
"""
from __future__ import annotations

import struct
from typing import Any, Callable, Optional

from hud.linux import procfs
from hud.linux.libc import ARCH
from hud.model import StackCapture, UserRegs
from hud.unwind.unwinder import UnwindResult

MAX_COPY = 32768
FP_CANDIDATES = 48     # frame-record candidates tried per thread
_SCAN = 4096           # bytes above sp searched for frame records


def blocked_capture(pid: int, tid: int, maps: list) -> Optional[StackCapture]:
    """A capture (regs with fp=0 + stack copy) of a thread blocked in a syscall, else
    None. `maps` is procfs.read_maps(pid)."""
    site = procfs.syscall_site(pid, tid)
    if site is None:
        return None
    _, sp, pc = site
    if sp == 0 or pc == 0:
        return None
    end = next((m.end for m in maps if m.start <= sp < m.end), 0)
    data = procfs.read_memory(pid, sp, min(MAX_COPY, end - sp)) if end else b""
    if not data:
        return None
    return StackCapture(regs=UserRegs(ARCH, pc, sp, 0), stack=data)


def frame_records(capture: StackCapture, is_code: Callable[[int], bool]) -> list[int]:
    """Addresses in the copy that may be the innermost frame record: a word followed by
    a return address into code, innermost first. The saved frame pointer itself is not
    checked: below a frame-pointer function (Rust's std) there may be code that uses the
    register for anything (a no-frame-pointer build)."""
    regs = capture.regs
    if regs is None:
        return []
    data, base = capture.stack, regs.sp
    out = []
    top = min(len(data) - 16, _SCAN)
    for off in range(8, max(0, top), 8):
        (ret,) = struct.unpack_from("<Q", data, off + 8)
        if is_code(ret):
            out.append(base + off)
            if len(out) >= FP_CANDIDATES:
                break
    return out


def unwind_blocked(unwinder: Any, capture: StackCapture,
                   is_code: Callable[[int], bool]) -> tuple[StackCapture, UnwindResult]:
    """Unwind a blocked thread's capture, recovering the frame pointer when the walk
    without one stops early; returns the capture used and its result."""
    best_cap, best = capture, unwinder.unwind(capture)
    if best.complete or capture.regs is None:
        return best_cap, best
    for fp in frame_records(capture, is_code):
        regs = capture.regs
        cap = StackCapture(regs=UserRegs(regs.arch, regs.ip, regs.sp, fp), stack=capture.stack)
        res = unwinder.unwind(cap)
        if len(res.ips) > len(best.ips) or (res.complete and not best.complete):
            best_cap, best = cap, res
        if res.complete:
            break
    return best_cap, best
