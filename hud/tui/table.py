"""A row-cursor table that keeps its selection across refreshes and sizes columns to fit.

Shared by the findings and hotspots panels: both redraw every half second from a new
snapshot, and the cursor must stay on the same item (not the same row number) while
ranks change underneath it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

PAD = 1          # DataTable cell padding, each side


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int                 # 0: takes what is left
    right: bool = False        # numbers align right


def fit_columns(columns: list[Column], width: int) -> list[Column]:
    """Give the flexible column what the others leave of `width` (one cell kept for the
    scroll bar, so the table never scrolls sideways)."""
    used = sum(c.width + 2 * PAD for c in columns) + 1
    flex = max(8, width - used)
    return [Column(c.key, c.label, c.width or flex, c.right) for c in columns]


class ItemTable(DataTable):
    """Rows keyed by a string; `set_rows` redraws only when something changed.

    Until the user moves the cursor it stays on the first row (the worst item, whatever it
    is now); once moved, it follows the chosen item through re-rankings, like top's
    selection. `unpin()` goes back to the first row.
    """

    BINDINGS = [
        Binding("j", "cursor_down", "down", show=False),
        Binding("k", "cursor_up", "up", show=False),
    ]

    DEFAULT_CSS = """
    ItemTable { scrollbar-size-vertical: 1; overflow-x: hidden; height: 1fr; }
    """

    def __init__(self, *, id: Optional[str] = None) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, cell_padding=PAD,
                         show_cursor=True, id=id)
        self.items: dict[str, Any] = {}
        self._columns: list[Column] = []
        self._rows: list[tuple[str, tuple]] = []
        self._order: list[tuple[str, Any]] = []
        self.row_height = 1
        self._drawn_height = 1
        self.pinned = False       # the user chose a row: follow its item

    def layout_for(self, width: int) -> list[Column]:
        """The columns at `width` cells; subclasses decide."""
        raise NotImplementedError

    def cells(self, item: Any, columns: dict[str, Column]) -> dict[str, Any]:
        """Cell values of `item` by column key (str or Text); subclasses decide."""
        raise NotImplementedError

    def selected_key(self) -> Optional[str]:
        if not self._rows or self.cursor_row < 0 or self.cursor_row >= len(self._rows):
            return None
        return self._rows[self.cursor_row][0]

    def selected(self) -> Any:
        key = self.selected_key()
        return self.items.get(key) if key is not None else None

    def _width(self) -> int:
        return self.size.width or max(20, self.app.size.width - 2)

    def set_rows(self, rows: list[tuple[str, Any]]) -> None:
        """rows: (key, item) in display order; redraws only what changed."""
        self._order = list(rows)
        columns = fit_columns(self.layout_for(self._width()), self._width())
        by_key = {c.key: c for c in columns}
        plain = []
        for key, item in rows:
            values = self.cells(item, by_key)
            plain.append((key, tuple(_cell(values.get(c.key, ""), c) for c in columns)))
        self.items = dict(rows)
        if (columns == self._columns and plain == self._rows
                and self.row_height == self._drawn_height):
            return
        self._drawn_height = self.row_height
        keep = self.selected_key()
        if columns != self._columns:
            self.clear(columns=True)
            for c in columns:
                self.add_column(Text(c.label, justify="right" if c.right else "left"),
                                width=c.width, key=c.key)
            self._columns = columns
        else:
            self.clear()
        for key, cells in plain:
            self.add_row(*cells, key=key, height=self.row_height)
        self._rows = plain
        keys = [k for k, _ in plain]
        if self.pinned and keep in keys:
            self.move_cursor(row=keys.index(keep), scroll=True)
        elif plain:
            self.move_cursor(row=0, scroll=True)

    def unpin(self) -> None:
        self.pinned = False
        if self._rows:
            self.move_cursor(row=0, scroll=True)

    # The user's own moves pin the selection to its item.
    def action_cursor_down(self) -> None:
        self.pinned = True
        super().action_cursor_down()

    def action_cursor_up(self) -> None:
        self.pinned = True
        super().action_cursor_up()

    def action_page_down(self) -> None:
        self.pinned = True
        super().action_page_down()

    def action_page_up(self) -> None:
        self.pinned = True
        super().action_page_up()

    def action_scroll_bottom(self) -> None:
        self.pinned = True
        super().action_scroll_bottom()

    def action_scroll_top(self) -> None:
        self.pinned = True
        super().action_scroll_top()

    def on_resize(self) -> None:
        # Columns depend on the width: rebuild them from the items we have.
        if self._order:
            self._columns = []
            self.set_rows(self._order)


def _cell(value: Any, col: Column) -> Text:
    text = value.copy() if isinstance(value, Text) else Text(str(value))
    text.no_wrap = True
    text.overflow = "ellipsis"
    if col.right:
        text.justify = "right"
    return text
