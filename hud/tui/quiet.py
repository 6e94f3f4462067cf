"""A Static that redraws only when its text changes (and a one-line one without a layout).

The view refreshes twice a second; most of the time most panels show the same thing, and
every needless update costs a screen layout (hud's own CPU is on the status line).
"""
from __future__ import annotations

from typing import Optional

from rich.text import Text
from textual.widgets import Static


class QuietStatic(Static):
    """`show_text(text)` instead of `update()`; `set_title(...)` instead of `border_title =`."""

    def __init__(self, *, id: Optional[str] = None, classes: Optional[str] = None,
                 one_line: bool = False) -> None:
        super().__init__("", markup=False, id=id, classes=classes)
        self.one_line = one_line
        self._shown: Optional[Text] = None
        self._title: Optional[str] = None
        self._subtitle: Optional[str] = None

    def show_text(self, text: Text) -> None:
        old = self._shown
        if old is not None and text == old:
            return
        self._shown = text
        # A one-line widget never changes size; others may (more rows, or wrapping).
        self.update(text, layout=not self.one_line)

    def set_title(self, title: str) -> None:
        if title != self._title:
            self._title = title
            self.border_title = title

    def set_subtitle(self, subtitle: str) -> None:
        if subtitle != self._subtitle:
            self._subtitle = subtitle
            self.border_subtitle = subtitle
