"""The pump (the live view's profiler thread) and run_tui's way out: stop the loop, then
finish(), then return; errors shown, unexpected ones raised again."""
from __future__ import annotations

import subprocess
import sys
import threading
from typing import Optional

import pytest
from textual.app import App
from unit.tui.tui_helpers import ROOT, WAIT_S, demo_profiler, settled, shows, wait_for

from hud.errors import HudError
from hud.tui import app as tui_app
from hud.tui.pump import Pump


class FakeProfiler:
    """Counts steps; ends after `steps` of them; can fail on a given step."""

    def __init__(self, steps: int = 3, fail_at: int = -1,
                 error: Optional[Exception] = None) -> None:
        self.steps = steps
        self.fail_at = fail_at
        self.error = error
        self.stepped = 0
        self.ended = ""
        self.threads: set = set()
        self.threshold_ms = 5.0
        self.window_s = None

    def step(self, timeout_s: float = 0.1) -> list:
        self.threads.add(threading.get_ident())
        self.stepped += 1
        if self.stepped == self.fail_at:
            raise self.error
        if self.stepped >= self.steps:
            self.ended = "end of the recording"
        return []

    def snapshot(self) -> tuple:
        self.threads.add(threading.get_ident())
        return ("snap", self.stepped, self.ended)


class Recorder:
    def __init__(self) -> None:
        self.snaps: list = []
        self.said: list = []
        self.changed = threading.Condition()

    def publish(self, snap) -> None:
        with self.changed:
            self.snaps.append(snap)
            self.changed.notify_all()

    def say(self, text: str, error: bool) -> None:
        with self.changed:
            self.said.append((text, error))
            self.changed.notify_all()

    def wait(self, cond, what: str):
        with self.changed:
            assert self.changed.wait_for(cond, timeout=WAIT_S), f"no {what}: {self.said}"


def _pump(prof, rec, **kw) -> Pump:
    pump = Pump(prof, rec.publish, rec.say, refresh_s=0.05, step_s=0.0, **kw)
    pump.start()
    return pump


def test_steps_until_the_end_then_keeps_publishing_off_the_callers_thread():
    prof, rec = FakeProfiler(steps=3), Recorder()
    pump = _pump(prof, rec)
    rec.wait(lambda: any(s[2] for s in rec.snaps), "snapshot after the end")
    n = len(rec.snaps)
    rec.wait(lambda: len(rec.snaps) > n + 1, "snapshots after the end")
    pump.stop()
    assert prof.stepped == 3                      # no step after the end
    assert threading.get_ident() not in prof.threads
    assert not pump.running and pump.halted == "" and pump.error is None


def test_a_hud_error_stops_collection_and_is_said_not_raised():
    prof = FakeProfiler(steps=100, fail_at=2, error=HudError("perf buffer gone"))
    rec = Recorder()
    pump = _pump(prof, rec)
    rec.wait(lambda: rec.said, "message")
    rec.wait(lambda: len(rec.snaps) >= 2, "snapshots after the stop")
    pump.stop()
    assert rec.said[0] == ("collection stopped: perf buffer gone", True)
    assert prof.stepped == 2 and pump.error is None
    assert pump.halted.startswith("collection stopped")


def test_an_unexpected_error_is_kept_for_run_tui_to_raise():
    prof = FakeProfiler(steps=100, fail_at=1, error=KeyError("x"))
    rec = Recorder()
    pump = _pump(prof, rec)
    rec.wait(lambda: rec.said, "message")
    pump.stop()
    assert isinstance(pump.error, KeyError)
    assert "internal error" in rec.said[0][0] and rec.said[0][1]


def test_duration_stops_collection_and_the_view_stays():
    prof, rec = FakeProfiler(steps=10**9), Recorder()
    pump = _pump(prof, rec, duration_s=0.0)
    rec.wait(lambda: rec.said, "message")
    n = prof.stepped
    rec.wait(lambda: len(rec.snaps) >= 3, "snapshots after the stop")
    pump.stop()
    assert "--duration" in rec.said[0][0] and not rec.said[0][1]
    assert prof.stepped == n


