"""The sched/sched_waking tracepoint program: who woke a blocked target thread.

sched_waking fires in try_to_wake_up() once the wakee's state matched, in the waker's
context: `current` is the task that ends the wait. For a tracked thread off CPU in a
captured blocked episode (hud_threads: `out_ns` set, `captured`, `out_kind` BLOCKED), the
current task's tid and comm are written into the holder fields of the thread's capture
record (hud_caps), which its switch-in sends; sched_switch zeroes them when it captures
a blocked switch-out, so a record whose wake was not seen names nobody.

From interrupt context (a timer ending a sleep, a disk or network completion) `current`
is whichever task was interrupted, not a waker: userspace names the waker only for
futex waits, which another task ends with FUTEX_WAKE (hud.analysis.episodes).

Races are benign: a wake concurrent with the wakee's switch-out on another CPU may see
the previous episode's `captured` and write a waker that the capture then zeroes (lost,
never wrong). One hash lookup filters every other wakeup of the host.
"""
from __future__ import annotations

from kernel import uapi
from kernel.asm import Assembler, Image, r0, r1, r2, r6, r8, r10
from kernel.programs.common import (
    FP_KEY,
    KIND_BLOCKED,
    KIND_NOREC,
    OFFCPU_HDR,
    THREAD,
    lookup,
)

NAME = "hud_waking"
T = THREAD.offsets
H = OFFCPU_HDR.offsets


def build(pid_off: int) -> Image:
    """The TRACEPOINT program for sched:sched_waking; `pid_off` is the wakee's `pid`
    field in this kernel's tracepoint format."""
    a = Assembler()
    a.mov(r6, r1)
    a.ldx("u32", r1, r6, pid_off).stx("u32", r10, FP_KEY, r1)
    lookup(a, "hud_threads", FP_KEY).jmp("==", r0, 0, "exit")
    # Off CPU (switch-in zeroes out_ns), in a captured, blocked, recorded episode.
    a.ldx("u64", r1, r0, T["out_ns"]).jmp("==", r1, 0, "exit")
    a.ldx("u32", r1, r0, T["captured"]).jmp("==", r1, 0, "exit")
    a.ldx("u32", r1, r0, T["out_kind"]).alu64("&=", r1, 0xF | KIND_NOREC)
    a.jmp("!=", r1, KIND_BLOCKED, "exit")
    lookup(a, "hud_caps", FP_KEY).jmp("==", r0, 0, "exit")
    a.mov(r8, r0)
    a.call("get_current_pid_tgid").stx("u32", r8, H["holder_pid"], r0)
    a.mov(r1, r8).alu64("+=", r1, H["holder_comm"]).mov(r2, 16).call("get_current_comm")
    a.label("exit")
    # 1, not 0: a tracepoint program's 0 drops the event for every perf user of
    # sched_waking on the host (see sched_switch.build).
    a.mov(r0, 1).exit()
    return a.image(NAME, uapi.BPF_PROG_TYPE_TRACEPOINT)
