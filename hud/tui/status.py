"""The status line: what is profiled, how, how fast, what it costs, and whether it still runs.

Parts are dropped, least important first, until the line fits the terminal: at 80 columns
the target, threshold, window, lost events and the run's state always show.
"""
from __future__ import annotations

from typing import Optional

from rich.text import Text

from hud.session import Status
from hud.tui import fmt, theme
from hud.tui.quiet import QuietStatic

SEP = " │ "


def _parts(status: Status, paused: bool, halted: str, filter_text: str
           ) -> list[tuple[int, Text]]:
    """(priority, text) in display order; lower priority numbers are kept longer."""
    t = status.target
    name = t.comm or fmt.module_name(t.exe) or "target"
    parts: list[tuple[int, Text]] = []
    ended = status.ended and status.ended != "stopped"
    if ended:
        parts.append((0, Text(status.ended, style=theme.ALERT if "exit" in status.ended
                              else theme.CPU)))
    elif halted:
        parts.append((0, Text("stopped", style=theme.ALERT)))
    if paused:
        parts.append((0, Text("PAUSED", style="reverse " + theme.CPU)))
    parts.append((1, Text.assemble(("hud ", "bold"), (f"{name} {t.pid}", "bold"))))
    parts.append((5, Text(status.backend or "?", style=theme.DIM)))
    parts.append((1, Text(f"≥{fmt.threshold(status.threshold_ms)}")))
    parts.append((2, Text("window " + fmt.seconds(status.window_s)
                          if status.window_s else "whole run")))
    parts.append((6, Text(f"{fmt.count(status.events_per_s)} ev/s", style=theme.DIM)))
    lost = Text(f"lost {fmt.count(status.lost)}",
                style=theme.ALERT if status.lost else theme.DIM)
    parts.append((3, lost))
    parts.append((7, Text(f"hud {status.hud_cpu_pct:.1f}% cpu", style=theme.DIM)))
    if filter_text:
        parts.append((4, Text(f"filter “{filter_text}”", style=theme.CPU)))
    return parts


def status_text(status: Optional[Status], width: int, *, paused: bool = False,
                halted: str = "", filter_text: str = "") -> Text:
    """The status line for `status`, at most `width` cells."""
    if status is None:
        return Text("hud: starting…", style=theme.DIM)
    parts = _parts(status, paused, halted, filter_text)
    while parts:
        line = Text(SEP, style=theme.DIM).join(p for _, p in parts)
        if line.cell_len <= width or len(parts) == 1:
            line.truncate(width, overflow="ellipsis")
            return line
        worst = max(range(len(parts)), key=lambda i: (parts[i][0], i))
        del parts[worst]
    return Text()


class StatusLine(QuietStatic):
    """One line at the top of every screen."""

    DEFAULT_CSS = """
    StatusLine { height: 1; width: 1fr; background: $panel; padding: 0 1; }
    """

    def __init__(self) -> None:
        super().__init__(one_line=True)
        self._args: tuple = (None, False, "", "")

    def show(self, status: Optional[Status], *, paused: bool = False, halted: str = "",
             filter_text: str = "") -> None:
        self._args = (status, paused, halted, filter_text)
        self._render_line()

    def on_resize(self) -> None:
        self._render_line()

    def _render_line(self) -> None:
        status, paused, halted, filter_text = self._args
        width = max(10, self.content_size.width or self.app.size.width - 2)
        self.show_text(status_text(status, width, paused=paused, halted=halted,
                                   filter_text=filter_text))
