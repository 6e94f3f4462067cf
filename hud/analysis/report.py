"""The findings report: the hud-report/1 object (DESIGN.md §4, docs/REPORT.md), pure.

It lives in the analysis layer so the session (the Python API's `report()`) can build it;
hud.export.report writes it. `build_report` makes the object from plain pieces (testable
without a run); `report_from_analyzer` takes them from an Analyzer; `validate_report`
checks an object against the schema (required keys, types, ranking).
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Optional

from hud import __version__
from hud.analysis.analyzer import Analyzer, PoolSummary
from hud.analysis.shares import WorkerShare
from hud.model import (
    CLASS_KERNEL,
    CLASS_RUNTIME,
    CLASS_STD,
    CLASS_THIRD_PARTY,
    CLASS_UNKNOWN,
    CLASS_USER,
    FINDING_KINDS,
    Finding,
    Target,
    Thread,
)

SCHEMA = "hud-report/1"
CLASSES = (CLASS_USER, CLASS_THIRD_PARTY, CLASS_STD, CLASS_RUNTIME, CLASS_KERNEL,
           CLASS_UNKNOWN)


def _workers(target: Target, workers: Optional[Iterable[Thread]]) -> list[dict]:
    by_tid = {t.tid: t.name for t in target.workers}
    for t in workers or ():
        by_tid[t.tid] = t.name or by_tid.get(t.tid, "")
    return [{"tid": tid, "name": by_tid[tid]} for tid in sorted(by_tid)]


def build_report(*, target: Target, findings: Iterable[Finding], backend: str,
                 threshold_ms: float, duration_s: float, stats: dict,
                 workers: Optional[Iterable[Thread]] = None,
                 shares: Iterable[WorkerShare] = (), pool: Optional[PoolSummary] = None,
                 window_s: Optional[float] = None) -> dict:
    """The hud-report/1 object. Findings are ranked by total time here, whatever order
    they come in; `workers` adds workers discovered during the run to the target's."""
    ranked = sorted(findings, key=lambda f: (-f.total_ms, -f.count, f.kind, f.function))
    report: dict = {
        "schema": SCHEMA,
        "hud_version": __version__,
        "target": {"pid": target.pid, "exe": target.exe, "comm": target.comm,
                   "workers": _workers(target, workers)},
        "backend": backend,
        "threshold_ms": threshold_ms,
        "duration_s": round(float(duration_s), 3),
        "findings": [f.to_dict() for f in ranked],
        "stats": {"events": int(stats.get("events", 0)), "lost": int(stats.get("lost", 0)),
                  **{k: v for k, v in stats.items() if k not in ("events", "lost")}},
    }
    if window_s is not None:
        report["window_s"] = window_s
    shares = list(shares)
    if shares:
        report["workers"] = [s.to_dict() for s in shares]
    if pool is not None:
        report["blocking_pool"] = pool.to_dict()
    return report


def report_from_analyzer(analyzer: Analyzer, *, target: Target, backend: str,
                         duration_s: Optional[float] = None, window: bool = False) -> dict:
    """The report of an Analyzer's run (or of its rolling window)."""
    return build_report(
        target=target, findings=analyzer.findings(window=window), backend=backend,
        threshold_ms=analyzer.threshold_ns / 1e6,
        duration_s=analyzer.duration_s if duration_s is None else duration_s,
        stats=analyzer.stats(), workers=analyzer.workers(),
        shares=analyzer.shares(window=window), pool=analyzer.pool_summary(),
        window_s=(analyzer.window.span_ns / 1e9 if window and analyzer.window else None))


# --- validation ---------------------------------------------------------------------------

def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and v == v


def _opt(check, v: Any) -> bool:
    return v is None or check(v)


def _str(v: Any) -> bool:
    return isinstance(v, str)


