"""DWARF units: section access, unit headers, abbreviation tables, CU attributes, address
ranges (.debug_ranges / .debug_rnglists), and the address -> unit index.

Only what locating code needs is decoded eagerly (unit headers and .debug_aranges); the
root DIE of a unit is read when the unit is first used.
"""
from __future__ import annotations

import bisect
import struct
from typing import Callable, Optional

from hud.symbolize.dwarf_abbrev import Abbrev, parse_abbrevs
from hud.symbolize.dwarf_forms import (
    ADDRX_FORMS,
    AT_ADDR_BASE,
    AT_COMP_DIR,
    AT_DWO_NAME,
    AT_GNU_ADDR_BASE,
    AT_GNU_DWO_ID,
    AT_GNU_DWO_NAME,
    AT_GNU_RANGES_BASE,
    AT_HIGH_PC,
    AT_LOW_PC,
    AT_NAME,
    AT_RANGES,
    AT_RNGLISTS_BASE,
    AT_STMT_LIST,
    AT_STR_OFFSETS_BASE,
    CONSTANT_FORMS,
    FORM_GNU_STRP_ALT,
    FORM_LINE_STRP,
    FORM_RNGLISTX,
    FORM_STRING,
    FORM_STRP,
    FORM_STRP_SUP,
    STRX_FORMS,
    DwarfError,
    initial_length,
    read_form,
    str_at,
    uleb,
)
from hud.symbolize.lazysection import CHUNK, LazySection

# DWARF 5 unit types.
UT_COMPILE = 1
UT_TYPE = 2
UT_PARTIAL = 3
UT_SKELETON = 4
UT_SPLIT_COMPILE = 5
UT_SPLIT_TYPE = 6

SECTIONS = (".debug_info", ".debug_abbrev", ".debug_str", ".debug_line_str", ".debug_line",
            ".debug_ranges", ".debug_rnglists", ".debug_addr", ".debug_str_offsets",
            ".debug_aranges")

_MAX_RANGE_ENTRIES = 1 << 20
# The longest range list entry: a kind byte and two 64-bit addresses or two LEB128s.
_MAX_RLE = 1 + 2 * 10


# The longest unit header: 64-bit initial length, version, type, sizes, abbrev offset,
# a split/type unit's id and type offset.
_MAX_HEADER = 12 + 2 + 2 + 8 + 8 + 8


class Unit:
    """One unit of .debug_info: header fields, then root-DIE attributes once `load`ed."""

    __slots__ = ("abbrev_offset", "abbrevs", "addr_base", "addr_size", "base_address",
                 "comp_dir", "die_offset", "dwo_id", "dwo_name", "end", "error", "index",
                 "loaded", "low_pc", "name", "offset", "offset_size", "ranges_attr",
                 "resident", "rnglists_base", "root_end", "split_ranges_base", "stmt_list",
                 "str_offsets_base", "unit_type", "version")

    def __init__(self, index: int, offset: int, end: int, version: int, unit_type: int,
                 addr_size: int, offset_size: int, abbrev_offset: int,
                 die_offset: int) -> None:
        self.index = index
        self.offset = offset
        self.end = end
        self.version = version
        self.unit_type = unit_type
        self.addr_size = addr_size
        self.offset_size = offset_size
        self.abbrev_offset = abbrev_offset
        self.die_offset = die_offset
        self.abbrevs: dict[int, Abbrev] = {}
        self.root_end = die_offset   # where the root DIE's attributes end, once loaded
        self.loaded = False
        self.resident = False   # all its bytes readable (see UnitTable.ensure)
        self.error = ""
        self.name = ""
        self.comp_dir = ""
        self.low_pc = 0
        self.base_address = 0
        self.stmt_list = -1
        self.str_offsets_base = 8 if version >= 5 else 0
        self.addr_base = 8 if version >= 5 else 0
        self.rnglists_base = 12 if version >= 5 else 0
        self.ranges_attr: Optional[tuple[int, int]] = None   # (form, value) of DW_AT_ranges
        # Split DWARF: a skeleton's .dwo file name and the id both halves carry; in the
        # split half of a DWARF 4 (GNU) pair, DW_AT_ranges offsets count from this base.
        self.dwo_name = ""
        self.dwo_id: Optional[int] = None
        self.split_ranges_base = 0


