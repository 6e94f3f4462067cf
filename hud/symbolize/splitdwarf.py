"""Split DWARF: a skeleton unit's DIEs in a .dwo file or a .dwp package.

With `-gsplit-dwarf` (GCC, Clang) or `-C split-debuginfo=unpacked|packed` (rustc) the
binary keeps, per unit, a skeleton (code ranges, line table, the bases of .debug_addr
and the range lists) and the name of a .dwo file holding the unit's DIEs; a .dwp
package beside the binary (`<binary>.dwp`) gathers the .dwo files, indexed by the id
both halves carry. The split half is read as a unit of its own whose addresses,
strings and range lists resolve through the skeleton's bases: DWARF 5 (DW_UT_skeleton)
and the GNU extension for DWARF 4 (DW_AT_GNU_dwo_name) alike. Files are read as data
and a split unit is used only when its id is the skeleton's.
"""
from __future__ import annotations

import os
import posixpath
import struct
from typing import Optional

from hud.errors import BadInput
from hud.symbolize.dwarf_forms import DwarfError
from hud.symbolize.dwarf_units import UT_SPLIT_COMPILE, DwarfSections, Unit, UnitTable
from hud.symbolize.dwarf_walk import ROLE_REQUIRED, ROLE_TAGS, ROLES
from hud.symbolize.elf import SHT_NOBITS, ElfFile

# DW_SECT_* of a package's index, version 2 (GNU, DWARF 4) and 5, to section names.
_SECT_V2 = {1: ".debug_info", 3: ".debug_abbrev", 6: ".debug_str_offsets"}
_SECT_V5 = {1: ".debug_info", 3: ".debug_abbrev", 6: ".debug_str_offsets",
            8: ".debug_rnglists"}
_MAX_UNITS = 1 << 22


class SplitUnits:
    """Finds the split halves of one binary's skeleton units (opened files are kept
    until `close`)."""

    def __init__(self, binary_path: str, root: str = "") -> None:
        self.binary_path = binary_path
        self.root = root
        self._files: list[ElfFile] = []
        self._dwp: Optional[tuple[ElfFile, dict[int, dict[str, tuple[int, int]]]]] = None
        self._dwp_tried = False
        self._dwp_sections: dict[str, bytes] = {}   # shared or compressed: read once

    def close(self) -> None:
        for f in self._files:
            f.close()
        self._files.clear()
        self._dwp_sections.clear()

    def split_table(self, skel: Unit, main: DwarfSections) -> tuple[Optional[tuple], str]:
        """((UnitTable, Unit) of the split half of skeleton `skel`, ""), or (None, why)."""
        if skel.dwo_id is None:
            return None, "skeleton unit without a dwo id"
        got = self._from_dwp(skel, main)
        if got is None:
            got = self._from_dwo(skel, main)
        if isinstance(got, str):
            return None, got
        try:
            table = UnitTable(got, ROLES, ROLE_TAGS, ROLE_REQUIRED)
            unit = next((u for u in table.units
                         if u.version < 5 or u.unit_type == UT_SPLIT_COMPILE), None)
            if unit is None:
                return None, "no split unit in its .dwo"
            table.load(unit)
        except (BadInput, DwarfError, IndexError, struct.error, ValueError) as e:
            return None, f"unreadable .dwo unit: {e}"
        if unit.error:
            return None, unit.error
        if unit.dwo_id != skel.dwo_id:
            return None, f"{skel.dwo_name}: its unit is not this skeleton's (dwo id differs)"
        # What the split half inherits from its skeleton (DWARF 5 3.1.3).
        unit.addr_base = skel.addr_base
        unit.base_address = unit.low_pc = skel.low_pc
        unit.comp_dir = unit.comp_dir or skel.comp_dir
        unit.stmt_list = skel.stmt_list
        if unit.version < 5:
            unit.split_ranges_base = skel.rnglists_base   # DW_AT_GNU_ranges_base
        return (table, unit), ""

    # -- a .dwp package beside the binary ------------------------------------------

    def _from_dwp(self, skel: Unit, main: DwarfSections) -> Optional[object]:
        if not self._dwp_tried:
            self._dwp_tried = True
            self._dwp = _open_dwp(self.binary_path + ".dwp", self._files)
        if self._dwp is None:
            return None
        elf, index = self._dwp
        parts = index.get(skel.dwo_id)
        if parts is None:
            return None

        def load(name: str) -> Optional[bytes]:
            if name in _FROM_MAIN:
                return _from_main(main, name)
            span = parts.get(name)
            if span is not None:
                return self._dwp_part(elf, name + ".dwo", span)
            # The strings are the one section all units share.
            return self._dwp_whole(elf, ".debug_str.dwo") if name == ".debug_str" else None
        return DwarfSections(load)

    def _dwp_part(self, elf: ElfFile, name: str, span: tuple[int, int]) -> Optional[bytes]:
        """One unit's contribution to a package section: read on its own (a package
        holds every unit's; reading the section per unit would read it over and over)."""
        sec = elf.section_header(name)
        if sec is None or sec.type == SHT_NOBITS:
            return None
        start, size = span
        if sec.compressed:
            return self._dwp_whole(elf, name)[start:start + size]
        size = max(0, min(size, sec.size - start))
        return elf.read(sec.offset + start, size) if start >= 0 else b""

    def _dwp_whole(self, elf: ElfFile, name: str) -> bytes:
        got = self._dwp_sections.get(name)
        if got is None:
            got = self._dwp_sections[name] = elf.section_bytes(name) or b""
        return got

    # -- a .dwo file, where the skeleton says ---------------------------------------

    def _from_dwo(self, skel: Unit, main: DwarfSections) -> object:
        if not skel.dwo_name:
            return "skeleton unit without a .dwo name"
        for path in dwo_paths(skel.dwo_name, skel.comp_dir, self.binary_path, self.root):
            try:
                elf = ElfFile.open(path)
                break
            except BadInput:
                continue
        else:
            return f"{skel.dwo_name} not found (split DWARF: inlined functions need it)"
        # Read now and closed: a big program has thousands of .dwo files, and each kept
        # open would hold a descriptor.
        try:
            held = {n: elf.section_bytes(n + ".dwo") for n in _FROM_DWO}
        except BadInput as e:
            return f"{skel.dwo_name}: {e.message}"
        finally:
            elf.close()

        def load(name: str) -> Optional[bytes]:
            if name in _FROM_MAIN:
                return _from_main(main, name)
            return held.get(name)
        return DwarfSections(load)


