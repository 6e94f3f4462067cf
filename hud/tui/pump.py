"""The live view's profiler loop: one thread owns every Profiler call and publishes snapshots.

The UI thread never calls the profiler itself: `step()` holds the profiler's lock while it
resolves stacks (a first DWARF parse can take a while), and a UI waiting on that lock would
miss keys, `q` included. Keys that change the run (threshold, window, save) are queued as
commands and run here between steps; each is followed by a fresh snapshot.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable, Optional

from hud.errors import HudError
from hud.session import Snapshot

# A command gets the profiler and returns a line for the status bar (or None).
Command = Callable[[Any], Optional[str]]


class Pump:
    """Steps `profiler` until it ends (or `duration_s`), publishing a Snapshot every
    `refresh_s` and after every command; keeps publishing after the end, so the view stays.

    `publish(snapshot)` and `say(text, error)` are called from the pump's thread.
    """

    def __init__(self, profiler: Any, publish: Callable[[Snapshot], None],
                 say: Callable[[str, bool], None], *, refresh_s: float = 0.5,
                 step_s: float = 0.1, duration_s: Optional[float] = None) -> None:
        self.profiler = profiler
        self.publish = publish
        self.say = say
        self.refresh_s = refresh_s
        self.step_s = step_s
        self.duration_s = duration_s
        self.halted = ""                     # why the pump stopped collecting
        self.error: Optional[BaseException] = None   # an unexpected (non-HudError) failure
        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._want = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # -- from the UI thread ---------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="hud-pump", daemon=True)
            self._thread.start()

    def submit(self, command: Command) -> None:
        """Run `command(profiler)` on the pump's thread, then publish a snapshot."""
        self._commands.put(command)
        self._wake.set()

    def refresh(self) -> None:
        """Publish a snapshot soon (without waiting for the next period)."""
        self._want.set()
        self._wake.set()

    def stop(self) -> None:
        """Stop the loop and wait for it: after this, the caller may use the profiler."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            # One step is bounded by step_s plus the work on what it polled: no timeout, a
            # half-finished step must not race the caller's finish().
            thread.join()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- the thread ---------------------------------------------------------------------------

    def _collecting(self) -> bool:
        return not self.halted and not self.profiler.ended

    def _halt(self, why: str, error: bool = False) -> None:
        if not self.halted:
            self.halted = why
            self.say(why, error)

    def _run(self) -> None:
        start = time.monotonic()
        next_snap = 0.0
        was_collecting = True
        while not self._stop.is_set():
            ran = self._run_commands()
            collecting = self._collecting()
            if collecting:
                self._step()
                if self.duration_s is not None and time.monotonic() - start >= self.duration_s:
                    self._halt(f"collection stopped after {self.duration_s:g} s (--duration)")
            elif not ran and not self._want.is_set():
                # Nothing to collect: sleep until a command, a refresh or the next period.
                self._wake.wait(self.refresh_s)
                self._wake.clear()
                if not self._commands.empty() or self._stop.is_set():
                    continue    # run them (and publish) at once
            # The moment collection ends (target exit, end of a recording) shows at once.
            ended_now = was_collecting and not self._collecting()
            was_collecting = self._collecting()
            now = time.monotonic()
            if ran or ended_now or self._want.is_set() or now >= next_snap:
                self._want.clear()
                next_snap = now + self.refresh_s
                if not self._publish():
                    return

    def _step(self) -> None:
        try:
            self.profiler.step(self.step_s)
        except HudError as exc:
            self._halt(f"collection stopped: {exc.message}", error=True)
        except Exception as exc:   # shown, and re-raised by run_tui once the view is gone
            self.error = exc
            self._halt(f"collection stopped: internal error {exc!r}", error=True)

    def _run_commands(self) -> bool:
        ran = False
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return ran
            ran = True
            try:
                text = command(self.profiler)
            except HudError as exc:
                self.say(exc.message + (f" ({exc.hint})" if exc.hint else ""), True)
            except Exception as exc:
                self.say(f"failed: {exc!r}", True)
            else:
                if text:
                    self.say(text, False)

    def _publish(self) -> bool:
        try:
            snap = self.profiler.snapshot()
        except Exception as exc:
            self.error = exc
            self._halt(f"the live view failed to read the profiler: {exc!r}", error=True)
            return False
        self.publish(snap)
        return True
