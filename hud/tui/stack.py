"""The drill-down (Enter): one finding's or hotspot's whole stack, innermost frame first.

User frames stand out; std, runtime and kernel frames are dimmed; an inlined frame says so
(it shares its address with the frame below it). The cursor starts on the frame the
finding is named after. The numbers above the stack follow the live snapshot.
"""
from __future__ import annotations

from typing import Any, Optional, Union

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen

from hud.analysis import Hotspot
from hud.classify import blocking_frame
from hud.model import KIND_SCHED_DELAY, Finding, Frame, Stack
from hud.session import Snapshot
from hud.tui import fmt, theme
from hud.tui.findings import finding_key
from hud.tui.hints import BottomLine
from hud.tui.hotspots import hotspot_key
from hud.tui.quiet import QuietStatic
from hud.tui.status import StatusLine
from hud.tui.table import Column, ItemTable

Item = Union[Finding, Hotspot]
HINTS = [("↑↓", "frames", 3), ("Esc", "back", 0), ("s", "save", 1), ("p", "pause", 2),
         ("t/T", "threshold", 2), ("w", "window", 2), ("?", "help", 0), ("q", "quit", 0)]
WIDE = 120       # from here on a frame takes one line; below, two


def frame_function(f: Frame) -> str:
    if f.function is None:
        why = f" ({f.reason})" if f.reason else ""
        return f"[unknown] 0x{f.address:x}{why}"
    return f.function


