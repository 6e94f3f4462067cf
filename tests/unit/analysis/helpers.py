"""Helpers for analysis tests: a stack table resolver and event builders."""
from __future__ import annotations

from hud.model import CpuSample, OffCpuEvent, StackCapture

MS = 1_000_000


class StackTable:
    """Hands out a distinct StackCapture per stack and resolves it back (what a live
    resolver would do with unwinding + symbolization)."""

    def __init__(self) -> None:
        self._frames: dict = {}
        self._caps: dict = {}

    def cap(self, stack) -> StackCapture:
        stack = tuple(stack)
        c = self._caps.get(stack)
        if c is None:
            c = StackCapture(fp_ips=(0x1000 + len(self._caps),))
            self._caps[stack] = c
            self._frames[c] = stack
        return c

    def __call__(self, pid: int, capture: StackCapture):
        return self._frames[capture]




def off(table, tid, start_ms, dur_ms, stack, runnable=False, holder=("", 0), pid=100,
        waker=("", 0), fault=False):
    return OffCpuEvent(pid=pid, tid=tid, cpu=0, start_ns=int(start_ms * MS),
                       end_ns=int((start_ms + dur_ms) * MS), state=0 if runnable else 1,
                       runnable=runnable, stack=table.cap(stack), holder_comm=holder[0],
                       holder_pid=holder[1], waker_comm=waker[0], waker_tid=waker[1],
                       fault=fault)


def sample(table, tid, t_ms, stack, seq=0, period_ms=1.0, pid=100, oncpu_ms=None,
           kernel=False):
    return CpuSample(pid=pid, tid=tid, cpu=0, time_ns=int(t_ms * MS),
                     period_ns=int(period_ms * MS), stack=table.cap(stack), switch_seq=seq,
                     oncpu_ns=-1 if oncpu_ms is None else int(oncpu_ms * MS), kernel=kernel)
