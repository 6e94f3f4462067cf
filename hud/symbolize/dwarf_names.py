"""Function names of DWARF DIEs, following DW_AT_abstract_origin / DW_AT_specification.

The rule follows binutils: a linkage name anywhere on the chain wins (it demangles to the
full path); otherwise the first DW_AT_name. Only the attributes up to the last one that
matters are decoded, and results are cached per DIE offset.
"""
from __future__ import annotations

import struct
from typing import Optional

from hud.symbolize.dwarf_abbrev import Abbrev, compile_steps
from hud.symbolize.dwarf_forms import (
    AT_ABSTRACT_ORIGIN,
    AT_LINKAGE_NAME,
    AT_MIPS_LINKAGE_NAME,
    AT_NAME,
    AT_SPECIFICATION,
    FORM_GNU_REF_ALT,
    FORM_REF_ADDR,
    FORM_REF_SUP4,
    FORM_REF_SUP8,
    REF_FORMS,
    DwarfError,
    read_form,
    skip_form,
    uleb,
)
from hud.symbolize.dwarf_units import Unit, UnitTable

_MAX_ORIGIN_DEPTH = 16
# DIE offsets at or above ALT are the supplementary file's (offset + ALT): one int key
# space for both files' caches and reference lists.
ALT = 1 << 62
ALT_REF_FORMS = frozenset({FORM_GNU_REF_ALT, FORM_REF_SUP4, FORM_REF_SUP8})
_N, _L, _O, _S = range(4)
_ROLES = {AT_NAME: _N, AT_LINKAGE_NAME: _L, AT_MIPS_LINKAGE_NAME: _L,
          AT_ABSTRACT_ORIGIN: _O, AT_SPECIFICATION: _S}
_ERRORS = (DwarfError, IndexError, struct.error, ValueError, KeyError, TypeError)


class NameResolver:
    """Names of function DIEs of one UnitTable, cached per DIE offset."""

    def __init__(self, table: UnitTable) -> None:
        self.table = table
        self._alt: Optional[NameResolver] = None   # the supplementary file's, when used
        self._alt_tried = False
        # DIE offset -> its best name; offsets whose name is a linkage name are in
        # _linked (two flat containers, not a tuple per DIE).
        self._cache: dict[int, Optional[str]] = {}
        self._linked: set = set()
        self._steps: dict[int, tuple] = {}   # id(abbrev) -> read steps for name attributes
        self._keep: list[Abbrev] = []        # keeps those ids valid

    def name(self, die_offset: int) -> Optional[str]:
        """The best name of the function at `die_offset` (mangled if it is a linkage name)."""
        got = self._cache.get(die_offset, False)
        if got is not False:
            return got
        linkage, plain = self._resolve(die_offset, 0)
        return linkage or plain

    def carries(self, die_offset: int, symbols: tuple[str, ...]) -> bool:
        """Does the function DIE at `die_offset` carry one of the symbol names? (Clones
        like "f.constprop.0" and LLVM's "f.llvm.123" carry f's name plus a suffix.)"""
        name = self.name(die_offset)
        return bool(name) and any(s == name or s.startswith(name + ".") for s in symbols)

    def _resolve(self, off: int, depth: int) -> tuple[Optional[str], Optional[str]]:
        got = self._cache.get(off, False)
        if got is not False:
            return (got, None) if off in self._linked else (None, got)
        if depth > _MAX_ORIGIN_DEPTH:
            return None, None
        if off >= ALT:
            # A DIE of the supplementary (dwz) file: its own resolver and cache.
            alt = self._alt_names()
            if alt is None:
                return None, None
            return alt._resolve(off - ALT, depth + 1)
        self._cache[off] = None   # breaks reference cycles in corrupt input
        try:
            linkage, plain, refs = self._read(off)
        except _ERRORS:
            return None, None
        for ref in refs:
            if linkage:
                break
            sub_link, sub_plain = self._resolve(ref, depth + 1)
            linkage = linkage or sub_link
            plain = plain or sub_plain
        if linkage:
            self._linked.add(off)
            self._cache[off] = linkage
        else:
            self._cache[off] = plain
        return linkage, plain

    def _alt_names(self) -> Optional[NameResolver]:
        if not self._alt_tried:
            self._alt_tried = True
            sections = self.table.sec.alt
            if sections is not None:
                try:
                    self._alt = NameResolver(UnitTable(sections))
                except _ERRORS:
                    self._alt = None
        return self._alt

    def _read(self, off: int) -> tuple[Optional[str], Optional[str], list[int]]:
        table = self.table
        unit = table.unit_at(off)
        if unit is None:
            raise DwarfError(f"DIE offset {off:#x} is in no unit")
        if not unit.loaded:
            table.load(unit)
        if not unit.resident:
            table.ensure(unit)
        data = table.info
        code = data[off]
        if code < 0x80:
            pos = off + 1
        else:
            code, pos = uleb(data, off)
        ab = table.abbrevs_of(unit).get(code)
        if ab is None:
            raise DwarfError(f"unknown abbreviation at {off:#x}")
        steps = self._steps.get(id(ab))
        if steps is None:
            steps = self._compile(ab, unit)
        vals: list = [None, None, None, None]
        forms = [0, 0, 0, 0]
        for st, fields in steps:
            if st is not None:
                got = st.unpack_from(data, pos)
                pos += st.size
                for k, role, form in fields:
                    vals[role] = got[k]
                    forms[role] = form
            else:
                form, role, imp = fields[0]
                if role < 0:
                    pos = skip_form(data, pos, form, unit.addr_size, unit.offset_size,
                                    unit.version)
                else:
                    vals[role], pos = read_form(data, pos, form, unit.addr_size,
                                                unit.offset_size, unit.version, imp)
                    forms[role] = form
        if pos > unit.end:
            raise DwarfError(f"DIE at {off:#x} runs past its unit")
        plain = linkage = None
        if vals[_L] is not None:
            linkage = table.string(unit, forms[_L], vals[_L]) or None
        if vals[_N] is not None and not linkage:
            # A linkage name wins wherever it is on the chain: the name is then unused.
            plain = table.string(unit, forms[_N], vals[_N]) or None
        refs = []
        for role in (_O, _S):
            if vals[role] is not None:
                ref = _ref(unit, forms[role], vals[role])
                if ref is not None:
                    refs.append(ref)
        return linkage, plain, refs

    def _compile(self, ab: Abbrev, unit: Unit) -> tuple:
        last = -1
        for k, (at, _form, _imp) in enumerate(ab.attrs):
            if at in _ROLES:
                last = k
        steps = compile_steps(ab.attrs[:last + 1], _ROLES, unit.addr_size, unit.offset_size,
                              unit.version)
        # Keyed by id(): abbreviations live as long as the unit table that owns them.
        self._steps[id(ab)] = steps
        self._keep.append(ab)
        return steps


def _ref(unit: Unit, form: int, val: object) -> Optional[int]:
    if not isinstance(val, int):
        return None
    if form in REF_FORMS:
        return unit.offset + val
    if form == FORM_REF_ADDR:
        return val
    if form in ALT_REF_FORMS:
        return ALT + val   # in the supplementary file's .debug_info
    return None
