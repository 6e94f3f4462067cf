"""Worker discovery: which threads of the target are Tokio workers, by name, then by stack.

The chain (DESIGN.md §1): `--workers PREFIX`; then Tokio's default names
(`tokio-runtime-w`, `tokio-rt-worker`: /proc cuts names to 15 characters); then the
largest `{name}-{N}` thread group. Names cannot tell workers from blocking-pool threads
(the pool carries the same default name), and a `current_thread` runtime's worker is
whichever thread runs `block_on`; so every thread keeps being watched, and the analysis
decides from each stack (`worker::run` vs `blocking::pool`) — names are only the first
guess. Threads created later are found by `scan()`.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

from hud.linux import procfs
from hud.model import ROLE_OTHER, ROLE_WORKER, Thread

DEFAULT_WORKER_NAMES = ("tokio-runtime-w", "tokio-rt-worker")
_NUMBERED = re.compile(r"^(?P<base>.*?[^\d])[-_.#]?(?P<n>\d+)$")


def numbered_group(names: list[str]) -> Optional[str]:
    """The base of the largest `{base}-{N}` group of at least two thread names."""
    bases: Counter = Counter()
    for name in names:
        m = _NUMBERED.match(name)
        if m:
            bases[m.group("base")] += 1
    if not bases:
        return None
    base, count = bases.most_common(1)[0]
    return base if count >= 2 else None


@dataclass
class Discovery:
    """Tracks the target's threads and the role their names suggest."""

    pid: int
    workers_prefix: Optional[str] = None
    threads: dict = field(default_factory=dict)   # tid -> Thread
    rule: str = ""                                 # which rule named the workers

    def role_by_name(self, name: str) -> str:
        """The role a thread name suggests (workers and pool share names: the stack
        decides between them later)."""
        if self.workers_prefix is not None:
            return ROLE_WORKER if name.startswith(self.workers_prefix) else ROLE_OTHER
        if name in DEFAULT_WORKER_NAMES:
            return ROLE_WORKER
        if self.rule.startswith("group:") and _group_base(name) == self.rule[6:]:
            return ROLE_WORKER
        return ROLE_OTHER

    def scan(self) -> tuple[list[Thread], list[int]]:
        """Re-read /proc: (threads that are new or renamed, tids that are gone)."""
        live = dict(procfs.iter_threads(self.pid))
        if not self.rule:
            self.rule = self._choose_rule(list(live.values()))
        changed = []
        for tid, name in live.items():
            old = self.threads.get(tid)
            if old is None or old.name != name:
                t = Thread(tid, name, self.role_by_name(name))
                self.threads[tid] = t
                changed.append(t)
        gone = [tid for tid in self.threads if tid not in live]
        for tid in gone:
            del self.threads[tid]
        return changed, gone

    def _choose_rule(self, names: list[str]) -> str:
        if self.workers_prefix is not None:
            return f"prefix:{self.workers_prefix}"
        if any(n in DEFAULT_WORKER_NAMES for n in names):
            return "default-names"
        base = numbered_group(names)
        if base is not None:
            return f"group:{base}"
        return "stacks"

    def describe(self) -> str:
        """One line for the status bar / report: how workers were found."""
        kind, _, arg = self.rule.partition(":")
        return {"prefix": f"workers named {arg}*", "default-names": "Tokio's default names",
                "group": f"the thread group {arg}-N",
                "stacks": "stack signatures only"}.get(kind, self.rule or "not yet scanned")


def _group_base(name: str) -> Optional[str]:
    m = _NUMBERED.match(name)
    return m.group("base") if m else None
