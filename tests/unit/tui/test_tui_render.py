"""The live view's pure parts: number and path formats, bars, timeline cells, the status and
hint lines that shrink to fit, threshold and window steps, export file names."""
from __future__ import annotations

import os
import time

from hypothesis import given
from hypothesis import strategies as st
from unit.tui.tui_helpers import demo_profiler

from hud.analysis import WorkerShare
from hud.model import KIND_BLOCKING, KIND_CPU, KIND_PARK, KIND_SCHED_DELAY, Episode
from hud.tui import fmt, theme
from hud.tui.app import next_threshold, next_window
from hud.tui.hints import hints_text
from hud.tui.save import export_names, save_exports
from hud.tui.status import status_text
from hud.tui.timeline import EMPTY, LEVELS, timeline_row
from hud.tui.workers import pick_workers, share_bar, split, worker_line

MS = 1_000_000


def test_durations_counts_and_shares():
    assert fmt.ms(0.42) == "0.42ms"
    assert fmt.ms(12.34) == "12.3ms"
    assert fmt.ms(812.4) == "812ms"
    assert fmt.ms(2410) == "2.41s"
    assert fmt.ms(25_000) == "25.0s"
    assert fmt.ms(200_000) == "200.0s"
    assert fmt.ms(754_000) == "12m34s"
    assert fmt.count(999) == "999" and fmt.count(1234) == "1.2k" and fmt.count(56_000) == "56k"
    assert fmt.count(3_400_000) == "3.4M"
    assert fmt.pct(0.0) == "0%" and fmt.pct(0.004) == "<1%" and fmt.pct(0.5) == "50%"
    assert fmt.seconds(None) == "off" and fmt.seconds(10.0) == "10s"
    assert fmt.seconds(2.5) == "2.5s" and fmt.seconds(120.0) == "2m"


def test_paths_read_as_people_know_them():
    assert fmt.short_path("/usr/share/cargo/registry/tokio-1.24.2/src/runtime/park.rs") == \
        "tokio-1.24.2/src/runtime/park.rs"
    assert fmt.short_path("/root/.cargo/registry/src/index.crates.io-6f17d22bba15001f/"
                          "mio-1.0.2/src/poll.rs") == "mio-1.0.2/src/poll.rs"
    assert fmt.short_path("/rustc/90b35a6239c3d8bdabc530a6a0816f7ff89a0aaf/library/std/src/"
                          "thread/mod.rs") == "library/std/src/thread/mod.rs"
    assert fmt.short_path("/usr/src/app/src/handlers.rs") == "/usr/src/app/src/handlers.rs"
    assert fmt.short_path(None) == "?"
    assert fmt.location("/usr/src/app/src/handlers.rs", 42) == "handlers.rs:42"
    assert fmt.location("/usr/src/app/src/handlers.rs", None) == "handlers.rs"
    assert fmt.location(None, 3) == "?"
    # A binary without DWARF: its symbol table names only the codegen unit.
    assert fmt.location("demo.6963577c908abf9e-cgu.12", None) == "no line info"
    assert fmt.module_name("/usr/lib/x86_64-linux-gnu/libc.so.6") == "libc.so.6"


@given(st.text(min_size=0, max_size=60), st.integers(min_value=0, max_value=70))
def test_fitting_never_overflows_and_keeps_the_meaningful_end(text, width):
    left, right = fmt.fit_left(text, width), fmt.fit_right(text, width)
    assert len(left) <= width and len(right) <= width
    if len(text) <= width:
        assert left == right == text
    elif width >= 2:
        assert left.endswith(text[-(width - 1):]) and right.startswith(text[: width - 1])


@given(st.lists(st.floats(min_value=0, max_value=1, allow_nan=False), min_size=1, max_size=5),
       st.integers(min_value=0, max_value=80))
