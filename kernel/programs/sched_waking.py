"""The sched/sched_waking tracepoint program: who woke a blocked target thread.

sched_waking fires in try_to_wake_up() once the wakee's state matched, in the waker's
context: `current` is the task that ends the wait. For a tracked thread off CPU in a
captured blocked episode (hud_threads: `out_ns` set, `captured`, `out_kind` BLOCKED), the
current task's tid and comm are written into the holder fields of the thread's capture
record (hud_caps), which its switch-in sends; sched_switch zeroes them when it captures
a blocked switch-out, so a record whose wake was not seen names nobody.

From interrupt context (a timer ending a sleep or a timed wait, a disk or network
completion) `current` is whichever task was interrupted, not a waker. A tracepoint
program cannot read the event's irq flags. Two checks stand in: no hrtimer callback may
be running on this CPU (hud_in_timer, set around them by timer_flag.py: a timed futex
wait that times out), and the current task's saved user registers must say it is inside
a call that ends futex waits (ArchRegs.wake_calls: FUTEX_WAKE, a thread's exit, a
signal; an interrupt from user mode leaves -1 there, a kernel thread or the idle task
0). Userspace then names wakers of futex waits only
(hud.analysis.episodes): a sleep ended by a disk completion that came during someone's
FUTEX_WAKE is not that task's doing.

When the wait has already lasted the threshold and the waker belongs to the target
process, the waker's own stack is sent too (a REC_WAKE record, built in this CPU's
hud_scratch: the sampler, the other user of that buffer, does not run inside a
tracepoint program on the same CPU): where the thread was when it released the lock.

Races are benign: a wake concurrent with the wakee's switch-out on another CPU may see
the previous episode's `captured` and write a waker that the capture then zeroes (lost,
never wrong). One hash lookup filters every other wakeup of the host.
"""
from __future__ import annotations

from kernel import uapi
from kernel.asm import Assembler, Image, r0, r1, r2, r3, r6, r7, r8, r9, r10
from kernel.programs.common import (
    CONFIG,
    FP_CFG,
    FP_KEY,
    FP_NOW,
    FP_ZERO,
    KIND_BLOCKED,
    KIND_NOREC,
    OFFCPU_HDR,
    REC_WAKE,
    THREAD,
    Params,
    capture,
    load_config,
    lookup,
    output_capture,
    read_user_regs,
    stack_key,
)

NAME = "hud_waking"
T = THREAD.offsets
H = OFFCPU_HDR.offsets
FP_PID = -136    # u64 the waker's pid_tgid


def build(pid_off: int, p: Params) -> Image:
    """The TRACEPOINT program for sched:sched_waking, built for `p`; `pid_off` is the
    wakee's `pid` field in this kernel's tracepoint format."""
    a = Assembler()
    a.mov(r6, r1)
    # Every wakeup of the host runs this: the hash lookup is the filter, nothing before it.
    a.ldx("u32", r1, r6, pid_off).stx("u32", r10, FP_KEY, r1)
    lookup(a, "hud_threads", FP_KEY).jmp("==", r0, 0, "exit")
    # Off CPU (switch-in zeroes out_ns), in a captured, blocked, recorded episode.
    a.ldx("u64", r1, r0, T["out_ns"]).jmp("==", r1, 0, "exit")
    a.stx("u64", r10, FP_NOW, r1)                       # FP_NOW = when the wait began
    a.ldx("u32", r1, r0, T["captured"]).jmp("==", r1, 0, "exit")
    a.ldx("u32", r1, r0, T["out_kind"]).alu64("&=", r1, 0xF | KIND_NOREC)
    a.jmp("!=", r1, KIND_BLOCKED, "exit")
    # Not from a timer's callback (timer_flag.py): a timed wait that timed out.
    stack_key(a, FP_ZERO, 0)
    lookup(a, "hud_in_timer", FP_ZERO).jmp("==", r0, 0, "exit")
    a.ldx("u64", r1, r0, 0).jmp("!=", r1, 0, "exit")
    # A task from user mode, inside a call that wakes (not one an interrupt landed on).
    regs = p.regs
    a.call("get_current_task_btf").mov(r1, r0).call("task_pt_regs")
    a.ldx("u64", r1, r0, regs.mode_off).alu64("&=", r1, regs.mode_mask)
    a.jmp("!=", r1, regs.user_value, "exit")
    a.ldx("u32", r1, r0, regs.syscall_off)
    for nr in regs.wake_calls:
        a.jmp("==", r1, nr, "in_wake_call")
    a.ja("exit")
    a.label("in_wake_call")
    lookup(a, "hud_caps", FP_KEY).jmp("==", r0, 0, "exit")
    a.mov(r8, r0)
    a.call("get_current_pid_tgid").stx("u32", r8, H["holder_pid"], r0)
    a.stx("u64", r10, FP_PID, r0)
    a.mov(r1, r8).alu64("+=", r1, H["holder_comm"]).mov(r2, 16).call("get_current_comm")

    # The waker's stack: for a wait already past the threshold, by a thread of the target.
    load_config(a, "exit")                              # r9 = &config, spilled
    a.ldx("u64", r1, r10, FP_PID).alu64(">>=", r1, 32)
    a.ldx("u32", r2, r9, CONFIG.offset("tgid"))
    a.jmp("!=", r1, r2, "exit")
    a.call("ktime_get_ns").mov(r7, r0)                  # r7 = now
    a.ldx("u64", r1, r10, FP_NOW).mov(r2, r7).alu64("-=", r2, r1)
    a.ldx("u64", r9, r10, FP_CFG).ldx("u64", r3, r9, CONFIG.offset("threshold_ns"))
    a.jmp("<", r2, r3, "exit")
    a.call("get_smp_processor_id").stx("u32", r10, FP_ZERO, r0)
    lookup(a, "hud_scratch", FP_ZERO).jmp("==", r0, 0, "exit")
    a.mov(r8, r0)                                       # r8 = this CPU's record buffer
    a.st("u32", r8, H["type"], REC_WAKE)
    a.ldx("u32", r1, r10, FP_KEY).stx("u32", r8, H["tid"], r1)
    a.ldx("u64", r1, r10, FP_PID).alu64(">>=", r1, 32).stx("u32", r8, H["pid"], r1)
    a.ldx("u32", r1, r10, FP_ZERO).stx("u32", r8, H["cpu"], r1)
    a.ldx("u64", r1, r10, FP_NOW).stx("u64", r8, H["start_ns"], r1)
    a.stx("u64", r8, H["end_ns"], r7)
    a.st("u64", r8, H["state"], 0).st("u32", r8, H["flags"], 0)
    a.ldx("u64", r1, r10, FP_PID).stx("u32", r8, H["holder_pid"], r1)
    a.mov(r1, r8).alu64("+=", r1, H["holder_comm"]).mov(r2, 16).call("get_current_comm")
    read_user_regs(a, p)
    capture(a, p, "wake", kernel=False)   # the waker is in try_to_wake_up: no news
    output_capture(a, p, "ringbuf_wake", "wake_records", "wake")
    a.label("exit")
    # 1, not 0: a tracepoint program's 0 drops the event for every perf user of
    # sched_waking on the host (see sched_switch.build).
    a.mov(r0, 1).exit()
    return a.image(NAME, uapi.BPF_PROG_TYPE_TRACEPOINT)
