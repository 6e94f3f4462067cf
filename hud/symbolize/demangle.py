"""Symbol demangling: Rust legacy and v0 (without hashes), simple C++; as `addr2line -C`.

`demangle(name)` returns the readable form or the name unchanged. Output matches binutils'
non-verbose demangler (what `addr2line -C` and `c++filt -i` print), which the tests use
as the oracle.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Optional

from hud.symbolize.demangle_cpp import demangle_cpp
from hud.symbolize.demangle_v0 import demangle_v0

_LEGACY_ESCAPES = {"SP": "@", "BP": "*", "RF": "&", "LT": "<", "GT": ">", "LP": "(",
                   "RP": ")", "C": ","}
_MAX_NAME = 1 << 14


@lru_cache(maxsize=65536)
def demangle(name: str) -> str:
    """The demangled `name`, or `name` itself when it is not a mangled symbol we know."""
    if len(name) > _MAX_NAME:
        return name
    if name.startswith("_R"):
        return demangle_v0(name) or name
    if name.startswith("_Z"):
        out = demangle_rust_legacy(name)
        if out is None:
            out = demangle_cpp(name)
        return out or name
    return name


def demangle_rust_legacy(name: str) -> Optional[str]:
    """`_ZN...17h<16 hex>E` to `a::b::c` (hash dropped); None if not legacy Rust."""
    if not name.startswith("_ZN"):
        return None
    body = name[3:]
    # rustc appends ".llvm.<digits>" to symbols LLVM renamed; the name is what precedes it.
    cut = body.find(".llvm.")
    if cut >= 0:
        body = body[:cut]
    if not body.endswith("E"):
        return None
    body = body[:-1]
    for ch in body:
        if not (ch.isascii() and (ch.isalnum() or ch in "_$.:")):
            return None
    if len(body) <= 19 or body[-19:-16] != "17h":
        return None
    idents = []
    pos = 0
    while pos < len(body):
        start = pos
        while pos < len(body) and body[pos].isdigit():
            pos += 1
        if pos == start:
            return None
        digits = body[start:pos]
        if digits[0] == "0" and len(digits) > 1:
            return None
        n = int(digits)
        if n == 0 or pos + n > len(body):
            return None
        idents.append(body[pos:pos + n])
        pos += n
    h = idents[-1]
    if len(h) != 17 or h[0] != "h" or any(c not in "0123456789abcdef" for c in h[1:]):
        return None
    if len(set(h[1:])) < 5:
        return None   # too regular to be a hash: binutils treats it as C++
    return "::".join(_legacy_ident(i) for i in idents[:-1])


def _legacy_ident(ident: str) -> str:
    # The mangler prefixes "_" to identifiers that start with an escape.
    if ident.startswith("_$"):
        ident = ident[1:]
    out = []
    i = 0
    n = len(ident)
    while i < n:
        c = ident[i]
        if c == "$":
            end = ident.find("$", i + 1)
            esc = ident[i + 1:end] if end > 0 else ""
            ch = _LEGACY_ESCAPES.get(esc)
            if ch is None and len(esc) == 3 and esc[0] == "u":
                code = _lower_hex(esc[1:])
                if code is not None and 0x20 <= code < 0x80:
                    ch = chr(code)
            if ch is None:
                out.append(ident[i:])   # an unknown escape: the rest stays verbatim
                break
            out.append(ch)
            i = end + 1
        elif c == ".":
            if ident.startswith("..", i):
                out.append("::")
                i += 2
            else:
                out.append(".")
                i += 1
        else:
            j = i
            while j < n and ident[j] not in "$.":
                j += 1
            out.append(ident[i:j])
            i = j
    return "".join(out)


def _lower_hex(s: str) -> Optional[int]:
    if s and all(c in "0123456789abcdef" for c in s):
        return int(s, 16)
    return None


def strip_rust_hash(name: str) -> str:
    """Drop a trailing `::h<16 hex>` (names demangled elsewhere, e.g. by LLVM tools)."""
    if len(name) > 19 and name[-19:-16] == "::h" and _lower_hex(name[-16:]) is not None:
        return name[:-19]
    return name
