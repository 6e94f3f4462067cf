"""Walk tables for DWARF DIE walks: per abbreviation code, how to skip a DIE and how to
read the few attributes of the scope DIEs (subprograms, inline instances) that matter.

Kept apart from the walks themselves (dwarf_scopes) so the tables can be reasoned about
and tested alone: `fast[code]` makes most DIEs cost one lookup and one addition.
"""
from __future__ import annotations

from operator import itemgetter
from typing import Optional

from hud.symbolize.dwarf_abbrev import Abbrev
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
    FORM_ADDR,
    FORM_BLOCK,
    FORM_BLOCK1,
    FORM_BLOCK2,
    FORM_BLOCK4,
    FORM_EXPRLOC,
    FORM_INDIRECT,
    FORM_STRING,
    LEB_FORMS,
    REF_FORMS,
    TAG_INLINED_SUBROUTINE,
    TAG_SUBPROGRAM,
    DwarfError,
    fixed_size,
    skip_form,
    string_end,
    uleb,
)
from hud.symbolize.dwarf_units import Unit, UnitTable

# What the scan reads of subprogram / inlined_subroutine DIEs: attribute -> slot.
R_LOW, R_HIGH, R_RANGES, R_CFILE, R_CLINE, R_CCOL, R_ORIGIN = range(7)
ROLES = {AT_LOW_PC: R_LOW, AT_HIGH_PC: R_HIGH, AT_RANGES: R_RANGES, AT_CALL_FILE: R_CFILE,
         AT_CALL_LINE: R_CLINE, AT_CALL_COLUMN: R_CCOL, AT_ABSTRACT_ORIGIN: R_ORIGIN}
_NAMED = frozenset({AT_NAME, AT_LINKAGE_NAME, AT_MIPS_LINKAGE_NAME, AT_SPECIFICATION})
ROLE_TAGS = frozenset({TAG_SUBPROGRAM, TAG_INLINED_SUBROUTINE})
ROLE_REQUIRED = frozenset({AT_LOW_PC, AT_RANGES})   # a scope DIE without these has no code

_MAX_CODE = 1 << 16

# Walk-table kinds.
K_OTHER, K_SUBPROGRAM, K_INLINED = 0, 1, 2
# How a DIE with one variable-size attribute is skipped.
V_LEB, V_BLOCK, V_STRING, V_PLAN = 1, 2, 3, 9



def walk_table(table: UnitTable, unit: Unit) -> tuple[list, dict[int, list[int]], list,
                                                     list, list]:
    """Per abbreviation code: (kind, children, skip, vkind, before, after, getter, abbrev);
    and, for subprograms whose DW_AT_low_pc is an address at a fixed offset k into their
    attributes, {k: [codes]} (how to recognise a function's DIE from its low_pc bytes);
    and the fast tables `fast`, `varat` and `inl` (below).

    `skip` is the fixed size of the DIE's attributes or -1; then `vkind` says how to skip
    its one variable attribute (between `before` and `after` fixed bytes), or V_PLAN.
    `getter` reads a scope DIE whose attributes are all fixed-size in one unpack.

    The walks handle most DIEs with one lookup in `fast`: for a DIE they do not read,
    fast[code] = size << 3 | var << 1 | has_children, -1 for the rest. var 0: the size is
    fixed; 1: one LEB128 attribute at varat[code] (size counts it as one byte: a member's
    DW_AT_alignment, ~1/5 of a Rust unit's DIEs); 2: one block (exprloc) whose one-byte
    length is counted, its bytes not. inl[code] = size << 1 | has_children for inline
    instances of fixed size (what LLVM and GCC emit), -1 otherwise.
    """
    abbrevs = table.abbrevs_of(unit)
    top = max(abbrevs, default=0)
    if top >= _MAX_CODE:
        raise DwarfError(f"abbreviation code {top} is implausibly large")
    walk: list = [None] * (top + 1)
    fast: list = [-1] * (top + 1)
    varat: list = [0] * (top + 1)
    inl: list = [-1] * (top + 1)
    lowpc: dict[int, list[int]] = {}
    for code, ab in abbrevs.items():
        kind = K_OTHER
        if ab.steps:    # compiled only for subprograms / inlines that can have code
            kind = K_SUBPROGRAM if ab.tag == TAG_SUBPROGRAM else K_INLINED
        vkind, before, after = 0, 0, 0
        if ab.skip < 0:
            vkind = V_PLAN
            if len(ab.plan) == 3:
                before, form, after = ab.plan[0], -ab.plan[1], ab.plan[2]
                if form in LEB_FORMS:
                    vkind = V_LEB
                elif form in (FORM_EXPRLOC, FORM_BLOCK):
                    vkind = V_BLOCK
                elif form == FORM_STRING:
                    vkind = V_STRING
        getter = _fast_getter(ab) if kind != K_OTHER else None
        walk[code] = (kind, ab.children, ab.skip, vkind, before, after, getter, ab)
        children = 1 if ab.children else 0
        if kind == K_OTHER:
            if ab.skip >= 0:
                fast[code] = (ab.skip << 3) | children
            elif vkind in (V_LEB, V_BLOCK):
                fast[code] = ((before + 1 + after) << 3) | (2 if vkind == V_LEB else 4) \
                    | children
                varat[code] = before
        elif kind == K_INLINED and ab.skip >= 0:
            inl[code] = (ab.skip << 1) | children
        if kind == K_SUBPROGRAM:
            k = _lowpc_offset(ab, unit)
            if k >= 0:
                lowpc.setdefault(k, []).append(code)
    return walk, lowpc, fast, varat, inl


