"""export layer: Chrome trace, hud-report/1 JSON, folded stacks (all written atomically).

`export_run` is the one call a session or CLI needs: it writes an Analyzer's run in one
of `FORMATS` (formats are documented in docs/REPORT.md).
"""
from __future__ import annotations

from typing import Optional

from hud.analysis import Analyzer
from hud.errors import UsageError
from hud.export._atomic import check_writable
from hud.export.chrome_trace import build_trace, write_chrome_trace
from hud.export.folded import fold, folded_items, write_folded
from hud.export.report import report_from_analyzer, write_report
from hud.model import Target

FORMATS = ("chrome", "report", "folded")


def export_run(path: str, fmt: str, analyzer: Analyzer, *, target: Target, backend: str,
               duration_s: Optional[float] = None) -> None:
    """Write `analyzer`'s whole run to `path` as `fmt` ("chrome", "report", "folded")."""
    if fmt == "chrome":
        trace = build_trace(analyzer.episodes, target=target, threads=analyzer.threads(),
                            t0_ns=analyzer.start_ns or None, backend=backend,
                            threshold_ms=analyzer.threshold_ns / 1e6)
        write_chrome_trace(path, trace)
    elif fmt == "report":
        write_report(path, report_from_analyzer(analyzer, target=target, backend=backend,
                                                duration_s=duration_s))
    elif fmt == "folded":
        write_folded(path, fold(folded_items(analyzer.episodes, analyzer.oncpu_stacks())))
    else:
        raise UsageError(f"unknown export format {fmt!r}",
                         f"use one of: {', '.join(FORMATS)}")


__all__ = ["FORMATS", "check_writable", "export_run"]