def test_bar_cells_add_up_and_keep_small_shares_visible(shares, width):
    cells = split(shares, width)
    assert all(c >= 0 for c in cells)
    if sum(shares) > 0 and width >= len(shares):
        assert sum(cells) == width
        assert all(c >= 1 for c, s in zip(cells, shares) if s > 0)
    else:
        assert sum(cells) <= max(width, sum(1 for s in shares if s > 0))


def _share(tid=7, running=0.1, parked=0.8, blocked=0.07, waiting=0.03, source="times"):
    return WorkerShare(tid, "tokio-runtime-w", running, parked, blocked, waiting, 0.0,
                       10**9, source)


def test_a_worker_line_fits_and_names_the_trouble():
    s = _share()
    for width in (30, 38, 60, 78, 120):
        line = worker_line(s, width)
        assert line.cell_len <= width
        assert "blk" in line.plain and "7%" in line.plain
    assert "run" in worker_line(s, 78).plain
    assert "tokio-runtime-w" in worker_line(s, 100).plain
    # without kernel time accounting the "running" share is unknown: not shown as such
    assert "run " not in worker_line(_share(source="episodes"), 120).plain
    bar = share_bar(s, 20)
    assert bar.cell_len == 20
    assert any(theme.BLOCKED in str(span.style) for span in bar.spans)


def test_too_many_workers_keep_the_ones_in_trouble_in_tid_order():
    shares = tuple(_share(tid=t, blocked=b) for t, b in
                   ((1, 0.0), (2, 0.5), (3, 0.0), (4, 0.2), (5, 0.0)))
    assert [s.tid for s in pick_workers(shares, 10)] == [1, 2, 3, 4, 5]
    assert [s.tid for s in pick_workers(shares, 3)] == [2, 4]


def _ep(kind, start_ms, dur_ms, tid=1):
    return Episode(kind, tid, start_ms * MS, (start_ms + dur_ms) * MS)


def test_timeline_cells_take_the_kind_and_height_of_what_filled_them():
    row = timeline_row([_ep(KIND_BLOCKING, 0, 100), _ep(KIND_CPU, 250, 25),
                        _ep(KIND_SCHED_DELAY, 500, 100), _ep(KIND_PARK, 700, 300)],
                       0, 1000 * MS, 10)
    assert row.plain == "█" + EMPTY + "▂" + EMPTY * 2 + "█" + EMPTY * 4
    styles = [str(span.style) for span in row.spans]
    assert theme.BLOCKED in styles[0] and theme.CPU in styles[2]
    assert theme.WAITING in styles[5]
    assert theme.OTHER in styles[1]   # parks and idle cells are not drawn


def test_timeline_clips_to_the_span_and_marks_short_blips():
    # 1 µs in a 100 ms cell still shows; episodes outside the span do not
    row = timeline_row([_ep(KIND_BLOCKING, -500, 100), Episode(KIND_BLOCKING, 1, 5 * MS,
                                                               5 * MS + 1000),
                        _ep(KIND_BLOCKING, 950, 200)], 0, 1000 * MS, 10)
    assert row.plain[0] == LEVELS[0]
    assert row.plain[-1] in LEVELS and row.plain[-1] != "█"   # 50 of its 100 ms
    assert row.plain[1:-1] == EMPTY * 8
    assert timeline_row([], 0, 0, 10).plain == ""


def test_status_line_drops_the_least_important_parts_to_fit():
    prof = demo_profiler()
    prof.step()
    status = prof.status()
    wide = status_text(status, 160).plain
    for part in ("end of the recording", "my-app 4242", "replay (synthetic)", "≥5ms",
                 "whole run", "1.2k ev/s", "lost 3", "hud 1.5% cpu"):
        assert part in wide
    narrow = status_text(status, 80).plain
    assert len(narrow) <= 80
    for part in ("end of the recording", "my-app 4242", "≥5ms", "whole run", "lost 3"):
        assert part in narrow
    assert "hud 1.5% cpu" not in narrow
    tiny = status_text(status, 20).plain
    assert len(tiny) <= 20
    paused = status_text(status, 80, paused=True, filter_text="load").plain
    assert "PAUSED" in paused
    assert status_text(None, 80).plain == "hud: starting…"


