"""DWARF lookups of one file: address -> inline chain with file:line, parsed per unit.

Nothing is decoded up front but unit headers and .debug_aranges; a unit's line program
and its scope tree are decoded the first time an address falls in it, then kept. A unit
that turns out to be malformed is remembered with its error, and its addresses resolve
to whatever else is known (symbol table) with that error as the reason.
"""
from __future__ import annotations

import struct
from bisect import bisect_right
from collections.abc import Sequence
from typing import Callable, Optional

from hud.symbolize import dwarf_lines
from hud.symbolize.closure_names import qualify as qualify_closure
from hud.symbolize.dwarf_forms import DwarfError, initial_length
from hud.symbolize.dwarf_lines import LineTable
from hud.symbolize.dwarf_names import NameResolver
from hud.symbolize.dwarf_scopes import UnitScopes, scan
from hud.symbolize.dwarf_units import UT_SKELETON, DwarfSections, Unit, UnitTable
from hud.symbolize.dwarf_walk import ROLE_REQUIRED, ROLE_TAGS, ROLES
from hud.symbolize.splitdwarf import SplitUnits
from hud.symbolize.symtab import SymbolTable

# From this many addresses in one unit, indexing it whole beats finding each function by
# its symbol (a byte search over the unit per function, ~1/30 of a full pass each).
_BATCH_FULL = 48
# At most this many code ranges: a unit built without function sections.
_FEW_RANGES = 4


def _reaches_most(scopes: UnitScopes, addrs: list[int]) -> bool:
    """Do `addrs` fall in at least 30% of the unit's functions? Then decoding every line
    sequence (one per function, with function sections) in one pass costs less than a
    skim for where they start plus the sequences needed (decoding costs ~1.4 skims)."""
    funcs = scopes.func_starts
    if not funcs:
        return False
    touched = {bisect_right(funcs, a) for a in addrs}
    return 10 * len(touched) >= 3 * len(funcs)


