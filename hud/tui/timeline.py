"""The timeline panel: one row per worker, recent episodes left (old) to right (now).

A cell covers span/width of event time; its colour is the kind that took most of it and its
height how much of the cell it took (▁ a short blip, █ the whole cell), so a 50 ms sleep
every 200 ms and one 2 s stall look different even when both touch every cell.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Optional

from rich.text import Text

from hud.model import FINDING_KINDS, Episode
from hud.session import Snapshot
from hud.tui import fmt, theme
from hud.tui.quiet import QuietStatic

DEFAULT_SPAN_S = 60.0        # what Profiler.snapshot() gives without a window
LEVELS = "▁▂▃▄▅▆▇█"
EMPTY = "·"
LEGEND = (f"[{theme.BLOCKED}]█[/]blocking [{theme.CPU}]█[/]cpu "
          f"[{theme.WAITING}]█[/]sched")


def timeline_row(episodes: list[Episode], start_ns: int, span_ns: int, width: int) -> Text:
    """One worker's row: `episodes` (any kinds; only findings' kinds are drawn) placed in
    `width` cells covering [start_ns, start_ns + span_ns)."""
    if width <= 0 or span_ns <= 0:
        return Text()
    end_ns = start_ns + span_ns
    cell = span_ns / width
    cover: list[Counter] = [Counter() for _ in range(width)]
    for ep in episodes:
        if ep.kind not in FINDING_KINDS:
            continue
        a, b = max(ep.start_ns, start_ns), min(ep.end_ns, end_ns)
        if b <= a:
            continue
        first = min(width - 1, int((a - start_ns) / cell))
        last = min(width - 1, int((b - start_ns - 1) / cell))
        for i in range(first, last + 1):
            lo = start_ns + i * cell
            cover[i][ep.kind] += min(b, lo + cell) - max(a, lo)
    text = Text()
    for c in cover:
        if not c:
            text.append(EMPTY, style=theme.OTHER)
            continue
        kind = max(c, key=lambda k: (c[k], k))
        level = min(len(LEVELS), max(1, math.ceil(sum(c.values()) / cell * len(LEVELS))))
        text.append(LEVELS[level - 1], style=theme.KIND_STYLE.get(kind, ""))
    return text


def span_of(snap: Snapshot) -> float:
    return snap.status.window_s or DEFAULT_SPAN_S


def now_of(snap: Snapshot) -> int:
    """The right edge: the latest event time (Snapshot.now_ns), else the latest episode."""
    now = getattr(snap, "now_ns", 0)
    if not now and snap.timeline:
        now = max(ep.end_ns for ep in snap.timeline)
    return now


class TimelinePanel(QuietStatic):
    """Recent episodes of the workers shown in the workers panel, row for row."""

    DEFAULT_CSS = """
    TimelinePanel { height: auto; border: round $primary 50%; padding: 0 1;
                    border-subtitle-color: $text-muted; }
    """

    def __init__(self) -> None:
        super().__init__(id="timeline")
        self.set_title("timeline")
        self.set_subtitle(LEGEND)
        self._args: tuple = (None, [], 0)

    def show(self, snap: Optional[Snapshot], tids: list[int], left_out: int) -> None:
        self._args = (snap, tids, left_out)
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def _draw(self) -> None:
        snap, tids, left_out = self._args
        width = self.content_size.width or 38
        if snap is None or not tids:
            self.show_text(Text(""))
            return
        span = span_of(snap)
        span_ns = int(span * 1e9)
        start = now_of(snap) - span_ns
        by_tid: dict = defaultdict(list)
        for ep in snap.timeline:
            by_tid[ep.tid].append(ep)
        lines = [timeline_row(by_tid.get(tid, []), start, span_ns, width) for tid in tids]
        if left_out:
            lines.append(Text(""))
        self.show_text(Text("\n").join(lines))
        self.set_title(f"timeline · last {fmt.seconds(span)} → now")
