"""Every key of the live view, driven with textual's Pilot over the demo recording (no root)."""
from __future__ import annotations

import json
import threading

from unit.tui.tui_helpers import demo_profiler, run_app, screen_text, settled, shows, wait_for

from hud.export.chrome_trace import validate_trace
from hud.export.report import validate_report
from hud.tui.app import HudApp
from hud.tui.help import HelpScreen
from hud.tui.main import MainScreen
from hud.tui.stack import StackScreen

TOP = "my_app::handlers::load"          # the demo's largest finding (total time)
SECOND = "my_app::handlers::hog"


def _app(**kw) -> HudApp:
    return HudApp(demo_profiler(), **kw)


def _selected(app: HudApp) -> str:
    return app.main.selected().function


def test_the_main_screen_shows_the_findings_workers_and_timeline():
    app = _app()

    async def body(pilot):
        await settled(pilot)
        screen = await shows(pilot, TOP)
        for text in ("findings", "blocking", "my_app::state::Cache::get", "sched",
                     "workers", "4243", "4246", "timeline", "my-app 4242", "≥5ms",
                     "end of the recording"):
            assert text in screen, text
        # ranked by total time, the cursor on the first
        assert screen.index(TOP) < screen.index(SECOND)
        assert _selected(app) == TOP
    run_app(app, body)


def test_arrows_and_j_k_move_the_selection():
    app = _app()

    async def body(pilot):
        await settled(pilot)
        await pilot.press("down")
        assert _selected(app) == SECOND
        await pilot.press("j")
        assert _selected(app) == "my_app::handlers::route"
        await pilot.press("k")
        assert _selected(app) == SECOND
        await pilot.press("up")
        assert _selected(app) == TOP
        await pilot.press("up")           # stays at the top
        assert _selected(app) == TOP
    run_app(app, body)


def test_the_selection_follows_its_finding_across_refreshes():
    app = _app()

    async def body(pilot):
        await settled(pilot)
        await pilot.press("j", "j", "j")
        assert _selected(app) == "my_app::state::Cache::get"
        before = app.snapshots
        app.pump.refresh()
        await wait_for(pilot, lambda: app.snapshots > before, "another snapshot")
        assert _selected(app) == "my_app::state::Cache::get"
    run_app(app, body)


def test_enter_shows_the_whole_stack_and_escape_goes_back():
    app = _app()

    async def body(pilot):
        await settled(pilot)
        await pilot.press("enter")
        assert isinstance(app.screen, StackScreen)
        screen = await shows(pilot, "clock_nanosleep")
        # the header: kind, function, where, numbers
        assert "blocking my_app::handlers::load" in screen
        assert "/usr/src/app/src/handlers.rs:42" in screen
        assert "48×" in screen
        # frames with file:line and module; the blocker's frame is marked and selected
        assert "library/std/src/thread/mod.rs:872" in screen
        assert "libc.so.6" in screen
        assert "→4" in screen
        frames = app.screen.frames
        assert frames.cursor_row == 4
        assert frames.selected()[1].function == "my_app::handlers::load::{{closure}}"
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)
        assert _selected(app) == TOP
    run_app(app, body)


def test_the_stack_marks_inlined_frames_and_user_frames():
    app = _app()

    async def body(pilot):
        await settled(pilot)
        await pilot.press("j", "j", "j", "enter")        # my_app::state::Cache::get (mutex)
        screen = await shows(pilot, "Cache::get")
        assert "inlined" in screen
        table = app.screen.frames
        user = [f for _, f in table.items.values() if f.cls == "user"]
        assert user and all(f.function.startswith("my_app::") for f in user)
        # user frames are drawn bold blue, others not
        rows = {f.function: table.get_row(k) for k, (_, f) in table.items.items()}
        other = next(f for _, f in table.items.values() if f.cls in ("std", "runtime"))
        assert "bold" in str(rows[user[0].function][1].style)
        assert "bold" not in str(rows[other.function][1].style)
    run_app(app, body, size=(160, 48))


def test_j_and_k_move_in_the_stack_too():
    app = _app()

    async def body(pilot):
        await settled(pilot)
        await pilot.press("enter")
        frames = app.screen.frames
        start = frames.cursor_row
        await pilot.press("j")
        assert frames.cursor_row == start + 1
        await pilot.press("k", "k")
        assert frames.cursor_row == start - 1
    run_app(app, body)