class DwarfInfo:
    """The DWARF of one file; `locate` answers per address, decoding units lazily."""

    def __init__(self, sections: DwarfSections,
                 rename: Optional[Callable[[str], str]] = None,
                 split: Optional[SplitUnits] = None) -> None:
        self.sections = sections
        self.rename = rename
        self.split = split
        self.units = UnitTable(sections, ROLES, ROLE_TAGS, ROLE_REQUIRED)
        self.names = NameResolver(self.units)
        # Skeleton units (split DWARF): the names of their .dwo DIEs, per unit index.
        self._unit_names: dict[int, NameResolver] = {}
        self._lines: dict[int, Optional[LineTable]] = {}
        self._scopes: dict[int, Optional[UnitScopes]] = {}
        self._errors: dict[int, str] = {}
        self._state: dict[int, tuple] = {}    # unit index -> (line table, scopes)
        # (unit index << 32 | scope) -> (its name, the levels of its callers)
        self._levels: dict[int, tuple[Optional[str], tuple]] = {}

    @property
    def has_units(self) -> bool:
        return bool(self.units.units)

    def locate(self, addr: int, hint: Optional[tuple] = None) -> tuple[tuple, str]:
        """The inline chain at ELF virtual address `addr`, innermost first.

        Each level is (function, file, line, column), a 0 line or column given as None
        and the function name passed through `rename` (as given when None). Returns
        ((), reason) when no unit covers the address. Otherwise the chain ends with the
        containing function; names may be None (then the symbol table decides) and
        file/line None when the line table has no row for the address. `hint` is the
        (start, end or None, names) of the symbol holding `addr` when known: it lets the
        lookup skip indexing the whole unit.
        """
        name, file, line, col, callers, reason = self.lookup(addr, hint)
        if callers is None:
            return (), reason
        return ((name, file, line, col), *callers), reason

    def lookup(self, addr: int, hint: Optional[tuple] = None) -> tuple:
        """`locate` in parts: (function, file, line, column) of the innermost level,
        the levels of its callers (a tuple shared by every address with the same
        innermost scope; None when no unit covers `addr`) and the reason."""
        unit = self.units.find_unit(addr)
        if unit is None:
            return None, None, None, None, None, "no debug info for this address"
        state = self._state.get(unit.index)
        if state is None:
            state = self._prepare(unit)
        if unit.error:
            return None, None, None, None, None, unit.error
        lines, scopes = state
        reason = self._errors.get(unit.index, "")
        row = None
        if lines is not None:
            try:
                row = lines.lookup(addr, hint[0] if hint else None)
            except DwarfError as e:
                reason = f"bad line table: {e}"
        i = -1
        if scopes is not None:
            try:
                i = scopes.innermost(addr, hint,
                                     self._unit_names.get(unit.index, self.names).carries)
            except DwarfError as e:
                reason = f"bad inline tree: {e}"
        if row is not None:
            file = lines.path(row[0], unit.comp_dir)
            line, col = row[1] or None, row[2] or None
        else:
            # No row: binutils names the unit itself (its DW_AT_name, as written).
            file, line, col = unit.name or None, None, None
        if i < 0:
            return None, file, line, col, (), reason
        got = self._levels.get((unit.index << 32) | i)
        if got is None:
            try:
                got = self._chain_levels(unit, lines, scopes, i)
            except DwarfError as e:
                return None, file, line, col, (), f"bad inline tree: {e}"
        return got[0], file, line, col, got[1], reason

    def _chain_levels(self, unit: Unit, lines: Optional[LineTable], scopes: UnitScopes,
                      i: int) -> tuple[Optional[str], tuple]:
        """(name of scope i, levels of its callers up to the function): what every
        address whose innermost scope is i shares. Built once per scope, from its
        parent's: a scope's callers are its parent and the parent's callers."""
        cache = self._levels
        base = unit.index << 32
        parents = scopes.parent
        # Up to the first scope already known (or the function).
        todo = []
        k = i
        while True:
            todo.append(k)
            parent = parents[k]
            if parent < 0 or (base | parent) in cache:
                break
            k = parent
        name = self._unit_names.get(unit.index, self.names).name
        rename = self.rename
        comp_dir = unit.comp_dir
        die_of = scopes.die_of
        call_file, call_line, call_col = scopes.call_file, scopes.call_line, scopes.call_col
        got: tuple = ()
        for k in reversed(todo):
            named = name(die_of[k])
            if named and rename is not None:
                named = rename(named)
            parent = parents[k]
            if parent < 0:
                got = (named or None, ())
            else:
                # The caller's position is this instance's call site.
                pname, pouter = cache[base | parent]
                if named and named[0] == "{" and pname:
                    named = qualify_closure(named, pname)   # line-tables-only DWARF
                file = lines.path(call_file[k], comp_dir) if lines is not None else None
                got = (named or None, ((pname, file, call_line[k] or None,
                                        call_col[k] or None), *pouter))
            cache[base | k] = got
        return got

    def untouched_share(self, addrs: Sequence[int]) -> float:
        """Of `addrs` (a sample of ~256 is looked at), the share in units nothing has
        been read from yet: how much of a batch is decoding rather than lookups."""
        step = max(1, len(addrs) // 256)
        seen = untouched = 0
        state = self._state
        for a in addrs[::step]:
            unit = self.units.find_unit(a)
            if unit is not None:
                seen += 1
                untouched += unit.index not in state
        return untouched / seen if seen else 0.0

    def prepare(self, addrs: Sequence[int], symtab: Optional[SymbolTable] = None) -> None:
        """Get ready for a batch. With the symbol table, each unit's functions and their
        line sequences are found by searching for their start address, on from where
        the last one was (UnitScopes.find_functions, LineTable.find_sequences): only
        what the batch needs is read. Without it, units that many of `addrs` fall in
        are indexed whole, their line programs skimmed or decoded whole."""
        by_unit: dict[int, list[int]] = {}
        for a in sorted(addrs):
            unit = self.units.find_unit(a)
            if unit is not None:
                got = by_unit.get(unit.index)
                if got is None:
                    by_unit[unit.index] = [a]
                else:
                    got.append(a)
        for index, mine in by_unit.items():
            if symtab is None and len(mine) < _BATCH_FULL:
                continue
            unit = self.units.units[index]
            state = self._state.get(index) or self._prepare(unit)
            lines, scopes = state
            try:
                if symtab is not None:
                    spans = {symtab.span_of(a) for a in mine}
                    spans.discard(None)
                    hints = sorted(spans, key=lambda h: h[0])
                    if scopes is not None:
                        scopes.find_functions(
                            hints, self._unit_names.get(index, self.names).carries)
                    # Code without function sections (few ranges) has a sequence per
                    # section, not per function: searching for functions' starts fails,
                    # and lookups would skim the program, then decode most of it.
                    if lines is not None and self.units.range_count(unit) <= _FEW_RANGES:
                        lines.decode_all()
                    elif lines is not None:
                        lines.find_sequences([h[0] for h in hints])
                else:
                    most = False
                    if scopes is not None:
                        scopes.index_all()
                        most = _reaches_most(scopes, mine)
                    if lines is not None:
                        if most:
                            lines.decode_all()
                        else:
                            lines.index_all()
            except DwarfError as e:
                self._errors[index] = str(e)

    def _prepare(self, unit: Unit) -> tuple:
        self.units.load(unit)
        state = (None, None)
        if not unit.error:
            try:
                self.units.ensure(unit)
            except DwarfError as e:
                unit.error = f"unreadable unit at {unit.offset:#x}: {e}"
        if not unit.error:
            state = (self._line_table(unit), self._unit_scopes(unit))
        self._state[unit.index] = state
        return state

    def _line_table(self, unit: Unit) -> Optional[LineTable]:
        if unit.index in self._lines:
            return self._lines[unit.index]
        table = None
        if unit.stmt_list >= 0:
            try:
                self._ensure_program(unit.stmt_list)
                table = dwarf_lines.decode(
                    self.sections.get(".debug_line"), unit.stmt_list, unit.addr_size,
                    unit.comp_dir, lambda form, val: self.units.string(unit, form, val))
            except DwarfError as e:
                self._errors[unit.index] = f"bad line table: {e}"
        self._lines[unit.index] = table
        return table

    def _ensure_program(self, offset: int) -> None:
        """Make the line program at `offset` of .debug_line readable (when lazy)."""
        if self.sections.is_lazy(".debug_line"):
            length, after, _size = initial_length(
                self.sections.peek(".debug_line", offset, offset + 12), 0)
            self.sections.ensure(".debug_line", offset, offset + after + length)

    def _unit_scopes(self, unit: Unit) -> Optional[UnitScopes]:
        if unit.index in self._scopes:
            return self._scopes[unit.index]
        scopes = None
        table, target = self.units, unit
        if unit.dwo_name or unit.unit_type == UT_SKELETON:
            # Split DWARF: the skeleton has the code ranges and lines, its .dwo the DIEs.
            got, why = (self.split.split_table(unit, self.sections) if self.split is not None
                        else (None, "split DWARF not followed"))
            if got is None:
                self._errors[unit.index] = why
                self._scopes[unit.index] = None
                return None
            table, target = got
            self._unit_names[unit.index] = NameResolver(table)
        try:
            scopes = scan(table, target)
        except (DwarfError, IndexError, struct.error, ValueError, KeyError, TypeError) as e:
            self._errors[unit.index] = f"bad DIEs: {e}"
        self._scopes[unit.index] = scopes
        return scopes

    def stats(self) -> dict:
        """Counts for benchmarks: units, decoded units, rows, scopes, section bytes."""
        return {"units": len(self.units.units),
                "line_tables": sum(1 for t in self._lines.values() if t is not None),
                "rows": sum(len(t) for t in self._lines.values() if t is not None),
                "scope_units": sum(1 for s in self._scopes.values() if s is not None),
                "scopes": sum(len(s) for s in self._scopes.values() if s is not None),
                "section_bytes": self.sections.size()}
