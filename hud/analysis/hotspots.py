"""Sample-based on-CPU hotspots of workers: which functions the samples land in.

Two attributions per sample, counted incrementally (and un-counted when a window evicts):
`self` is the innermost resolved frame (where the CPU is), `user` is the blocking frame
(first user frame, else the fallbacks of `hud.classify.blocking_frame`): the code a user
can change. Each hotspot keeps the latest stack seen for it, for drill-down.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Optional

from hud.classify import blocking_frame, display_function
from hud.model import CLASS_UNKNOWN, Frame, Stack

BY_SELF = "self"
BY_USER = "user"


@dataclass(frozen=True)
class Hotspot:
    """One function's share of worker on-CPU samples."""

    function: str
    file: Optional[str]
    cls: str
    samples: int
    share: float          # of all worker samples counted, 0..1
    stack: Stack = ()


def _self_frame(stack: Stack) -> Optional[Frame]:
    for f in stack:
        if f.resolved:
            return f
    return stack[0] if stack else None


def sample_keys(stack: Stack) -> tuple[tuple, tuple]:
    """(self key, user key) of a sample: (function, file, class) each."""
    keys = []
    for f in (_self_frame(stack), blocking_frame(stack)):
        if f is None:
            keys.append(("[unknown]", None, CLASS_UNKNOWN))
        else:
            keys.append((display_function(f.function), f.file, f.cls))
    return keys[0], keys[1]


class Hotspots:
    """Counters of worker samples by self and user function."""

    def __init__(self) -> None:
        self.total = 0
        self._counts = {BY_SELF: Counter(), BY_USER: Counter()}
        self._stacks: dict = {BY_SELF: {}, BY_USER: {}}

    def add(self, keys: tuple[tuple, tuple], stack: Stack) -> None:
        self.total += 1
        for by, key in zip((BY_SELF, BY_USER), keys):
            self._counts[by][key] += 1
            self._stacks[by][key] = stack

    def remove(self, keys: tuple[tuple, tuple]) -> None:
        self.total -= 1
        for by, key in zip((BY_SELF, BY_USER), keys):
            c = self._counts[by]
            c[key] -= 1
            if c[key] <= 0:
                del c[key]
                self._stacks[by].pop(key, None)

    def top(self, n: int = 20, by: str = BY_USER) -> list[Hotspot]:
        """The `n` functions with most samples (ties: by name), attributed `by` self/user."""
        counts = self._counts[by]
        total = self.total or 1
        items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0][0], kv[0][1] or ""))
        return [Hotspot(function=k[0], file=k[1], cls=k[2], samples=v, share=v / total,
                        stack=self._stacks[by].get(k, ()))
                for k, v in items[:n]]
