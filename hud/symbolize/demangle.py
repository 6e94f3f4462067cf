"""Symbol demangling: Rust legacy and v0 (without hashes), Itanium C++; as `addr2line -C`.

`demangle(name)` returns the readable form or the name unchanged. Output matches binutils'
non-verbose demangler (what `addr2line -C` and `c++filt -i` print), which the tests use
as the oracle.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Optional

from hud.symbolize.demangle_cpp import demangle_cpp
from hud.symbolize.demangle_v0 import demangle_v0

_LEGACY_ESCAPES = {"SP": "@", "BP": "*", "RF": "&", "LT": "<", "GT": ">", "LP": "(",
                   "RP": ")", "C": ","}
_MAX_NAME = 1 << 14


def split_top(text: str, sep: str) -> list[str]:
    """Split a demangled name on `sep` where no <>, (), [] group is open (`->` is no
    bracket): split_top("a::b<c::d>::e", "::") -> a, b<c::d>, e."""
    parts, depth, start, i = [], 0, 0, 0
    n, k = len(text), len(sep)
    while i < n:
        c = text[i]
        if c in "<([":
            depth += 1
        elif c in ">)]" and not (c == ">" and i > 0 and text[i - 1] == "-"):
            depth = max(0, depth - 1)
        elif depth == 0 and text.startswith(sep, i):
            parts.append(text[start:i])
            i += k
            start = i
            continue
        i += 1
    parts.append(text[start:])
    return parts


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


_LEGACY_CHARS = re.compile(r"[A-Za-z0-9_$.:]*")
_DIGITS = re.compile(r"[0-9]+")
_HASH_END = re.compile(r"17h[0-9a-f]{16}E(?=\.)")
_TOKEN = re.compile(r"\$[A-Za-z0-9]*\$|\$|\.\.|\.|[^$.]+")


def demangle_rust_legacy(name: str) -> Optional[str]:
    """`_ZN...17h<16 hex>E` to `a::b::c` (hash dropped); None if not legacy Rust."""
    if not name.startswith("_ZN"):
        return None
    body = name[3:]
    # Suffixes after the final E (".llvm.<digits>" from LLVM renames, ".0" on statics)
    # are not part of the path; binutils drops them. (Only a name with a dot can have
    # one: the regex search over every name was most of the cost of demangling it.)
    if "." in body:
        m = _HASH_END.search(body)
        if m is not None:
            body = body[:m.end()]
    if not body.endswith("E"):
        return None
    body = body[:-1]
    if len(body) <= 19 or body[-19:-16] != "17h":
        return None
    # The last identifier is the hash "17h<16 hex>": check it here, and parse the path
    # before it once per path (generic instances repeat a path with a new hash each:
    # 5,270 names of the largest fixture are 1,978 paths).
    h = body[-16:]
    if _lower_hex(h) is None or len(set(h)) < 5:
        return None   # too regular to be a hash: binutils treats it as C++
    return _legacy_path(body[:-19])


@lru_cache(maxsize=16384)
def _legacy_path(body: str) -> Optional[str]:
    """The printed path of `<len><ident>...` (the identifiers before the hash)."""
    if not _LEGACY_CHARS.fullmatch(body):
        return None
    idents = []
    pos = 0
    n = len(body)
    while pos < n:
        m = _DIGITS.match(body, pos)
        if m is None:
            return None
        digits = m.group()
        if digits[0] == "0":
            return None
        pos = m.end()
        k = int(digits)
        if pos + k > n:
            return None
        idents.append(body[pos:pos + k])
        pos += k
    return "::".join(_legacy_ident(i) for i in idents)


def _legacy_ident(ident: str) -> str:
    # The mangler prefixes "_" to identifiers that start with an escape.
    if ident.startswith("_$"):
        ident = ident[1:]
    if "$" not in ident and "." not in ident:
        return ident
    if _CLEAN_IDENT.fullmatch(ident):
        # Only known escapes: replace them in C (the token loop below, a Python step per
        # token, was most of the cost of a legacy path).
        out_text = ident.replace("..", "::")
        for esc, ch in _ESCAPE_TEXT:
            out_text = out_text.replace(esc, ch)
        if "$u" in out_text:
            out_text = _HEX_ESCAPE.sub(_hex_char, out_text)
        return out_text
    out = []
    for m in _TOKEN.finditer(ident):
        tok = m.group()
        c = tok[0]
        if c == "$":
            ch = _LEGACY_ESCAPES.get(tok[1:-1]) if len(tok) > 1 else None
            if ch is None and len(tok) == 5 and tok[1] == "u":
                code = _lower_hex(tok[2:4])
                if code is not None and 0x20 <= code < 0x80:
                    ch = chr(code)
            if ch is None:
                out.append(ident[m.start():])   # an unknown escape: the rest verbatim
                break
            out.append(ch)
        elif tok == "..":
            out.append("::")
        else:
            out.append(tok)
    return "".join(out)


# An identifier made only of plain text, dots and escapes the demangler knows ($u..$
# for printable ASCII): for these, replacing escapes equals the token walk.
# One character or one escape per step (no nested repetition: linear on any input).
_CLEAN_IDENT = re.compile(r"(?:[^$]|\$(?:SP|BP|RF|LT|GT|LP|RP|C|u[2-7][0-9a-f])\$)*")
_ESCAPE_TEXT = tuple((f"${k}$", v) for k, v in _LEGACY_ESCAPES.items())
_HEX_ESCAPE = re.compile(r"\$u([2-7][0-9a-f])\$")


def _hex_char(m: re.Match) -> str:
    return chr(int(m.group(1), 16))


_HEX = re.compile(r"[0-9a-f]+")


def _lower_hex(s: str) -> Optional[int]:
    if _HEX.fullmatch(s):
        return int(s, 16)
    return None


def strip_rust_hash(name: str) -> str:
    """Drop a trailing `::h<16 hex>` (names demangled elsewhere, e.g. by LLVM tools)."""
    if len(name) > 19 and name[-19:-16] == "::h" and _lower_hex(name[-16:]) is not None:
        return name[:-19]
    return name
