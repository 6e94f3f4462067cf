"""The main screen: status, findings (or hotspots), workers beside their timeline, key hints."""
from __future__ import annotations

from typing import Any, Optional

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Input

from hud.session import Snapshot
from hud.tui.findings import FindingsPanel
from hud.tui.hints import BottomLine
from hud.tui.hotspots import HotspotsPanel
from hud.tui.preview import MIN_HEIGHT as PREVIEW_HEIGHT
from hud.tui.preview import PreviewPanel
from hud.tui.status import StatusLine
from hud.tui.timeline import TimelinePanel
from hud.tui.workers import WorkersPanel, pick_workers

HINTS = [("↑↓", "move", 6), ("⏎", "stack", 1), ("/", "filter", 2), ("h", "hotspots", 5),
         ("p", "pause", 4), ("s", "save", 3), ("t/T", "threshold", 3), ("w", "window", 4),
         ("?", "help", 0), ("q", "quit", 0)]
MIN_BAND_HEIGHT = 18      # below this many rows the findings need every line: no band


def worker_rows(height: int) -> int:
    """Rows the workers/timeline band may take at a terminal `height`: the findings keep
    at least half the screen."""
    return max(1, (height - 10) // 2)


class MainScreen(Screen):
    """What `hud my-app` opens on."""

    BINDINGS = [
        # Priority: run while the app dispatches the key, before the keys after it are
        # forwarded to the focused table, so typing straight on lands in the filter box.
        Binding("slash", "filter", "filter", priority=True),
        Binding("escape", "escape", "back", show=False),
        Binding("h", "toggle_hotspots", "hotspots"),
    ]

    DEFAULT_CSS = """
    MainScreen #threads { height: auto; }
    MainScreen #workers { width: 1fr; }
    MainScreen #timeline { width: 1fr; }
    MainScreen #filter { dock: bottom; height: 1; border: none; padding: 0 1;
                         margin-bottom: 1; }
    MainScreen #hotspots { display: none; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.status_line = StatusLine()
        self.findings_panel = FindingsPanel()
        self.hotspots_panel = HotspotsPanel()
        self.workers_panel = WorkersPanel()
        self.timeline_panel = TimelinePanel()
        self.preview = PreviewPanel()
        self.band = Horizontal(id="threads")
        self.filter_input = Input(placeholder="filter: part of a function name, Enter to keep, "
                                  "Esc to clear", id="filter")
        self.bottom = BottomLine(HINTS)
        self.filter_text = ""
        self.showing_hotspots = False
        self._snap: Optional[Snapshot] = None
        self._view: Any = None

    def compose(self) -> ComposeResult:
        yield self.status_line
        yield self.findings_panel
        yield self.hotspots_panel
        yield self.preview
        with self.band:
            yield self.workers_panel
            yield self.timeline_panel
        self.filter_input.display = False
        yield self.filter_input
        yield self.bottom

    def on_mount(self) -> None:
        self.findings_panel.table.focus()

    # -- drawing ----------------------------------------------------------------------------

    def show(self, snap: Optional[Snapshot], view: Any) -> None:
        """Draw `snap`; `view` says whether the display is paused and why collection ended."""
        self._snap, self._view = snap, view
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def _draw(self) -> None:
        snap, view = self._snap, self._view
        paused = bool(view and view.paused)
        halted = view.halted if view else ""
        self.status_line.show(snap.status if snap else None, paused=paused, halted=halted,
                              filter_text=self.filter_text)
        panel = self.hotspots_panel if self.showing_hotspots else self.findings_panel
        panel.show(snap, self.filter_text)
        shares = snap.shares if snap else ()
        rows = pick_workers(shares, worker_rows(self.app.size.height))
        left_out = len(shares) - len(rows)
        # Below MIN_BAND_HEIGHT rows the findings need every line: no workers band.
        self.band.display = self.app.size.height >= MIN_BAND_HEIGHT
        self.workers_panel.show(snap, rows, left_out)
        self.timeline_panel.show(snap, [s.tid for s in rows], left_out)
        self.timeline_panel.display = bool(rows)
        if self.focused is None and panel.table.display:
            panel.table.focus()
        self._preview()

    def _preview(self) -> None:
        tall = self.app.size.height >= PREVIEW_HEIGHT
        item = self.selected() if tall else None
        self.preview.display = item is not None
        if item is not None:
            self.preview.show(item)

    def current_table(self) -> DataTable:
        return (self.hotspots_panel if self.showing_hotspots else self.findings_panel).table

    def selected(self) -> Any:
        panel = self.hotspots_panel if self.showing_hotspots else self.findings_panel
        return panel.selected()

    # -- keys -------------------------------------------------------------------------------

    def action_filter(self) -> None:
        if self.focused is self.filter_input:
            return            # already filtering (function names have no '/')
        self.app.keyed()
        self.filter_input.display = True
        self.filter_input.value = self.filter_text
        # Focus now, not later (Widget.focus() defers): what is typed right after `/`,
        # pasted or fast, must land in the box, not on the keys it would otherwise be.
        self.set_focus(self.filter_input)

    def action_escape(self) -> None:
        self.app.keyed()
        if self.filter_input.display or self.filter_text:
            self._close_filter(clear=True)
        else:
            self.current_table().unpin()      # back to the top: the worst item, live

    def action_toggle_hotspots(self) -> None:
        self.app.keyed()
        self.showing_hotspots = not self.showing_hotspots
        self.findings_panel.display = not self.showing_hotspots
        self.hotspots_panel.display = self.showing_hotspots
        self._draw()
        self.current_table().focus()

    def _close_filter(self, clear: bool) -> None:
        if clear:
            self.filter_text = ""
            self.filter_input.value = ""
        self.filter_input.display = False
        self._draw()
        self.current_table().focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input is self.filter_input and self.filter_input.display:
            self.filter_text = event.value.strip()
            self._draw()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input is self.filter_input:
            self.filter_text = event.value.strip()
            self._close_filter(clear=False)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._preview()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        item = self.selected()
        if item is not None:
            self.app.drill(item)
