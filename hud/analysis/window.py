"""A rolling `--window`: findings, hotspots and episode sums of the last N seconds.

Items enter stamped with their time (an episode's end, a sample's time), clamped so
stamps never go backwards (a cpu stretch is only known when it closes, a little late),
and leave one by one, oldest first, as time advances: every item is added once and
removed once, so the cost per event is O(1) amortized and no query recomputes from scratch.
"""
from __future__ import annotations

from collections import Counter, deque

from hud.analysis.findings import FindingsTable
from hud.analysis.hotspots import Hotspots
from hud.model import FINDING_KINDS, Episode, Stack

_EPISODE = 0
_SAMPLE = 1


class RollingWindow:
    """What happened in the last `span_ns` of event time (not wall-clock time)."""

    def __init__(self, span_ns: int) -> None:
        if span_ns <= 0:
            raise ValueError("window span must be positive")
        self.span_ns = span_ns
        self.findings = FindingsTable(FINDING_KINDS, keep_members=True)
        self.hotspots = Hotspots()
        self.episode_ns: dict = {}      # tid -> Counter(kind -> ns)
        self._items: deque = deque()
        self._last = 0
        self.now_ns = 0

    def __len__(self) -> int:
        return len(self._items)

    def _stamp(self, t: int) -> int:
        self._last = max(self._last, t)
        return self._last

    def add_episode(self, ep: Episode) -> None:
        self._items.append((self._stamp(ep.end_ns), _EPISODE, ep))
        self.findings.add(ep)
        self.episode_ns.setdefault(ep.tid, Counter())[ep.kind] += ep.duration_ns

    def add_sample(self, time_ns: int, keys: tuple, stack: Stack) -> None:
        self._items.append((self._stamp(time_ns), _SAMPLE, keys))
        self.hotspots.add(keys, stack)

    def advance(self, now_ns: int) -> None:
        """Move the window's end to `now_ns`, evicting what fell out of it."""
        self.now_ns = max(self.now_ns, now_ns)
        edge = self.now_ns - self.span_ns
        items = self._items
        while items and items[0][0] < edge:
            _, what, payload = items.popleft()
            if what == _EPISODE:
                self.findings.remove(payload)
                c = self.episode_ns[payload.tid]
                c[payload.kind] -= payload.duration_ns
            else:
                self.hotspots.remove(payload)

    @property
    def since_ns(self) -> int:
        return self.now_ns - self.span_ns
