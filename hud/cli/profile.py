"""`hud [PROCESS]`: profile a running Tokio process (live view or headless with exports)."""
from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Optional

import click

from hud.errors import HudError, NoRuntime, UsageError

FORMATS = ("chrome", "report", "folded")


def _guess_format(path: str) -> str:
    lower = path.lower()
    if lower.endswith((".folded", ".txt", ".collapsed")):
        return "folded"
    if lower.endswith(".report.json") or "report" in os.path.basename(lower):
        return "report"
    return "chrome"


def export_targets(specs: Sequence[str], fmt: Optional[str]) -> list[tuple[str, str]]:
    """(path, format) of each `--export [FORMAT:]FILE`: the prefix, else `--format` (which
    only one export may take), else the format the file name suggests."""
    if fmt and not specs:
        raise UsageError("--format needs --export FILE", "e.g. --export trace.json")
    if fmt and len(specs) > 1:
        raise UsageError("--format applies to one --export, not several",
                         "name each one's format: --export report:out.json")
    out: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    for spec in specs:
        head, sep, rest = spec.partition(":")
        if sep and head in FORMATS:
            path, kind = rest, head
            if not path:
                raise UsageError(f"--export {spec}: no file after the format",
                                 f"e.g. --export {head}:out.json")
        else:
            path, kind = spec, fmt or _guess_format(spec)
        where = os.path.realpath(path)
        if where in seen:
            raise UsageError(f"--export {path} is given twice (also as {seen[where]})",
                             "one file per export")
        seen[where] = path
        out.append((path, kind))
    return out


class _ProfileCommand(click.Command):
    """Usage reads `hud [PROCESS] [OPTIONS]`: "profile" is implied, never typed."""

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage("hud", "[PROCESS] [OPTIONS]")


@click.command("profile", cls=_ProfileCommand, context_settings={"max_content_width": 80})
@click.argument("process", required=False)
@click.option("--pid", type=int, help="PID of the target (instead of PROCESS).")
@click.option("--target", "target_path", type=click.Path(dir_okay=False),
              help="The target's binary with debug info, when the running one is stripped.")
@click.option("--threshold", type=float, default=5.0, show_default=True, metavar="MS",
              help="Report episodes at least this long.")
@click.option("--window", type=float, metavar="S",
              help="Rolling window: show only the last S seconds.")
@click.option("--workers", metavar="PREFIX", help="Worker threads are named PREFIX*.")
@click.option("--duration", type=float, metavar="S", help="Stop after S seconds.")
@click.option("--headless", is_flag=True, help="No live view; print findings at the end.")
@click.option("--export", "exports", multiple=True, metavar="[FORMAT:]FILE",
              help="Write the run to FILE at exit; repeatable (FORMAT: chrome, report "
              "or folded; default: from the file name, else chrome).")
@click.option("--format", "fmt", type=click.Choice(FORMATS),
              help="Format of the one --export FILE.")
@click.option("--freq", type=int, metavar="HZ", help="CPU sampling rate, at most 10000 "
              "(default resolves the threshold: 2 samples per threshold).")
@click.option("--backend", type=click.Choice(("auto", "ebpf", "perf")), default="auto",
              show_default=True, help="Kernel interface; auto falls back to perf.")
@click.option("--replay", type=click.Path(exists=True, dir_okay=False),
              help="Analyze a recording (from --record) instead of a live process.")
@click.option("--record", type=click.Path(dir_okay=False),
              help="Also write every event to FILE, for --replay later.")
@click.option("--debug-file", "debug_files", multiple=True, type=click.Path(dir_okay=False),
              help="Separate debug file (repeatable).")
@click.option("--debug-dir", "debug_dirs", multiple=True, type=click.Path(file_okay=False),
              help="Directory of debug files (build-id tree or debuglink).")
@click.option("--debuginfod", "debuginfod_urls", multiple=True, metavar="URL",
              help="debuginfod server to fetch missing debug files from by build-id "
              "(default: $DEBUGINFOD_URLS); repeatable.")
@click.option("--stack-bytes", type=click.IntRange(1024, 32768), default=32768,
              show_default=True, help="User stack bytes copied per capture.")
@click.option("--no-symbol-cache", is_flag=True, help="Keep no resolved symbols on disk "
              "(default: /var/cache/hud/symbols as root; HUD_CACHE_DIR overrides).")
@click.option("--no-kernel-stacks", is_flag=True, help="Take no kernel stacks: findings do "
              "not say where in the kernel they waited (saves 2-3 us per blocked "
              "capture under load, up to ~17 us for deep kernel paths).")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
