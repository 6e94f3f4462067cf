"""Functions and inline instances of one DWARF unit, read lazily and fast.

A pass over the unit's DIEs indexes the concrete functions (subprograms with code) and
records each one's inline tree as it goes (dwarf_inlines); a function found through a
symbol-table hint has its tree recorded the first time an address falls in it. Every
other DIE is skipped by a per-abbreviation plan, mostly a fixed byte count, because
walking hundreds of thousands of type DIEs is where the time goes (pyelftools needs
about 15 us per DIE; this loop well under 1 us).
"""
from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from typing import Callable, Optional

from hud.symbolize.dwarf_forms import DwarfError, uleb
from hud.symbolize.dwarf_inlines import (
    DATA_ERRORS,
    LINEAR_MAX,
    die_start,
    kid_ranges,
    read_scope,
    walk_inlines,
)
from hud.symbolize.dwarf_units import Unit, UnitTable
from hud.symbolize.dwarf_walk import K_SUBPROGRAM, V_BLOCK, V_LEB, skip_var, walk_table


class UnitScopes:
    """The code scopes of one unit, functions first and inline trees on demand.

    Scopes are numbered; per scope, flat lists hold its parent (-1 for a function), the
    position of its attributes and its abbreviation code (inline instances), its first
    child and next sibling (-1: none). `die_of` and `call_file/line/col` are filled when
    a scope is decoded: functions at once, inline instances when their parent is first
    descended into (see dwarf_inlines). `funcs` are function ranges sorted by start.
    Flat lists of ints, because a cold batch makes ~100,000 scopes, and a tuple each is
    as many objects to allocate, garbage-collect and free.

    The functions index needs a pass over every DIE of the unit (it records the inline
    trees on the way). A lookup that knows where its function starts (a symbol table
    hint) first tries to find that function's DIE directly, by its DW_AT_low_pc bytes,
    and does the pass only if that fails.
    """

    __slots__ = ("_by_die", "_hint_budget", "_hint_bytes", "_hinted", "_pending",
                 "_scanned", "call_col", "call_file", "call_line", "code", "die_of", "fast",
                 "first", "full", "func_starts", "funcs", "inl", "lowpc_codes", "parent",
                 "ranges_of", "sib", "starts_of", "table", "unit", "varat", "walk", "where")

    def __init__(self, table: UnitTable, unit: Unit, walk: list,
                 lowpc_codes: dict[int, list[int]], fast: list, varat: list,
                 inl: list) -> None:
        self.table = table
        self.unit = unit
        self.walk = walk
        self.fast = fast
        self.varat = varat
        self.inl = inl
        self.lowpc_codes = lowpc_codes
        self.full = False
        self.parent: list[int] = []
        self.where: list[int] = []
        self.code: list[int] = []
        self.first: list[int] = []
        self.sib: list[int] = []
        self.die_of: dict[int, int] = {}
        self.call_file: dict[int, int] = {}
        self.call_line: dict[int, int] = {}
        self.call_col: dict[int, int] = {}
        self.funcs: list[tuple[int, int, int]] = []
        self.func_starts: list[int] = []
        self.ranges_of: dict[int, list[int]] = {}     # scope -> its decoded children
        self.starts_of: dict[int, list[int]] = {}     # ... their starts, when many
        self._pending: dict[int, int] = {}     # function -> where its children start
        self._scanned: set = set()             # functions whose inline tree is recorded
        self._by_die: dict[int, int] = {}      # DIE offset -> function index
        self._hinted: dict[int, tuple] = {}    # hint -> (function index, its ranges)
        # Searching for a low_pc costs ~1.5 ns a byte, the full pass ~40 ns a byte of the
        # unit: once the searches have read 10 units' worth (a third of a pass), stop.
        self._hint_bytes = 0
        self._hint_budget = 10 * (unit.end - unit.die_offset)

    def __len__(self) -> int:
        return len(self.parent)

    def chain(self, addr: int, hint: Optional[tuple] = None,
              verify: Optional[Callable[[int, tuple], bool]] = None) -> list[int]:
        """Scope indices holding `addr`, innermost first (the function last); [] if none."""
        i = self.innermost(addr, hint, verify)
        out = []
        while i >= 0:
            out.append(i)
            i = self.parent[i]
        return out

    def innermost(self, addr: int, hint: Optional[tuple] = None,
                  verify: Optional[Callable[[int, tuple], bool]] = None) -> int:
        """The innermost scope holding `addr` (its parents are the rest of the chain),
        or -1 if no function of this unit holds it.

        `hint` is the (start, end or None, names) of the function symbol holding `addr`,
        when known, and `verify(die_offset, names)` tells whether a DIE is that function.
        Raises DwarfError when the DIEs are malformed.
        """
        i = -1
        if not self.full and hint is not None and verify is not None:
            got = self._hinted.get(hint[0])
            if got is None and self._hint_bytes < self._hint_budget:
                got = self._hinted[hint[0]] = self._by_hint(hint[0], hint[1],
                                                            lambda d: verify(d, hint[2]))
            idx, spans = got if got is not None else (-1, ())
            if idx >= 0:
                for lo, hi in spans:
                    if lo <= addr < hi:
                        i = idx
                        break
        if i < 0:
            if not self.full:
                self._full_scan()
            i = _find(self.funcs, self.func_starts, addr)
            if i < 0:
                return -1
        if i not in self._scanned:
            self._scanned.add(i)
            first = self._pending.pop(i, -1)
            if first >= 0:
                try:
                    walk_inlines(self, i, first, self.unit.end)
                except DATA_ERRORS as e:
                    raise DwarfError(f"bad DIE under {self.die_of[i]:#x}: {e}") from None
        ranges_of, kids = self.ranges_of, self.first
        for _ in range(256):   # inline depth is small; the cap only guards corrupt trees
            e = ranges_of.get(i)
            if e is None:
                if kids[i] < 0:
                    break
                e = kid_ranges(self, i)
            # The last child starting at or below addr, then look back a little for one
            # that holds it (siblings do not overlap in sane DWARF).
            if len(e) > 3 * LINEAR_MAX:
                m = 3 * (bisect_right(self.starts_of[i], addr) - 1)
            else:
                m = len(e) - 3
                while m >= 0 and e[m] > addr:
                    m -= 3
            if m < 0:
                break
            if addr < e[m + 1]:
                i = e[m + 2]
                continue
            j = -1
            for b in range(m - 3, m - 24 if m >= 24 else -1, -3):
                if e[b] <= addr < e[b + 1]:
                    j = e[b + 2]
                    break
            if j < 0:
                break
            i = j
        return i

    def index_all(self) -> None:
        """Index every function of the unit now (raises DwarfError if malformed)."""
        if not self.full:
            self._full_scan()

    def _full_scan(self) -> None:
        try:
            _scan_functions(self)
        except DATA_ERRORS as e:
            raise DwarfError(f"bad DIE in unit at {self.unit.offset:#x}: {e}") from None
        self.full = True

    def find_functions(self, hints: Sequence[tuple],
                       verify: Callable[[int, tuple], bool]) -> None:
        """Find the DIEs of a batch's functions, given their symbols' (start, end or None,
        names) sorted by start, as `innermost` would one by one, but searching on from
        where the last one was found: compilers write a unit's functions in about the
        order the linker lays them out (1,685 of the fixture's 1,957 in order), so the
        searches read each unit about once, in C, instead of walking its DIEs (two
        thirds of them types) in Python. Functions not found are left to the pass."""
        if self.full:
            return
        at = -1
        for hint in hints:
            if self._hint_bytes >= self._hint_budget:
                return
            if hint[0] in self._hinted:
                continue
            got = self._hinted[hint[0]] = self._by_hint(
                hint[0], hint[1], lambda d, names=hint[2]: verify(d, names), at)
            if got[0] >= 0:
                at = self.die_of[got[0]]

    def _by_hint(self, start: int, end: Optional[int], verify: Callable[[int], bool],
                 at: int = -1) -> tuple[int, list[tuple[int, int]]]:
        """(index, ranges) of the function whose DW_AT_low_pc is `start`, whose range is
        the symbol's [start, end) when its size is known and which carries the symbol's
        name, or (-1, []). The search starts at `at` (wrapping around) when given.

        The low_pc bytes also sit inside other DIEs, and a byte before them may happen to
        equal a subprogram's abbreviation code, with the tail of the attributes lining up
        (seen in libc); hence every check: outside the root DIE, decodes in place, covers
        exactly the symbol, and has its name."""
        unit, data = self.unit, self.table.info
        needle = start.to_bytes(unit.addr_size, "little")
        # Forward from `at`, then backward from it (the nearest earlier occurrence
        # first: a function a little before the last one found costs little).
        regions = [(unit.die_offset, unit.end, False)]
        if at > unit.die_offset:
            regions = [(at, unit.end, False), (unit.die_offset, at + len(needle) - 1, True)]
        for r_lo, r_hi, back in regions:
            pos = data.rfind(needle, r_lo, r_hi) if back else data.find(needle, r_lo, r_hi)
            for _ in range(16):   # the value may also occur in other DIEs; verify each
                if pos < 0:
                    self._hint_bytes += r_hi - r_lo
                    break
                self._hint_bytes += (r_hi - pos) if back else (pos - r_lo)
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
                            after_die, spans, _f, _l, _c, _o = read_scope(
                                self.table, unit, self.walk[code], data, attrs)
                        except (*DATA_ERRORS, DwarfError):
                            continue
                        if not any(lo == start and (end is None or hi == end)
                                   for lo, hi in spans):
                            continue
                        if not verify(die_off):
                            continue
                        idx = self.function(die_off, spans,
                                            after_die if self.walk[code][1] else -1)
                        return idx, spans
                if back:
                    r_hi = pos + len(needle) - 1
                    pos = data.rfind(needle, r_lo, r_hi)
                else:
                    r_lo = pos + 1
                    pos = data.find(needle, r_lo, r_hi)
        return -1, []

    def function(self, die_off: int, spans: list[tuple[int, int]], children: int) -> int:
        """The index of the function DIE at `die_off`, adding it if new; `children` is
        where its children start (-1 if none)."""
        idx = self._by_die.get(die_off)
        if idx is None:
            idx = len(self.parent)
            self.parent.append(-1)
            self.where.append(-1)
            self.code.append(0)
            self.first.append(-1)
            self.sib.append(-1)
            self.die_of[idx] = die_off
            self._by_die[die_off] = idx
            if children >= 0:
                self._pending[idx] = children
        return idx


