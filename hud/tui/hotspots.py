"""The hotspots panel (`h`): where worker on-CPU samples land, by the user function above them.

The findings say what blocked; this says where the CPU time of the workers went, long
polls or not. Same keys as the findings: Enter shows a sample's stack.
"""
from __future__ import annotations

from typing import Optional

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical

from hud.analysis import Hotspot
from hud.session import Snapshot
from hud.tui import fmt, theme
from hud.tui.findings import matches
from hud.tui.quiet import QuietStatic
from hud.tui.table import Column, ItemTable


def hotspot_key(h: Hotspot) -> str:
    return f"{h.function}\x00{h.file or ''}\x00{h.cls}"


class HotspotsTable(ItemTable):
    """One row per function: samples and share of all worker samples."""

    def __init__(self) -> None:
        super().__init__(id="hotspots-table")

    def layout_for(self, width: int) -> list[Column]:
        cols = [Column("function", "function", 0)]
        if width >= 100:
            cols.append(Column("where", "file", 22))
        cols += [Column("class", "class", 11), Column("samples", "samples", 7, True),
                 Column("share", "share", 5, True)]
        return cols

    def cells(self, h: Hotspot, columns: dict[str, Column]) -> dict:
        return {
            "function": Text(fmt.fit_path(h.function, columns["function"].width),
                             style=theme.CLASS_STYLE.get(h.cls, "")),
            "where": Text(fmt.fit_left(fmt.location(h.file, None),
                                       columns["where"].width if "where" in columns else 0),
                          style=theme.DIM),
            "class": Text(h.cls, style=theme.DIM),
            "samples": fmt.count(h.samples),
            "share": fmt.pct(h.share),
        }


class HotspotsPanel(Vertical):
    """The hotspots table, or why it is empty."""

    DEFAULT_CSS = """
    HotspotsPanel { height: 1fr; border: round $primary 50%; border-title-color: $text; }
    HotspotsPanel:focus-within { border: round $primary; }
    HotspotsPanel > .empty { padding: 1 2; height: auto; }
    """

    def __init__(self) -> None:
        super().__init__(id="hotspots")
        self.border_title = "on-CPU hotspots"
        self.table = HotspotsTable()
        self.note = QuietStatic(classes="empty")
        self._title = ""

    def compose(self) -> ComposeResult:
        yield self.table
        yield self.note

    def show(self, snap: Optional[Snapshot], filter_text: str) -> None:
        hotspots = snap.hotspots if snap is not None else ()
        shown = [h for h in hotspots if matches(h.function, filter_text)]
        self.table.set_rows([(hotspot_key(h), h) for h in shown])
        empty = not shown
        self.table.display = not empty
        self.note.display = empty
        if empty:
            if snap is None:
                text = Text("starting…", style=theme.DIM)
            elif filter_text:
                text = Text(f"nothing matches “{filter_text}”", style=theme.DIM)
            elif snap.status.window_s:
                text = Text("no worker on-CPU samples in the window yet", style=theme.DIM)
            else:
                text = Text("no worker on-CPU samples yet", style=theme.DIM)
            self.note.show_text(text)
        title = "on-CPU hotspots"
        if snap is not None and snap.status.window_s:
            title += f" · last {fmt.seconds(snap.status.window_s)}"
        if title != self._title:     # a new title costs a redraw: only when it changes
            self._title = title
            self.border_title = title

    def selected(self) -> Optional[Hotspot]:
        return self.table.selected() if self.table.display else None
