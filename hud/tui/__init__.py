"""tui layer: the live view (`hud my-app`), a textual app fed by the session's snapshots.

Entry point: `hud.tui.app.run_tui(profiler)` (imports textual; nothing else here does at
package import, so `hud --help` stays fast). One module per panel:

    app.py       HudApp, run_tui, the keys that act on the run (p s t T w ? q Ctrl-C)
    pump.py      the thread that owns the Profiler: steps it, runs key commands, publishes
    main.py      the main screen: status, findings | hotspots, preview, workers + timeline
    status.py    the status line          findings.py / hotspots.py  the two lists
    workers.py   per-worker share bars    timeline.py   episodes per worker over time
    preview.py   the selection's stack    stack.py      the drill-down screen (Enter)
    help.py      the ? screen             hints.py      key hints / messages at the bottom
    table.py     the list widget both lists share; quiet.py: redraw-only-on-change Static
    fmt.py, theme.py   formats and colours; save.py: the `s` key's report + trace files
"""