def test_slash_filters_by_function_substring_and_escape_clears():
    app = _app()

    async def body(pilot):
        await settled(pilot)
        await pilot.press("slash")
        assert app.main.filter_input.has_focus
        await pilot.press(*"cache")
        screen = await shows(pilot, "1 of 4")
        assert "Cache::get" in screen and TOP not in screen
        await pilot.press("enter")            # keep the filter, back to the table
        assert app.main.findings_panel.table.has_focus
        assert "filter “cache”" in screen_text(app)
        assert _selected(app) == "my_app::state::Cache::get"
        await pilot.press("escape")           # clears it
        screen = await shows(pilot, TOP)
        assert "filter" not in screen.splitlines()[0]
    run_app(app, body, size=(160, 48))


def test_a_filter_that_matches_nothing_says_so():
    app = _app()

    async def body(pilot):
        await settled(pilot)
        await pilot.press("slash", *"nosuchfn", "enter")
        await shows(pilot, "nothing matches “nosuchfn”")
    run_app(app, body)


def test_keys_typed_into_the_filter_are_text_not_commands():
    app = _app()

    async def body(pilot):
        await settled(pilot)
        await pilot.press("slash", "q", "p", "s", "t", "w", "question_mark")
        assert app.return_code is None            # q did not quit
        assert not app.paused
        assert app.profiler.threshold_ms == 5.0
        assert not isinstance(app.screen, HelpScreen)
        assert app.main.filter_input.value == "qpstw?"
    run_app(app, body)


def test_p_freezes_the_display_while_collection_goes_on():
    app = _app()

    async def body(pilot):
        await settled(pilot)
        await pilot.press("p")
        assert app.paused
        await shows(pilot, "PAUSED")
        frozen = app.shown
        await pilot.press("w")                # changes the run: a new snapshot arrives
        await wait_for(pilot, lambda: app.latest.status.window_s == 10.0, "the new window")
        assert app.shown is frozen
        assert "whole run" in screen_text(app).splitlines()[0]
        await pilot.press("p")
        assert not app.paused
        screen = await shows(pilot, "window 10s")
        assert "PAUSED" not in screen
    run_app(app, body)


def test_s_saves_a_report_and_a_trace_and_says_where(tmp_path):
    app = _app(save_dir=str(tmp_path))

    async def body(pilot):
        await settled(pilot)
        await pilot.press("s")
        await wait_for(pilot, lambda: len(list(tmp_path.iterdir())) == 2, "two files")
        screen = await shows(pilot, "saved hud-my-app-4242-")
        assert str(tmp_path) in screen or "saved" in screen
    run_app(app, body, size=(160, 48))
    report = next(tmp_path.glob("hud-my-app-4242-*.report.json"))
    trace = next(tmp_path.glob("hud-my-app-4242-*.trace.json"))
    doc = json.loads(report.read_text())
    assert validate_report(doc) == []
    assert doc["findings"][0]["function"] == TOP
    assert validate_trace(json.loads(trace.read_text())) == []


def test_s_into_a_missing_directory_says_why(tmp_path):
    app = _app(save_dir=str(tmp_path / "missing"))

    async def body(pilot):
        await settled(pilot)
        await pilot.press("s")
        await shows(pilot, "not a directory")
    run_app(app, body)


def test_t_and_T_step_the_threshold_live():
    app = _app()
    prof = app.profiler

    async def body(pilot):
        await settled(pilot)
        await pilot.press("t")
        await shows(pilot, "≥2ms")
        assert prof.threshold_ms == 2.0
        assert prof.analyzer.threshold_ns == 2_000_000
        await pilot.press("t", "t", "t")       # 1, 0.5, and no lower
        await shows(pilot, "lowest")
        assert prof.threshold_ms == 0.5
        await pilot.press("T", "T", "T", "T")  # 1, 2, 5, 10
        await shows(pilot, "≥10ms")
        assert prof.threshold_ms == 10.0
    run_app(app, body)


def test_w_cycles_the_window():
    app = _app()
    prof = app.profiler

    async def body(pilot):
        await settled(pilot)
        seen = []
        for label in ("window 10s", "window 30s", "window 60s", "whole run"):
            await pilot.press("w")
            await shows(pilot, label)
            seen.append(prof.window_s)
        assert seen == [10.0, 30.0, 60.0, None]
    run_app(app, body)


