"""Functions and inline instances of one DWARF unit, read lazily and fast.

A first pass over the unit's DIEs indexes only the concrete functions (subprograms with
code) and where each one's children lie; a function's inline tree is read the first time
an address falls in it. Every other DIE is skipped by a per-abbreviation plan, mostly a
fixed byte count, because walking hundreds of thousands of type DIEs is where the time
goes (pyelftools needs about 15 us per DIE; this loop well under 1 us).
"""
from __future__ import annotations

import bisect
import struct
from typing import Callable, Optional

from hud.symbolize.dwarf_forms import (
    CONSTANT_FORMS,
    FORM_ADDR,
    DwarfError,
    read_form,
    skip_form,
    uleb,
)
from hud.symbolize.dwarf_units import Unit, UnitTable
from hud.symbolize.dwarf_walk import (
    K_INLINED,
    K_OTHER,
    K_SUBPROGRAM,
    R_ORIGIN,
    V_BLOCK,
    V_LEB,
    skip_var,
    walk_table,
)

_DEAD = -2     # inside a nested function: its inlines are not ours
_DATA_ERRORS = (IndexError, struct.error, KeyError, ValueError, TypeError)

class UnitScopes:
    """The code scopes of one unit, functions first and inline trees on demand.

    `scopes[i]` is (parent, die offset, call_file, call_line, call_column); parent is -1
    for a function. `funcs` are function ranges sorted by start; `kids[i]` the sorted
    ranges of i's inline children, filled when an address first falls in function i.

    The functions index needs a pass over every DIE of the unit. A lookup that knows
    where its function starts (a symbol table hint) first tries to find that function's
    DIE directly, by its DW_AT_low_pc bytes, and does the pass only if that fails.
    """

    __slots__ = ("_by_die", "_hint_budget", "_hint_bytes", "_hinted", "_pending", "_scanned",
                 "fast", "full", "func_starts",
                 "funcs", "kid_starts", "kids", "lowpc_codes", "scopes", "table", "unit",
                 "walk")

    def __init__(self, table: UnitTable, unit: Unit, walk: list,
                 lowpc_codes: dict[int, list[int]], fast: list) -> None:
        self.table = table
        self.unit = unit
        self.walk = walk
        self.fast = fast
        self.lowpc_codes = lowpc_codes
        self.full = False
        self.scopes: list[tuple[int, int, int, int, int]] = []
        self.funcs: list[tuple[int, int, int]] = []
        self.func_starts: list[int] = []
        self.kids: dict[int, list[tuple[int, int, int]]] = {}
        self.kid_starts: dict[int, list[int]] = {}
        self._pending: dict[int, int] = {}     # function -> where its children start
        self._scanned: set = set()             # functions whose inline tree is read
        self._by_die: dict[int, int] = {}      # DIE offset -> function index
        self._hinted: dict[int, tuple] = {}    # hint -> (function index, its ranges)
        # Searching for a low_pc costs ~1.5 ns a byte, the full pass ~40 ns a byte of the
        # unit: once the searches have read 10 units' worth (a third of a pass), stop.
        self._hint_bytes = 0
        self._hint_budget = 10 * (unit.end - unit.die_offset)

    def __len__(self) -> int:
        return len(self.scopes)

    def die(self, i: int) -> int:
        return self.scopes[i][1]

    def call_site(self, i: int) -> tuple[int, int, int]:
        """(call_file, call_line, call_column) of inline instance i."""
        s = self.scopes[i]
        return s[2], s[3], s[4]

    def chain(self, addr: int, hint: Optional[tuple] = None,
              verify: Optional[Callable[[int, tuple], bool]] = None) -> list[int]:
        """Scope indices holding `addr`, innermost first (the function last); [] if none.

        `hint` is the (start, end or None, names) of the function symbol holding `addr`,
        when known, and `verify(die_offset, names)` tells whether a DIE is that function.
        Raises DwarfError when the DIEs are malformed.
        """
        i = -1
        if (not self.full and hint is not None and verify is not None
                and self._hint_bytes < self._hint_budget):
            got = self._hinted.get(hint[0])
            if got is None:
                got = self._hinted[hint[0]] = self._by_hint(hint[0], hint[1],
                                                            lambda d: verify(d, hint[2]))
            idx, spans = got
            if idx >= 0 and any(lo <= addr < hi for lo, hi in spans):
                i = idx
        if i < 0:
            if not self.full:
                self._full_scan()
            i = _find(self.funcs, self.func_starts, addr)
            if i < 0:
                return []
        if i not in self._scanned:
            self._scanned.add(i)
            first = self._pending.pop(i, -1)
            if first >= 0:
                try:
                    _scan_inlines(self, i, first, self.unit.end)
                except _DATA_ERRORS as e:
                    raise DwarfError(f"bad DIE under {self.scopes[i][1]:#x}: {e}") from None
        out = [i]
        for _ in range(256):   # inline depth is small; the cap only guards corrupt trees
            kids = self.kids.get(i)
            if not kids:
                break
            j = _find(kids, self.kid_starts[i], addr)
            if j < 0:
                break
            out.append(j)
            i = j
        out.reverse()
        return out

    def index_all(self) -> None:
        """Index every function of the unit now (raises DwarfError if malformed)."""
        if not self.full:
            self._full_scan()

    def _full_scan(self) -> None:
        try:
            _scan_functions(self)
        except _DATA_ERRORS as e:
            raise DwarfError(f"bad DIE in unit at {self.unit.offset:#x}: {e}") from None
        self.full = True

    def _by_hint(self, start: int, end: Optional[int],
                 verify: Callable[[int], bool]) -> tuple[int, list[tuple[int, int]]]:
        """(index, ranges) of the function whose DW_AT_low_pc is `start`, whose range is
        the symbol's [start, end) when its size is known and which carries the symbol's
        name, or (-1, []).

        The low_pc bytes also sit inside other DIEs, and a byte before them may happen to
        equal a subprogram's abbreviation code, with the tail of the attributes lining up
        (seen in libc); hence every check: outside the root DIE, decodes in place, covers
        exactly the symbol, and has its name."""
        unit, data = self.unit, self.table.info
        needle = start.to_bytes(unit.addr_size, "little")
        pos = data.find(needle, unit.die_offset, unit.end)
        for _ in range(16):   # the value may also occur in other DIEs; verify each
            if pos < 0:
                self._hint_bytes += unit.end - unit.die_offset
                break
            self._hint_bytes = max(self._hint_bytes, 0) + (pos - unit.die_offset)
            for k, codes in self.lowpc_codes.items():
                attrs = pos - k
                for code in codes:
                    die_off = attrs - (1 if code < 0x80 else 2)
                    if die_off < unit.root_end or data[die_off] == 0:
                        continue
                    try:
                        got, after = uleb(data, die_off)
                        if got != code or after != attrs:
                            continue
                        after_die, spans, _f, _l, _c = _read_scope(self.table, unit,
                                                                   self.walk[code], data,
                                                                   attrs)
                    except (*_DATA_ERRORS, DwarfError):
                        continue
                    if not any(lo == start and (end is None or hi == end)
                               for lo, hi in spans):
                        continue
                    if not verify(die_off):
                        continue
                    idx = self._function(die_off, spans,
                                         after_die if self.walk[code][1] else -1)
                    return idx, spans
            pos = data.find(needle, pos + 1, unit.end)
        return -1, []

    def _function(self, die_off: int, spans: list[tuple[int, int]], children: int) -> int:
        """The index of the function DIE at `die_off`, adding it if new."""
        idx = self._by_die.get(die_off)
        if idx is None:
            idx = len(self.scopes)
            self.scopes.append((-1, die_off, 0, 0, 0))
            self._by_die[die_off] = idx
            if children >= 0:
                self._pending[idx] = children
        return idx


