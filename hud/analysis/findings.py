"""Episodes grouped into findings: count, total, max, p99, workers, a representative stack.

A group's key is (kind, blocking function, file, line). For `blocking` (and `pool`) the
line is the call site of the blocking call, stable across episodes. For `cpu` and
`sched_delay` the line is wherever a sample or the preemption happened to land, so those
kinds group by (kind, function, file) and report the line of the representative episode.

The representative stack is the **longest** episode's (the one `max_ms` describes): cheap
to keep, deterministic, and the worst case is the one a user wants to see first.

p99 is nearest-rank: the smallest duration such that at least 99% of the group's
episodes are no longer; below 100 episodes that is the maximum.

A table supports `remove` so a rolling window can evict old episodes without recomputing.
"""
from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from typing import Optional

from hud.analysis.episodes import (
    IN_KERNEL,
    IN_PAGE_FAULT,
    WOKEN_BY,
    kernel_sites_of,
    waker_text,
)
from hud.classify import blocking_frame, display_function
from hud.model import (
    KIND_BLOCKING,
    KIND_CPU,
    KIND_POOL,
    KIND_SCHED_DELAY,
    Episode,
    Finding,
    Frame,
)

# Kinds whose episodes are grouped by line as well as function and file.
GROUP_BY_LINE = frozenset({KIND_BLOCKING, KIND_POOL})

NS_PER_MS = 1_000_000
# A cpu finding names its share of kernel time, a blocking one its share of page-fault
# waits, from a tenth of its time on.
SHARE_SHOWN = 10


def p99_index(n: int) -> int:
    """Index of the nearest-rank 99th percentile in a sorted list of `n` values."""
    return (99 * n + 99) // 100 - 1


def group_key(episode: Episode, blocker: Optional[Frame]) -> tuple:
    """(kind, function, file, line-or-None) of an episode whose blocker is `blocker`."""
    func = display_function(blocker.function if blocker else None)
    file = blocker.file if blocker else None
    line = blocker.line if (blocker and episode.kind in GROUP_BY_LINE) else None
    return (episode.kind, func, file, line)


def holder_of(episode: Episode) -> tuple:
    """(who, where) an episode waited on: a sched_delay's CPU holder (`comm (tid N)`,
    ""), a blocking episode's waker and where it woke it (Episode.waker); () for a
    blocking episode whose waker is unknown."""
    if episode.kind == KIND_BLOCKING:
        return episode.waker or ()
    return (episode.detail or "unknown", "")


# Kinds whose findings name who they waited on: the head of the finding's detail and the
# key of its list in the report.
_NAMED = {KIND_SCHED_DELAY: ("CPU held by ", "holder"), KIND_BLOCKING: (WOKEN_BY, "waker")}


