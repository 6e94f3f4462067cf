"""The live view: `run_tui(profiler)` shows a started Profiler until q or Ctrl-C.

    prof = Profiler(pid=1234); prof.start()
    run_tui(prof)              # returns after q / Ctrl-C / `stop` set; prof.finish() was called
    prof.export(...); prof.close()

The profiler runs in the Pump's thread (hud.tui.pump); the app only draws the snapshots it
publishes, twice a second. Importing this module imports textual: the CLI does it only
when the live view starts.
"""
from __future__ import annotations

import os
import sys
import threading
from typing import Any, Optional

from textual.app import App
from textual.binding import Binding
from textual.message import Message

from hud.errors import HudError
from hud.session import Snapshot
from hud.tui.help import HelpScreen
from hud.tui.main import MainScreen
from hud.tui.pump import Pump
from hud.tui.save import save_exports, saved_message
from hud.tui.stack import StackScreen

THRESHOLDS_MS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0)
WINDOWS_S = (None, 10.0, 30.0, 60.0)
REFRESH_S = 0.5


def next_threshold(current: float, direction: int) -> float:
    """The next step of THRESHOLDS_MS below (direction < 0) or above `current`."""
    if direction < 0:
        lower = [t for t in THRESHOLDS_MS if t < current - 1e-9]
        return lower[-1] if lower else current
    higher = [t for t in THRESHOLDS_MS if t > current + 1e-9]
    return higher[0] if higher else current


def next_window(current: Optional[float]) -> Optional[float]:
    """off → 10 s → 30 s → 60 s → off; a window set on the command line joins the cycle
    at the next larger step."""
    if current is None:
        return WINDOWS_S[1]
    larger = [w for w in WINDOWS_S[1:] if w is not None and w > current + 1e-9]
    return larger[0] if larger else None


class SnapshotReady(Message):
    """The pump took a snapshot (posted from its thread)."""

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__()
        self.snapshot = snapshot


class Said(Message):
    """A line for the bottom of the screen (posted from the pump's thread)."""

    def __init__(self, text: str, error: bool) -> None:
        super().__init__()
        self.text = text
        self.error = error