class StackTable(ItemTable):
    """The frames of one stack."""

    def __init__(self) -> None:
        super().__init__(id="stack-table")
        self.marked = -1          # index of the frame the finding is named after

    def layout_for(self, width: int) -> list[Column]:
        self.row_height = 1 if width >= WIDE else 2
        if width >= WIDE:
            # The location gets about 40% of what the function and it share.
            where = max(30, (width - 40) * 2 // 5)
            return [Column("n", "#", 4, True), Column("function", "function", 0),
                    Column("where", "file:line", where), Column("module", "module", 14)]
        return [Column("n", "#", 4, True), Column("function", "function · file:line · module", 0)]

    def cells(self, item: tuple[int, Frame], columns: dict[str, Column]) -> dict:
        i, f = item
        style = theme.CLASS_STYLE.get(f.cls, "")
        width = columns["function"].width
        mark = "→" if i == self.marked else ""
        func = Text(fmt.fit_right(frame_function(f), width), style=style)
        where = fmt.location(f.file, f.line, full=True) if f.file else ""
        extra = "inlined" if f.inlined else ""
        n = Text(f"{mark}{i}", style=theme.USER if mark else theme.DIM)
        if "where" in columns:
            return {"n": n, "function": func,
                    "where": Text(fmt.fit_left(where, columns["where"].width),
                                  style="" if f.cls == "user" else theme.DIM),
                    "module": Text(fmt.fit_left(extra or fmt.module_name(f.module), 14),
                                   style="italic " + theme.CPU if extra else theme.DIM)}
        second = Text("    ")
        tail = " · ".join(p for p in (where, fmt.module_name(f.module)) if p)
        second.append(fmt.fit_left(tail, width - 4 - (len(extra) + 3 if extra else 0)),
                      style="" if f.cls == "user" else theme.DIM)
        if extra:
            second.append(" · ")
            second.append(extra, style="italic " + theme.CPU)
        return {"n": n, "function": Text("\n").join([func, second])}


def stack_title(item: Item) -> str:
    if isinstance(item, Finding):
        when = "a sample of the poll" if item.kind == "cpu" else "at switch-out"
    else:
        when = "the latest sample"
    return f"stack {when}, innermost first"


def item_key(item: Item) -> str:
    return finding_key(item) if isinstance(item, Finding) else hotspot_key(item)


def header_text(item: Item, *, gone: bool = False, worker_ns: int = 0) -> Text:
    """What the stack explains: kind, function, where, and the numbers."""
    t = Text()
    if isinstance(item, Finding):
        style = theme.KIND_STYLE.get(item.kind, "")
        t.append(f"{item.kind} ", style="bold " + style)
        t.append(item.function, style="bold")
        t.append("\n  at ", style=theme.DIM)
        t.append(fmt.location(item.file, item.line, full=True))
        t.append("\n  ")
        t.append(f"{item.count}×", style="bold")
        t.append(f"  total {fmt.ms(item.total_ms)}  max {fmt.ms(item.max_ms)}  "
                 f"p99 {fmt.ms(item.p99_ms)}")
        if worker_ns:
            t.append(f"  ({fmt.pct(min(1.0, item.total_ms * 1e6 / worker_ns))} of worker "
                     "time)", style=theme.DIM)
        workers = " ".join(str(w) for w in item.workers[:8])
        more = f" +{len(item.workers) - 8}" if len(item.workers) > 8 else ""
        t.append(f"\n  workers {workers}{more}", style=theme.DIM)
        wakers = fmt.wakers(item)
        if wakers:
            for who, at in wakers[:3]:
                t.append(f"\n  {who}")
                if at:
                    t.append(f"\n    at {at}", style=theme.DIM)
        elif item.detail:
            t.append(f"\n  {item.detail}", style=theme.WAITING if item.kind == KIND_SCHED_DELAY
                     else "")
    else:
        t.append("on CPU ", style="bold " + theme.RUNNING)
        t.append(item.function, style="bold")
        t.append("\n  in ", style=theme.DIM)
        t.append(fmt.short_path(item.file))
        t.append(f"\n  {fmt.count(item.samples)} samples, {fmt.pct(item.share)} of worker "
                 "samples", style="")
    if gone:
        t.append("\n  (no longer in the window: numbers as last seen)", style=theme.CPU)
    return t


def marked_frame(stack: Stack, item: Item) -> int:
    """Index of the frame the item is named after (the blocking frame), or -1."""
    target = blocking_frame(stack)
    for i, f in enumerate(stack):
        if f is target:
            return i
    return -1


class StackScreen(Screen):
    """Esc goes back to the list; everything else works as on the main screen."""

    BINDINGS = [Binding("escape", "back", "back")]

    DEFAULT_CSS = """
    StackScreen #stack-header { height: auto; padding: 0 1; margin: 1 0 0 0; }
    StackScreen #stack-frames { height: 1fr; border: round $primary; }
    """

    def __init__(self, item: Item, snap: Optional[Snapshot]) -> None:
        super().__init__()
        self.item: Item = item
        self.key = item_key(item)
        self.status_line = StatusLine()
        self.header = QuietStatic(id="stack-header")
        self.frames = StackTable()
        self.bottom = BottomLine(HINTS)
        self._snap = snap
        self._gone = False
        self._first = True

    def compose(self) -> ComposeResult:
        yield self.status_line
        yield self.header
        with Vertical(id="stack-frames") as box:
            box.border_title = stack_title(self.item)
            yield self.frames
        yield self.bottom

    def on_mount(self) -> None:
        self._draw()
        self.frames.focus()

    def action_back(self) -> None:
        self.app.pop_screen()

    def show(self, snap: Snapshot, view: Any) -> None:
        """A new snapshot: follow the item (by key) into it."""
        self._snap = snap
        pool = snap.findings if isinstance(self.item, Finding) else snap.hotspots
        found = next((x for x in pool if item_key(x) == self.key), None)
        self._gone = found is None
        if found is not None:
            self.item = found
        self.status_line.show(snap.status, paused=view.paused, halted=view.halted,
                              filter_text="")
        self._draw()

    def _draw(self) -> None:
        item = self.item
        worker_ns = sum(s.total_ns for s in self._snap.shares) if self._snap else 0
        self.header.show_text(header_text(item, gone=self._gone, worker_ns=worker_ns))
        stack = item.stack
        self.frames.marked = marked_frame(stack, item)
        self.frames.set_rows([(str(i), (i, f)) for i, f in enumerate(stack)])
        if self._first and self.frames.marked >= 0:
            self._first = False
            self.frames.move_cursor(row=self.frames.marked, scroll=True)
            self.frames.pinned = True     # stay on this frame across refreshes
        if not stack:
            self.header.show_text(Text.assemble(header_text(item, gone=self._gone),
                                             ("\n  no stack was captured", theme.CPU)))
