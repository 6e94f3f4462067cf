"""Inline trees of DWARF functions: recorded in one walk, decoded one level at a time.

The walk over a function's children notes only where each DW_TAG_inlined_subroutine is
and which scope encloses it. A scope's children are decoded (code ranges, call site,
the DIE that names them) the first time an address falls in that scope: a lookup
descends one level at a time, so instances no address reaches are never decoded (with
20,000 addresses over every function of a Rust binary, 42% of them; with 1,000, 74%).
"""
from __future__ import annotations

import struct
from typing import Optional

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
    K_SUBPROGRAM,
    R_ORIGIN,
    V_BLOCK,
    skip_var,
)

DEAD = -2      # inside a nested function: its inlines are not ours
DATA_ERRORS = (IndexError, struct.error, KeyError, ValueError, TypeError)


def read_scope(table: UnitTable, unit: Unit, ent: tuple, data: bytes,
               pos: int) -> tuple[int, list[tuple[int, int]], int, int, int, Optional[int]]:
    """Decode a subprogram / inlined_subroutine DIE's attributes at `pos`: (position after
    them, code ranges, call_file, call_line, call_column, abstract origin or None).

    The origin is given only when the DIE names nothing itself and refers within its
    unit (then the origin's name is the DIE's name)."""
    getter = ent[6]
    origin = None
    if getter is not None:
        st, pick, low_form, high_form, ranges_form, _origin_form = getter
        low, high, rng, cfile, cline, ccol, origin = pick((*st.unpack_from(data, pos),
                                                           None, 0))
        pos += st.size
        if rng is None and low_form == FORM_ADDR and high_form in CONSTANT_FORMS:
            # The common shape (LLVM and GCC): low_pc an address, high_pc a length.
            spans = ([(low, low + high)] if low and high is not None and high > 0
                     else [])
        else:
            spans = pc_spans(table, unit, low, high, rng, low_form, high_form, ranges_form)
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
        spans = pc_spans(table, unit, low, high, rng, forms[0], forms[1], forms[2])
    if not (type(cfile) is int and type(cline) is int and type(ccol) is int):
        cfile = cline = ccol = 0
    return pos, spans, cfile, cline, ccol, origin