def _lowpc_offset(ab: Abbrev, unit: Unit) -> int:
    k = 0
    for at, form, _imp in ab.attrs:
        if at == AT_LOW_PC:
            return k if form == FORM_ADDR else -1
        size = fixed_size(form, unit.addr_size, unit.offset_size, unit.version)
        if size < 0:
            return -1
        k += size
    return -1


def _fast_getter(ab: Abbrev) -> Optional[tuple]:
    """(struct, itemgetter, low form, high form, ranges form, origin form) when one
    unpack reads all. The origin is read only when the DIE names nothing itself, so the
    name can be looked up on the origin directly."""
    if len(ab.steps) != 1 or ab.steps[0][0] is None:
        return None
    st, fields = ab.steps[0]
    n = len(st.unpack(bytes(st.size)))
    # absent: None for pcs, ranges and origin; 0 for the call site
    idx = [n, n, n, n + 1, n + 1, n + 1, n]
    forms = [0, 0, 0, 0]
    named = any(at in _NAMED for at, _f, _i in ab.attrs)
    for k, role, form in fields:
        if role == R_ORIGIN:
            if named or form not in REF_FORMS:
                continue
            forms[3] = form
        elif role < 3:
            forms[role] = form
        idx[role] = k
    return st, itemgetter(*idx), forms[R_LOW], forms[R_HIGH], forms[R_RANGES], forms[3]


def skip_var(data: bytes, pos: int, vkind: int, before: int, after: int, ab: Abbrev,
              unit: Unit) -> int:
    if vkind == V_BLOCK:
        pos += before
        n = data[pos]
        if n < 0x80:
            return pos + 1 + n + after
        n, pos = uleb(data, pos)
        return pos + n + after
    if vkind == V_LEB:
        pos += before
        while data[pos] >= 0x80:
            pos += 1
        return pos + 1 + after
    if vkind == V_STRING:
        return string_end(data, pos + before) + 1 + after
    return _skip_plan(data, pos, ab.plan, unit)


def _skip_plan(data: bytes, pos: int, plan: tuple[int, ...], unit: Unit) -> int:
    n = len(plan) - 1
    k = 0
    while k < n:
        pos += plan[k]
        form = -plan[k + 1]
        k += 2
        if form == FORM_STRING:
            pos = string_end(data, pos) + 1
        elif form == FORM_EXPRLOC or form == FORM_BLOCK:
            ln, pos = uleb(data, pos)
            pos += ln
        elif form == FORM_BLOCK1:
            pos += 1 + data[pos]
        elif form == FORM_BLOCK2 or form == FORM_BLOCK4 or form == FORM_INDIRECT:
            pos = skip_form(data, pos, form, unit.addr_size, unit.offset_size, unit.version)
        else:   # every other variable form is one LEB128
            while data[pos] >= 0x80:
                pos += 1
            pos += 1
    return pos + plan[n]