def _find(entries: list[tuple[int, int, int]], starts: list[int], addr: int) -> int:
    k = bisect.bisect_right(starts, addr) - 1
    # Siblings do not overlap in sane DWARF; look back a little for the ones that do.
    for j in range(k, max(k - 8, -1), -1):
        lo, hi, idx = entries[j]
        if lo <= addr < hi:
            return idx
    return -1


def scan(table: UnitTable, unit: Unit) -> UnitScopes:
    """The unit's scopes, indexed lazily (see UnitScopes). Raises DwarfError when the
    unit's abbreviations are malformed."""
    try:
        walk, lowpc, fast = walk_table(table, unit)
    except _DATA_ERRORS as e:
        raise DwarfError(f"bad abbreviations of unit at {unit.offset:#x}: {e}") from None
    return UnitScopes(table, unit, walk, lowpc, fast)


# -- reading scope DIEs ----------------------------------------------------------------

def _read_scope(table: UnitTable, unit: Unit, ent: tuple, data: bytes,
                pos: int) -> tuple[int, list[tuple[int, int]], int, int, int]:
    """Decode a subprogram / inlined_subroutine DIE's attributes at `pos`:
    (position after them, code ranges, call_file, call_line, call_column)."""
    getter = ent[6]
    if getter is not None:
        st, pick, low_form, high_form, ranges_form, _origin_form = getter
        got = (*st.unpack_from(data, pos), None, 0)
        pos += st.size
        low, high, rng, cfile, cline, ccol, _origin = pick(got)
    else:
        vals: list = [None, None, None, 0, 0, 0, None]
        forms = [0, 0, 0]
        for st, fields in ent[7].steps:
            if st is not None:
                got = st.unpack_from(data, pos)
                pos += st.size
                for k, role, form in fields:
                    vals[role] = got[k]
                    if role < 3:
                        forms[role] = form
            else:
                form, role, imp = fields[0]
                if role < 0 or role == R_ORIGIN:
                    pos = skip_form(data, pos, form, unit.addr_size, unit.offset_size,
                                    unit.version)
                else:
                    vals[role], pos = read_form(data, pos, form, unit.addr_size,
                                                unit.offset_size, unit.version, imp)
                    if role < 3:
                        forms[role] = form
        low, high, rng, cfile, cline, ccol, _origin = vals
        low_form, high_form, ranges_form = forms
    spans = _spans(table, unit, low, high, rng, low_form, high_form, ranges_form)
    if not (isinstance(cfile, int) and isinstance(cline, int) and isinstance(ccol, int)):
        cfile = cline = ccol = 0
    return pos, spans, cfile, cline, ccol


