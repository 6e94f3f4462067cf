"""Switch records in time order -> off-CPU episodes, thread times and switch counts (pure).

perf has no in-kernel threshold: every switch-out of a target thread arrives with its
stack, and `SwitchTracker` pairs it with the thread's next switch-in here, emitting an
`OffCpuEvent` only for episodes of at least the threshold. It keeps what the eBPF
backend's kernel side keeps per thread (ThreadTimes: on-CPU, parked, off-CPU and run-queue
time; the count of voluntary switch-outs that `CpuSample.switch_seq` carries) and drops
switch-outs at known park sites before anything is unwound.

Records come from per-CPU rings, so a thread's switch-out (CPU 0) and switch-in (CPU 1)
are in different rings: `Reorder` holds records back until every ring has been read past
their time, and releases them sorted.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import replace
from operator import itemgetter
from typing import NamedTuple, Optional

from hud.collect.perf_records import Capture, Preempt
from hud.model import CpuSample, Event, OffCpuEvent, StackCapture, ThreadExit, ThreadTimes

# How an off-CPU stretch is accounted (the eBPF programs' kinds).
PARKED, BLOCKED, RUNNABLE = "parked", "blocked", "runnable"
# The stack of an episode whose switch-out sample was lost.
_NO_CAPTURE = StackCapture()


class Reorder:
    """A time-ordered holding area for records read from several rings.

    Records are tuples whose first item is their time. `add(batch)` any time; `pop(upto)`
    returns those with time < upto, oldest first (ties keep arrival order). Each ring's
    records arrive sorted, so a batch is a few sorted runs, which list.sort (Timsort) merges
    in C: much cheaper per record than a heap driven from Python. A record older than what
    was already released is still returned by the next pop, and counted in `late`.
    """

    def __init__(self) -> None:
        self._pending: list = []
        self.released_upto = 0
        self.late = 0

    def add(self, batch: list) -> None:
        if not batch:
            return
        if self.released_upto and min(batch, key=_TIME)[0] < self.released_upto:
            self.late += sum(1 for r in batch if r[0] < self.released_upto)
        self._pending.extend(batch)

    def pop(self, upto: Optional[int] = None) -> list:
        """Records older than `upto` (all of them when None), oldest first."""
        p = self._pending
        p.sort(key=_TIME)
        if upto is None:
            self._pending = []
            return p
        lo, hi = 0, len(p)          # the first record at or after upto
        while lo < hi:
            mid = (lo + hi) // 2
            if p[mid][0] < upto:
                lo = mid + 1
            else:
                hi = mid
        out, self._pending = p[:lo], p[lo:]
        if upto > self.released_upto:
            self.released_upto = upto
        return out

    def __len__(self) -> int:
        return len(self._pending)


_TIME = itemgetter(0)


class _Out(NamedTuple):
    """A pending switch-out: what its switch-in will need."""

    time: int
    cpu: int
    kind: str
    state: int
    capture: Optional[Capture]   # None when nothing will unwind it (park, ignored, lost)
    holder_pid: int
    holder_comm: str


class _Thread:
    __slots__ = ("cap", "dirty", "in_time", "known", "offcpu", "on_since", "oncpu", "out",
                 "parked", "pre", "runq", "seq", "tainted")

    def __init__(self) -> None:
        self.known = False                    # a switch record was seen
        self.on_since: Optional[int] = None   # switch-in time while on CPU
        self.in_time = 0                      # the last switch-in
        self.out: Optional[_Out] = None       # the pending switch-out while off CPU
        self.cap: Optional[Capture] = None    # this switch-out's stack, before its OUT record
        self.pre: Optional[Preempt] = None    # this switch-out's preemptor, likewise
        self.tainted = False                  # records may have been lost since `out`
        self.seq = 0
        self.oncpu = self.parked = self.offcpu = self.runq = 0
        self.dirty = True


class SwitchTracker:
    """Per-thread switch state of one target; feed records in time order.

    A switch-out arrives as up to three records of one CPU, in this order: the preemption
    sample (runnable switch-outs, when available), the capture sample, the SWITCH OUT
    record. The OUT record decides (its time, its PREEMPT flag); the samples seen since the
    thread's last switch-in are its stack and holder. An OUT without a capture (the sample
    was lost) still counts its time and, past the threshold, makes an OffCpuEvent with an
    empty stack, which the analysis counts as such.
    """

    def __init__(self, pid: int, threshold_ns: int, start_ns: int = 0) -> None:
        self.pid = pid
        self.threshold_ns = threshold_ns
        self.start_ns = start_ns            # when the events were enabled
        self.parks: set = set()             # (tid, ip, sp) known park sites
        self.ignored: set = set()           # tids: time accounting only, no stacks
        self.counts: Counter = Counter()
        self._t: dict[int, _Thread] = {}

    def _thread(self, tid: int) -> _Thread:
        t = self._t.get(tid)
        if t is None:
            t = self._t[tid] = _Thread()
        return t

    def capture(self, tid: int, rec: Capture) -> None:
        self._thread(tid).cap = rec

    def preempt(self, tid: int, rec: Preempt) -> None:
        self.counts["preempt_samples"] += 1
        self._thread(tid).pre = rec

    def switch_out(self, tid: int, time_ns: int, cpu: int, preempt: bool) -> None:
        """The thread left the CPU (`preempt`: still runnable): account its on-CPU time
        and keep what its switch-in will need (the stack only when it may make an event)."""
        t = self._thread(tid)
        if not t.known:
            # First record of a thread already running when the events were enabled.
            t.known = True
            if self.start_ns and time_ns > self.start_ns:
                t.oncpu += time_ns - self.start_ns
        elif t.on_since is not None:
            t.oncpu += max(0, time_ns - t.on_since)
        elif t.out is not None:
            self.counts["unpaired_out"] += 1   # its switch-in was lost
        t.on_since = None
        t.dirty = True
        t.tainted = False
        cap, pre, t.cap, t.pre = t.cap, t.pre, None, None
        if cap is not None and not t.in_time <= cap.time <= time_ns:
            cap = None                         # a stale sample of an earlier switch-out
        if pre is not None and not (preempt and t.in_time <= pre.time <= time_ns):
            pre = None
        site = cap.site if cap is not None else None
        if preempt:
            kind = RUNNABLE
            if pre is None:
                self.counts["runnable_without_preemptor"] += 1
        else:
            t.seq += 1
            kind = PARKED if site is not None and (tid, *site) in self.parks else BLOCKED
        if cap is None:
            self.counts["outs_without_capture"] += 1
        elif kind == PARKED or tid in self.ignored:
            cap = None   # only the times are needed: never decoded, never unwound
        state = pre.state if pre is not None else (0 if preempt else -1)
        t.out = _Out(time_ns, cpu, kind, state, cap,
                     pre.next_pid if pre is not None else 0,
                     pre.next_comm if pre is not None else "")

    def switch_in(self, tid: int, time_ns: int) -> Optional[OffCpuEvent]:
        """The thread came back onto a CPU: account the stretch; an OffCpuEvent when it
        was long enough and not a park or an ignored thread."""
        t = self._thread(tid)
        if t.on_since is not None:
            self.counts["unpaired_in"] += 1    # its switch-out was lost
        t.known = True
        t.on_since = t.in_time = time_ns
        out, t.out = t.out, None
        if out is None:
            return None          # first sight of the thread: its switch-out was not seen
        d = time_ns - out.time
        if d < 0:
            self.counts["negative_stretch"] += 1
            return None
        t.dirty = True
        if out.kind == PARKED:
            t.parked += d
            self.counts["parked_dropped"] += 1
            return None
        if out.kind == RUNNABLE:
            t.runq += d
        else:
            t.offcpu += d
        if t.tainted:
            self.counts["tainted"] += 1
            return None
        if d < self.threshold_ns:
            self.counts["below_threshold"] += 1
            return None
        if tid in self.ignored:
            self.counts["ignored"] += 1
            return None
        self.counts["offcpu_events"] += 1
        stack = _NO_CAPTURE
        if out.capture is not None:
            stack = out.capture.capture      # decoded now, for the few that are reported
            if out.capture.bad:
                self.counts["bad_captures"] += 1
        return OffCpuEvent(pid=self.pid, tid=tid, cpu=out.cpu, start_ns=out.time,
                           end_ns=time_ns, state=out.state, runnable=out.kind == RUNNABLE,
                           stack=stack, holder_pid=out.holder_pid,
                           holder_comm=out.holder_comm)

    def exit(self, tid: int, time_ns: int) -> list[Event]:
        """The thread exited (PERF_RECORD_EXIT, sent while it still runs): its final times
        and its exit; its state and parks are dropped (tids are reused)."""
        self.parks = {p for p in self.parks if p[0] != tid}
        t = self._t.pop(tid, None)
        self.counts["thread_exits"] += 1
        if t is None:
            return [ThreadExit(tid, time_ns)]
        if t.on_since is not None:
            t.oncpu += max(0, time_ns - t.on_since)
        return [self._times(tid, t, time_ns), ThreadExit(tid, time_ns)]

    def sample(self, s: CpuSample) -> Optional[CpuSample]:
        """A cpu-clock sample with the thread's voluntary switch count and on-CPU time so
        far (-1 before its first switch record / switch-in); None for ignored threads."""
        if s.tid in self.ignored:
            self.counts["samples_ignored"] += 1
            return None
        t = self._t.get(s.tid)
        if t is None or not t.known:
            return replace(s, switch_seq=-1)
        oncpu = -1
        if t.on_since is not None and s.time_ns >= t.on_since:
            oncpu = t.oncpu + (s.time_ns - t.on_since)
        return replace(s, switch_seq=t.seq, oncpu_ns=oncpu)

    def lost(self, time_ns: int) -> None:
        """Switch records were lost before `time_ns` (on some CPU): pending switch-outs
        older than that may have missed their switch-in, so they make no event."""
        for t in self._t.values():
            if t.out is not None and (not time_ns or t.out.time <= time_ns):
                t.tainted = True

    def times(self, now_ns: int, everything: bool = False) -> list[ThreadTimes]:
        """ThreadTimes of threads whose counters moved since the last call."""
        return [self._times(tid, t, now_ns) for tid, t in self._t.items()
                if t.known and (t.dirty or everything)]

    @staticmethod
    def _times(tid: int, t: _Thread, now_ns: int) -> ThreadTimes:
        t.dirty = False
        return ThreadTimes(tid=tid, time_ns=now_ns, oncpu_ns=t.oncpu, parked_ns=t.parked,
                           offcpu_ns=t.offcpu, runq_ns=t.runq)

    def __len__(self) -> int:
        return len(self._t)