def dwo_paths(name: str, comp_dir: str, binary_path: str, root: str = "") -> list[str]:
    """Where a skeleton's .dwo file may be: as named (relative to the unit's directory,
    in the target's filesystem), then beside the binary."""
    out = []
    where = name if name.startswith("/") else posixpath.join(comp_dir, name)
    if where.startswith("/"):
        out.append(root + where)
    out.append(posixpath.join(posixpath.dirname(binary_path), posixpath.basename(name)))
    return out


# The split half's addresses and DWARF 4 range lists live in the binary; the rest in
# the .dwo file (as "<name>.dwo").
_FROM_MAIN = frozenset({".debug_addr", ".debug_ranges"})
_FROM_DWO = (".debug_info", ".debug_abbrev", ".debug_str", ".debug_str_offsets",
             ".debug_rnglists")


def _from_main(main: DwarfSections, name: str) -> Optional[bytes]:
    # A section the binary reads in pieces must be whole here: the split table reads
    # it directly, without asking for pieces.
    data = main.get(name)
    if main.is_lazy(name):
        main.ensure(name, 0, len(data))
    return data or None


def _open_dwp(path: str, keep: list) -> Optional[tuple[ElfFile, dict]]:
    if not os.path.isfile(path):
        return None
    try:
        elf = ElfFile.open(path)
    except BadInput:
        return None
    keep.append(elf)
    try:
        got = elf.section(".debug_cu_index")
    except BadInput:
        return None
    if got is None:
        return None
    try:
        return elf, _cu_index(got[1])
    except (IndexError, struct.error, ValueError):
        return None


def _cu_index(data: bytes) -> dict[int, dict[str, tuple[int, int]]]:
    """dwo id -> {section: (offset, size)} of a package's .debug_cu_index (DWARF 5
    7.3.5.3; version 2 is the GNU format DWARF 4 packages use)."""
    version = struct.unpack_from("<I", data, 0)[0]
    if version == 2:
        names = _SECT_V2
    elif version & 0xFFFF == 5:
        names = _SECT_V5
    else:
        raise ValueError(f"package index version {version}")
    ncols, nunits, nslots = struct.unpack_from("<III", data, 4)
    if nunits > _MAX_UNITS or nslots > 2 * _MAX_UNITS or ncols > 16:
        raise ValueError("package index too large")
    pos = 16
    sigs = struct.unpack_from(f"<{nslots}Q", data, pos)
    pos += 8 * nslots
    rows = struct.unpack_from(f"<{nslots}I", data, pos)
    pos += 4 * nslots
    cols = struct.unpack_from(f"<{ncols}I", data, pos)
    pos += 4 * ncols
    offsets = struct.unpack_from(f"<{nunits * ncols}I", data, pos)
    pos += 4 * nunits * ncols
    sizes = struct.unpack_from(f"<{nunits * ncols}I", data, pos)
    out: dict[int, dict[str, tuple[int, int]]] = {}
    for sig, row in zip(sigs, rows):
        if row == 0 or row > nunits:
            continue
        base = (row - 1) * ncols
        out[sig] = {names[c]: (offsets[base + k], sizes[base + k])
                    for k, c in enumerate(cols) if c in names}
    return out


def survey(elf: ElfFile, binary_path: str, root: str = "") -> tuple[int, int, str]:
    """(skeleton units, those whose .dwo file is nowhere to be found, the package's
    path or "") of a binary: what `hud doctor` says of its split DWARF. Reads unit
    roots only; files are looked for, not opened."""
    try:
        table = UnitTable(DwarfSections(elf.section_bytes))
    except (BadInput, DwarfError, IndexError, struct.error, ValueError):
        return 0, 0, ""
    dwp = binary_path + ".dwp"
    dwp = dwp if os.path.isfile(dwp) else ""
    skeletons = missing = 0
    for unit in table.units:
        try:
            table.load(unit)
        except BadInput:
            continue
        if not unit.dwo_name:
            continue
        skeletons += 1
        if not dwp and not any(os.path.isfile(p) for p in
                               dwo_paths(unit.dwo_name, unit.comp_dir, binary_path, root)):
            missing += 1
    return skeletons, missing, dwp