def test_a_window_narrows_the_findings():
    app = _app()

    async def body(pilot):
        await settled(pilot)
        await pilot.press("w")
        await shows(pilot, "findings · last 10s")
        snap = app.shown
        assert snap.status.window_s == 10.0
        # the demo spans 8 s: a 10 s window still holds every episode; 2 s would not
        app.pump.submit(lambda p: p.set_window(2.0))
        await wait_for(pilot, lambda: app.shown.status.window_s == 2.0, "a 2 s window")
        assert app.shown.findings[0].count < snap.findings[0].count
        await shows(pilot, "last 2s")
    run_app(app, body)


def test_question_mark_shows_help_and_escape_closes_it():
    app = _app()

    async def body(pilot):
        await settled(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        screen = await shows(pilot, "hud · keys")
        for text in ("filter by function", "threshold down / up", "quit hud"):
            assert text in screen
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)
    run_app(app, body)


def test_h_switches_to_on_cpu_hotspots_and_enter_shows_a_sample_stack():
    app = _app()

    async def body(pilot):
        await settled(pilot)
        await pilot.press("h")
        screen = await shows(pilot, "on-CPU hotspots")
        assert "samples" in screen
        assert app.main.selected().function == SECOND   # most samples: the CPU hog
        await pilot.press("enter")
        screen = await shows(pilot, "on CPU my_app::handlers::hog")
        assert "handlers.rs:121" in screen
        await pilot.press("escape", "h")
        await shows(pilot, "findings")
    run_app(app, body, size=(160, 48))


def test_q_quits():
    app = _app()

    async def body(pilot):
        await settled(pilot)
        await pilot.press("q")
        await wait_for(pilot, lambda: app.return_code is not None, "the app to exit")
    run_app(app, body)
    assert app.return_code == 0
    assert not app.pump.running


def test_ctrl_c_quits_even_from_the_filter_box_and_the_stack():
    for keys in (("ctrl+c",), ("slash", "x", "ctrl+c"), ("enter", "ctrl+c"),
                 ("question_mark", "ctrl+c")):
        app = _app()

        async def body(pilot, keys=keys, app=app):
            await settled(pilot)
            await pilot.press(*keys)
            await wait_for(pilot, lambda: app.return_code is not None, f"exit after {keys}")
        run_app(app, body)
        assert app.return_code == 0, keys


def test_q_quits_from_the_stack_and_help_screens():
    for keys in (("enter", "q"), ("question_mark", "q")):
        app = _app()

        async def body(pilot, keys=keys, app=app):
            await settled(pilot)
            await pilot.press(*keys)
            await wait_for(pilot, lambda: app.return_code is not None, f"exit after {keys}")
        run_app(app, body)


def test_the_stop_event_closes_the_view():
    stop = threading.Event()
    app = _app(stop=stop)

    async def body(pilot):
        await settled(pilot)
        stop.set()        # what the CLI's SIGTERM / SIGHUP handler does
        await wait_for(pilot, lambda: app.return_code is not None, "the app to exit")
    run_app(app, body)


def test_at_80x24_everything_important_fits():
    app = _app()

    async def body(pilot):
        await settled(pilot)
        lines = screen_text(app).splitlines()
        assert len(lines) == 24 and all(len(line) <= 80 for line in lines)
        text = "\n".join(lines)
        for needed in (TOP, "my-app 4242", "≥5ms", "lost 3", "4243", "? help", "q quit"):
            assert needed in text, needed
    run_app(app, body, size=(80, 24))


def test_the_view_grows_with_the_terminal():
    app = _app()

    async def body(pilot):
        await settled(pilot)
        small = screen_text(app)
        assert "p99" not in small and "handlers.rs:42" not in small
        await pilot.resize_terminal(160, 48)
        screen = await shows(pilot, "p99")
        assert "handlers.rs:42" in screen            # the where column
        assert "replay (synthetic)" in screen        # room for the backend
        assert "1.2k ev/s" in screen and "hud 1.5% cpu" in screen
        await pilot.resize_terminal(80, 24)
        await wait_for(pilot, lambda: "p99" not in screen_text(app), "the narrow layout")
    run_app(app, body, size=(80, 24))


