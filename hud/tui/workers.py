"""The workers panel: per worker, how its time splits into running / blocked / waiting / parked.

One row per worker, a stacked bar and the shares that matter (blocked and waiting always
show; running and parked when there is room). Rows line up with the timeline's.
"""
from __future__ import annotations

from typing import Optional

from rich.text import Text

from hud.analysis import WorkerShare
from hud.model import ROLE_WORKER
from hud.session import Snapshot
from hud.tui import fmt, theme
from hud.tui.quiet import QuietStatic

# Bar segments, left to right: work, the two kinds of trouble, then idle.
SEGMENTS = (("running", theme.RUNNING, "█"), ("blocked", theme.BLOCKED, "█"),
            ("waiting", theme.WAITING, "█"), ("parked", theme.PARKED, "█"),
            ("other", theme.OTHER, "░"))
LEGEND = (f"[{theme.RUNNING}]█[/]run [{theme.BLOCKED}]█[/]blocked "
          f"[{theme.WAITING}]█[/]wait [{theme.PARKED}]█[/]park")


def split(shares: list[float], width: int) -> list[int]:
    """Cells per share, summing to `width` when shares sum to 1 (largest remainder), and
    at least one cell for any non-zero share: a 0.4% block must not vanish."""
    total = sum(shares)
    if width <= 0 or total <= 0:
        return [0] * len(shares)
    exact = [s / total * width for s in shares]
    cells = [int(x) for x in exact]
    for i, s in enumerate(shares):
        if s > 0 and cells[i] == 0:
            cells[i] = 1
    while sum(cells) > width:
        # Take from segments that keep at least one cell; only when none can, from any.
        pool = [k for k, c in enumerate(cells) if c > 1] or [k for k, c in enumerate(cells) if c]
        i = max(pool, key=lambda k: (cells[k] - exact[k], cells[k]))
        cells[i] -= 1
    order = sorted(range(len(cells)), key=lambda k: exact[k] - cells[k], reverse=True)
    for i in order:
        if sum(cells) >= width:
            break
        if exact[i] > cells[i]:
            cells[i] += 1
    return cells


def share_bar(share: WorkerShare, width: int) -> Text:
    values = [getattr(share, name) for name, _, _ in SEGMENTS]
    text = Text()
    for (_, style, glyph), n in zip(SEGMENTS, split(values, width)):
        if n:
            text.append(glyph * n, style=style)
    if text.cell_len < width:
        text.append(" " * (width - text.cell_len))
    return text


def _labels(share: WorkerShare, room: int) -> Text:
    trouble = [("blk", share.blocked, theme.BLOCKED), ("wait", share.waiting, theme.WAITING)]
    calm = ([("run", share.running, theme.RUNNING)] if share.source == "times" else []) + \
        [("park", share.parked, theme.DIM)]
    for parts in (calm + trouble, trouble, trouble[:1]):
        text = Text(" ").join(
            Text.assemble((f"{name} ", theme.DIM),
                          (f"{fmt.pct(v):>3}", style if v >= 0.01 else theme.DIM))
            for name, v, style in parts)
        if text.cell_len <= room:
            return text
    return Text()


def worker_line(share: WorkerShare, width: int, tid_width: int = 7) -> Text:
    """`  4243 ████████░░  blk 5% wait 3%` in `width` cells."""
    head = Text(f"{share.tid:>{tid_width}} ", style="bold")
    if width >= 70 and share.name:
        head = Text.assemble((f"{fmt.fit_right(share.name, 15):<15} ", theme.DIM), head)
    room = width - head.cell_len
    # The bar gets at least 10 cells; labels take what they need of the rest.
    labels = _labels(share, max(0, room - 11))
    bar_width = max(0, room - (labels.cell_len + 1 if labels.cell_len else 0))
    line = Text.assemble(head, share_bar(share, bar_width))
    if labels.cell_len:
        line.append(" ")
        line.append_text(labels)
    line.truncate(width)
    return line


def pick_workers(shares: tuple[WorkerShare, ...], max_rows: int) -> list[WorkerShare]:
    """The workers that get a row: all of them in tid order when they fit; else the ones
    that lost most time to blocking and waiting (still in tid order, so rows stay put)."""
    if len(shares) <= max_rows:
        return sorted(shares, key=lambda s: s.tid)
    keep = max(1, max_rows - 1)   # one row says how many are left out
    worst = sorted(shares, key=lambda s: (-(s.blocked + s.waiting), s.tid))[:keep]
    return sorted(worst, key=lambda s: s.tid)


def no_workers_text(snap: Snapshot) -> Text:
    """What to say when there is no worker row to show."""
    workers = [t for t in snap.threads if t.role == ROLE_WORKER]
    if workers:
        return Text(f"{len(workers)} worker thread(s) found; waiting for their first events…",
                    style=theme.DIM)
    rule = snap.status.workers_rule
    text = Text.assemble(("no Tokio worker threads found", theme.CPU))
    if rule:
        text.append(f" (looked for {rule})", style=theme.DIM)
    text.append("\nhud recognises workers by name (tokio-runtime-w, tokio-rt-worker) and by "
                "their stacks (tokio's scheduler). If your runtime names its threads "
                "differently, pass --workers PREFIX. A current_thread runtime's worker shows "
                "once it runs block_on.", style=theme.DIM)
    return text


class WorkersPanel(QuietStatic):
    """Shares of each worker over the window (or the whole run)."""

    DEFAULT_CSS = """
    WorkersPanel { height: auto; border: round $primary 50%; padding: 0 1;
                   border-subtitle-color: $text-muted; }
    """

    def __init__(self) -> None:
        super().__init__(id="workers")
        self.set_title("workers")
        self.set_subtitle(LEGEND)
        self._args: tuple = (None, [], 0)

    def show(self, snap: Optional[Snapshot], rows: list[WorkerShare], left_out: int) -> None:
        self._args = (snap, rows, left_out)
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def _draw(self) -> None:
        snap, rows, left_out = self._args
        width = self.content_size.width or 38
        if snap is None:
            self.show_text(Text("starting…", style=theme.DIM))
            return
        self.set_subtitle(LEGEND if rows else "")
        if not rows:
            self.show_text(no_workers_text(snap))
            return
        tid_width = max(len(str(s.tid)) for s in rows)
        lines = [worker_line(s, width, tid_width) for s in rows]
        if left_out:
            lines.append(Text(f"+{left_out} quieter", style=theme.DIM))
        self.show_text(Text("\n").join(lines))
        title = "workers"
        if snap.status.window_s:
            title += f" · last {fmt.seconds(snap.status.window_s)}"
        self.set_title(title)
