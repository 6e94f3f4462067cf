"""Functions and inline instances of one DWARF unit, from one pass over its DIEs.

The pass decodes only DW_TAG_subprogram and DW_TAG_inlined_subroutine entries and skips
every other DIE with a per-abbreviation plan (a fixed byte count when it can). What it
keeps is a tree of code scopes: each concrete function with its ranges, and under it the
inline instances with their ranges and call sites. A lookup finds the function by bisect
and descends to the innermost instance holding the address.
"""
from __future__ import annotations

import bisect
import struct
from typing import Optional

from hud.symbolize.dwarf_forms import (
    AT_ABSTRACT_ORIGIN,
    AT_CALL_COLUMN,
    AT_CALL_FILE,
    AT_CALL_LINE,
    AT_HIGH_PC,
    AT_LINKAGE_NAME,
    AT_LOW_PC,
    AT_MIPS_LINKAGE_NAME,
    AT_NAME,
    AT_RANGES,
    AT_SPECIFICATION,
    CONSTANT_FORMS,
    FORM_ADDR,
    FORM_BLOCK,
    FORM_BLOCK1,
    FORM_BLOCK2,
    FORM_BLOCK4,
    FORM_EXPRLOC,
    FORM_GNU_REF_ALT,
    FORM_INDIRECT,
    FORM_REF_ADDR,
    FORM_STRING,
    REF_FORMS,
    TAG_INLINED_SUBROUTINE,
    TAG_SUBPROGRAM,
    DwarfError,
    read_form,
    skip_form,
    uleb,
)
from hud.symbolize.dwarf_units import Abbrev, Unit, UnitTable

_MAX_ORIGIN_DEPTH = 16
# What the scan reads of subprogram / inlined_subroutine DIEs: attribute -> slot.
R_LOW, R_HIGH, R_RANGES, R_CFILE, R_CLINE, R_CCOL = range(6)
ROLES = {AT_LOW_PC: R_LOW, AT_HIGH_PC: R_HIGH, AT_RANGES: R_RANGES, AT_CALL_FILE: R_CFILE,
         AT_CALL_LINE: R_CLINE, AT_CALL_COLUMN: R_CCOL}
ROLE_TAGS = frozenset({TAG_SUBPROGRAM, TAG_INLINED_SUBROUTINE})
_DEAD = -2   # inside a function without code (an abstract instance): nothing to keep


class UnitScopes:
    """The code scopes of one unit, functions first and inline trees on demand.

    Scope i has: parent[i] (-1 for a function), die[i] (its DIE offset, for its name),
    call_file/call_line/call_col[i] (call site, for inline instances). `funcs` are the
    ranges of functions sorted by start; `kids[i]` the ranges of i's inline children,
    filled for a function the first time an address falls in it.
    """

    __slots__ = ("_sub_end", "_sub_start", "call_col", "call_file", "call_line", "die",
                 "func_starts", "funcs", "kid_starts", "kids", "parent", "table", "unit")

    def __init__(self, table: UnitTable, unit: Unit) -> None:
        self.table = table
        self.unit = unit
        self.parent: list[int] = []
        self.die: list[int] = []
        self.call_file: list[int] = []
        self.call_line: list[int] = []
        self.call_col: list[int] = []
        self.funcs: list[tuple[int, int, int]] = []
        self.func_starts: list[int] = []
        self.kids: dict[int, list[tuple[int, int, int]]] = {}
        self.kid_starts: dict[int, list[int]] = {}
        # Where each function's children live in .debug_info; (0, 0) once scanned.
        self._sub_start: dict[int, int] = {}
        self._sub_end: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.parent)

    def chain(self, addr: int) -> list[int]:
        """Scope indices holding `addr`, innermost first (the function last); [] if none.

        Raises DwarfError when the function's inline tree is malformed.
        """
        i = _find(self.funcs, self.func_starts, addr)
        if i < 0:
            return []
        if i in self._sub_start:
            start = self._sub_start.pop(i)
            end = self._sub_end.pop(i)
            try:
                _scan_inlines(self, i, start, end)
            except (IndexError, struct.error, KeyError, ValueError) as e:
                raise DwarfError(f"bad DIE under {self.die[i]:#x}: {e}") from None
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

    def _add(self, parent: int, die: int, cfile: object, cline: object, ccol: object) -> int:
        idx = len(self.parent)
        self.parent.append(parent)
        self.die.append(die)
        self.call_file.append(cfile if isinstance(cfile, int) else 0)
        self.call_line.append(cline if isinstance(cline, int) else 0)
        self.call_col.append(ccol if isinstance(ccol, int) else 0)
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
    """Index the unit's functions (one pass; inline trees wait until used).

    Raises DwarfError on malformed input.
    """
    try:
        return _scan_functions(table, unit)
    except (IndexError, struct.error, KeyError, ValueError) as e:
        raise DwarfError(f"bad DIE in unit at {unit.offset:#x}: {e}") from None


