"""What to do about a target without DWARF, asking the debuginfod servers hud would use.

A hint that says "a profile fetches the debug file from X" is only true if X has it: a
team's own service is on no public server, and a server can be down or unreachable from
the host in trouble. So the doctor asks each server (a few seconds at most, through
hud.symbolize.debuginfod.probe) and words its answer after what they said.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Optional

from hud.symbolize import debuginfod

_OTHER_WAYS = "install the debug package, or build with debug = \"line-tables-only\""
DEBUG_HINT = f"pass --debug-file FILE (or --debug-dir, or --debuginfod URL), {_OTHER_WAYS}"
_LOCAL_HINT = f"--debug-file FILE (or --debug-dir), {_OTHER_WAYS}"
# Servers asked at most: each can take PROBE_TIMEOUT_S when unreachable.
MAX_ASKED = 3


@dataclass
class Advice:
    """The servers' answers for one build-id and what they mean for a profile.

    `fetched_from` is the server a profile would fetch the debug file from (configured
    and has it; `size` its size when said), else ""; `hint` is what to do; `answers`
    are the servers' replies as JSON-ready dicts (url, state, bytes, why)."""

    hint: str
    answers: list
    fetched_from: str = ""
    size: int = 0

    def summary(self, name: str) -> str:
        """The OK line when a profile will fetch the debug file."""
        size = f" ({_mb(self.size)})" if self.size else ""
        return (f"no DWARF in {name}, but debuginfod {debuginfod.host_of(self.fetched_from)} has its "
                f"debug file{size}: a profile fetches it when attaching")


def advise(build_id: Optional[str], urls: Sequence[str] = (),
           environ: Optional[Mapping[str, str]] = None,
           listed: Optional[Sequence[str]] = None) -> Advice:
    """Advice for a target whose binary has no DWARF and no local debug file: the
    servers a profile would ask (`urls`, else DEBUGINFOD_URLS) are asked whether they
    have `build_id`; with none configured, those the host lists (`listed`:
    /etc/debuginfod/*.urls when None; sudo drops the variable that names them)."""
    if not build_id:
        return Advice(DEBUG_HINT, [])   # debuginfod finds files by build-id only
    servers = debuginfod.urls_from(urls, environ)
    configured = bool(servers)
    if not configured:
        servers = debuginfod.host_listed() if listed is None else list(listed)
    if not servers:
        return Advice(DEBUG_HINT, [])
    answers = []
    for url in servers[:MAX_ASKED]:
        state, size, why = debuginfod.probe(url, build_id)
        answers.append({"url": url, "state": state, "bytes": size,
                        **({"why": why} if why else {})})
        if state == debuginfod.HAS:
            if configured:
                return Advice("", answers, url, size)
            size_text = f" ({_mb(size)})" if size else ""
            return Advice(f"pass --debuginfod {url}: it has the debug file{size_text} (listed "
                          f"in {debuginfod.HOST_URLS_DIR}; sudo drops DEBUGINFOD_URLS), or "
                          f"{_LOCAL_HINT}", answers)
    said = "; ".join(a.get("why") or a["state"] for a in answers)
    states = {a["state"] for a in answers}
    if states == {debuginfod.MISSING}:
        lead = "no debuginfod server has"
    elif debuginfod.MISSING in states:
        lead = "no debuginfod server that answered has"
    else:
        lead = "no debuginfod server could be asked for"
    return Advice(f"{lead} build-id {build_id[:12]} ({said}): pass {_LOCAL_HINT}", answers)


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
