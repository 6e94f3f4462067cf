"""The `s` key: write the run so far as a findings report and a Chrome trace, side by side."""
from __future__ import annotations

import os
import re
import time
from typing import Any, Optional

from hud.errors import HudError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def export_names(comm: str, pid: int, when: Optional[float] = None) -> tuple[str, str]:
    """File names for one save: hud-COMM-PID-YYYYmmdd-HHMMSS.{report,trace}.json (local time,
    so they sort by when they were taken)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(when))
    base = f"hud-{_UNSAFE.sub('_', comm or 'target')[:32]}-{pid}-{stamp}"
    return f"{base}.report.json", f"{base}.trace.json"


def _free(directory: str, report: str, trace: str) -> tuple[str, str]:
    """Names not yet taken in `directory`: two saves in one second get -2, -3 ..."""
    n = 1
    r, t = report, trace
    while os.path.exists(os.path.join(directory, r)) or os.path.exists(os.path.join(directory, t)):
        n += 1
        r = report.replace(".report.json", f"-{n}.report.json")
        t = trace.replace(".trace.json", f"-{n}.trace.json")
    return r, t


def save_exports(profiler: Any, directory: Optional[str] = None,
                 when: Optional[float] = None) -> tuple[str, str]:
    """Write report + trace of `profiler` into `directory` (default: the current one);
    their paths. Raises HudError when the directory is not writable."""
    directory = os.path.abspath(directory or os.getcwd())
    if not os.path.isdir(directory):
        raise HudError(f"cannot save: not a directory: {directory}",
                       "choose an existing directory")
    target = profiler.target
    report, trace = _free(directory, *export_names(target.comm if target else "",
                                                   target.pid if target else 0, when))
    report_path = os.path.join(directory, report)
    trace_path = os.path.join(directory, trace)
    profiler.export(report_path, "report")
    profiler.export(trace_path, "chrome")
    return report_path, trace_path


def saved_message(report_path: str, trace_path: str) -> str:
    """One status line naming both files and where they are."""
    directory = os.path.dirname(report_path)
    return (f"saved {os.path.basename(report_path)} and "
            f"{os.path.basename(trace_path)} in {directory}")