def test_tall_terminals_preview_the_selected_stack():
    app = _app()

    async def body(pilot):
        await settled(pilot)
        screen = await shows(pilot, "blocking · my_app::handlers::load")
        assert "→  4 my_app::handlers::load::{{closure}}" in screen
        await pilot.press("j")
        screen = await shows(pilot, "cpu · my_app::handlers::hog")
        assert "/usr/src/app/src/handlers.rs:121" in screen
        await pilot.resize_terminal(80, 24)
        await wait_for(pilot, lambda: not app.main.preview.display, "no preview at 80x24")
    run_app(app, body, size=(160, 48))


def test_the_stack_screen_follows_its_finding_and_says_when_it_left_the_window():
    app = _app()

    async def body(pilot):
        await settled(pilot)
        await pilot.press("enter")
        await shows(pilot, "48×")
        app.pump.submit(lambda p: p.set_window(2.0))
        screen = await shows(pilot, "9×")          # the last 2 s of the demo hold 9 sleeps
        assert "no longer in the window" not in screen
        app.pump.submit(lambda p: p.set_window(1e-6))
        screen = await shows(pilot, "no longer in the window")
        assert "9×" in screen and "clock_nanosleep" in screen   # last numbers, same stack
    run_app(app, body)


def test_a_target_exit_shows_in_red_and_the_data_stays():
    class Exited(type(demo_profiler())):
        def status(self):
            import dataclasses
            return dataclasses.replace(super().status(), ended="the target exited")
    prof = Exited(replay=str(demo_profiler().replay_path))
    prof.start()
    app = HudApp(prof)

    async def body(pilot):
        await settled(pilot)
        screen = await shows(pilot, "the target exited")
        assert screen.splitlines()[0].lstrip().startswith("the target exited")
        assert TOP in screen and "4243" in screen
    run_app(app, body)


def test_a_burst_of_keys_after_slash_lands_in_the_filter():
    """Keys that arrive together (a paste, tmux send-keys, a fast typist) are all queued
    before the first is handled: `/` must switch focus before the rest are dispatched."""
    from textual import events
    app = _app()

    async def body(pilot):
        await settled(pilot)
        for key, char in (("slash", "/"), ("c", "c"), ("a", "a"), ("c", "c"), ("h", "h"),
                          ("e", "e"), ("enter", "\r")):
            app.post_message(events.Key(key, char))
        await wait_for(pilot, lambda: app.main.filter_text == "cache", "the filter 'cache'")
        assert not app.main.showing_hotspots          # the h went into the box
        assert app.main.findings_panel.table.has_focus
    run_app(app, body)


def test_the_cursor_stays_on_the_worst_item_until_the_user_moves_it():
    """Live re-ranking: an untouched list keeps its first row selected (the worst item now);
    a row the user picked is followed wherever it moves; Esc goes back to the top."""
    from textual.app import App

    from hud.tui.table import Column, ItemTable

    class Names(ItemTable):
        def layout_for(self, width):
            return [Column("name", "name", 0)]

        def cells(self, item, columns):
            return {"name": item}

    class Tiny(App):
        def compose(self):
            yield Names()

    app = Tiny()

    async def body(pilot):
        table = app.query_one(Names)
        table.focus()
        table.set_rows([("a", "a"), ("b", "b"), ("c", "c")])
        await pilot.pause()
        table.set_rows([("c", "c"), ("a", "a"), ("b", "b")])
        assert table.selected() == "c"                 # not pinned: the new top
        await pilot.press("j")                         # the user picks "a"
        assert table.selected() == "a"
        table.set_rows([("a", "a"), ("b", "b"), ("c", "c")])
        assert table.selected() == "a" and table.cursor_row == 0
        table.set_rows([("b", "b"), ("c", "c"), ("a", "a")])
        assert table.selected() == "a" and table.cursor_row == 2
        table.unpin()
        table.set_rows([("c", "c"), ("a", "a"), ("b", "b")])
        assert table.selected() == "c"
    run_app(app, body)


def test_two_rows_of_one_function_show_their_lines_when_the_where_column_is_hidden(tmp_path):
    from unit.tui import recordings
    app = HudApp(demo_profiler(recordings.one_function_two_lines(tmp_path / "r.jsonl")))

    async def body(pilot):
        await settled(pilot)
        screen = await shows(pilot, "my_app::handlers::load:42")
        assert "my_app::handlers::load:57" in screen
        await pilot.resize_terminal(160, 48)
        screen = await shows(pilot, "handlers.rs:57")           # the where column instead
        assert "load:57" not in screen
    run_app(app, body)
