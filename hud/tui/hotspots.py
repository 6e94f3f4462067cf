"""The hotspots panel (`h`): where worker on-CPU samples land, by the user function above them.

The findings say what blocked; this says where the CPU time of the workers went, long
polls or not. Same keys as the findings: Enter shows a sample's stack.
"""
from __future__ import annotations

from typing import Optional

from rich.text import Text

from hud.analysis import Hotspot
from hud.session import Snapshot
from hud.tui import fmt, theme
from hud.tui.panel import TablePanel
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


class HotspotsPanel(TablePanel):
    """The hotspots table, or why it is empty."""

    TITLE = "on-CPU hotspots"

    def __init__(self) -> None:
        super().__init__(HotspotsTable(), "hotspots")

    def items(self, snap: Optional[Snapshot]) -> tuple:
        return tuple(snap.hotspots) if snap is not None else ()

    def key(self, item: Hotspot) -> str:
        return hotspot_key(item)

    def empty_text(self, snap: Optional[Snapshot], filter_text: str) -> Text:
        if snap is None:
            return Text("starting…", style=theme.DIM)
        if filter_text:
            return Text(f"nothing matches “{filter_text}”", style=theme.DIM)
        if snap.status.window_s:
            return Text("no worker on-CPU samples in the window yet", style=theme.DIM)
        return Text("no worker on-CPU samples yet", style=theme.DIM)