def _spans(table: UnitTable, unit: Unit, low: object, high: object, rng: object,
           low_form: int, high_form: int, ranges_form: int) -> list[tuple[int, int]]:
    """Code ranges from DW_AT_ranges or DW_AT_low_pc/high_pc (either form of high_pc)."""
    if rng is not None:
        return [r for r in table.ranges(unit, ranges_form, rng) if r[0] and r[1] > r[0]]
    if low is None or high is None:
        return []
    if low_form != FORM_ADDR:
        low = table.address(unit, low_form, low)
    if high_form in CONSTANT_FORMS:
        high = low + high
    elif high_form != FORM_ADDR:
        high = table.address(unit, high_form, high)
    if low and high > low:
        return [(low, high)]
    return []


# -- passes ----------------------------------------------------------------------------

def _scan_functions(sc: UnitScopes) -> None:
    """Index every function of the unit (one linear pass; nesting does not matter)."""
    table, unit, walk, fast = sc.table, sc.unit, sc.walk, sc.fast
    data = table.info
    funcs: list[tuple[int, int, int]] = []
    pos = unit.die_offset
    end = unit.end
    while pos < end:
        code = data[pos]
        if code < 0x80:
            pos += 1
        else:
            code, pos = uleb(data, pos)
        if code == 0:
            continue
        f = fast[code]
        if f >= 0:
            pos += f >> 1
            continue
        kind, children, skip, vkind, before, after, _getter, ab = walk[code]
        if kind != K_SUBPROGRAM:
            # The hot path: hundreds of thousands of type and variable DIEs.
            if skip >= 0:
                pos += skip
            elif vkind == V_BLOCK:
                pos += before
                n = data[pos]
                if n < 0x80:
                    pos += 1 + n + after
                else:
                    n, pos = uleb(data, pos)
                    pos += n + after
            elif vkind == V_LEB:
                pos += before
                while data[pos] >= 0x80:
                    pos += 1
                pos += 1 + after
            else:
                pos = skip_var(data, pos, vkind, before, after, ab, unit)
            continue
        die_off = pos - 1 if code < 0x80 else _die_start(data, pos)
        pos, spans, _f, _l, _c = _read_scope(table, unit, walk[code], data, pos)
        if spans:
            owner = sc._function(die_off, spans, pos if children else -1)
            for lo, hi in spans:
                funcs.append((lo, hi, owner))
    if pos > end:
        raise DwarfError(f"last DIE runs past its unit at {unit.offset:#x}")
    funcs.sort()
    sc.funcs = funcs
    sc.func_starts = [f[0] for f in funcs]


