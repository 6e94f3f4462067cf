"""`hud doctor`: can hud profile on this host, and this target? Checks, verdict, exit code.

    from hud.doctor import run
    report = run("my-app")             # or run(pid=1234), or run() for the host alone
    report.exit_code, report.to_json()

Submodules: model (checks, verdict, rendering; pure), explain (why a call was refused;
pure), host (privileges, kernel, bpf, tracefs, perf probes), target (the process).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

from hud.doctor.model import Report


def run(process: Optional[str] = None, pid: Optional[int] = None, *,
        workers: Optional[str] = None, debug_dirs: Sequence[str] = (),
        debug_files: Sequence[str] = (), debuginfod_urls: Sequence[str] = ()) -> Report:
    """Run the host checks, then the target's when a process name or pid is given."""
    from hud import __version__
    from hud.doctor.host import host_checks
    from hud.doctor.target import target_checks

    checks, backend, facts = host_checks()
    report = Report(checks, backend, version=__version__)
    if process is not None or pid is not None:
        tchecks, desc, found = target_checks(process, pid, facts, workers=workers,
                                             debug_dirs=debug_dirs,
                                             debug_files=debug_files,
                                             debuginfod_urls=debuginfod_urls)
        report.checks += tchecks
        report.target = desc
        report.target_found = found
    return report
