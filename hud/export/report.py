"""Writing the findings report (hud-report/1); the object itself is hud.analysis.report."""
from __future__ import annotations

import json

from hud.analysis.report import (
    SCHEMA,
    build_report,
    report_from_analyzer,
    validate_report,
)
from hud.export._atomic import write_text

__all__ = ["SCHEMA", "build_report", "dumps_report", "report_from_analyzer",
           "validate_report", "write_report"]


def dumps_report(report: dict) -> str:
    """The report as JSON text (stable key order, one trailing newline)."""
    return json.dumps(report, indent=1, ensure_ascii=False) + "\n"


def write_report(path: str, report: dict) -> None:
    """Write the report atomically."""
    write_text(path, dumps_report(report))