def _die_start(data: bytes, pos: int) -> int:
    # `pos` is just past a multi-byte LEB128 code: walk back over its bytes.
    p = pos - 1
    while p > 0 and data[p - 1] >= 0x80:
        p -= 1
    return p


def _scan_inlines(sc: UnitScopes, func: int, pos: int, end: int) -> None:
    """Read the inline instances under function `func`, whose children start at `pos`,
    up to the null entry that closes them (or `end`)."""
    table, unit, walk, fast = sc.table, sc.unit, sc.walk, sc.fast
    data = table.info
    scopes = sc.scopes
    new: list[tuple[int, int, int, int]] = []   # (parent, lo, hi, scope index)
    depth = 0
    # Where the enclosing scope changed: (depth inside the DIE, scope outside it).
    saved: list[tuple[int, int]] = []
    cur = func
    while pos < end:
        code = data[pos]
        if code < 0x80:
            pos += 1
        else:
            code, pos = uleb(data, pos)
        if code == 0:
            if not depth:
                break      # the function's own children end here
            depth -= 1
            if saved and saved[-1][0] == depth:
                cur = saved.pop()[1]
            continue
        f = fast[code]
        if f >= 0:
            pos += f >> 1
            if f & 1:
                depth += 1
            continue
        kind, children, skip, vkind, before, after, _getter, ab = walk[code]
        if kind == K_OTHER:
            if skip >= 0:
                pos += skip
            elif vkind == V_BLOCK:
                pos += before
                n = data[pos]
                if n < 0x80:
                    pos += 1 + n + after
                else:
                    n, pos = uleb(data, pos)
                    pos += n + after
            else:
                pos = skip_var(data, pos, vkind, before, after, ab, unit)
            if children:
                depth += 1
            continue
        mine = cur
        if kind == K_INLINED and cur >= 0:
            die_off = pos - 1 if code < 0x80 else _die_start(data, pos)
            if _getter is not None and _getter[2] == FORM_ADDR and _getter[3] in CONSTANT_FORMS:
                # The common shape (LLVM and GCC): low_pc addr, high_pc length, call site
                # in fixed forms; read in one unpack without leaving the loop.
                st, pick = _getter[0], _getter[1]
                low, high, rng, cfile, cline, ccol, origin = pick(
                    (*st.unpack_from(data, pos), None, 0))
                pos += st.size
                if origin is not None:
                    # Nothing on this DIE names the function: its origin does.
                    die_off = unit.offset + origin
                if rng is None and low is not None and high is not None:
                    spans = [(low, low + high)] if low and high > 0 else []
                else:
                    spans = _spans(table, unit, low, high, rng, _getter[2], _getter[3],
                                   _getter[4])
                if not (type(cfile) is int and type(cline) is int and type(ccol) is int):
                    cfile = cline = ccol = 0
            else:
                pos, spans, cfile, cline, ccol = _read_scope(table, unit, walk[code], data,
                                                             pos)
            if spans:
                mine = len(scopes)
                scopes.append((cur, die_off, cfile, cline, ccol))
                for lo, hi in spans:
                    new.append((cur, lo, hi, mine))
        else:
            if kind == K_SUBPROGRAM:
                mine = _DEAD   # a nested function is indexed on its own
            if skip >= 0:
                pos += skip
            else:
                pos = skip_var(data, pos, vkind, before, after, ab, unit)
        if children:
            if mine != cur:
                saved.append((depth, cur))
                cur = mine
            depth += 1
    if pos > end:
        raise DwarfError("a DIE runs past its function's children")
    touched = set()
    for parent, lo, hi, idx in new:
        lst = sc.kids.get(parent)
        if lst is None:
            lst = sc.kids[parent] = []
        lst.append((lo, hi, idx))
        touched.add(parent)
    for parent in touched:
        sc.kids[parent].sort()
        sc.kid_starts[parent] = [k[0] for k in sc.kids[parent]]
