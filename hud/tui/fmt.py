"""Short, stable text for numbers, paths and names in the live view (no textual here)."""
from __future__ import annotations

import re
from typing import Optional

from hud.analysis.episodes import WOKEN_BY
from hud.classify import source_known
from hud.model import KIND_BLOCKING, KIND_CPU, KIND_SCHED_DELAY, Finding

# Short kind labels: the table column is narrow at 80 columns.
KIND_LABEL = {KIND_BLOCKING: "blocking", KIND_CPU: "cpu", KIND_SCHED_DELAY: "sched"}

_REGISTRY = re.compile(r"^.*/(?:registry/src/[^/]+|registry|vendor)/(?P<rest>[^/]+-\d[^/]*/.*)$")
_RUSTC = re.compile(r"^/rustc/[0-9a-f]{7,}/(?P<rest>.*)$")
_TOOLCHAIN = re.compile(r"^.*/\.rustup/toolchains/[^/]+/lib/rustlib/src/rust/(?P<rest>.*)$")


def ms(value: float) -> str:
    """A duration in ms, 3 significant digits or so: 0.42ms, 12.3ms, 812ms, 2.41s, 3m20s."""
    if value >= 600_000:
        m, s = divmod(int(value / 1000), 60)
        return f"{m}m{s:02d}s"
    if value >= 10_000:
        return f"{value / 1000:.1f}s"
    if value >= 1000:
        return f"{value / 1000:.2f}s"
    if value >= 100:
        return f"{value:.0f}ms"
    if value >= 10:
        return f"{value:.1f}ms"
    return f"{value:.2f}ms"


def pct(share: float) -> str:
    """A share 0..1 as a percentage; tiny non-zero shares are "<1%" rather than "0%"."""
    p = 100 * share
    if 0 < p < 1:
        return "<1%"
    return f"{p:.0f}%"


def count(n: float) -> str:
    """A count or rate: 999, 1.2k, 12k, 3.4M."""
    if n >= 10_000_000:
        return f"{n / 1e6:.0f}M"
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}M"
    if n >= 10_000:
        return f"{n / 1e3:.0f}k"
    if n >= 1000:
        return f"{n / 1e3:.1f}k"
    return f"{n:.0f}"


def seconds(s: Optional[float]) -> str:
    """A window length: "10s", "1.5s", "2m"."""
    if s is None:
        return "off"
    if s >= 120 and s % 60 == 0:
        return f"{s / 60:.0f}m"
    return f"{s:g}s"


def threshold(value: float) -> str:
    return f"{value:g}ms"


def short_path(path: Optional[str]) -> str:
    """A source path as people recognise it: crate-version/src/..., library/std/...,
    else the path itself (user code keeps its directories)."""
    if not path:
        return "?"
    for rx in (_REGISTRY, _RUSTC, _TOOLCHAIN):
        m = rx.match(path)
        if m:
            return m.group("rest")
    return path


def location(file: Optional[str], line: Optional[int], *, full: bool = False) -> str:
    """file:line, with the file shortened to its last component unless `full`."""
    if not file:
        return "?"
    if not source_known(file, line):
        return "no line info"      # a codegen unit's name from the symbol table
    shown = short_path(file) if full else file.rstrip("/").rsplit("/", 1)[-1]
    return f"{shown}:{line}" if line else shown


def wakers(finding: Finding) -> list[tuple[str, str]]:
    """(`woken by WHO SHARE%`, where or "") of a blocking finding's wakers (report
    `wakers`), most time first: one line each, the place on a line of its own (a
    function path is too long to share a line with a thread name)."""
    total = finding.total_ms
    return [(f"{WOKEN_BY}{w['waker']} {100 * w['ms'] / total if total else 0:.0f}%",
             w.get("at", "")) for w in dict(finding.extra).get("wakers", ())]


def module_name(module: Optional[str]) -> str:
    """A module's file name (libc.so.6, my-app): the directory rarely helps on screen."""
    if not module:
        return ""
    return module.rstrip("/").rsplit("/", 1)[-1]


def fit_left(text: str, width: int) -> str:
    """Cut `text` to `width` keeping its end (a Rust path's last segments name the function)."""
    if width <= 0:
        return ""
    if len(text) <= width:
        return text
    if width == 1:
        return "…"
    return "…" + text[-(width - 1):]


def fit_path(text: str, width: int) -> str:
    """Cut a Rust path to `width` by whole leading segments: `…::scenarios::sleep_blocker`
    reads better than `…ockers::scenarios::sleep_blocker`; else like fit_left."""
    if len(text) <= width:
        return text
    parts = text.split("::")
    for i in range(1, len(parts)):
        tail = "…::" + "::".join(parts[i:])
        if len(tail) <= width:
            return tail
    return fit_left(text, width)


def fit_right(text: str, width: int) -> str:
    """Cut `text` to `width` keeping its start."""
    if width <= 0:
        return ""
    if len(text) <= width:
        return text
    if width == 1:
        return "…"
    return text[: width - 1] + "…"
