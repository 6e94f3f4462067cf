"""The symbol cache's file format and keys: what a file holds, for which object file and
symbolizer code, written as columns of integers and checked as hostile on load."""
from __future__ import annotations

import functools
import hashlib
import json
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Optional, Protocol

from hud import __version__

# Bump when the file layout or the meaning of a field changes: old files are then misses.
FORMAT = "hud-symcache/1"
# Addresses per object: the in-memory caches are bounded the same way.
MAX_ENTRIES = 1 << 18
# Inline levels per address (real chains are tens deep).
MAX_LEVELS = 256

_MAX_U32 = 1 << 32
_MAX_U64 = 1 << 64
_SHT_NOBITS = 8
_SHF_EXECINSTR = 0x4
HEX = re.compile(r"[0-9a-f]{2,128}\Z")
KEY = re.compile(r"[0-9a-f]{64}\Z")
# Without 3.11's limit on int digits, converting a long digit string takes quadratic
# time: then such numbers are refused before parsing (a name with 21+ digits after a
# comma only makes the file a miss).
_LONG_NUMBER = re.compile(rb"[\[,:]\s*-?[0-9]{21}")
_SLOW_INTS = sys.version_info < (3, 11) or sys.get_int_max_str_digits() == 0

# (function, file, line, column, callers, why): what ObjectSymbols._levels returns.
Levels = tuple


class _Bad(Exception):
    """A cache file's content is not what we write: the whole file is ignored."""


class ElfLike(Protocol):
    size: int
    sections: tuple
    segments: tuple

    def read(self, offset: int, size: int) -> bytes: ...


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """Digest of the symbolizer's own sources: answers cached by other code are misses."""
    h = hashlib.sha256(f"{FORMAT}\0{__version__}\0".encode())
    try:
        # importlib.resources, not __file__: inside the zipapp there is no path on disk.
        # Imported here: 17 ms that only a process using the cache should pay.
        import importlib.resources
        pkg = importlib.resources.files("hud.symbolize")
        for entry in sorted(pkg.iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".py"):
                h.update(entry.name.encode() + b"\0" + entry.read_bytes() + b"\0")
    except (OSError, ValueError, TypeError, AttributeError, ImportError):
        h.update(b"\0sources unreadable")   # the version alone then tells code apart
    return h.hexdigest()


def content_key(files: Sequence[Optional[ElfLike]]) -> str:
    """What the answers depend on besides the address: the object file, its debug file
    (or None) and the symbolizer's code.

    A build-id alone is not enough: the stripped and unstripped builds share one, a
    separate debug file may or may not be found, and a hostile binary can claim anyone's.
    So every byte of every non-code section (symbols, DWARF, headers) is hashed; code
    (SHF_EXECINSTR) is never read by the symbolizer and is skipped (most of a binary)."""
    h = hashlib.sha256(code_digest().encode())
    for f in files:
        if f is None:
            h.update(b"\0none")
            continue
        h.update(repr((f.size, f.segments, f.sections)).encode("utf-8", "replace"))
        spans = sorted((s.offset, min(s.offset + s.size, f.size)) for s in f.sections
                       if s.type != _SHT_NOBITS and not s.flags & _SHF_EXECINSTR
                       and 0 <= s.offset < f.size and s.size > 0)
        # Merged first: overlapping sections (hostile headers) never hash a byte twice.
        pos = 0
        for start, end in spans:
            start = max(start, pos)
            while start < end:
                chunk = f.read(start, min(1 << 20, end - start))
                h.update(chunk)
                start += len(chunk)
            pos = max(pos, end)
    return h.hexdigest()


def encode(build_id: str, key: str, entries: Mapping[int, Levels]) -> bytes:
    """The file for `entries`, in columns of integers (checked on load by a few C-speed
    passes over each column, not per field). Names and paths, caller levels and caller
    chains each go to a table once: addresses of one inline context share them."""
    strings: list[str] = []
    string_ix: dict[Optional[str], int] = {None: 0}     # 0 is None; string i is i + 1
    lv: dict[str, list] = {"name": [], "file": [], "line": [], "col": []}
    level_ix: dict[tuple, int] = {}
    chains: list[list[int]] = []
    chain_ix: dict[tuple, int] = {}
    col: dict[str, list] = {"vaddr": [], "name": [], "file": [], "line": [], "col": [],
                            "why": [], "chain": []}

    def ref(s: Optional[str]) -> int:
        i = string_ix.get(s)
        if i is None:
            strings.append(s)
            i = string_ix[s] = len(strings)
        return i

    by_id: dict[int, int] = {}   # chains are shared tuples: most are met again as such

    def chain_ref(callers: tuple) -> int:
        """The chain's index, or -1 when the loader would refuse one of its levels
        (checked once per distinct chain, not per address)."""
        i = by_id.get(id(callers))
        if i is not None:
            return i
        i = chain_ix.get(callers)
        if i is None:
            if len(callers) > MAX_LEVELS or not all(_opt_uint(c[2]) and _opt_uint(c[3])
                                                    for c in callers):
                i = -1
            else:
                ids = []
                for level in callers:
                    j = level_ix.get(level)
                    if j is None:
                        j = level_ix[level] = len(lv["name"])
                        n, f, ln, c = level
                        lv["name"].append(ref(n))
                        lv["file"].append(ref(f))
                        lv["line"].append(-1 if ln is None else ln)
                        lv["col"].append(-1 if c is None else c)
                    ids.append(j)
                i = len(chains)
                chains.append(ids)
            chain_ix[callers] = i
        by_id[id(callers)] = i   # alive in `entries` for the whole encoding
        return i

    for vaddr, (name, file, line, column, callers, why) in entries.items():
        if len(col["vaddr"]) >= MAX_ENTRIES:
            break
        if type(callers) is not tuple:
            callers = tuple(callers)
        if not (_uint(vaddr, _MAX_U64) and _opt_uint(line) and _opt_uint(column)):
            continue   # what the loader would refuse is not written
        chain = chain_ref(callers)
        if chain < 0:
            continue
        col["vaddr"].append(vaddr)
        col["name"].append(ref(name))
        col["file"].append(ref(file))
        col["line"].append(-1 if line is None else line)
        col["col"].append(-1 if column is None else column)
        col["why"].append(ref(why or None))
        col["chain"].append(chain)
    doc = {"format": FORMAT, "build_id": build_id, "key": key, "strings": strings,
           "levels": lv, "chains": chains, "entries": col}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"),
                      allow_nan=False).encode("utf-8")