def _find(entries: list[tuple[int, int, int]], starts: list[int], addr: int) -> int:
    k = bisect_right(starts, addr) - 1
    # Functions do not overlap in sane DWARF; look back a little for the ones that do.
    for j in range(k, max(k - 8, -1), -1):
        lo, hi, idx = entries[j]
        if lo <= addr < hi:
            return idx
    return -1


def scan(table: UnitTable, unit: Unit) -> UnitScopes:
    """The unit's scopes, indexed lazily (see UnitScopes). Raises DwarfError when the
    unit's abbreviations are malformed."""
    try:
        walk, lowpc, fast, varat, inl = walk_table(table, unit)
    except DATA_ERRORS as e:
        raise DwarfError(f"bad abbreviations of unit at {unit.offset:#x}: {e}") from None
    return UnitScopes(table, unit, walk, lowpc, fast, varat, inl)


# -- the pass over the unit --------------------------------------------------------

def _scan_functions(sc: UnitScopes) -> None:
    """Index every function of the unit in one linear pass, recording the inline tree of
    each on the way (its children are walked once, by walk_inlines, not twice)."""
    table, unit, walk, fast, varat = sc.table, sc.unit, sc.walk, sc.fast, sc.varat
    data = table.info
    funcs: list[tuple[int, int, int]] = []
    scanned, pending = sc._scanned, sc._pending
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
            # The hot path: hundreds of thousands of type and variable DIEs.
            if f & 6:
                q = pos + varat[code]
                if f & 4:     # a block: its length, then its bytes
                    n = data[q]
                    if n < 0x80:
                        pos += n
                    else:
                        n, after_n = uleb(data, q)
                        pos += n + after_n - q - 1
                else:         # a LEB128 longer than one byte
                    while data[q] >= 0x80:
                        q += 1
                        pos += 1
            pos += f >> 3
            continue
        kind, children, skip, vkind, before, after, _getter, ab = walk[code]
        if kind != K_SUBPROGRAM:
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
        die_off = pos - 1 if code < 0x80 else die_start(data, pos)
        pos, spans, _f, _l, _c, _o = read_scope(table, unit, walk[code], data, pos)
        if spans:
            owner = sc.function(die_off, spans, pos if children else -1)
            for lo, hi in spans:
                funcs.append((lo, hi, owner))
            if children and owner not in scanned:
                # Its inline tree, nested functions included; the pass resumes after it.
                scanned.add(owner)
                pending.pop(owner, None)
                pos = walk_inlines(sc, owner, pos, end, funcs)
    if pos > end:
        raise DwarfError(f"last DIE runs past its unit at {unit.offset:#x}")
    funcs.sort()
    sc.funcs = funcs
    sc.func_starts = [f[0] for f in funcs]
