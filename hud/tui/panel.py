"""A bordered panel holding one item table, or a sentence saying why the table is empty."""
from __future__ import annotations

from typing import Any, Optional

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical

from hud.session import Snapshot
from hud.tui import fmt
from hud.tui.quiet import QuietStatic
from hud.tui.table import ItemTable


def matches(function: str, filter_text: str) -> bool:
    return not filter_text or filter_text.lower() in function.lower()


class TablePanel(Vertical):
    """Subclasses say which items a snapshot holds, how to key them and what empty means."""

    DEFAULT_CSS = """
    TablePanel { height: 1fr; border: round $primary 50%; border-title-color: $text; }
    TablePanel:focus-within { border: round $primary; }
    TablePanel > .empty { padding: 1 2; height: auto; }
    """
    TITLE = ""

    def __init__(self, table: ItemTable, panel_id: str) -> None:
        super().__init__(id=panel_id)
        self.border_title = self.TITLE
        self.table = table
        self.note = QuietStatic(classes="empty")
        self._title = ""

    def compose(self) -> ComposeResult:
        yield self.table
        yield self.note

    def items(self, snap: Optional[Snapshot]) -> tuple:
        raise NotImplementedError

    def key(self, item: Any) -> str:
        raise NotImplementedError

    def empty_text(self, snap: Optional[Snapshot], filter_text: str) -> Text:
        raise NotImplementedError

    def prepare(self, snap: Optional[Snapshot], shown: list) -> None:
        """Hook: set what the table's cells need beyond the items themselves."""

    def show(self, snap: Optional[Snapshot], filter_text: str) -> None:
        items = self.items(snap)
        shown = [i for i in items if matches(i.function, filter_text)]
        self.prepare(snap, shown)
        self.table.set_rows([(self.key(i), i) for i in shown])
        empty = not shown
        self.table.display = not empty
        self.note.display = empty
        if empty:
            self.note.show_text(self.empty_text(snap, filter_text))
        title = self.TITLE
        if snap is not None and snap.status.window_s:
            title += f" · last {fmt.seconds(snap.status.window_s)}"
        if filter_text and items:
            title += f" · {len(shown)} of {len(items)}"
        if title != self._title:     # a new title costs a redraw: only when it changes
            self._title = title
            self.border_title = title

    def selected(self) -> Optional[Any]:
        return self.table.selected() if self.table.display else None
