"""The bottom line: the keys of the current screen, or the latest message in their place."""
from __future__ import annotations

from rich.text import Text

from hud.tui import theme
from hud.tui.quiet import QuietStatic

# (key, what, priority): the line drops the highest priority numbers first to fit;
# `? help` and `q quit` always stay.
Hint = tuple[str, str, int]


def hints_text(hints: list[Hint], width: int) -> Text:
    """`key what` pairs in order, as many as fit in `width` cells."""
    kept = list(hints)
    while True:
        text = Text()
        for i, (key, what, _) in enumerate(kept):
            if i:
                text.append("  ")
            text.append(key, style="bold")
            text.append(" " + what, style=theme.DIM)
        droppable = [h for h in kept if h[2] > 0]
        if text.cell_len <= width or not droppable:
            return text
        kept.remove(max(droppable, key=lambda h: h[2]))


class BottomLine(QuietStatic):
    """Shows the hints until a message arrives; the message stays until the next key."""

    DEFAULT_CSS = """
    BottomLine { height: 1; width: 1fr; padding: 0 1; background: $panel; }
    """

    def __init__(self, hints: list[Hint]) -> None:
        super().__init__(one_line=True)
        self.hints = hints
        self.message = ""
        self.error = False

    def on_mount(self) -> None:
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def say(self, text: str, error: bool = False) -> None:
        self.message, self.error = text, error
        self._draw()

    def clear_message(self) -> None:
        if self.message:
            self.message, self.error = "", False
            self._draw()

    def _draw(self) -> None:
        width = self.content_size.width or max(10, self.app.size.width - 2)
        if self.message:
            text = Text(self.message, style=theme.ALERT if self.error else theme.CPU)
        else:
            text = hints_text(self.hints, width)
        text.no_wrap = True
        text.overflow = "ellipsis"
        self.show_text(text)