class _Group:
    """Running aggregates of one finding; removal supported when members are kept."""

    __slots__ = ("best", "count", "durs", "fault_ns", "file", "function", "holders",
                 "kernel_ns", "key", "kind", "ksites", "line", "members", "sorted", "tids",
                 "total_ns")

    def __init__(self, key: tuple, keep_members: bool) -> None:
        self.key = key
        self.kind, self.function, self.file, self.line = key
        self.count = 0
        self.total_ns = 0
        self.kernel_ns = 0
        self.fault_ns = 0
        self.durs: list = []
        self.sorted = True
        self.tids: Counter = Counter()
        self.holders: Counter = Counter()
        self.ksites: Counter = Counter()    # kernel function (kernel_site) -> ns
        self.best: Optional[Episode] = None
        self.members: Optional[deque] = deque() if keep_members else None

    def add(self, ep: Episode) -> None:
        d = ep.duration_ns
        self.count += 1
        self.total_ns += d
        self.kernel_ns += ep.kernel_ns
        self.fault_ns += d if ep.fault else 0
        if self.durs and d < self.durs[-1]:
            self.sorted = False
        self.durs.append(d)
        self.tids[ep.tid] += 1
        for site, ns in kernel_sites_of(ep):
            self.ksites[site] += ns
        if ep.kind in _NAMED:
            h = holder_of(ep)
            if h:
                self.holders[h] += d
        if self.best is None or d > self.best.duration_ns:
            self.best = ep
        if self.members is not None:
            self.members.append(ep)

    def remove(self, ep: Episode) -> None:
        """Forget `ep` (oldest first, as a window evicts)."""
        d = ep.duration_ns
        self.count -= 1
        self.total_ns -= d
        self.kernel_ns -= ep.kernel_ns
        self.fault_ns -= d if ep.fault else 0
        self.durs.remove(d)
        self.tids[ep.tid] -= 1
        if self.tids[ep.tid] <= 0:
            del self.tids[ep.tid]
        for site, ns in kernel_sites_of(ep):
            if site in self.ksites:
                self.ksites[site] -= ns
                if self.ksites[site] <= 0:
                    del self.ksites[site]
        if ep.kind in _NAMED:
            h = holder_of(ep)
            if h in self.holders:
                self.holders[h] -= d
                if self.holders[h] <= 0:
                    del self.holders[h]
        if self.members is not None:
            if self.members and self.members[0] is ep:
                self.members.popleft()
            else:
                self.members.remove(ep)
            if self.best is ep:
                # Only when the longest one leaves: rescan what is left (rare).
                self.best = max(self.members, key=lambda e: e.duration_ns, default=None)

    def finding(self) -> Finding:
        if not self.sorted:
            self.durs.sort()
            self.sorted = True
        durs = self.durs
        best = self.best
        line = self.line
        stack = best.stack if best is not None else ()
        if line is None and best is not None:
            b = blocking_frame(best.stack)
            line = b.line if b is not None else None
        detail = ""
        extra: tuple = ()
        if self.holders:
            # Shares of the group's whole time: every sched_delay has a holder ("unknown"
            # at worst); a blocking wait whose waker was not seen (or that is no futex
            # wait) names nobody.
            head, key = _NAMED[self.kind]
            total = self.total_ns or 1
            detail = head + ", ".join(f"{waker_text(k)} {100 * ns / total:.0f}%"
                                      for k, ns in self.holders.most_common(3))
            extra = ((key + "s", [{key: k[0], **({"at": k[1]} if k[1] else {}),
                                   "ms": round(ns / NS_PER_MS, 3)}
                                  for k, ns in self.holders.most_common(10)]),)
        # Where in the kernel: the function past the scheduler's frames that the
        # episodes' stacks sleep in, or their kernel samples ran in, by time.
        site = self.ksites.most_common(1)[0][0] if self.ksites else ""
        at = f", at {site}" if site else ""
        if self.kind == KIND_CPU:
            # Samples in kernel code on the thread's behalf: a system call or a fault,
            # whose user frames are only where it entered. Interrupt work that ran in
            # the thread's time is not counted (episodes.in_interrupt).
            extra = (("kernel_ms", round(self.kernel_ns / NS_PER_MS, 3)),)
            if self.kernel_ns * SHARE_SHOWN >= self.total_ns > 0:
                detail = f"{IN_KERNEL} {100 * self.kernel_ns / self.total_ns:.0f}%{at}"
        elif self.kind == KIND_BLOCKING:
            # Waits in a page fault: the line is an ordinary memory access (an mmap'd
            # file, evicted code, swap), not a call that says it blocks.
            extra += (("fault_ms", round(self.fault_ns / NS_PER_MS, 3)),)
            if not detail and self.fault_ns * SHARE_SHOWN >= self.total_ns > 0:
                detail = f"{IN_PAGE_FAULT} {100 * self.fault_ns / self.total_ns:.0f}%{at}"
            elif not detail and site:
                # No waker to name: the kernel function says what the wait is (a disk
                # read's folio wait, a pipe, a kernel lock, a sleep).
                share = 100 * self.ksites[site] / (self.total_ns or 1)
                detail = f"{IN_KERNEL} at {site} {share:.0f}%"
        if self.ksites:
            extra += (("kernel_sites", [{"function": k, "ms": round(ns / NS_PER_MS, 3)}
                                        for k, ns in self.ksites.most_common(5)]),)
        return Finding(
            kind=self.kind, function=self.function, file=self.file, line=line,
            count=self.count, total_ms=self.total_ns / NS_PER_MS,
            max_ms=(durs[-1] if durs else 0) / NS_PER_MS,
            p99_ms=(durs[p99_index(len(durs))] if durs else 0) / NS_PER_MS,
            workers=tuple(sorted(self.tids)), stack=stack, detail=detail, extra=extra)


def rank(findings: Iterable[Finding]) -> list[Finding]:
    """Findings ranked by total time (then count, kind, function: deterministic)."""
    return sorted(findings, key=lambda f: (-f.total_ms, -f.count, f.kind, f.function,
                                           f.file or "", f.line or 0))


class FindingsTable:
    """Groups episodes of the given kinds into findings, incrementally.

    `keep_members=True` keeps each group's episodes so `remove` can replace the longest
    one when it leaves (what a rolling window needs); a whole-run table does not.
    """

    def __init__(self, kinds: Iterable[str], keep_members: bool = False) -> None:
        self.kinds = frozenset(kinds)
        self.keep_members = keep_members
        self._groups: dict = {}
        self._key_of: dict = {}   # id(episode) -> key, for removal (members mode only)

    def __len__(self) -> int:
        return len(self._groups)

    def add(self, ep: Episode) -> bool:
        """Add an episode; False (and nothing kept) when its kind is not tabled here."""
        if ep.kind not in self.kinds:
            return False
        key = group_key(ep, blocking_frame(ep.stack))
        g = self._groups.get(key)
        if g is None:
            g = self._groups[key] = _Group(key, self.keep_members)
        g.add(ep)
        if self.keep_members:
            self._key_of[id(ep)] = key
        return True

    def remove(self, ep: Episode) -> None:
        """Remove an episode added earlier (members mode only)."""
        key = self._key_of.pop(id(ep), None)
        if key is None:
            return
        g = self._groups[key]
        g.remove(ep)
        if g.count <= 0:
            del self._groups[key]

    def findings(self, kinds: Optional[Iterable[str]] = None) -> list[Finding]:
        """Current findings (optionally of some kinds only), ranked by total time."""
        want = self.kinds if kinds is None else frozenset(kinds)
        return rank(g.finding() for g in self._groups.values() if g.kind in want)