def command(process: Optional[str], pid: Optional[int], target_path: Optional[str],
            threshold: float, window: Optional[float], workers: Optional[str],
            duration: Optional[float], headless: bool, exports: tuple,
            fmt: Optional[str], freq: Optional[int], backend: str, replay: Optional[str],
            record: Optional[str], debug_files: tuple, debug_dirs: tuple,
            debuginfod_urls: tuple, stack_bytes: int, no_symbol_cache: bool, no_kernel_stacks: bool,
            quiet: bool) -> None:
    """Show what blocks the Tokio runtime of PROCESS (a name) or --pid N."""
    from hud.session import Profiler

    if replay is None and process is None and pid is None:
        raise UsageError("no target given", "name a process (hud my-app) or pass --pid N")
    if duration is not None and duration <= 0:
        raise UsageError("--duration must be positive", "e.g. --duration 10")
    targets = export_targets(exports, fmt)
    if targets:
        from hud.export import check_writable
        for path, _kind in targets:
            check_writable(path)   # now, not after a long run
    if target_path:
        debug_files = (*debug_files, target_path)
    interactive = not headless and sys.stdout.isatty() and sys.stdin.isatty()

    def notice(text: str) -> None:
        if not quiet and not interactive:
            click.echo(f"hud: {text}", err=True)

    tui_up = threading.Event()
    stop = threading.Event()     # Ctrl-C / SIGTERM: also ends a download while attaching

    def fetching(text: str) -> None:
        # Downloads happen while attaching, before the TUI takes the screen: say so.
        if not quiet and not tui_up.is_set():
            click.echo(f"hud: {text}", err=True)

    prof = Profiler(pid=pid, process=process, threshold_ms=threshold, window_s=window,
                    workers=workers, freq_hz=freq, backend=backend, replay=replay,
                    record=record, debug_dirs=debug_dirs, debug_files=debug_files,
                    stack_bytes=stack_bytes, notice=notice,
                    debuginfod=(debuginfod_urls, fetching, stop.is_set),
                    symbol_cache=not no_symbol_cache, kernel_stacks=not no_kernel_stacks)
    old = _install_stop_handlers(stop)
    try:
        prof.start()
        if interactive:
            tui_up.set()
            _run_interactive(prof, duration, stop)
        else:
            _run_headless(prof, duration, stop, quiet)
        _write_exports(prof, targets, quiet)
        if not interactive and not prof.saw_runtime():
            t = prof.target
            where = f"pid {t.pid} ({t.comm or t.exe})" if t is not None else "the target"
            raise NoRuntime(f"no Tokio worker thread seen in {where}: nothing was measured",
                            "is it the Tokio process? A runtime that names its threads "
                            "itself: --workers PREFIX")
    finally:
        prof.close()
        _restore(old)


def _write_exports(prof, targets: list[tuple[str, str]], quiet: bool) -> None:
    """Write every export; one that fails does not cost the others (the first error is
    raised once all were tried)."""
    failed: Optional[HudError] = None
    for path, kind in targets:
        try:
            prof.export(path, kind)
        except HudError as e:
            failed = failed or e
            continue
        if not quiet:
            click.echo(f"hud: wrote {path}", err=True)
    if failed is not None:
        raise failed


def _run_headless(prof, duration: Optional[float], stop: threading.Event,
                  quiet: bool) -> None:
    from hud.cli.text import findings_table, summary_line, terminal_width, without_lines
    last = [0.0]

    def progress(status) -> None:
        if status.elapsed_s - last[0] < 2.0:
            return
        last[0] = status.elapsed_s
        click.echo(summary_line(status), err=True)

    if not quiet and prof.target is not None:
        t = prof.target
        click.echo(f"hud: profiling pid {t.pid} ({t.comm or t.exe}) with {prof.backend_name}, "
                   f"threshold {prof.threshold_ms:g} ms"
                   + (f", for {duration:g} s" if duration else ", Ctrl-C to stop"), err=True)
    try:
        prof.run(duration_s=duration, stop=stop, on_status=None if quiet else progress,
                 every_s=0.5)
    except KeyboardInterrupt:
        prof.finish()
    width = terminal_width() if sys.stdout.isatty() else 80
    findings = prof.findings()
    if not findings and not prof.saw_runtime():
        return      # "no finding" would read as a healthy runtime: the caller says why
    click.echo(findings_table(findings, width=width), nl=False)
    bare = without_lines(findings)
    if bare and not quiet:
        click.echo(f"hud: no file:line in {', '.join(bare)}: no DWARF line tables", err=True)
        click.echo('hint: debug = "line-tables-only" in [profile.release], or --debug-file '
                   "FILE", err=True)


def _run_interactive(prof, duration: Optional[float], stop: threading.Event) -> None:
    try:
        from hud.tui.app import run_tui
    except ImportError:
        click.echo("hud: the live view is unavailable here; showing text", err=True)
        _run_headless(prof, duration, stop, quiet=False)
        return
    run_tui(prof, duration_s=duration, stop=stop)


def _install_stop_handlers(stop: threading.Event) -> dict:
    """Ctrl-C, SIGTERM and SIGHUP end the run cleanly: the loop stops between events and
    the exports are still written. A second Ctrl-C interrupts at once."""
    old = {}
    if threading.current_thread() is not threading.main_thread():
        return old

    def handler(signum, frame) -> None:
        if signum == signal.SIGINT and stop.is_set():
            raise KeyboardInterrupt   # a second Ctrl-C: stop right now
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        try:
            old[sig] = signal.signal(sig, handler)
        except (ValueError, OSError):
            pass
    return old


def _restore(old: dict) -> None:
    for sig, h in old.items():
        try:
            signal.signal(sig, h)
        except (ValueError, OSError):
            pass