def _read_scope(table: UnitTable, unit: Unit, ab: Abbrev, data: bytes,
                pos: int) -> tuple[int, list[tuple[int, int]], object, object, object]:
    """Decode a subprogram / inlined_subroutine DIE's attributes at `pos`:
    (position after them, code ranges, call_file, call_line, call_column)."""
    vals = [None, None, None, 0, 0, 0]
    forms = [0, 0, 0]
    for st, fields in ab.steps:
        if st is not None:
            got = st.unpack_from(data, pos)
            pos += st.size
            for k, role, form in fields:
                vals[role] = got[k]
                if role < 3:
                    forms[role] = form
        else:
            form, role, imp = fields[0]
            if role < 0:
                pos = skip_form(data, pos, form, unit.addr_size, unit.offset_size,
                                unit.version)
            else:
                vals[role], pos = read_form(data, pos, form, unit.addr_size,
                                            unit.offset_size, unit.version, imp)
                if role < 3:
                    forms[role] = form
    spans: list[tuple[int, int]] = []
    if vals[R_RANGES] is not None:
        spans = [r for r in table.ranges(unit, forms[R_RANGES], vals[R_RANGES])
                 if r[0] and r[1] > r[0]]
    elif vals[R_LOW] is not None and vals[R_HIGH] is not None:
        low = vals[R_LOW]
        if forms[R_LOW] != FORM_ADDR:
            low = table.address(unit, forms[R_LOW], low)
        high = vals[R_HIGH]
        if forms[R_HIGH] in CONSTANT_FORMS:
            high = low + high
        elif forms[R_HIGH] != FORM_ADDR:
            high = table.address(unit, forms[R_HIGH], high)
        if low and high > low:
            spans = [(low, high)]
    return pos, spans, vals[R_CFILE], vals[R_CLINE], vals[R_CCOL]


def _skip(ab: Abbrev, data: bytes, pos: int, unit: Unit) -> int:
    skip = ab.skip
    if skip >= 0:
        return pos + skip
    return _skip_plan(data, pos, ab.plan, unit.addr_size, unit.offset_size, unit.version)


def _scan_functions(table: UnitTable, unit: Unit) -> UnitScopes:
    data = table.info
    abbrevs = table.abbrevs_of(unit)
    sc = UnitScopes(table, unit)
    ranges_of: dict[int, list[tuple[int, int]]] = {}
    pos = unit.die_offset
    end = unit.end
    # One entry per open DIE with children: the function index it is, or -1.
    stack: list[int] = []
    sub_start = sc._sub_start
    sub_end = sc._sub_end
    while pos < end:
        die_off = pos
        code = data[pos]
        if code < 0x80:
            pos += 1
        else:
            code, pos = uleb(data, pos)
        if code == 0:
            if stack:
                owner = stack.pop()
                if owner >= 0:
                    sub_end[owner] = pos
            continue
        ab = abbrevs.get(code)
        if ab is None:
            raise DwarfError(f"unknown abbreviation {code} at {die_off:#x}")
        owner = -1
        if ab.tag == TAG_SUBPROGRAM:
            pos, spans, _f, _l, _c = _read_scope(table, unit, ab, data, pos)
            if spans:
                owner = sc._add(-1, die_off, 0, 0, 0)
                ranges_of[owner] = spans
        else:
            skip = ab.skip
            if skip >= 0:
                pos += skip
            else:
                pos = _skip_plan(data, pos, ab.plan, unit.addr_size, unit.offset_size,
                                 unit.version)
        if pos > end:
            raise DwarfError(f"DIE at {die_off:#x} runs past its unit")
        if ab.children:
            stack.append(owner)
            if owner >= 0:
                sub_start[owner] = pos
    # A function whose children never closed (truncated unit) has no usable subtree.
    for owner in list(sub_start):
        if owner not in sub_end:
            sub_start.pop(owner)
    funcs = [(lo, hi, i) for i, spans in ranges_of.items() for lo, hi in spans]
    funcs.sort()
    sc.funcs = funcs
    sc.func_starts = [f[0] for f in funcs]
    return sc


def _scan_inlines(sc: UnitScopes, func: int, pos: int, end: int) -> None:
    """Read the inline instances under function `func` (its children, [pos, end))."""
    table, unit = sc.table, sc.unit
    data = table.info
    abbrevs = table.abbrevs_of(unit)
    ranges_of: dict[int, list[tuple[int, int]]] = {}
    stack: list[int] = []
    cur = func
    while pos < end:
        die_off = pos
        code = data[pos]
        if code < 0x80:
            pos += 1
        else:
            code, pos = uleb(data, pos)
        if code == 0:
            if stack:
                cur = stack.pop()
            continue
        ab = abbrevs.get(code)
        if ab is None:
            raise DwarfError(f"unknown abbreviation {code} at {die_off:#x}")
        mine = cur
        tag = ab.tag
        if tag == TAG_INLINED_SUBROUTINE and cur >= 0:
            pos, spans, cfile, cline, ccol = _read_scope(table, unit, ab, data, pos)
            if spans:
                mine = sc._add(cur, die_off, cfile, cline, ccol)
                ranges_of[mine] = spans
        elif tag == TAG_SUBPROGRAM:
            # A nested function is indexed on its own; its inlines are not ours.
            pos = _skip(ab, data, pos, unit)
            mine = _DEAD
        else:
            pos = _skip(ab, data, pos, unit)
        if pos > end:
            raise DwarfError(f"DIE at {die_off:#x} runs past its function")
        if ab.children:
            stack.append(cur)
            cur = mine
    for i, spans in ranges_of.items():
        p = sc.parent[i]
        lst = sc.kids.get(p)
        if lst is None:
            lst = sc.kids[p] = []
            sc.kid_starts[p] = []
        lst.extend((lo, hi, i) for lo, hi in spans)
    for p in {sc.parent[i] for i in ranges_of}:
        sc.kids[p].sort()
        sc.kid_starts[p] = [k[0] for k in sc.kids[p]]