def _check_frame(where: str, fr: Any, errs: list) -> None:
    if not isinstance(fr, dict):
        errs.append(f"{where}: not an object")
        return
    spec = {"function": _str, "file": lambda v: _opt(_str, v),
            "line": lambda v: _opt(_is_int, v), "inlined": lambda v: isinstance(v, bool),
            "module": lambda v: _opt(_str, v), "class": lambda v: v in CLASSES}
    for key, ok in spec.items():
        if key not in fr:
            errs.append(f"{where}: missing {key}")
        elif not ok(fr[key]):
            errs.append(f"{where}.{key}: bad value {fr[key]!r}")


def _check_finding(where: str, f: Any, errs: list) -> None:
    if not isinstance(f, dict):
        errs.append(f"{where}: not an object")
        return
    spec = {"kind": lambda v: v in FINDING_KINDS, "function": _str,
            "file": lambda v: _opt(_str, v), "line": lambda v: _opt(_is_int, v),
            "count": lambda v: _is_int(v) and v >= 1,
            "total_ms": lambda v: _is_num(v) and v >= 0,
            "max_ms": lambda v: _is_num(v) and v >= 0,
            "p99_ms": lambda v: _is_num(v) and v >= 0,
            "workers": lambda v: isinstance(v, list) and all(_is_int(x) for x in v),
            "stack": lambda v: isinstance(v, list)}
    for key, ok in spec.items():
        if key not in f:
            errs.append(f"{where}: missing {key}")
        elif not ok(f[key]):
            errs.append(f"{where}.{key}: bad value {f[key]!r}")
    if all(_is_num(f.get(k)) for k in ("total_ms", "max_ms", "p99_ms")):
        eps = 0.0015   # values are rounded to 3 decimals independently
        if f["p99_ms"] > f["max_ms"] + eps or f["max_ms"] > f["total_ms"] + eps:
            errs.append(f"{where}: needs p99_ms <= max_ms <= total_ms")
    for i, fr in enumerate(f.get("stack") or []):
        _check_frame(f"{where}.stack[{i}]", fr, errs)


def validate_report(obj: Any) -> list[str]:
    """Problems of `obj` as a hud-report/1 document (empty when it conforms)."""
    errs: list[str] = []
    if not isinstance(obj, dict):
        return ["report: not an object"]
    if obj.get("schema") != SCHEMA:
        errs.append(f"schema: expected {SCHEMA!r}, got {obj.get('schema')!r}")
    t = obj.get("target")
    if not isinstance(t, dict):
        errs.append("target: missing or not an object")
    else:
        if not _is_int(t.get("pid")):
            errs.append("target.pid: not an integer")
        if not _str(t.get("exe")):
            errs.append("target.exe: not a string")
        ws = t.get("workers")
        if not isinstance(ws, list):
            errs.append("target.workers: not a list")
        else:
            for i, w in enumerate(ws):
                if not (isinstance(w, dict) and _is_int(w.get("tid")) and _str(w.get("name"))):
                    errs.append(f"target.workers[{i}]: needs tid (int) and name (str)")
    if not _str(obj.get("backend")):
        errs.append("backend: not a string")
    for key in ("threshold_ms", "duration_s"):
        if not (_is_num(obj.get(key)) and obj[key] >= 0):
            errs.append(f"{key}: not a non-negative number")
    fs = obj.get("findings")
    if not isinstance(fs, list):
        errs.append("findings: not a list")
    else:
        for i, f in enumerate(fs):
            _check_finding(f"findings[{i}]", f, errs)
        totals = [f.get("total_ms") for f in fs if isinstance(f, dict)]
        if all(_is_num(x) for x in totals) and totals != sorted(totals, reverse=True):
            errs.append("findings: not ranked by total_ms")
    s = obj.get("stats")
    if not isinstance(s, dict):
        errs.append("stats: not an object")
    else:
        for key in ("events", "lost"):
            if not (_is_int(s.get(key)) and s[key] >= 0):
                errs.append(f"stats.{key}: not a non-negative integer")
    return errs
