"""SVG snapshots of the main screens at 80x24 and 160x48, from recordings (no root).

Regenerate after an intended change with `HUD_UPDATE_SNAPSHOTS=1 .venv/bin/python -m
pytest tests/unit/tui/test_tui_snapshots.py` and review the .txt files' diff (the .svg
files carry the colours; the .txt files are what a reviewer reads).
"""
from __future__ import annotations

import pytest
from unit.tui import recordings
from unit.tui.tui_helpers import (
    SNAPSHOTS,
    check_snapshot,
    demo_profiler,
    run_app,
    settled,
    shows,
)

from hud.tui.app import HudApp

SIZES = [(80, 24), (160, 48)]


def _snap(name: str, keys: tuple = (), expect: str = "", size=(80, 24), path=None) -> None:
    app = HudApp(demo_profiler(path))

    async def body(pilot):
        await settled(pilot)
        if keys:
            await pilot.press(*keys)
        if expect:
            await shows(pilot, expect)
        await pilot.pause()
        check_snapshot(app, f"{name}_{size[0]}x{size[1]}")
    run_app(app, body, size=size)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_main(size):
    _snap("main", expect="my_app::handlers::load", size=size)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_stack(size):
    _snap("stack", keys=("enter",), expect="clock_nanosleep", size=size)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_help(size):
    _snap("help", keys=("question_mark",), expect="hud · keys", size=size)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_window(size):
    _snap("window10", keys=("w",), expect="timeline · last 10s", size=size)


def test_hotspots():
    _snap("hotspots", keys=("h",), expect="samples")


def test_mutex_stack_with_inlined_frames():
    _snap("stack_mutex", keys=("j", "j", "j", "enter"), expect="inlined", size=(160, 48))


def test_waiting_for_the_first_episode(tmp_path):
    _snap("empty", expect="waiting for the first episode…",
          path=recordings.no_events(tmp_path / "r.jsonl"))


def test_no_blocking_found(tmp_path):
    _snap("quiet", expect="(good)", path=recordings.quiet(tmp_path / "r.jsonl"))


def test_no_workers_found(tmp_path):
    _snap("no_workers", expect="no Tokio worker threads found",
          path=recordings.no_workers(tmp_path / "r.jsonl"))


def test_every_snapshot_file_has_a_test():
    """A renamed test must not leave its old snapshot behind unnoticed."""
    names = {p.stem for p in SNAPSHOTS.glob("*.svg") if not p.stem.endswith(".new")}
    expected = {f"{n}_{w}x{h}" for n in ("main", "stack", "help", "window10")
                for w, h in SIZES}
    expected |= {"hotspots_80x24", "stack_mutex_160x48", "empty_80x24", "quiet_80x24",
                 "no_workers_80x24"}
    assert names == expected
