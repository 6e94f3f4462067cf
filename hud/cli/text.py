"""Plain-text rendering of findings for headless runs and terminals without the TUI."""
from __future__ import annotations

import os
from typing import Optional

from hud.classify import source_known
from hud.model import Finding
from hud.tui import fmt

WIDTH = 80


def _short_path(path: Optional[str]) -> str:
    if not path:
        return "?"
    parts = path.split("/")
    return "/".join(parts[-2:]) if len(parts) > 2 else path


def _ms(v: float) -> str:
    if v >= 10_000:
        return f"{v / 1000:.1f}s"
    if v >= 100:
        return f"{v:.0f}ms"
    return f"{v:.1f}ms"


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1):]


def _fit_items(text: str, width: int) -> str:
    """A ", "-separated list (most important first) cut after the last item that fits,
    with "…" for the rest, rather than in the middle of a name."""
    if len(text) <= width:
        return text
    cut = text.rfind(", ", 0, width - 1)
    if cut < 0:
        return text[: width - 1] + "…"
    return text[: cut + 1] + " …"


def findings_table(findings: list[Finding], limit: int = 15, width: int = WIDTH) -> str:
    """Findings as an aligned table that fits `width` columns; function and location on
    their own lines so long Rust paths stay readable."""
    if not findings:
        return "no blocking, cpu or sched_delay finding above the threshold\n"
    head = f"{'KIND':<12}{'TOTAL':>9}{'COUNT':>7}{'MAX':>9}{'P99':>9}  WORKERS"
    lines = [head, "-" * min(width, len(head) + 12)]
    for f in findings[:limit]:
        workers = ",".join(str(w) for w in f.workers[:4]) + ("…" if len(f.workers) > 4 else "")
        lines.append(f"{f.kind:<12}{_ms(f.total_ms):>9}{f.count:>7}{_ms(f.max_ms):>9}"
                     f"{_ms(f.p99_ms):>9}  {_fit(workers, width - 48)}")
        lines.append("  " + _fit(f.function, width - 2))
        where = _where(f)
        lines.append("    at " + _fit(where, width - 7))
        wakers = fmt.wakers(f)
        if wakers:
            lines += _waker_lines(wakers, width)
        elif f.detail:
            lines.append("    " + _fit_items(f.detail, width - 4))
    if len(findings) > limit:
        lines.append(f"… and {len(findings) - limit} more (see --export)")
    return "\n".join(lines) + "\n"


def _waker_lines(wakers: list[tuple[str, str]], width: int, most: int = 2) -> list[str]:
    out = []
    for who, at in wakers[:most]:
        out.append("    " + _fit(who, width - 4))
        if at:
            out.append("      at " + _fit(at, width - 9))
    if len(wakers) > most:
        out.append(f"    … and {len(wakers) - most} more wakers (see --export)")
    return out


def _module_of(f: Finding) -> str:
    for fr in f.stack:
        if fr.file == f.file and fr.line == f.line and fr.module:
            return fmt.module_name(fr.module)
    return "?"


def _where(f: Finding) -> str:
    if source_known(f.file, f.line):
        return f"{_short_path(f.file)}:{f.line}" if f.line else _short_path(f.file)
    return f"{_module_of(f)} (no line info)"


def without_lines(findings: list[Finding]) -> list[str]:
    """The binaries (file names) whose findings show no file:line: no DWARF line tables."""
    out: list[str] = []
    for f in findings:
        if not source_known(f.file, f.line):
            name = _module_of(f)
            if name != "?" and name not in out:
                out.append(name)
    return out


def summary_line(status) -> str:
    """One line of live progress for headless runs (stderr)."""
    return (f"hud: {status.elapsed_s:5.1f}s  {status.events} events "
            f"({status.events_per_s:.0f}/s)  lost {status.lost}  "
            f"hud cpu {status.hud_cpu_pct:.1f}%  [{status.backend}]")


def terminal_width() -> int:
    try:
        return max(40, min(os.get_terminal_size().columns, 200))
    except OSError:
        return WIDTH
