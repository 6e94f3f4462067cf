"""Helpers for asserting hud reports against a fixture manifest's ground truth."""
from __future__ import annotations

from typing import Optional


def at(report: dict, kind: str, scenario, lines: int = 1) -> Optional[dict]:
    """The finding of `kind` at the scenario's function and line (+-lines), if any."""
    for f in report["findings"]:
        if f["kind"] == kind and f["function"] == scenario.function \
                and f["line"] is not None and abs(f["line"] - scenario.line) <= lines:
            return f
    return None


def of_scenario(report: dict, kind: str, scenario, has_lines: bool = True) -> Optional[dict]:
    """`at` where the binary has line information, else the finding of `kind` at the
    scenario's function (no file:line to hold it to)."""
    if has_lines:
        return at(report, kind, scenario)
    return of_function(report, kind, scenario.function)


def of_function(report: dict, kind: str, function: str) -> Optional[dict]:
    """The first finding of `kind` whose function is `function`, if any."""
    for f in report["findings"]:
        if f["kind"] == kind and f["function"] == function:
            return f
    return None


def summary(report: dict) -> str:
    """The findings in one line each, for assertion messages."""
    return "\n".join(f"{f['kind']} {f['function']}:{f['line']} x{f['count']} "
                     f"{f['total_ms']:.0f}ms workers={f['workers']}"
                     for f in report["findings"]) or "(no findings)"