class DwarfSections:
    """The debug sections of one file, read (and decompressed) on first use.

    With `lazy`, a section it gives a LazySection for (a big, uncompressed one) is read
    piece by piece: its readers `ensure` a range before reading it (units, line
    programs, strings); `get` gives the buffer all the same."""

    def __init__(self, loader: Callable[[str], Optional[bytes]],
                 lazy: Optional[Callable[[str], Optional[LazySection]]] = None) -> None:
        self._loader = loader
        self._lazy_loader = lazy
        self._cache: dict[str, object] = {}
        self._lazy: dict[str, LazySection] = {}
        # The supplementary (dwz) file's sections, when the DWARF refers to one.
        self.alt: Optional[DwarfSections] = None

    def get(self, name: str) -> bytes:
        data = self._cache.get(name)
        if data is None:
            got = self._lazy_loader(name) if self._lazy_loader is not None else None
            if got is not None:
                self._lazy[name] = got
                data = got.data
            else:
                data = self._loader(name) or b""
            self._cache[name] = data
        return data   # type: ignore[return-value]   # bytes, or a LazySection's mmap

    def ensure(self, name: str, start: int, end: int) -> None:
        """Make [start, end) of section `name` readable (nothing to do unless lazy)."""
        lazy = self._lazy.get(name)
        if lazy is not None:
            lazy.ensure(start, end)

    def peek(self, name: str, start: int, end: int) -> bytes:
        """[start, end) of section `name` without making it resident (see LazySection)."""
        lazy = self._lazy.get(name)
        if lazy is not None:
            return lazy.peek(start, end)
        return self.get(name)[start:end]

    def is_lazy(self, name: str) -> bool:
        self.get(name)
        return name in self._lazy

    def string(self, name: str, offset: int) -> str:
        """The NUL-terminated string at `offset` of string section `name`."""
        data = self._cache.get(name)
        if data is None:
            data = self.get(name)
        lazy = self._lazy.get(name)
        if lazy is not None and 0 <= offset < lazy.size:
            lazy.cstring_end(offset)   # reads the chunks the string spans
        return str_at(data, offset)

    def size(self) -> int:
        """Bytes held: whole sections, and what was read of lazy ones."""
        return sum(self._lazy[n].resident if n in self._lazy else len(d)
                   for n, d in self._cache.items())

    def close(self) -> None:
        """Release lazy sections' mappings (idempotent)."""
        for lazy in self._lazy.values():
            lazy.close()
        if self.alt is not None:
            self.alt.close()