def test_status_line_shows_a_target_exit_in_red():
    prof = demo_profiler()
    prof.step()
    import dataclasses
    st_exit = dataclasses.replace(prof.status(), ended="the target exited")
    line = status_text(st_exit, 80)
    assert line.plain.startswith("the target exited")
    assert theme.ALERT in str(line.spans[0].style)
    halted = status_text(dataclasses.replace(prof.status(), ended=""), 80,
                         halted="collection stopped: boom")
    assert halted.plain.startswith("stopped")


def test_hints_keep_help_and_quit_at_any_width():
    hints = [("a", "alpha", 3), ("b", "beta", 1), ("?", "help", 0), ("q", "quit", 0)]
    assert hints_text(hints, 100).plain == "a alpha  b beta  ? help  q quit"
    assert hints_text(hints, 24).plain == "b beta  ? help  q quit"
    assert hints_text(hints, 5).plain == "? help  q quit"


def test_threshold_and_window_steps():
    assert next_threshold(5.0, -1) == 2.0 and next_threshold(5.0, 1) == 10.0
    assert next_threshold(0.5, -1) == 0.5 and next_threshold(1000.0, 1) == 1000.0
    assert next_threshold(7.0, -1) == 5.0 and next_threshold(7.0, 1) == 10.0
    seq, w = [], None
    for _ in range(5):
        w = next_window(w)
        seq.append(w)
    assert seq == [10.0, 30.0, 60.0, None, 10.0]
    assert next_window(15.0) == 30.0 and next_window(90.0) is None


def test_export_names_sort_by_time_and_never_overwrite(tmp_path):
    when = time.mktime((2026, 3, 4, 5, 6, 7, 0, 0, -1))
    assert export_names("my app/x", 42, when) == (
        "hud-my_app_x-42-20260304-050607.report.json",
        "hud-my_app_x-42-20260304-050607.trace.json")
    prof = demo_profiler()
    prof.step()
    first = save_exports(prof, str(tmp_path), when)
    second = save_exports(prof, str(tmp_path), when)
    assert first != second
    assert os.path.basename(second[0]) == "hud-my-app-4242-20260304-050607-2.report.json"
    assert all(os.path.getsize(p) > 0 for p in first + second)


def test_rust_paths_are_cut_at_segment_boundaries():
    name = "blockers::scenarios::sleep_blocker"
    assert fmt.fit_path(name, 40) == name
    assert fmt.fit_path(name, 30) == "…::scenarios::sleep_blocker"
    assert fmt.fit_path(name, 20) == "…::sleep_blocker"
    assert fmt.fit_path(name, 10) == "…p_blocker"          # no segment fits: plain cut
    assert len(fmt.fit_path("<a::B as c::D>::poll", 12)) <= 12


def test_the_stack_header_gives_each_waker_and_where_it_woke_the_worker():
    from hud.model import Finding
    from hud.tui.stack import header_text
    at = "blockers::scenarios::start_mutex_holder (scenarios.rs:305)"
    f = Finding(kind=KIND_BLOCKING, function="blockers::scenarios::mutex_blocker",
                file="/src/scenarios.rs", line=289, count=4, total_ms=200.0, max_ms=50.0,
                p99_ms=50.0, workers=(7,), detail=f"woken by h (tid 9) at {at} 75%, …",
                extra=(("wakers", [{"waker": "fx-mutex-holder (tid 9)", "at": at, "ms": 150.0},
                                   {"waker": "tokio-runtime-w (tid 8)", "ms": 50.0}]),))
    lines = header_text(f).plain.splitlines()
    assert "  woken by fx-mutex-holder (tid 9) 75%" in lines
    assert f"    at {at}" in lines
    assert "  woken by tokio-runtime-w (tid 8) 25%" in lines
