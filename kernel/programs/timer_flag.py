"""timer/hrtimer_expire_entry and _exit programs: is an hrtimer callback running on this CPU?

A futex wait with a timeout (`wait_timeout`, `recv_timeout`, a condvar's timed wait)
that times out is ended by its hrtimer's callback (hrtimer_wakeup), in hard interrupt
context, where `current` is whichever task the interrupt landed on. When that task sat
inside a futex call of its own (a thread handing a lock over), the wake looked like its
doing to sched_waking: 9 of 60 timed-out waits beside two GIL-swapping Python threads in
one CI run. A tracepoint program cannot read its event's irq flags, so these two mark the
callbacks instead: entry sets this CPU's hud_in_timer slot, exit clears it, and
sched_waking names nobody while it is set. Callbacks do not nest on a CPU (they run with
interrupts off), so one flag per CPU is enough. Two stores per hrtimer expiry of the host.
"""
from __future__ import annotations

from kernel import uapi
from kernel.asm import Assembler, Image, r0
from kernel.programs.common import FP_ZERO, lookup, stack_key

ENTRY, EXIT = "hud_timer_in", "hud_timer_out"


def _build(name: str, value: int) -> Image:
    a = Assembler()
    stack_key(a, FP_ZERO, 0)
    lookup(a, "hud_in_timer", FP_ZERO).jmp("==", r0, 0, "exit")
    a.st("u64", r0, 0, value)
    a.label("exit")
    # 1, not 0: a tracepoint program's 0 drops the event for every perf user of it.
    a.mov(r0, 1).exit()
    return a.image(name, uapi.BPF_PROG_TYPE_TRACEPOINT)


def build_entry() -> Image:
    """The program for timer:hrtimer_expire_entry: this CPU runs an hrtimer callback."""
    return _build(ENTRY, 1)


def build_exit() -> Image:
    """The program for timer:hrtimer_expire_exit: the callback is over."""
    return _build(EXIT, 0)
