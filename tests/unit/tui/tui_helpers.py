"""Helpers for the TUI tests: a replaying profiler with a frozen clock, a Pilot runner that
waits on conditions (never on time), the screen as text, and SVG snapshots.

The status line's wall-clock numbers (events/s, hud's CPU, elapsed) are the only
time-dependent things on screen; `FrozenProfiler` pins them. Everything else comes from the
recording's own event times, so the same recording always draws the same screen.
"""
from __future__ import annotations

import asyncio
import dataclasses
import difflib
import io
import os
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, Callable, Optional

from rich.console import Console

from hud.session import Profiler, Status

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "tests" / "data" / "recordings" / "demo.jsonl"
SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
UPDATE_ENV = "HUD_UPDATE_SNAPSHOTS"
# A ceiling for condition waits, not an expectation: replaying the demo takes well under a
# second; a loaded CI machine gets 30 s before a wait counts as failed.
WAIT_S = 30.0


class FrozenProfiler(Profiler):
    """A Profiler whose status line numbers do not depend on the wall clock."""

    def status(self) -> Status:
        st = super().status()
        return dataclasses.replace(st, elapsed_s=8.0, events_per_s=1234.0, hud_cpu_pct=1.5)


def demo_profiler(path: Optional[Path] = None, **kw: Any) -> FrozenProfiler:
    prof = FrozenProfiler(replay=str(path or DEMO), **kw)
    prof.start()
    return prof


def screen_text(app: Any) -> str:
    """What the terminal shows, as plain text (the same render export_screenshot uses)."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True,
                      color_system="truecolor", record=True, legacy_windows=False,
                      safe_box=False)
    console.print(app.screen._compositor.render_update(
        full=True, screen_stack=app._background_screens))
    return console.export_text()


async def wait_for(pilot: Any, cond: Callable[[], Any], what: str) -> Any:
    """Let the app run until `cond()` is truthy (bounded by WAIT_S; fails with `what`)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while True:
        got = cond()
        if got:
            await pilot.pause()
            return got
        if loop.time() > deadline:
            raise AssertionError(f"gave up waiting for {what}\n" + screen_text(pilot.app))
        await pilot.pause(0.02)


async def settled(pilot: Any) -> None:
    """Wait until the replay ended and the app has drawn a snapshot taken after the end."""
    app = pilot.app
    await wait_for(pilot, lambda: app.shown is not None and app.shown.status.ended,
                   "the end of the replay on screen")


async def shows(pilot: Any, text: str) -> str:
    """Wait until `text` is on screen; the screen."""
    def screen_if_shown() -> Optional[str]:
        screen = screen_text(pilot.app)
        return screen if text in screen else None
    return await wait_for(pilot, screen_if_shown, f"{text!r} on screen")


def run_app(app: Any, body: Callable[[Any], Awaitable[None]],
            size: tuple[int, int] = (80, 24)) -> None:
    """Run `app` headless at `size` and drive it with `body(pilot)`."""
    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await body(pilot)
    asyncio.run(main())


def check_snapshot(app: Any, name: str) -> None:
    """Compare the screen with tests/unit/tui/snapshots/NAME.svg (+ .txt, for reading diffs).

    HUD_UPDATE_SNAPSHOTS=1 writes them instead. A mismatch fails with the text diff and
    leaves the new SVG next to the old one as NAME.new.svg.
    """
    svg = app.export_screenshot(title="hud")
    text = screen_text(app)
    svg_path = SNAPSHOTS / f"{name}.svg"
    txt_path = SNAPSHOTS / f"{name}.txt"
    if os.environ.get(UPDATE_ENV) == "1":
        SNAPSHOTS.mkdir(parents=True, exist_ok=True)
        svg_path.write_text(svg)
        txt_path.write_text(text)
        return
    assert svg_path.exists(), (f"no snapshot {svg_path.name}: run with {UPDATE_ENV}=1 and "
                               "review the files")
    new = SNAPSHOTS / f"{name}.new.svg"
    if svg == svg_path.read_text():
        new.unlink(missing_ok=True)     # a mismatch of an earlier run is settled
        return
    new.write_text(svg)
    old_text = txt_path.read_text() if txt_path.exists() else ""
    diff = "\n".join(difflib.unified_diff(old_text.splitlines(), text.splitlines(),
                                          "snapshot", "now", lineterm=""))
    raise AssertionError(f"screen {name} differs from {svg_path.name} (new one: {new.name}; "
                         f"{UPDATE_ENV}=1 to accept)\n"
                         + (diff or "same text: only colours or styles changed"))