def decode(data: bytes, build_id: str, key: str) -> Optional[dict[int, Levels]]:
    """The entries of a cache file, or None when anything in it is not what `encode`
    writes for this build-id and key (the file is then ignored as a whole)."""
    if _SLOW_INTS and _LONG_NUMBER.search(data):
        return None
    try:
        doc = json.loads(data.decode("utf-8"))
        return _entries(doc, build_id, key)
    # ValueError covers bad UTF-8 and bad JSON; RecursionError deep nesting; MemoryError
    # a bomb of tiny objects; TypeError whatever a check above forgot.
    except (ValueError, TypeError, RecursionError, MemoryError, _Bad):
        return None


def _uint(v: Any, bound: int) -> bool:
    return type(v) is int and 0 <= v < bound    # `type is`: bools are ints too


def _opt_uint(v: Any) -> bool:
    return v is None or (type(v) is int and 0 <= v < _MAX_U32)


def _ints(col: Any, low: int, high: int, length: int = -1) -> list[int]:
    """`col` if it is a list of `length` ints in [low, high), else _Bad."""
    if type(col) is not list or (length >= 0 and len(col) != length):
        raise _Bad
    # set(map(type)) is exact (a bool is not an int here) and runs at C speed.
    if col and (set(map(type, col)) != {int} or min(col) < low or max(col) >= high):
        raise _Bad
    return col


def _columns(group: Any, names: tuple[str, ...]) -> list[list]:
    if type(group) is not dict:
        raise _Bad
    return [group.get(n) for n in names]


def _entries(doc: Any, build_id: str, key: str) -> dict[int, Levels]:
    if (type(doc) is not dict or doc.get("format") != FORMAT
            or doc.get("build_id") != build_id or doc.get("key") != key):
        raise _Bad
    strings, raw_chains = doc.get("strings"), doc.get("chains")
    if type(strings) is not list or type(raw_chains) is not list \
            or len(raw_chains) > MAX_ENTRIES or any(type(x) is not str for x in strings):
        raise _Bad
    # JSON escapes can smuggle lone surrogates, which would fail later when printed.
    "\0".join(strings).encode("utf-8")          # UnicodeEncodeError is a ValueError
    table = [None, *strings]
    text = table.__getitem__
    nstr = len(table)

    def opt(col: list[int]) -> list[Optional[int]]:
        return [None if x < 0 else x for x in col]

    name, file, line, column = _columns(doc.get("levels"), ("name", "file", "line", "col"))
    n = len(_ints(name, 0, nstr))
    if n > MAX_ENTRIES * MAX_LEVELS:
        raise _Bad
    levels = list(zip(map(text, name), map(text, _ints(file, 0, nstr, n)),
                      opt(_ints(line, -1, _MAX_U32, n)), opt(_ints(column, -1, _MAX_U32, n))))
    # Callers are shared between addresses, as they were in memory (never modified).
    chains = []
    for ids in raw_chains:
        if type(ids) is not list or len(ids) > MAX_LEVELS:
            raise _Bad
        chains.append(tuple(map(levels.__getitem__, _ints(ids, 0, n))))
    vaddr, name, file, line, column, why, chain = _columns(
        doc.get("entries"), ("vaddr", "name", "file", "line", "col", "why", "chain"))
    m = len(_ints(vaddr, 0, _MAX_U64))
    if m > MAX_ENTRIES:
        raise _Bad
    rows = zip(map(text, _ints(name, 0, nstr, m)), map(text, _ints(file, 0, nstr, m)),
               opt(_ints(line, -1, _MAX_U32, m)), opt(_ints(column, -1, _MAX_U32, m)),
               map(chains.__getitem__, _ints(chain, 0, len(chains), m)),
               [text(i) or "" for i in _ints(why, 0, nstr, m)])
    return dict(zip(vaddr, rows))