def test_commands_run_on_the_pump_thread_and_a_snapshot_follows():
    prof, rec = FakeProfiler(steps=1), Recorder()
    pump = _pump(prof, rec)
    rec.wait(lambda: rec.snaps, "first snapshot")
    ran_on: list = []

    def ok(p):
        ran_on.append(threading.get_ident())
        p.threshold_ms = 2.0
        return "threshold 2 ms"

    def bad(p):
        raise HudError("cannot save: not a directory: /x", "choose an existing directory")

    pump.submit(ok)
    pump.submit(bad)
    rec.wait(lambda: len(rec.said) == 2, "two messages")
    pump.stop()
    assert ran_on and ran_on[0] != threading.get_ident()
    assert prof.threshold_ms == 2.0
    assert rec.said == [("threshold 2 ms", False),
                        ("cannot save: not a directory: /x (choose an existing directory)", True)]


def _headless(monkeypatch, drive, seen=None):
    """Make HudApp.run (what run_tui calls) run headless, driven by `drive(pilot)`."""
    def run(self, **kw):
        if seen is not None:
            seen.update(kw)
        return App.run(self, headless=True, size=(80, 24), mouse=kw.get("mouse", True),
                       auto_pilot=drive)
    monkeypatch.setattr(tui_app.HudApp, "run", run)


def _then(*keys):
    async def drive(pilot):
        await settled(pilot)
        await pilot.press(*keys)
    return drive


def test_run_tui_returns_after_q_having_stopped_the_loop_and_finished(monkeypatch):
    prof = demo_profiler()
    calls = []
    original_finish = prof.finish

    def finish():
        calls.append(threading.enumerate())
        return original_finish()
    prof.finish = finish
    seen: dict = {}
    _headless(monkeypatch, _then("q"), seen)
    tui_app.run_tui(prof)
    assert seen.get("mouse") is False           # no mouse capture: nothing uses the mouse
    assert len(calls) == 1
    assert not any(t.name == "hud-pump" for t in calls[0])   # the loop was stopped first


def test_run_tui_returns_after_ctrl_c(monkeypatch):
    prof = demo_profiler()
    _headless(monkeypatch, _then("ctrl+c"))
    tui_app.run_tui(prof)
    assert prof.ended


def test_run_tui_raises_an_unexpected_loop_error_once_the_screen_is_back(monkeypatch):
    prof = demo_profiler()

    def broken(timeout_s: float = 0.1):
        raise ZeroDivisionError("bug")
    prof.step = broken

    async def drive(pilot):
        await wait_for(pilot, lambda: pilot.app.pump.error is not None, "the loop error")
        await shows(pilot, "internal error")
        await pilot.press("q")
    _headless(monkeypatch, drive)
    with pytest.raises(ZeroDivisionError):
        tui_app.run_tui(prof)


def test_the_cli_help_does_not_import_textual():
    """The zipapp's `--help` must stay fast: textual is imported only when the view starts."""
    code = ("import sys\nfrom hud.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "import hud.tui, hud.tui.fmt, hud.tui.pump, hud.tui.save\n"
            "print('textual' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_stale_terminal_size_variables_are_hidden_only_when_a_terminal_can_answer(monkeypatch):
    import os
    import pty

    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("LINES", "24")

    class NoTty:
        def fileno(self):
            raise ValueError("not a terminal")
    monkeypatch.setattr(sys, "__stdout__", NoTty())
    assert tui_app._hide_size_variables() == {}
    assert os.environ["COLUMNS"] == "80"

    master, slave = pty.openpty()
    try:
        class Tty:
            def fileno(self):
                return slave
        monkeypatch.setattr(sys, "__stdout__", Tty())
        assert tui_app._hide_size_variables() == {"COLUMNS": "80", "LINES": "24"}
        assert "COLUMNS" not in os.environ and "LINES" not in os.environ
    finally:
        os.close(master)
        os.close(slave)
