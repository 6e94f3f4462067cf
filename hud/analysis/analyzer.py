"""The incremental Analyzer the session feeds events into.

    analyzer = Analyzer(resolve, threshold_ms=5, target=target, window_s=10)
    analyzer.set_thread(Thread(tid, name, ROLE_WORKER))   # discovery, any time
    for event in backend:                                 # hud.model events
        new_episodes = analyzer.feed(event)               # Thread updates accepted too
    analyzer.close()                                      # end of run: close cpu stretches
    analyzer.findings()            # whole run, ranked by total time
    analyzer.findings(window=True) # the last window_s seconds of event time
    analyzer.hotspots(20), analyzer.shares(), analyzer.pool_summary(), analyzer.stats()

`resolve(pid, StackCapture) -> tuple[Frame, ...]` is injected (unwinding + symbolization
live, a stack table when replaying); stacks are classified and their signatures cached
here. Every query is cheap: aggregates are kept up to date as events arrive, whole-run
findings are cached until the next finding episode, and window queries read the window's
own aggregates. `episodes` keeps every episode (parks and pool included, up to
`max_episodes`) for the timeline and the exports; `oncpu_stacks()` the weight of each
distinct worker on-CPU stack, for folded output.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Optional, Union

from hud.analysis.episodes import EpisodeBuilder, PollIdentity, Resolver
from hud.analysis.findings import FindingsTable
from hud.analysis.hotspots import BY_USER, Hotspot, Hotspots, sample_keys
from hud.analysis.shares import Shares, WorkerShare
from hud.analysis.window import RollingWindow
from hud.classify import Classifier
from hud.model import (
    FINDING_KINDS,
    KIND_POOL,
    ROLE_BLOCKING,
    ROLE_WORKER,
    CpuSample,
    Episode,
    Event,
    Finding,
    Lost,
    OffCpuEvent,
    Stack,
    Target,
    TargetExit,
    Thread,
    ThreadExit,
    ThreadSeen,
    ThreadTimes,
    Wake,
)

NS_PER_MS = 1_000_000


@dataclass(frozen=True)
class PoolSummary:
    """The blocking pool: shown, never reported as blocking the runtime."""

    threads: tuple[int, ...]
    episodes: int
    busy_ms: float
    idle_ms: float
    top: tuple[Finding, ...]   # busy pool work grouped like findings (kind "pool")

    def to_dict(self, top: int = 10, stacks: bool = False) -> dict:
        items = []
        for f in self.top[:top]:
            d = f.to_dict()
            if not stacks:
                d.pop("stack", None)
            items.append(d)
        return {"threads": list(self.threads), "episodes": self.episodes,
                "busy_ms": round(self.busy_ms, 3), "idle_ms": round(self.idle_ms, 3),
                "top": items}


class Analyzer:
    """Events in; findings, hotspots, shares, pool summary and stats out, incrementally."""

    def __init__(self, resolve: Resolver, *, threshold_ms: float = 5.0,
                 target: Optional[Target] = None, window_s: Optional[float] = None,
                 classifier: Optional[Classifier] = None,
                 max_episodes: int = 1_000_000,
                 poll_identity: Optional[PollIdentity] = None) -> None:
        self.threshold_ns = int(threshold_ms * NS_PER_MS)
        self.target = target
        self.classifier = classifier or Classifier(target.exe if target else None)
        # Which task poll a sample is in: given (a recording's), or offered by a resolver
        # that can tell from the stack copy (StackResolver).
        self.builder = EpisodeBuilder(resolve, self.classifier, self.threshold_ns,
                                      poll_identity or getattr(resolve, "poll_identity",
                                                               None))
        self.window = RollingWindow(int(window_s * 1e9)) if window_s else None
        self.max_episodes = max_episodes
        self.episodes: list[Episode] = []
        self.names: dict = {}
        self.counts: Counter = Counter()
        self.lost: Counter = Counter()
        self.start_ns = 0
        self.end_ns = 0
        self.target_exited = False
        self._table = FindingsTable(FINDING_KINDS)
        self._pool = FindingsTable({KIND_POOL})
        self._pool_idle_ns = 0
        self._pool_tids: set = set()
        self._hot = Hotspots()
        self._shares = Shares()
        self._oncpu: dict = {}          # id(stack) -> [stack, ns]
        self._keys: dict = {}           # id(stack) -> (stack, hotspot keys)
        self._cached: Optional[list] = None
        if target is not None:
            for t in target.threads:
                self.set_thread(t)

    # -- input ------------------------------------------------------------------------------

    def set_thread(self, thread: Thread) -> None:
        """Discovery's word on a thread: its name and role (may change over time)."""
        self.names[thread.tid] = thread.name
        self.builder.set_role(thread.tid, thread.role)

    def feed_all(self, events: Iterable[Union[Event, Thread]]) -> list[Episode]:
        """Feed many events; the episodes they made, in order."""
        out: list[Episode] = []
        for ev in events:
            out.extend(self.feed(ev))
        return out

    def feed(self, ev: Union[Event, Thread]) -> list[Episode]:
        """Feed one event (or a `Thread` role update); returns the episodes it completed."""
        self.counts["events"] += 1
        if isinstance(ev, CpuSample):
            self.counts["samples"] += 1
            self._clock(ev.time_ns, ev.time_ns)
            eps, stack, _, role = self.builder.sample(ev)
            if role == ROLE_WORKER:
                self._shares.seen(ev.tid, ev.time_ns)
                self._sample(ev, stack)
        elif isinstance(ev, OffCpuEvent):
            self.counts["offcpu_events"] += 1
            self._clock(ev.start_ns, ev.end_ns)
            eps, role = self.builder.offcpu(ev)
            if role == ROLE_BLOCKING:
                self._pool_tids.add(ev.tid)
        elif isinstance(ev, Wake):
            self.counts["wakes"] += 1
            self.builder.wake(ev)
            eps = []
        elif isinstance(ev, ThreadTimes):
            self.counts["thread_times"] += 1
            self._clock(ev.time_ns, ev.time_ns)
            self._shares.times(ev)
            eps = []
        elif isinstance(ev, Thread):
            self.counts["events"] -= 1   # a role update, not a target event
            self.set_thread(ev)
            eps = []
        elif isinstance(ev, ThreadSeen):
            self._clock(ev.time_ns, ev.time_ns)
            self.names[ev.tid] = ev.name
            eps = []
        elif isinstance(ev, ThreadExit):
            self._clock(ev.time_ns, ev.time_ns)
            eps = self.builder.thread_exit(ev.tid, ev.time_ns)
        elif isinstance(ev, Lost):
            self._clock(ev.time_ns, ev.time_ns)
            self.lost[ev.source] += ev.count
            eps = []
        elif isinstance(ev, TargetExit):
            self._clock(ev.time_ns, ev.time_ns)
            self.target_exited = True
            eps = self.builder.flush()
        else:
            self.counts["unknown_events"] += 1
            eps = []
        for ep in eps:
            self._episode(ep)
        if self.window is not None and self.end_ns:
            self.window.advance(self.end_ns)
        return eps

    def close(self) -> list[Episode]:
        """End of the run: close open cpu stretches (call once, before the final queries)."""
        eps = self.builder.flush()
        for ep in eps:
            self._episode(ep)
        return eps

    def _clock(self, start: int, end: int) -> None:
        if start > 0 and (not self.start_ns or start < self.start_ns):
            self.start_ns = start
        if end > self.end_ns:
            self.end_ns = end

    def _sample(self, ev: CpuSample, stack: Stack) -> None:
        slot = self._keys.get(id(stack))
        if slot is None or slot[0] is not stack:
            # Per distinct classified stack; the entry holds the stack so its id stays
            # unique while cached.
            if len(self._keys) > 50_000:
                self._keys.clear()
            slot = self._keys[id(stack)] = (stack, sample_keys(stack))
        keys = slot[1]
        self._hot.add(keys, stack)
        acc = self._oncpu.get(id(stack))
        if acc is None:
            # The value holds the stack, so its id cannot be reused while it is a key.
            acc = self._oncpu[id(stack)] = [stack, 0]
        acc[1] += max(0, ev.period_ns)
        if self.window is not None:
            self.window.add_sample(ev.time_ns, keys, stack)

    def _episode(self, ep: Episode) -> None:
        self.counts[f"episodes_{ep.kind}"] += 1
        if len(self.episodes) < self.max_episodes:
            self.episodes.append(ep)
        else:
            self.counts["episodes_dropped"] += 1
        if self._table.add(ep):
            self._cached = None
        if ep.kind == KIND_POOL:
            if ep.detail == "idle":
                self._pool_idle_ns += ep.duration_ns
            else:
                self._pool.add(ep)
        else:
            self._shares.episode(ep)
        if self.window is not None:
            self.window.add_episode(ep)

    # -- output -----------------------------------------------------------------------------

    def findings(self, window: bool = False) -> list[Finding]:
        """Findings ranked by total time: the whole run, or the rolling window."""
        if window:
            if self.window is None:
                raise ValueError("this analyzer has no window (window_s not given)")
            return self.window.findings.findings()
        if self._cached is None:
            self._cached = self._table.findings()
        return list(self._cached)

    def hotspots(self, n: int = 20, by: str = BY_USER, window: bool = False) -> list[Hotspot]:
        """Top on-CPU functions of workers by sample count (`by` "user" or "self")."""
        src = self._hot
        if window:
            if self.window is None:
                raise ValueError("this analyzer has no window (window_s not given)")
            src = self.window.hotspots
        return src.top(n, by)

    def shares(self, window: bool = False) -> list[WorkerShare]:
        """Running / parked / blocked / waiting shares of every known worker."""
        out = []
        for t in self.workers():
            if window and self.window is not None:
                s = self._shares.share(t.tid, t.name, since_ns=self.window.since_ns,
                                       window_eps=self.window.episode_ns.get(t.tid, Counter()))
            else:
                s = self._shares.share(t.tid, t.name)
            if s is not None:
                out.append(s)
        return out

    def pool_summary(self) -> PoolSummary:
        """What the blocking pool did (spawn_blocking work, idle waits)."""
        top = tuple(self._pool.findings())
        busy = sum(f.total_ms for f in top)
        return PoolSummary(threads=tuple(sorted(self._pool_tids)),
                           episodes=self.counts[f"episodes_{KIND_POOL}"],
                           busy_ms=busy, idle_ms=self._pool_idle_ns / NS_PER_MS, top=top)

    def role_of(self, tid: int) -> str:
        return self.builder.role_of(tid)

    def threads(self) -> list[Thread]:
        """Every thread the analyzer knows, with its current role, by tid."""
        tids = set(self.names) | set(self.builder.roles) | set(self.builder.learned)
        return [Thread(tid, self.names.get(tid, ""), self.role_of(tid)) for tid in sorted(tids)]

    def workers(self) -> list[Thread]:
        """Worker threads: discovery's, plus threads whose stacks showed a worker loop."""
        return [t for t in self.threads() if t.role == ROLE_WORKER]

    def oncpu_stacks(self) -> list[tuple[Stack, int]]:
        """(stack, on-CPU ns) of every distinct worker sample stack."""
        return [(s, ns) for s, ns in self._oncpu.values()]

    @property
    def duration_s(self) -> float:
        """Event-time span of the run so far."""
        return max(0, self.end_ns - self.start_ns) / 1e9

    def stats(self) -> dict:
        """Counters for the status line and the report's `stats`."""
        c = self.counts
        b = self.builder.counts
        episodes = {k[len("episodes_"):]: v for k, v in c.items()
                    if k.startswith("episodes_") and k != "episodes_dropped"}
        out = {"events": c["events"], "lost": sum(self.lost.values()),
               "lost_by_source": dict(self.lost), "samples": c["samples"],
               "offcpu_events": c["offcpu_events"], "thread_times": c["thread_times"],
               "wakes": c["wakes"], "episodes": episodes, "episodes_dropped": c["episodes_dropped"],
               "below_threshold": b["below_threshold"], "ignored_offcpu": b["ignored_offcpu"],
               "short_cpu_stretches": b["short_stretches"],
               "unsampled_gaps": b["unsampled_gaps"],
               # Worker samples in a task poll: which task they poll, told or not.
               "task_polls": {"identified": b["polls_identified"],
                              "unidentified": b["polls_unidentified"],
                              "told_apart": b["polls_told_apart"],
                              "errors": b["poll_identity_errors"]},
               "offcpu_without_stack": b["offcpu_without_stack"],
               "resolve_errors": b["resolve_errors"],
               "stack_cache": {"hits": self.classifier.hits,
                               "misses": self.classifier.misses},
               "target_exited": self.target_exited}
        if self.builder.first_resolve_error:
            out["first_resolve_error"] = self.builder.first_resolve_error
        return out