class HudApp(App):
    """The live view of one profiler. `stop` (set by the CLI's signal handlers) closes it."""

    TITLE = "hud"
    ENABLE_COMMAND_PALETTE = False
    # textual's default Ctrl-C only says "press Ctrl-Q"; here it quits like q (priority,
    # so it works inside the filter box too).
    BINDINGS = [
        Binding("q", "quit_hud", "quit"),
        Binding("ctrl+c", "quit_hud", "quit", priority=True, show=False),
        Binding("p", "pause", "pause"),
        Binding("s", "save", "save"),
        Binding("t", "threshold(-1)", "threshold down"),
        Binding("T", "threshold(1)", "threshold up"),
        Binding("w", "window", "window"),
        Binding("question_mark", "help", "help"),
    ]
    CSS = """
    Screen { background: $background; }
    """

    def __init__(self, profiler: Any, *, duration_s: Optional[float] = None,
                 stop: Optional[threading.Event] = None, save_dir: Optional[str] = None,
                 refresh_s: float = REFRESH_S) -> None:
        super().__init__()
        self.profiler = profiler
        self.stop_event = stop
        self.save_dir = save_dir
        self.pump = Pump(profiler, self._publish, self._say, refresh_s=refresh_s,
                         duration_s=duration_s)
        self.latest: Optional[Snapshot] = None     # newest snapshot
        self.shown: Optional[Snapshot] = None      # what is on screen (older when paused)
        self.paused = False
        # The keys' own idea of threshold and window: a snapshot taken before a queued
        # change must not undo a second press that follows quickly.
        self.threshold_ms = float(getattr(profiler, "threshold_ms", 5.0))
        self.window_s: Optional[float] = getattr(profiler, "window_s", None)
        self.snapshots = 0                         # how many arrived (tests wait on it)
        self._notice = ""
        self.main: Optional[MainScreen] = None

    @property
    def halted(self) -> str:
        return self.pump.halted

    # -- lifecycle ---------------------------------------------------------------------------

    def on_mount(self) -> None:
        self.main = MainScreen()
        self.push_screen(self.main)
        self.pump.start()
        if self.stop_event is not None:
            self.set_interval(0.2, self._check_stop)

    def on_unmount(self) -> None:
        self.pump.stop()

    def _check_stop(self) -> None:
        if self.stop_event is not None and self.stop_event.is_set():
            self.exit()

    # -- from the pump's thread --------------------------------------------------------------

    def _publish(self, snap: Snapshot) -> None:
        self._post(SnapshotReady(snap))

    def _say(self, text: str, error: bool) -> None:
        self._post(Said(text, error))

    def _post(self, message: Message) -> None:
        try:
            self.post_message(message)
        except RuntimeError:   # the event loop already closed: nobody is looking
            pass

    # -- messages ----------------------------------------------------------------------------

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        snap = message.snapshot
        self.latest = snap
        self.snapshots += 1
        notice = snap.status.notice
        # Why the run ended already shows in the status line; other notices (a backend
        # fallback, skipped lines of a recording) get the bottom line.
        if notice and notice != self._notice and notice != snap.status.ended:
            self.say(notice)
        self._notice = notice
        if not self.paused:
            self.shown = snap
            self._draw()

    def on_said(self, message: Said) -> None:
        self.say(message.text, message.error)

    def say(self, text: str, error: bool = False) -> None:
        """Put a line at the bottom of every screen that has one (until the next key)."""
        for screen in self.screen_stack:
            bottom = getattr(screen, "bottom", None)
            if bottom is not None:
                bottom.say(text, error)

    def keyed(self) -> None:
        """A key was acted on: the last message has been read."""
        for screen in self.screen_stack:
            bottom = getattr(screen, "bottom", None)
            if bottom is not None:
                bottom.clear_message()

    def _draw(self) -> None:
        for screen in self.screen_stack:
            show = getattr(screen, "show", None)
            if show is not None and self.shown is not None:
                show(self.shown, self)

    # -- actions -----------------------------------------------------------------------------

    def action_quit_hud(self) -> None:
        self.exit()

    def action_pause(self) -> None:
        self.keyed()
        self.paused = not self.paused
        if not self.paused and self.latest is not None:
            self.shown = self.latest
        self._draw()
        if self.paused:
            self.say("display paused; collection goes on (p to resume)")

    def action_save(self) -> None:
        self.keyed()
        directory = self.save_dir
        self.say("saving…")
        self.pump.submit(lambda prof: saved_message(*save_exports(prof, directory)))

    def action_threshold(self, direction: int) -> None:
        self.keyed()
        new = next_threshold(self.threshold_ms, direction)
        if new == self.threshold_ms:
            self.say(f"threshold stays at {new:g} ms (the {'lowest' if direction < 0 else 'highest'}"
                     " step)")
            return
        self.threshold_ms = new

        def change(prof: Any) -> str:
            prof.set_threshold(new)
            return f"threshold {new:g} ms: applies to episodes from now on"
        self.pump.submit(change)

    def action_window(self) -> None:
        self.keyed()
        new = next_window(self.window_s)
        self.window_s = new

        def change(prof: Any) -> str:
            if not hasattr(prof, "set_window"):
                raise HudError("this profiler cannot change its window while it runs")
            prof.set_window(new)
            return (f"window {new:g} s: findings, shares and timeline of the last {new:g} s"
                    if new else "window off: the whole run")
        self.pump.submit(change)

    def action_help(self) -> None:
        self.keyed()
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def drill(self, item: Any) -> None:
        """Show the whole stack of a finding or hotspot."""
        self.keyed()
        screen = StackScreen(item, self.shown)
        self.push_screen(screen)
        if self.shown is not None:
            screen.show(self.shown, self)


def run_tui(profiler: Any, *, duration_s: Optional[float] = None,
            stop: Optional[threading.Event] = None, save_dir: Optional[str] = None) -> None:
    """Show the live view of a started `profiler` until q, Ctrl-C or `stop` is set.

    Collection stops after `duration_s` (the view stays until q). On the way out the
    profiler loop is stopped and `profiler.finish()` called, so the caller can export and
    close. An unexpected error of the profiler loop is raised again once the screen is
    restored (a HudError was already shown on screen and is not).
    """
    app = HudApp(profiler, duration_s=duration_s, stop=stop, save_dir=save_dir)
    stale = _hide_size_variables()
    try:
        app.run(mouse=False)
    finally:
        os.environ.update(stale)
        app.pump.stop()
        profiler.finish()
    if app.pump.error is not None:
        raise app.pump.error


def _hide_size_variables() -> dict:
    """Remove COLUMNS and LINES from the environment while the terminal can say its size.

    textual sizes the screen with shutil.get_terminal_size(), which prefers these variables
    to the terminal, also after a resize; some shells export them once, at start-up, so a
    view started in a 80x24 moment would stay 80x24 in a terminal made larger later.
    """
    try:
        os.get_terminal_size(sys.__stdout__.fileno())
    except (AttributeError, ValueError, OSError):
        return {}     # no terminal to ask: leave the variables alone
    return {k: os.environ.pop(k) for k in ("COLUMNS", "LINES") if k in os.environ}
