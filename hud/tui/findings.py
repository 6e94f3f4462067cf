"""The findings panel: what blocked the workers, ranked by total time, one row per function.

`share` is the finding's total time over all worker time observed (in the window when one
is set): the part of the runtime's capacity this one function took away.
"""
from __future__ import annotations

from collections import Counter
from typing import Optional

from rich.text import Text

from hud.model import Finding
from hud.session import Snapshot
from hud.tui import fmt, theme
from hud.tui.panel import TablePanel
from hud.tui.table import Column, ItemTable


def finding_key(f: Finding) -> str:
    return f"{f.kind}\x00{f.function}\x00{f.file or ''}\x00{f.line or 0}"


def worker_time_ns(snap: Snapshot) -> int:
    """All worker time the shares account for: the denominator of a finding's share."""
    return sum(s.total_ns for s in snap.shares)


def empty_message(snap: Optional[Snapshot], filter_text: str, what: str = "blocking") -> Text:
    """Why the table is empty, in words: starting, nothing yet, filtered out, or all good."""
    if snap is None:
        return Text("starting…", style=theme.DIM)
    st = snap.status
    if filter_text:
        return Text(f"nothing matches “{filter_text}” (/ to change it, Esc to clear)",
                    style=theme.DIM)
    if st.events == 0:
        return Text("waiting for the first episode…", style=theme.DIM)
    above = f"above {fmt.threshold(st.threshold_ms)}"
    when = f"in the last {fmt.seconds(st.window_s)}" if st.window_s else "so far"
    return Text.assemble((f"no {what} {above} found {when} ", ""), ("(good)", theme.GOOD))


class FindingsTable(ItemTable):
    """One row per finding: kind, function, where, count, total, max, p99, share."""

    def __init__(self) -> None:
        super().__init__(id="findings-table")
        self.worker_ns = 0
        self.ambiguous: set = set()   # (kind, function) shown by more than one row

    def layout_for(self, width: int) -> list[Column]:
        cols = [Column("kind", "kind", 8), Column("function", "function", 0)]
        if width >= 100:
            cols.append(Column("where", "where", 22))
        cols += [Column("count", "count", 5, True), Column("total", "total", 7, True),
                 Column("max", "max", 7, True)]
        if width >= 100:
            cols.append(Column("p99", "p99", 7, True))
        cols.append(Column("share", "share", 5, True))
        if width >= 140:
            cols.append(Column("workers", "wkrs", 4, True))
        return cols

    def cells(self, f: Finding, columns: dict[str, Column]) -> dict:
        style = theme.KIND_STYLE.get(f.kind, "")
        share = f.total_ms * 1e6 / self.worker_ns if self.worker_ns else None
        return {
            "kind": Text(fmt.KIND_LABEL.get(f.kind, f.kind), style=style),
            "function": Text(self._function(f, columns), style="bold" if f.kind != "sched_delay"
                             else ""),
            "where": Text(fmt.fit_left(fmt.location(f.file, f.line),
                                       columns["where"].width if "where" in columns else 0),
                          style=theme.DIM),
            "count": fmt.count(f.count),
            "total": Text(fmt.ms(f.total_ms), style=style),
            "max": fmt.ms(f.max_ms),
            "p99": fmt.ms(f.p99_ms),
            "share": fmt.pct(min(1.0, share)) if share is not None else "–",
            "workers": str(len(f.workers)),
        }


    def _function(self, f: Finding, columns: dict[str, Column]) -> str:
        width = columns["function"].width
        if "where" not in columns and (f.kind, f.function) in self.ambiguous and f.line:
            # Two rows of one function (different lines) must not look like duplicates.
            suffix = f":{f.line}"
            return fmt.fit_path(f.function, width - len(suffix)) + suffix
        return fmt.fit_path(f.function, width)


class FindingsPanel(TablePanel):
    """The findings table, or a sentence saying why there is nothing to show."""

    TITLE = "findings"

    def __init__(self) -> None:
        super().__init__(FindingsTable(), "findings")

    def items(self, snap: Optional[Snapshot]) -> tuple:
        return tuple(snap.findings) if snap is not None else ()

    def key(self, item: Finding) -> str:
        return finding_key(item)

    def empty_text(self, snap: Optional[Snapshot], filter_text: str) -> Text:
        return empty_message(snap, filter_text)

    def prepare(self, snap: Optional[Snapshot], shown: list) -> None:
        self.table.worker_ns = worker_time_ns(snap) if snap is not None else 0
        rows_of = Counter((f.kind, f.function) for f in shown)
        self.table.ambiguous = {k for k, n in rows_of.items() if n > 1}
