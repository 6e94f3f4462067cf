"""Frame-pointer walking over a stack copy: the other strategy beside CFI.

x86_64 frames are `[rbp] = caller's rbp, [rbp+8] = return address` (push rbp; mov rbp,rsp);
aarch64 frame records are `[x29] = caller's x29, [x29+8] = x30` (stp x29, x30, [sp, #-N]!).
Both layouts are the same two words, so one walker serves both.
"""
from __future__ import annotations

from typing import Optional

from hud.unwind.arch import Arch
from hud.unwind.memory import StackMemory

# Termination reasons shared with the CFI walker.
END = "end"                          # outermost frame reached (RA undefined, fp or pc 0)
STACK_EXHAUSTED = "stack_exhausted"  # the next read is outside the captured stack copy
NO_PROGRESS = "no_progress"          # the stack pointer did not move up: a loop or garbage
MAX_DEPTH = "max_depth"


def fp_step(arch: Arch, regs: dict[int, int], mem: StackMemory
            ) -> tuple[Optional[dict[int, int]], int, str]:
    """One frame up through the frame record at regs[fp]: (caller regs, RA, reason).

    The caller's register file is None when the step failed; reason is "" on success.
    """
    fp = regs.get(arch.fp)
    if type(fp) is tuple:   # saved on the stack by an inner frame, read lazily (dwarf.value)
        fp = mem.u64(fp[0])
    if not fp:
        return None, 0, END
    sp = regs.get(arch.sp, 0)
    if fp < sp or fp & 7:
        return None, 0, NO_PROGRESS
    caller_fp = mem.u64(fp)
    ra = mem.u64(fp + 8)
    if caller_fp is None or ra is None:
        return None, 0, STACK_EXHAUSTED
    ra &= arch.ra_mask
    if ra == 0:
        return None, 0, END
    new = dict(regs)
    new[arch.fp] = caller_fp
    new[arch.sp] = fp + 16
    if arch.ip >= 0:
        new[arch.ip] = ra
    return new, ra, ""


def fp_walk(arch: Arch, ip: int, sp: int, fp: int, mem: StackMemory,
            max_frames: int = 128) -> tuple[tuple[int, ...], str]:
    """(ips, reason) of a pure frame-pointer walk from (ip, sp, fp): ips innermost first."""
    ips = [ip]
    regs = {arch.sp: sp, arch.fp: fp}
    last_fp = -1
    while len(ips) < max_frames:
        cur_fp = regs.get(arch.fp, 0)
        if cur_fp and cur_fp <= last_fp:
            return tuple(ips), NO_PROGRESS
        last_fp = cur_fp
        new, ra, reason = fp_step(arch, regs, mem)
        if new is None:
            return tuple(ips), reason
        ips.append(ra)
        regs = new
    return tuple(ips), MAX_DEPTH
