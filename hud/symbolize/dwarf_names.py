"""Function names of DWARF DIEs, following DW_AT_abstract_origin / DW_AT_specification.

The rule follows binutils: a linkage name anywhere on the chain wins (it demangles to the
full path); otherwise the first DW_AT_name. Only the attributes up to the last one that
matters are decoded, and results are cached per DIE offset.
"""
from __future__ import annotations

import struct
from typing import Optional

from hud.symbolize.dwarf_forms import (
    AT_ABSTRACT_ORIGIN,
    AT_LINKAGE_NAME,
    AT_MIPS_LINKAGE_NAME,
    AT_NAME,
    AT_SPECIFICATION,
    FORM_REF_ADDR,
    REF_FORMS,
    DwarfError,
    read_form,
    skip_form,
    uleb,
)
from hud.symbolize.dwarf_units import Abbrev, Unit, UnitTable

_MAX_ORIGIN_DEPTH = 16
_NAME_ATTRS = frozenset({AT_NAME, AT_LINKAGE_NAME, AT_MIPS_LINKAGE_NAME, AT_ABSTRACT_ORIGIN,
                         AT_SPECIFICATION})
_ERRORS = (DwarfError, IndexError, struct.error, ValueError, KeyError, TypeError)


class NameResolver:
    """Names of function DIEs of one UnitTable, cached per DIE offset."""

    def __init__(self, table: UnitTable) -> None:
        self.table = table
        self._cache: dict[int, tuple[Optional[str], Optional[str]]] = {}
        self._last: dict[int, int] = {}   # id(abbrev) -> index of its last name attribute

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
            linkage, plain, refs = self._read(off)
        except _ERRORS:
            return None, None
        for ref in refs:
            if linkage:
                break
            sub_link, sub_plain = self._resolve(ref, depth + 1)
            linkage = linkage or sub_link
            plain = plain or sub_plain
        self._cache[off] = (linkage, plain)
        return linkage, plain

    def _read(self, off: int) -> tuple[Optional[str], Optional[str], list[int]]:
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
        last = self._last_needed(ab)
        linkage = plain = None
        refs: list[int] = []
        asz, osz, ver = unit.addr_size, unit.offset_size, unit.version
        for k in range(last + 1):
            at, form, imp = ab.attrs[k]
            if at not in _NAME_ATTRS:
                pos = skip_form(data, pos, form, asz, osz, ver)
                continue
            val, pos = read_form(data, pos, form, asz, osz, ver, imp)
            if at == AT_LINKAGE_NAME or at == AT_MIPS_LINKAGE_NAME:
                linkage = table.string(unit, form, val) or None
            elif at == AT_NAME:
                plain = table.string(unit, form, val) or None
            else:
                ref = _ref(unit, form, val)
                if ref is not None:
                    refs.append(ref)
        if pos > unit.end:
            raise DwarfError(f"DIE at {off:#x} runs past its unit")
        return linkage, plain, refs

    def _last_needed(self, ab: Abbrev) -> int:
        key = id(ab)
        last = self._last.get(key)
        if last is None:
            last = -1
            for k, (at, _form, _imp) in enumerate(ab.attrs):
                if at in _NAME_ATTRS:
                    last = k
            self._last[key] = last
        return last


def _ref(unit: Unit, form: int, val: object) -> Optional[int]:
    if not isinstance(val, int):
        return None
    if form in REF_FORMS:
        return unit.offset + val
    if form == FORM_REF_ADDR:
        return val
    return None   # DW_FORM_GNU_ref_alt and friends point into other files: unsupported