class UnitTable:
    """All units of .debug_info, their abbreviations and CU attributes, and an address
    index built from .debug_aranges, completed from CU ranges on a miss."""

    def __init__(self, sections: DwarfSections, roles: Optional[dict[int, int]] = None,
                 role_tags: frozenset = frozenset(),
                 role_required: frozenset = frozenset()) -> None:
        self.sec = sections
        self.info = sections.get(".debug_info")
        self.lazy = sections.is_lazy(".debug_info")
        # Whether the range list sections are read in pieces, known once first used
        # (a range list is read per inline instance: no method calls to ask again).
        self._lazy_ranges: Optional[bool] = None
        self._lazy_rnglists: Optional[bool] = None
        self.units: list[Unit] = self._parse_headers()
        self._unit_offsets = [u.offset for u in self.units]
        self._abbrev_cache: dict[tuple, dict[int, Abbrev]] = {}
        self._root_abbrevs: dict[tuple[int, int], Optional[Abbrev]] = {}
        self._abbrev_specs: dict[tuple, tuple] = {}   # interned by parse_abbrevs
        # Which attributes of which tags the DIE scan reads (set by its user).
        self.roles: dict[int, int] = roles or {}
        self.role_tags = role_tags
        self.role_required = role_required
        self._starts: list[int] = []
        self._index: list[tuple[int, int, int]] = []
        self._covered: set = set()
        self._last: tuple = (0, 0, None)   # (lo, hi, unit) of the last lookup
        self._completed = False
        self._range_counts: Optional[dict[int, int]] = None
        self._build_aranges_index()

    # -- headers ---------------------------------------------------------------------

    def _parse_headers(self) -> list[Unit]:
        data = self.info
        units: list[Unit] = []
        start = 0
        n = len(data)
        lazy = self.lazy
        while start + 11 <= n:
            # Positions in `hdr` are relative to `base`: a lazy section is not read for
            # its headers, each is fetched on its own (a few dozen bytes a unit).
            if lazy:
                hdr, base = self.sec.peek(".debug_info", start, start + _MAX_HEADER), start
            else:
                hdr, base = data, 0
            pos = start - base
            try:
                length, pos, offset_size = initial_length(hdr, pos)
            except DwarfError:
                break
            end = base + pos + length
            if length < 7 or end > n:
                break  # a corrupt length: units after it cannot be found reliably
            try:
                version = struct.unpack_from("<H", hdr, pos)[0]
                pos += 2
                if version >= 5:
                    unit_type = hdr[pos]
                    addr_size = hdr[pos + 1]
                    pos += 2
                    abbrev_offset = int.from_bytes(hdr[pos:pos + offset_size], "little")
                    pos += offset_size
                    dwo_id = None
                    if unit_type in (UT_SKELETON, UT_SPLIT_COMPILE):
                        dwo_id = int.from_bytes(hdr[pos:pos + 8], "little")
                        pos += 8
                    elif unit_type in (UT_TYPE, UT_SPLIT_TYPE):
                        pos += 8 + offset_size
                elif version >= 2:
                    dwo_id = None
                    unit_type = UT_COMPILE
                    abbrev_offset = int.from_bytes(hdr[pos:pos + offset_size], "little")
                    pos += offset_size
                    addr_size = hdr[pos]
                    pos += 1
                else:
                    start = end
                    continue
            except (IndexError, struct.error):
                break
            die_offset = base + pos
            if version <= 5 and addr_size in (4, 8) and die_offset <= end:
                units.append(Unit(len(units), start, end, version, unit_type, addr_size,
                                  offset_size, abbrev_offset, die_offset))
                units[-1].dwo_id = dwo_id
            start = end
        return units

    def ensure(self, unit: Unit) -> None:
        """Make all of the unit's bytes readable (raises DwarfError if the file cannot
        give them). Whatever walks a unit's DIEs calls this first."""
        if not unit.resident:
            if self.lazy:
                self.sec.ensure(".debug_info", unit.offset, unit.end)
            unit.resident = True

    def unit_at(self, offset: int) -> Optional[Unit]:
        """The unit whose bytes hold .debug_info `offset`."""
        i = bisect.bisect_right(self._unit_offsets, offset) - 1
        if i >= 0 and offset < self.units[i].end:
            return self.units[i]
        return None

    def abbrevs_of(self, unit: Unit) -> dict[int, Abbrev]:
        """The unit's abbreviation table, compiled for its address and offset sizes
        (with read steps for the tags in `self.roles`)."""
        if not unit.abbrevs:
            key = (unit.abbrev_offset, unit.addr_size, unit.offset_size, unit.version)
            table = self._abbrev_cache.get(key)
            if table is None:
                table = parse_abbrevs(self.sec.get(".debug_abbrev"), unit.abbrev_offset,
                                      shared=self._abbrev_specs)
                for ab in table.values():
                    # Read steps only for DIEs that can have code (an abstract subprogram
                    # declaration has no pc: skipping it is all the scan needs).
                    wanted = (ab.tag in self.role_tags
                              and any(at in self.role_required for at, _f, _i in ab.attrs))
                    ab.compile(unit.addr_size, unit.offset_size, unit.version,
                               self.roles if wanted else None)
                self._abbrev_cache[key] = table
            unit.abbrevs = table
        return unit.abbrevs

    # -- root DIE ----------------------------------------------------------------------

    def _root_abbrev(self, unit: Unit, code: int) -> Optional[Abbrev]:
        """The abbreviation of a unit's root DIE, without parsing (and compiling) the
        whole table: finding units for addresses outside .debug_aranges reads the root
        of every unit, and most are never walked."""
        if unit.abbrevs:
            return unit.abbrevs.get(code)
        key = (unit.abbrev_offset, code)
        got = self._root_abbrevs.get(key)
        if got is None:
            got = parse_abbrevs(self.sec.get(".debug_abbrev"), unit.abbrev_offset,
                                code, self._abbrev_specs).get(code)
            self._root_abbrevs[key] = got
        return got

    def load(self, unit: Unit) -> Unit:
        """Read the unit's root DIE (name, comp_dir, pc range, bases, line table offset)."""
        if unit.loaded:
            return unit
        unit.loaded = True
        try:
            self._load_root(unit)
        except (DwarfError, IndexError, struct.error, ValueError) as e:
            unit.error = f"bad unit at {unit.offset:#x}: {e}"
        return unit

    def _load_root(self, unit: Unit) -> None:
        if self.lazy and not unit.resident:
            # Finding units for addresses outside .debug_aranges reads every root:
            # a window, not the unit (roots are a few dozen bytes).
            self.sec.ensure(".debug_info", unit.die_offset,
                            min(unit.end, unit.die_offset + CHUNK))
        data = self.info
        code, pos = uleb(data, unit.die_offset)
        ab = self._root_abbrev(unit, code)
        if ab is None:
            raise DwarfError("unknown abbreviation code in unit root")
        raw = {}
        for at, form, imp in ab.attrs:
            val, pos = read_form(data, pos, form, unit.addr_size, unit.offset_size,
                                 unit.version, imp)
            if pos > unit.end:
                raise DwarfError("unit root DIE runs past the unit")
            raw[at] = (form, val)
        unit.root_end = pos
        # Bases first: other attributes may be indices relative to them.
        for at, field in ((AT_STR_OFFSETS_BASE, "str_offsets_base"),
                          (AT_ADDR_BASE, "addr_base"), (AT_GNU_ADDR_BASE, "addr_base"),
                          (AT_RNGLISTS_BASE, "rnglists_base"),
                          (AT_GNU_RANGES_BASE, "rnglists_base")):
            if at in raw and isinstance(raw[at][1], int):
                setattr(unit, field, raw[at][1])
        if AT_NAME in raw:
            unit.name = self.string(unit, *raw[AT_NAME])
        if AT_COMP_DIR in raw:
            unit.comp_dir = self.string(unit, *raw[AT_COMP_DIR])
        for at in (AT_DWO_NAME, AT_GNU_DWO_NAME):
            if at in raw:
                unit.dwo_name = self.string(unit, *raw[at])
        if AT_GNU_DWO_ID in raw and isinstance(raw[AT_GNU_DWO_ID][1], int):
            unit.dwo_id = raw[AT_GNU_DWO_ID][1]
        if AT_STMT_LIST in raw and isinstance(raw[AT_STMT_LIST][1], int):
            unit.stmt_list = raw[AT_STMT_LIST][1]
        if AT_LOW_PC in raw:
            unit.low_pc = self.address(unit, *raw[AT_LOW_PC])
            unit.base_address = unit.low_pc
        if AT_RANGES in raw:
            unit.ranges_attr = raw[AT_RANGES]
        elif AT_HIGH_PC in raw and AT_LOW_PC in raw:
            form, val = raw[AT_HIGH_PC]
            high = unit.low_pc + val if form in CONSTANT_FORMS else self.address(unit, form,
                                                                                   val)
            unit.ranges_attr = (-1, high)   # a marker: a single [low_pc, high) range

    # -- values ------------------------------------------------------------------------

    def string(self, unit: Unit, form: int, val: object) -> str:
        """A string attribute value, whatever its form."""
        if form == FORM_STRING:
            return val.decode("utf-8", "replace") if isinstance(val, bytes) else ""
        if form == FORM_STRP:
            return self.sec.string(".debug_str", val)
        if form == FORM_LINE_STRP:
            return self.sec.string(".debug_line_str", val)
        if form == FORM_GNU_STRP_ALT or form == FORM_STRP_SUP:
            # In the supplementary file: a bad one costs the string, not the unit.
            alt = self.sec.alt
            try:
                return alt.string(".debug_str", val) if alt is not None else ""
            except (DwarfError, IndexError, ValueError, TypeError):
                return ""
        if form in STRX_FORMS:
            offs = self.sec.get(".debug_str_offsets")
            at = unit.str_offsets_base + val * unit.offset_size
            if at + unit.offset_size > len(offs):
                raise DwarfError("string index out of range")
            self.sec.ensure(".debug_str_offsets", at, at + unit.offset_size)
            return self.sec.string(".debug_str",
                                   int.from_bytes(offs[at:at + unit.offset_size], "little"))
        return ""

    def address(self, unit: Unit, form: int, val: object) -> int:
        """An address attribute value (DW_FORM_addr or an index into .debug_addr)."""
        if form in ADDRX_FORMS:
            addrs = self.sec.get(".debug_addr")
            at = unit.addr_base + val * unit.addr_size
            if at + unit.addr_size > len(addrs):
                raise DwarfError("address index out of range")
            self.sec.ensure(".debug_addr", at, at + unit.addr_size)
            return int.from_bytes(addrs[at:at + unit.addr_size], "little")
        if not isinstance(val, int):
            raise DwarfError("address attribute with a non-address form")
        return val

    def ranges(self, unit: Unit, form: int, val: object) -> list[tuple[int, int]]:
        """[lo, hi) ranges of a DW_AT_ranges value of `unit`."""
        if not isinstance(val, int):
            raise DwarfError("DW_AT_ranges with a non-offset form")
        if unit.version >= 5:
            sec = self.sec.get(".debug_rnglists")
            if form == FORM_RNGLISTX:
                at = unit.rnglists_base + val * unit.offset_size
                if at + unit.offset_size > len(sec):
                    raise DwarfError("range list index out of range")
                self.sec.ensure(".debug_rnglists", at, at + unit.offset_size)
                val = unit.rnglists_base + int.from_bytes(sec[at:at + unit.offset_size],
                                                          "little")
            return self._rnglist(unit, sec, val)
        return self._ranges_v4(unit, self.sec.get(".debug_ranges"),
                               val + unit.split_ranges_base)

    def _ranges_v4(self, unit: Unit, sec: bytes, pos: int) -> list[tuple[int, int]]:
        size = unit.addr_size
        top = (1 << (8 * size)) - 1
        base = unit.base_address
        out = []
        fmt = "<QQ" if size == 8 else "<II"
        lazy = self._lazy_ranges
        if lazy is None:
            lazy = self._lazy_ranges = self.sec.is_lazy(".debug_ranges")
        ready = -1   # read from the file up to here (a list may run for thousands)
        for _ in range(_MAX_RANGE_ENTRIES):
            if pos < 0 or pos + 2 * size > len(sec):
                raise DwarfError("range list past the end of .debug_ranges")
            if lazy and pos + 2 * size > ready:
                ready = min(len(sec), pos + CHUNK)
                self.sec.ensure(".debug_ranges", pos, ready)
            lo, hi = struct.unpack_from(fmt, sec, pos)
            pos += 2 * size
            if lo == 0 and hi == 0:
                return out
            if lo == top:
                base = hi
                continue
            if hi > lo:
                out.append((base + lo, base + hi))
        raise DwarfError("range list without an end")

    def _rnglist(self, unit: Unit, sec: bytes, pos: int) -> list[tuple[int, int]]:
        size = unit.addr_size
        base = unit.base_address
        out = []

        def addr_at(p: int) -> tuple[int, int]:
            if p + size > len(sec):
                raise DwarfError("range list past the end of .debug_rnglists")
            return int.from_bytes(sec[p:p + size], "little"), p + size

        def addrx(i: int) -> int:
            return self.address(unit, ADDRX_FORMS_ANY, i)

        lazy = self._lazy_rnglists
        if lazy is None:
            lazy = self._lazy_rnglists = self.sec.is_lazy(".debug_rnglists")
        ready = -1
        for _ in range(_MAX_RANGE_ENTRIES):
            if not 0 <= pos < len(sec):
                raise DwarfError("range list past the end of .debug_rnglists")
            if lazy and pos + _MAX_RLE > ready:
                # Entries vary in size; none legitimately exceeds _MAX_RLE bytes.
                ready = min(len(sec), pos + CHUNK)
                self.sec.ensure(".debug_rnglists", pos, ready)
            kind = sec[pos]
            pos += 1
            if kind == 0:        # DW_RLE_end_of_list
                return out
            if kind == 1:        # base_addressx
                i, pos = uleb(sec, pos)
                base = addrx(i)
            elif kind == 2:      # startx_endx
                a, pos = uleb(sec, pos)
                b, pos = uleb(sec, pos)
                out.append((addrx(a), addrx(b)))
            elif kind == 3:      # startx_length
                a, pos = uleb(sec, pos)
                n, pos = uleb(sec, pos)
                lo = addrx(a)
                out.append((lo, lo + n))
            elif kind == 4:      # offset_pair
                a, pos = uleb(sec, pos)
                b, pos = uleb(sec, pos)
                out.append((base + a, base + b))
            elif kind == 5:      # base_address
                base, pos = addr_at(pos)
            elif kind == 6:      # start_end
                lo, pos = addr_at(pos)
                hi, pos = addr_at(pos)
                out.append((lo, hi))
            elif kind == 7:      # start_length
                lo, pos = addr_at(pos)
                n, pos = uleb(sec, pos)
                out.append((lo, lo + n))
            else:
                raise DwarfError(f"unknown range list entry {kind}")
        raise DwarfError("range list without an end")

    def unit_ranges(self, unit: Unit) -> list[tuple[int, int]]:
        """The code ranges of a unit, from its root DIE."""
        self.load(unit)
        if unit.error or unit.ranges_attr is None:
            return []
        form, val = unit.ranges_attr
        if form == -1:
            return [(unit.low_pc, val)] if val > unit.low_pc else []
        try:
            return self.ranges(unit, form, val)
        except (DwarfError, IndexError, struct.error) as e:
            unit.error = f"bad ranges of unit at {unit.offset:#x}: {e}"
            return []

    # -- address index -----------------------------------------------------------------

    def _build_aranges_index(self) -> None:
        data = self.sec.get(".debug_aranges")
        by_offset = {u.offset: u.index for u in self.units}
        entries = []
        pos = 0
        n = len(data)
        try:
            while pos + 16 <= n:
                start = pos
                length, pos, offset_size = initial_length(data, pos)
                end = pos + length
                if length < 8 or end > n:
                    break
                pos += 2  # version
                info_off = int.from_bytes(data[pos:pos + offset_size], "little")
                pos += offset_size
                addr_size = data[pos]
                seg_size = data[pos + 1]
                pos += 2
                unit = by_offset.get(info_off)
                if addr_size not in (4, 8) or seg_size != 0 or unit is None:
                    pos = end
                    continue
                tup = 2 * addr_size
                pos = start + ((pos - start + tup - 1) // tup) * tup
                fmt = "<QQ" if addr_size == 8 else "<II"
                while pos + tup <= end:
                    lo, ln = struct.unpack_from(fmt, data, pos)
                    pos += tup
                    if lo == 0 and ln == 0:
                        break
                    if ln and lo:
                        entries.append((lo, lo + ln, unit))
                self._covered.add(unit)
                pos = end
        except (IndexError, struct.error, DwarfError):
            pass
        self._set_index(entries)

    def range_count(self, unit: Unit) -> int:
        """How many code ranges of the address index belong to `unit` (a unit built
        without function sections has a few, one per section it put code in)."""
        if self._range_counts is None:
            counts: dict[int, int] = {}
            for _lo, _hi, idx in self._index:
                counts[idx] = counts.get(idx, 0) + 1
            self._range_counts = counts
        return self._range_counts.get(unit.index, 0)

    def _set_index(self, entries: list[tuple[int, int, int]]) -> None:
        self._last = (0, 0, None)
        self._range_counts = None
        entries.sort()
        self._index = entries
        self._starts = [e[0] for e in entries]

    def _complete_index(self) -> None:
        """Add the code ranges of units .debug_aranges did not cover (read their roots)."""
        self._completed = True
        extra = []
        for u in self.units:
            if u.index in self._covered or u.unit_type not in (UT_COMPILE, UT_PARTIAL):
                continue
            for lo, hi in self.unit_ranges(u):
                # Address 0 is where linkers put discarded (gc'ed, folded) code.
                if lo and hi > lo:
                    extra.append((lo, hi, u.index))
        if extra:
            self._set_index(self._index + extra)

    def find_unit(self, addr: int) -> Optional[Unit]:
        """The unit whose code holds `addr`, or None."""
        u = self._find(addr)
        if u is None and not self._completed:
            self._complete_index()
            u = self._find(addr)
        return u

    def _find(self, addr: int) -> Optional[Unit]:
        last = self._last   # the range of the previous hit: batches come sorted
        if last[0] <= addr < last[1]:
            return last[2]
        i = bisect.bisect_right(self._starts, addr) - 1
        if i < 0:
            return None
        lo, hi, idx = self._index[i]
        if addr < hi:
            if i + 1 >= len(self._starts) or self._starts[i + 1] >= hi:
                self._last = (lo, hi, self.units[idx])   # no other range starts inside
            return self.units[idx]
        # Ranges may overlap (duplicated or nested entries): look back a little.
        for j in range(i - 1, i - 16 if i >= 16 else -1, -1):
            lo, hi, idx = self._index[j]
            if lo <= addr < hi:
                return self.units[idx]
        return None


# `address` only needs to know the form is an index; any addrx form does.
ADDRX_FORMS_ANY = next(iter(ADDRX_FORMS))
