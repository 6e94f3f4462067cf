"""Paths for closures and async bodies that line-tables-only DWARF leaves bare.

rustc's `debug = "line-tables-only"` names a function by its last path segment only; for a
closure or an async body that is `{closure#0}`, `{async_fn#0}` or `{async_block#0}`,
which tells a reader nothing where it was inlined (a finding's headline, a waker's
site). Inlined, it was called by a function generic over its type, whose DWARF name
spells that type with its whole path:
`__rust_begin_short_backtrace<blockers::scenarios::start_mutex_holder::{closure_env#0}, ()>`.
When the caller names exactly one type of the same kind and index, the bare name takes
that path. A closure of a generic function carries generic arguments in its own name
and is left alone, as is every case with no match or more than one.
"""
from __future__ import annotations

import re

_BARE = re.compile(r"\{(closure|async_fn|async_block)#(\d+)\}")
# Where a path written inside a caller's generic arguments starts, looking back.
_BEFORE_PATH = frozenset("<,( &*[;")


def qualify(name: str, caller: str) -> str:
    """`name` with its owner's path when it is a bare closure or async body and
    `caller` (the name of the function it is inlined into) names its type once; else
    `name` unchanged."""
    m = _BARE.fullmatch(name)
    if m is None or not caller:
        return name
    marker = f"::{{{m.group(1)}_env#{m.group(2)}}}"
    at = caller.find(marker)
    if at <= 0 or caller.find(marker, at + 1) >= 0:
        return name
    depth = 0
    k = at
    while k > 0:
        c = caller[k - 1]
        if c == ">" and not (k >= 2 and caller[k - 2] == "-"):
            depth += 1
        elif c == "<":
            if depth == 0:
                break
            depth -= 1
        elif depth == 0 and c in _BEFORE_PATH:
            break
        k -= 1
    owner = caller[k:at]
    return f"{owner}::{name}" if owner and depth == 0 else name
