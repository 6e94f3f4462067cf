"""`hud doctor [PROCESS | --pid N] [--json]`: can hud work here, and if not, why."""
from __future__ import annotations

import sys
from typing import Optional

import click


@click.command("doctor", context_settings={"max_content_width": 80})
@click.argument("process", required=False)
@click.option("--pid", type=int, help="PID of the target (instead of PROCESS).")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@click.option("--workers", metavar="PREFIX", help="Worker threads are named PREFIX*.")
@click.option("--debug-file", "debug_files", multiple=True, type=click.Path(dir_okay=False),
              help="Separate debug file of the target (repeatable).")
@click.option("--debug-dir", "debug_dirs", multiple=True, type=click.Path(file_okay=False),
              help="Directory of debug files (build-id tree or debuglink).")
@click.option("--debuginfod", "debuginfod_urls", multiple=True, metavar="URL",
              help="debuginfod server a profile would ask (default: $DEBUGINFOD_URLS); "
              "asked whether it has the target's debug file; repeatable.")
def command(process: Optional[str], pid: Optional[int], as_json: bool,
            workers: Optional[str], debug_files: tuple, debug_dirs: tuple,
            debuginfod_urls: tuple) -> None:
    """Check this host (and PROCESS) for what hud needs; say what to fix.

    Each line is ok, warn or FAIL with a hint. Exit status: 0 when hud can
    profile here (warnings allowed), 4 when the target is not found or
    ambiguous, 5 when hud cannot work on this host.
    """
    # Imported here: `hud --help` must not pay for the probes' imports.
    import json

    from hud.doctor import run
    from hud.doctor.model import format_report
    from hud.errors import UsageError

    if process is not None and pid is not None:
        raise UsageError("give a process name or --pid, not both",
                         "e.g. hud doctor my-app, or hud doctor --pid 1234")
    report = run(process, pid, workers=workers, debug_dirs=debug_dirs,
                 debug_files=debug_files, debuginfod_urls=debuginfod_urls)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(format_report(report), nl=False)
    sys.stdout.flush()
    if report.exit_code:
        sys.exit(report.exit_code)
