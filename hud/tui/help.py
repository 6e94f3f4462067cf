"""The `?` screen: every key, and what the panels mean."""
from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from hud.tui import theme

KEYS = (
    ("↑ ↓  j k", "move in the list"),
    ("Enter", "the selected finding's whole stack"),
    ("Esc", "back; clears the filter"),
    ("/", "filter by function (substring)"),
    ("h", "findings ⇄ on-CPU hotspots"),
    ("p", "pause the display (collection goes on)"),
    ("s", "save a report + Chrome trace now"),
    ("t  T", "threshold down / up (new episodes)"),
    ("w", "window: off → 10 s → 30 s → 60 s"),
    ("?", "this help"),
    ("q  Ctrl-C", "quit hud (detaches, writes --export)"),
)

MEANING = (
    ("blocking", theme.BLOCKED, "a worker off CPU outside Tokio's park: a task blocked it"),
    ("cpu", theme.CPU, "one task poll on CPU longer than the threshold"),
    ("sched", theme.WAITING, "a worker runnable but waiting for a CPU"),
)


def help_text() -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    for key, what in KEYS:
        grid.add_row(key, what)
    grid.add_row("", "")
    for kind, style, what in MEANING:
        grid.add_row(Text(kind, style=style), what)
    grid.add_row("", "")
    grid.add_row(Text("share", style=theme.DIM),
                 "a finding's total over all worker time seen")
    grid.add_row(Text("timeline", style=theme.DIM),
                 "cell height = how much of that moment the episode took")
    return grid


class HelpScreen(ModalScreen):
    """Any of Esc, ? or Enter closes it; q still quits."""

    # A modal screen hides the app's bindings: q must still quit from here.
    BINDINGS = [Binding("escape", "close", "close"), Binding("question_mark", "close"),
                Binding("enter", "close", show=False), Binding("q", "app.quit_hud", "quit")]

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 74; max-width: 100%; height: auto;
                                  max-height: 100%; border: round $primary;
                                  padding: 0 1; background: $surface; }
    HelpScreen Static { width: 100%; height: auto; }
    """

    def compose(self) -> ComposeResult:
        with VerticalScroll() as box:
            box.border_title = "hud · keys"
            box.border_subtitle = "Esc to close"
            yield Static(help_text())

    def action_close(self) -> None:
        self.app.pop_screen()
