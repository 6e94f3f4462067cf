"""Folded stacks (`root;outer;...;inner value`) for flamegraph.pl, speedscope, inferno.

Value unit: **microseconds of worker time** (integers), so on-CPU and off-CPU time share
one scale in one graph. Each line starts with a root frame naming what the time was:

- `[on-cpu]`: worker on-CPU samples, each weighing its sampling period;
- `[blocking]`, `[sched_delay]`: those episodes, weighing their duration;
- `[park]`, `[pool]` only when asked (idle time would dwarf everything else).

`cpu` episodes are not added: their time is already in the `[on-cpu]` samples.
Frames are outermost first. Names are the demangled functions; a `;` inside one (array
types like `[u8; 4]`) becomes `:` and newlines become spaces so lines stay parseable;
kernel frames end in `_[k]` (flamegraph.pl colours them); unresolved frames are
`[unknown]` or `[module]`. Lines are aggregated, rounded once, sorted.
"""
from __future__ import annotations

from collections.abc import Iterable

from hud.export._atomic import write_text
from hud.model import (
    CLASS_KERNEL,
    KIND_BLOCKING,
    KIND_SCHED_DELAY,
    Episode,
    Frame,
    Stack,
)

ONCPU_ROOT = "[on-cpu]"
DEFAULT_KINDS = (KIND_BLOCKING, KIND_SCHED_DELAY)


def frame_name(f: Frame) -> str:
    """A frame's name as it appears in a folded line."""
    if f.function is None:
        name = f"[{f.module.rsplit('/', 1)[-1]}]" if f.module else "[unknown]"
    else:
        name = f.function
    name = name.replace(";", ":").replace("\n", " ").replace("\r", " ")
    return name + "_[k]" if f.cls == CLASS_KERNEL else name


def fold_key(root: str, stack: Stack) -> str:
    """`root;outermost;...;innermost`."""
    return ";".join([root, *(frame_name(f) for f in reversed(stack))])


def fold(items: Iterable[tuple[str, Stack, int]]) -> dict[str, int]:
    """Aggregate (root, stack, weight in ns) into folded line -> microseconds (rounded once,
    zero lines dropped)."""
    ns: dict = {}
    for root, stack, weight in items:
        key = fold_key(root, stack)
        ns[key] = ns.get(key, 0) + weight
    out = {k: (v + 500) // 1000 for k, v in ns.items()}
    return {k: v for k, v in out.items() if v > 0}


def folded_items(episodes: Iterable[Episode], oncpu: Iterable[tuple[Stack, int]] = (),
                 kinds: Iterable[str] = DEFAULT_KINDS) -> list[tuple[str, Stack, int]]:
    """The (root, stack, ns) items of a run: on-CPU stacks and episodes of `kinds`."""
    want = frozenset(kinds)
    items = [(ONCPU_ROOT, s, ns) for s, ns in oncpu]
    items += [(f"[{e.kind}]", e.stack, e.duration_ns) for e in episodes if e.kind in want]
    return items


def folded_text(lines: dict[str, int]) -> str:
    """The folded file's text: one `stack value` line each, sorted."""
    return "".join(f"{k} {v}\n" for k, v in sorted(lines.items()))


def parse_folded(text: str) -> dict[str, int]:
    """Read folded text back: line -> value (summed when a stack repeats)."""
    out: dict = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        stack, sep, value = line.rpartition(" ")
        if not sep or not stack or not value.isdigit():
            raise ValueError(f"line {n}: not `frames value`: {line[:80]!r}")
        out[stack] = out.get(stack, 0) + int(value)
    return out


def write_folded(path: str, lines: dict[str, int]) -> None:
    """Write folded lines atomically."""
    write_text(path, folded_text(lines))
