"""Doctor results: checks, the verdict and exit code, and their text / JSON renderings.

Pure: nothing here touches the host, so the decision and formatting logic is unit-tested
on synthetic checks.
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from typing import Any, Optional

OK = "ok"
WARN = "warn"
FAIL = "fail"
SKIP = "skip"          # not run: a check it depends on failed (the summary says which)
STATUSES = (OK, WARN, FAIL, SKIP)
_LABEL = {OK: "ok", WARN: "warn", FAIL: "FAIL", SKIP: "skip"}

HOST = "host"
TARGET = "target"

EXIT_OK = 0
EXIT_NOT_FOUND = 4     # hud.errors.TargetNotFound
EXIT_UNSUPPORTED = 5   # hud.errors.Unsupported

SCHEMA = "hud-doctor/1"
WIDTH = 80
_NAME_W = 11
_INDENT = 2 + 4 + 2 + _NAME_W + 1   # where summaries and hints start


@dataclass
class Check:
    """One line of the doctor: what was checked, what was found, what to do about it.

    `summary` and `hint` are one sentence each; `details` are extra text lines (module
    lists, thread names) shown under the summary; `data` is the machine-readable evidence
    for --json.
    """

    name: str
    status: str
    summary: str
    hint: str = ""
    scope: str = HOST
    details: list = field(default_factory=list)
    data: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")

    def to_json(self) -> dict:
        out: dict[str, Any] = {"scope": self.scope, "status": self.status,
                               "summary": self.summary}
        if self.hint:
            out["hint"] = self.hint
        if self.details:
            out["details"] = list(self.details)
        if self.data:
            out["data"] = self.data
        return out


@dataclass
class Report:
    """Everything `hud doctor` found, with the verdict."""

    checks: list
    backend: Optional[str]            # what `--backend auto` would use; None: nothing works
    target_found: Optional[bool] = None   # None: no target asked for
    target: dict = field(default_factory=dict)
    version: str = ""

    @property
    def can_profile(self) -> bool:
        """A backend works and no target check says profiling it is impossible."""
        if self.backend is None:
            return False
        return not any(c.status == FAIL for c in self.checks if c.scope == TARGET)

    @property
    def exit_code(self) -> int:
        # An unusable host is the deeper problem: fixing the process name would not help.
        if self.backend is None:
            return EXIT_UNSUPPORTED
        if self.target_found is False:
            return EXIT_NOT_FOUND
        return EXIT_OK if self.can_profile else EXIT_UNSUPPORTED

    @property
    def verdict(self) -> str:
        """One sentence: can hud profile here, with what, and if not, why."""
        if self.backend is None:
            why = _first(self.checks, FAIL, HOST)
            because = f": {why.name} failed" if why is not None else ""
            return f"hud cannot profile on this host{because}."
        if self.target_found is False:
            why = _first(self.checks, FAIL, TARGET)
            what = why.summary if why is not None else "the target was not found"
            return f"{what}; the host itself is fine."
        blocker = _first(self.checks, FAIL, TARGET)
        if blocker is not None:
            return f"hud cannot profile this target: {blocker.name} failed."
        warns = sum(1 for c in self.checks if c.status == WARN)
        what = "this target" if self.target_found else "here"
        tail = f", with {warns} warning{'s' if warns != 1 else ''}" if warns else ""
        return f"hud can profile {what} (backend {self.backend}){tail}."

    @property
    def fix(self) -> str:
        """The hint of the failure that decides the verdict ("" when hud can profile)."""
        if self.backend is None:
            scope = HOST
        elif self.target_found is False or not self.can_profile:
            scope = TARGET
        else:
            return ""
        fails = [c for c in self.checks if c.status == FAIL and c.scope == scope]
        return next((c.hint for c in fails if c.hint), "")

    def to_json(self) -> dict:
        checks: dict[str, Any] = {}
        for c in self.checks:
            checks[c.name] = c.to_json()
        return {"schema": SCHEMA, "version": self.version, "can_profile": self.can_profile,
                "exit_code": self.exit_code, "backend": self.backend,
                "verdict": self.verdict, "fix": self.fix or None,
                "target": self.target or None, "checks": checks}


def _first(checks: list, status: str, scope: str) -> Optional[Check]:
    for c in checks:
        if c.status == status and c.scope == scope:
            return c
    return None


def format_check(check: Check, width: int = WIDTH, show_hint: bool = True,
                 name: Optional[str] = None) -> list[str]:
    """A check as text lines: `  ok    name        summary`, then details and the hint,
    wrapped to `width` under the summary column."""
    pad = " " * _INDENT
    label = name if name is not None else check.name
    head = f"  {_LABEL[check.status]:<4}  {label:<{_NAME_W}} "
    if len(label) > _NAME_W:   # a merged "a, b, c" name: summary on the next line
        lines = [head.rstrip()]
        lines += textwrap.wrap(check.summary, width, initial_indent=pad,
                               subsequent_indent=pad, break_on_hyphens=False)
    else:
        lines = textwrap.wrap(check.summary, width, initial_indent=head,
                              subsequent_indent=pad, break_on_hyphens=False)
    for d in check.details:
        lines += textwrap.wrap(d, width, initial_indent=pad, subsequent_indent=pad + "  ",
                               break_on_hyphens=False)
    if show_hint and check.hint and check.status != OK:
        lines += textwrap.wrap(check.hint, width, initial_indent=pad + "-> ",
                               subsequent_indent=pad + "   ", break_on_hyphens=False)
    return lines


def _section(checks: list, width: int, shown: set) -> list[str]:
    """Lines of one scope: a hint already printed is not repeated, and consecutive
    skips for the same reason share one line."""
    out: list[str] = []
    i = 0
    while i < len(checks):
        c = checks[i]
        j = i + 1
        if c.status == SKIP:
            while j < len(checks) and checks[j].status == SKIP and \
                    checks[j].summary == c.summary:
                j += 1
        name = ", ".join(x.name for x in checks[i:j])
        out += format_check(c, width, show_hint=c.hint not in shown, name=name)
        if c.hint and c.status != OK:
            shown.add(c.hint)
        i = j
    return out


def format_report(report: Report, width: int = WIDTH) -> str:
    """The whole report as text: host checks, target checks, the verdict and the fix."""
    shown: set = set()
    out = [f"hud doctor {report.version}".rstrip() + ": this host"]
    out += _section([c for c in report.checks if c.scope == HOST], width, shown)
    target = [c for c in report.checks if c.scope == TARGET]
    if target:
        t = report.target
        label = f"pid {t['pid']}" if t.get("pid") else repr(t.get("query", "?"))
        if t.get("comm"):
            label += f" ({t['comm']})"
        out.append(f"target {label}")
        out += _section(target, width, shown)
    out += textwrap.wrap(f"verdict: {report.verdict}", width, subsequent_indent="  ")
    if report.fix:
        out += textwrap.wrap(f"fix: {report.fix}", width, subsequent_indent="  ")
    return "\n".join(out) + "\n"