def pc_spans(table: UnitTable, unit: Unit, low: object, high: object, rng: object,
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


def die_start(data: bytes, pos: int) -> int:
    """The DIE offset of the attributes at `pos` (walk back over its code's LEB128)."""
    p = pos - 1
    while p > 0 and data[p - 1] >= 0x80:
        p -= 1
    return p


def walk_inlines(sc, func: int, pos: int, end: int, nested: Optional[list] = None) -> int:
    """Record the inline instances under function `func`, whose children start at `pos`,
    up to the null entry that closes them (or `end`); return the position after it.

    Each instance becomes a scope (its parent, attributes position and abbreviation
    code), linked into its parent's children; nothing else of it is read. With `nested`, functions
    nested in this one are indexed on the way (as (lo, hi, index) entries), as a pass
    over the whole unit must."""
    data = sc.table.info
    walk, fast, varat, inl, unit = sc.walk, sc.fast, sc.varat, sc.inl, sc.unit
    first, parent_add, where_add = sc.first, sc.parent.append, sc.where.append
    code_add, first_add, sib_add = sc.code.append, sc.first.append, sc.sib.append
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
                return pos      # the function's own children end here
            depth -= 1
            if saved and saved[-1][0] == depth:
                cur = saved.pop()[1]
            continue
        f = fast[code]
        if f >= 0:
            if f & 6:         # one variable attribute (see dwarf_walk.walk_table)
                q = pos + varat[code]
                if f & 4:
                    n = data[q]
                    if n < 0x80:
                        pos += n
                    else:
                        n, after_n = uleb(data, q)
                        pos += n + after_n - q - 1
                else:
                    while data[q] >= 0x80:
                        q += 1
                        pos += 1
            pos += f >> 3
            if f & 1:
                depth += 1
            continue
        f = inl[code]
        if f >= 0 and cur >= 0:
            # An inline instance of fixed size: a new scope, pushed onto its parent's
            # list of children (kept as links).
            mine = len(first)
            parent_add(cur)
            where_add(pos)
            code_add(code)
            first_add(-1)
            sib_add(first[cur])
            first[cur] = mine
            pos += f >> 1
            if f & 1:
                saved.append((depth, cur))
                cur = mine
                depth += 1
            continue
        kind, children, skip, vkind, before, after, _getter, ab = walk[code]
        mine = cur
        if kind == K_INLINED and cur >= 0:
            # A new scope, pushed onto its parent's list of children (kept as links).
            mine = len(first)
            parent_add(cur)
            where_add(pos)
            code_add(code)
            first_add(-1)
            sib_add(first[cur])
            first[cur] = mine
        elif kind == K_SUBPROGRAM:
            mine = DEAD   # a nested function is indexed on its own
            if nested is not None:
                die_off = pos - 1 if code < 0x80 else die_start(data, pos)
                after_die, spans, _f, _l, _c, _o = read_scope(sc.table, unit, walk[code],
                                                              data, pos)
                if spans:
                    owner = sc.function(die_off, spans, after_die if children else -1)
                    for lo, hi in spans:
                        nested.append((lo, hi, owner))
                pos = after_die
                if children:
                    saved.append((depth, cur))
                    cur = mine
                    depth += 1
                continue
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
            if mine != cur:
                saved.append((depth, cur))
                cur = mine
            depth += 1
    if pos > end:
        raise DwarfError("a DIE runs past its function's children")
    return pos


def kid_ranges(sc, parent: int) -> list[int]:
    """Decode the inline children of scope `parent`; their code ranges sorted, flat:
    [lo, hi, scope, lo, hi, scope, ...] (no object per range). A child without code is
    transparent: its own children count as `parent`'s (as they always did)."""
    table, unit, walk = sc.table, sc.unit, sc.walk
    where, codes, first, sib, parents = sc.where, sc.code, sc.first, sc.sib, sc.parent
    die_of, call_file, call_line, call_col = sc.die_of, sc.call_file, sc.call_line, sc.call_col
    data = table.info
    base = unit.offset
    found: list[tuple[int, int, int]] = []
    todo = [first[parent]]
    while todo:
        k = todo.pop()
        while k >= 0:
            pos = where[k]
            code = codes[k]
            die_off = pos - 1 if code < 0x80 else die_start(data, pos)
            getter = walk[code][6]
            try:
                if getter is not None:
                    # All fixed-size (what LLVM and GCC emit): one unpack, read here
                    # rather than through read_scope; low_pc an address and high_pc a
                    # length is the commonest shape, DW_AT_ranges the next.
                    st, pick, low_form, high_form, ranges_form, _of = getter
                    low, high, rng, cfile, cline, ccol, origin = pick(
                        (*st.unpack_from(data, pos), None, 0))
                    if rng is None and low_form == FORM_ADDR and high_form in CONSTANT_FORMS:
                        spans = [(low, low + high)] if low and high > 0 else []
                    else:
                        spans = pc_spans(table, unit, low, high, rng, low_form, high_form,
                                         ranges_form)
                else:
                    _end, spans, cfile, cline, ccol, origin = read_scope(table, unit,
                                                                         walk[code], data,
                                                                         pos)
            except DATA_ERRORS as e:
                raise DwarfError(f"bad DIE at {die_off:#x}: {e}") from None
            # Nothing on this DIE names the function: its origin does.
            die_of[k] = base + origin if origin is not None else die_off
            call_file[k] = cfile
            call_line[k] = cline
            call_col[k] = ccol
            if spans:
                for lo, hi in spans:
                    found.append((lo, hi, k))
            elif first[k] >= 0:
                g = first[k]
                todo.append(g)
                while g >= 0:
                    parents[g] = parent
                    g = sib[g]
            k = sib[k]
    if len(found) == 1:
        flat = list(found[0])     # one child with one range: most scopes
    else:
        found.sort()
        flat = []
        for entry in found:
            flat.extend(entry)
    sc.ranges_of[parent] = flat
    if len(found) > LINEAR_MAX:
        sc.starts_of[parent] = [f[0] for f in found]
    return flat


# Children lists longer than this are searched by bisect; shorter ones (nearly all) by
# a backward scan, which needs no second list.
LINEAR_MAX = 12