def _skip_plan(data: bytes, pos: int, plan: tuple[int, ...], addr_size: int,
               offset_size: int, version: int) -> int:
    n = len(plan) - 1
    k = 0
    while k < n:
        pos += plan[k]
        form = -plan[k + 1]
        k += 2
        if form == FORM_STRING:
            e = data.index(b"\0", pos)
            pos = e + 1
        elif form == FORM_EXPRLOC or form == FORM_BLOCK:
            ln = data[pos]
            if ln < 0x80:
                pos += 1 + ln
            else:
                ln, pos = uleb(data, pos)
                pos += ln
        elif form == FORM_BLOCK1:
            pos += 1 + data[pos]
        elif form == FORM_BLOCK2 or form == FORM_BLOCK4 or form == FORM_INDIRECT:
            pos = skip_form(data, pos, form, addr_size, offset_size, version)
        else:   # every other variable form is one LEB128
            if data[pos] < 0x80:
                pos += 1
            else:
                _, pos = uleb(data, pos)
    return pos + plan[n]


class NameResolver:
    """Function names of DIEs, following DW_AT_abstract_origin / DW_AT_specification.

    The rule follows binutils: a linkage name anywhere on the chain wins (it demangles
    to the full path); otherwise the first DW_AT_name. Cached per DIE offset.
    """

    def __init__(self, table: UnitTable) -> None:
        self.table = table
        self._cache: dict[int, tuple[Optional[str], Optional[str]]] = {}

    def name(self, die_offset: int) -> Optional[str]:
        """The best name of the function at `die_offset` (mangled if it is a linkage name)."""
        linkage, plain = self._resolve(die_offset, 0)
        return linkage or plain

    def _resolve(self, off: int, depth: int) -> tuple[Optional[str], Optional[str]]:
        got = self._cache.get(off)
        if got is not None:
            return got
        if depth > _MAX_ORIGIN_DEPTH:
            return None, None
        self._cache[off] = (None, None)   # breaks reference cycles in corrupt input
        try:
            attrs = self._attrs(off)
        except (DwarfError, IndexError, struct.error, ValueError):
            return None, None
        linkage = plain = None
        refs = []
        for at, (form, val, unit) in attrs.items():
            if at in (AT_LINKAGE_NAME, AT_MIPS_LINKAGE_NAME):
                linkage = self.table.string(unit, form, val) or None
            elif at == AT_NAME:
                plain = self.table.string(unit, form, val) or None
            elif at in (AT_ABSTRACT_ORIGIN, AT_SPECIFICATION):
                ref = self._ref(unit, form, val)
                if ref is not None:
                    refs.append(ref)
        for ref in refs:
            if linkage:
                break
            sub_link, sub_plain = self._resolve(ref, depth + 1)
            linkage = linkage or sub_link
            plain = plain or sub_plain
        self._cache[off] = (linkage, plain)
        return linkage, plain

    def _ref(self, unit: Unit, form: int, val: object) -> Optional[int]:
        if not isinstance(val, int):
            return None
        if form in REF_FORMS:
            return unit.offset + val
        if form == FORM_REF_ADDR:
            return val
        if form == FORM_GNU_REF_ALT:
            return None    # a reference into a supplementary (dwz) file: not supported
        return None

    def _attrs(self, off: int) -> dict[int, tuple[int, object, Unit]]:
        table = self.table
        unit = table.unit_at(off)
        if unit is None:
            raise DwarfError(f"DIE offset {off:#x} is in no unit")
        table.load(unit)
        data = table.info
        code, pos = uleb(data, off)
        ab = table.abbrevs_of(unit).get(code)
        if ab is None:
            raise DwarfError(f"unknown abbreviation at {off:#x}")
        out = {}
        for at, form, imp in ab.attrs:
            val, pos = read_form(data, pos, form, unit.addr_size, unit.offset_size,
                                 unit.version, imp)
            if at in (AT_NAME, AT_LINKAGE_NAME, AT_MIPS_LINKAGE_NAME, AT_ABSTRACT_ORIGIN,
                      AT_SPECIFICATION):
                out[at] = (form, val, unit)
        if pos > unit.end:
            raise DwarfError(f"DIE at {off:#x} runs past its unit")
        return out
