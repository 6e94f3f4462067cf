"""Per-worker time shares: running / parked / blocked / waiting (and what is unaccounted).

With the kernel's cumulative `ThreadTimes` (source `times`), between two snapshots:
running = on-CPU time, waiting = run-queue time, parked = time at known park sites plus
park episodes (parks the kernel side has not learned yet are counted by it as plain
off-CPU time), blocked = the rest of off-CPU time. A thread's first snapshot counts from
zero (the kernel side counts from attach).

Without them (source `episodes`), shares come from episodes over the thread's observed
span: parked = park, blocked = blocking, waiting = sched_delay, running = cpu episodes,
`other` = the remainder (short episodes under the threshold, and ordinary running).
"""
from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass
from typing import Optional

from hud.model import KIND_BLOCKING, KIND_CPU, KIND_PARK, KIND_SCHED_DELAY, Episode, ThreadTimes

SOURCE_TIMES = "times"
SOURCE_EPISODES = "episodes"


@dataclass(frozen=True)
class WorkerShare:
    """Fractions (0..1) of one worker's time over `total_ns`."""

    tid: int
    name: str
    running: float
    parked: float
    blocked: float
    waiting: float
    other: float
    total_ns: int
    source: str

    def to_dict(self) -> dict:
        return {"tid": self.tid, "name": self.name,
                "running_pct": round(100 * self.running, 1),
                "parked_pct": round(100 * self.parked, 1),
                "blocked_pct": round(100 * self.blocked, 1),
                "waiting_pct": round(100 * self.waiting, 1),
                "other_pct": round(100 * self.other, 1),
                "total_ms": round(self.total_ns / 1e6, 3), "source": self.source}


_ZERO = (0, 0, 0, 0, 0, 0)


class _Thread:
    __slots__ = ("ep_ns", "first_ns", "last_ns", "park_cum", "snaps", "times")

    def __init__(self) -> None:
        self.snaps: list = []      # (time_ns, oncpu, parked, offcpu, runq, park_cum)
        self.times: list = []      # time_ns of snaps, for bisect
        self.park_cum = 0
        self.ep_ns: Counter = Counter()
        self.first_ns: Optional[int] = None
        self.last_ns = 0


class Shares:
    """Keeps what per-worker shares need; `max_snapshots` bounds memory per thread."""

    def __init__(self, max_snapshots: int = 4096) -> None:
        self.max_snapshots = max_snapshots
        self._t: dict = {}

    def _get(self, tid: int) -> _Thread:
        t = self._t.get(tid)
        if t is None:
            t = self._t[tid] = _Thread()
        return t

    def seen(self, tid: int, time_ns: int) -> None:
        """The thread was observed at `time_ns` (extends its span)."""
        t = self._get(tid)
        if t.first_ns is None or time_ns < t.first_ns:
            t.first_ns = time_ns
        t.last_ns = max(t.last_ns, time_ns)

    def episode(self, ep: Episode) -> None:
        t = self._get(ep.tid)
        t.ep_ns[ep.kind] += ep.duration_ns
        if ep.kind == KIND_PARK:
            t.park_cum += ep.duration_ns
        self.seen(ep.tid, ep.start_ns)
        self.seen(ep.tid, ep.end_ns)

    def times(self, tt: ThreadTimes) -> None:
        t = self._get(tt.tid)
        if t.times and tt.time_ns < t.times[-1]:
            return   # out of order: cumulative counters must not go backwards
        t.snaps.append((tt.time_ns, tt.oncpu_ns, tt.parked_ns, tt.offcpu_ns, tt.runq_ns,
                        t.park_cum))
        t.times.append(tt.time_ns)
        if len(t.snaps) > self.max_snapshots:
            # Thin the middle, keep the first and the newest: whole-run deltas stay exact.
            t.snaps = t.snaps[:1] + t.snaps[1:-1][1::2] + t.snaps[-1:]
            t.times = [s[0] for s in t.snaps]
        self.seen(tt.tid, tt.time_ns)

    def share(self, tid: int, name: str = "", since_ns: Optional[int] = None,
              window_eps: Optional[Counter] = None) -> Optional[WorkerShare]:
        """Shares of `tid` (since `since_ns` when given); None when nothing is known."""
        t = self._t.get(tid)
        if t is None:
            return None
        if t.snaps:
            b = t.snaps[-1]
            a = _ZERO
            if since_ns is not None:
                i = bisect_right(t.times, since_ns) - 1
                if i >= 0 and t.snaps[i] is not b:
                    a = t.snaps[i]
            run, parked, off, runq, pcum = (b[k] - a[k] for k in range(1, 6))
            learned_park = min(max(0, pcum), max(0, off))
            parked += learned_park
            blocked = max(0, off - learned_park)
            total = max(1, run + parked + blocked + runq)
            return WorkerShare(tid, name, run / total, parked / total, blocked / total,
                               runq / total, 0.0, total, SOURCE_TIMES)
        eps = window_eps if window_eps is not None else t.ep_ns
        first = t.first_ns if t.first_ns is not None else t.last_ns
        start = first if since_ns is None else max(first, since_ns)
        span = max(1, t.last_ns - start)
        parts = [eps[KIND_CPU], eps[KIND_PARK], eps[KIND_BLOCKING], eps[KIND_SCHED_DELAY]]
        total = max(span, sum(parts))
        other = max(0, total - sum(parts))
        return WorkerShare(tid, name, *(p / total for p in parts), other / total, total,
                           SOURCE_EPISODES)
