"""The stack preview (tall terminals only): the selected finding's frames under the list, so
reading what blocked needs no key at all. Enter still opens the whole stack."""
from __future__ import annotations

from typing import Any, Optional

from rich.text import Text

from hud.classify import source_known
from hud.model import Frame
from hud.tui import fmt, theme
from hud.tui.quiet import QuietStatic
from hud.tui.stack import frame_function, marked_frame

MIN_HEIGHT = 40          # terminal rows from which the preview shows


def preview_lines(stack: tuple[Frame, ...], marked: int, width: int, rows: int) -> Text:
    """Up to `rows` frames of `stack`, one line each, the marked frame among them."""
    if not stack:
        return Text("no stack was captured", style=theme.DIM)
    first = 0
    if marked >= rows - 1:
        first = max(0, marked - rows // 3)      # keep the blocker in view, with context
    lines = []
    for i in range(first, min(len(stack), first + rows)):
        f = stack[i]
        style = theme.CLASS_STYLE.get(f.cls, "")
        where = (fmt.location(f.file, f.line, full=True) if source_known(f.file, f.line)
                 else fmt.module_name(f.module))
        if f.inlined:
            where += " · inlined"
        mark = "→" if i == marked else " "
        head = Text(f"{mark}{i:>3} ", style=theme.USER if i == marked else theme.DIM)
        room = max(10, width - head.cell_len - 1)
        loc_room = max(12, room * 2 // 5)
        func = fmt.fit_right(frame_function(f), room - loc_room).ljust(room - loc_room)
        line = Text.assemble(head, (func, style), " ",
                             (fmt.fit_left(where, loc_room), "" if f.cls == "user" else theme.DIM))
        lines.append(line)
    return Text("\n").join(lines)


class PreviewPanel(QuietStatic):
    """The selected item's stack, cropped to the panel."""

    DEFAULT_CSS = """
    PreviewPanel { height: 1fr; border: round $primary 50%; padding: 0 1;
                   border-subtitle-color: $text-muted; }
    """

    def __init__(self) -> None:
        super().__init__(id="preview")
        self.set_title("stack of the selection")
        self.set_subtitle("⏎ the whole stack")
        self._item: Optional[Any] = None

    def show(self, item: Optional[Any]) -> None:
        self._item = item
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def _draw(self) -> None:
        item = self._item
        if item is None:
            self.show_text(Text(""))
            return
        size = self.content_size
        stack = item.stack
        self.show_text(preview_lines(stack, marked_frame(stack, item), size.width or 76,
                                     max(1, size.height or 10)))
        kind = getattr(item, "kind", "on CPU")
        self.set_title(f"{kind} · {item.function}")
