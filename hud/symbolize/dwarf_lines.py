"""DWARF 2-5 line programs: a fast decoder into compact per-unit row arrays.

pyelftools builds a Python object per row and per state (ENV-FACTS: 340k rows in 4.3 s);
this decoder keeps the state machine in locals, precomputes special opcodes, and stores
rows in arrays, so a unit's table costs a few bytes per row and lookups are bisects.
"""
from __future__ import annotations

import bisect
import posixpath
import struct
from array import array
from typing import Callable, Optional

from hud.symbolize.dwarf_forms import (
    FORM_BLOCK,
    FORM_DATA1,
    FORM_DATA2,
    FORM_DATA4,
    FORM_DATA8,
    FORM_DATA16,
    FORM_LINE_STRP,
    FORM_STRING,
    FORM_STRP,
    FORM_UDATA,
    STRX_FORMS,
    DwarfError,
    cstring,
    read_form,
    sleb,
    uleb,
)

LNCT_PATH = 1
LNCT_DIRECTORY_INDEX = 2

_ALLOWED_ENTRY_FORMS = frozenset({FORM_STRING, FORM_LINE_STRP, FORM_STRP, FORM_UDATA,
                                  FORM_DATA1, FORM_DATA2, FORM_DATA4, FORM_DATA8,
                                  FORM_DATA16, FORM_BLOCK}) | STRX_FORMS
_MAX_ENTRIES = 1 << 20
# Linkers put discarded functions at 0 (or at -1/-2 with newer lld): not real code.
_TOMBSTONE_MIN = 0xFFFFFFFF00000000


class LineTable:
    """The decoded line program of one unit.

    Rows live in parallel arrays in program order; `seq_*` describe sequences sorted by
    start address, each a contiguous slice [first, last) of the rows plus an end address.
    """

    __slots__ = (
        "_paths",
        "addrs",
        "cols",
        "dirs",
        "file_idx",
        "file_names",
        "lines",
        "seq_end",
        "seq_first",
        "seq_last",
        "seq_start",
        "version",
    )

    def __init__(self) -> None:
        self.version = 0
        self.dirs: list[str] = []
        self.file_names: list[tuple[str, int]] = []   # (name, dir index), DWARF numbering
        self.addrs = array("Q")
        self.lines = array("q")
        self.file_idx = array("Q")
        self.cols = array("Q")
        self.seq_start: list[int] = []
        self.seq_end: list[int] = []
        self.seq_first: list[int] = []
        self.seq_last: list[int] = []
        self._paths: dict[int, Optional[str]] = {}

    def __len__(self) -> int:
        return len(self.addrs)

    def lookup(self, addr: int) -> Optional[tuple[int, int, int]]:
        """(file index, line, column) of the row covering `addr`, or None.

        The row is the last one at or below `addr` in the sequence holding it: when
        several rows share an address the last wins, as in binutils.
        """
        i = bisect.bisect_right(self.seq_start, addr) - 1
        # Sequences may overlap (e.g. two copies of one function); try a few.
        for j in range(i, max(i - 8, -1), -1):
            if self.seq_start[j] <= addr < self.seq_end[j]:
                first, last = self.seq_first[j], self.seq_last[j]
                k = bisect.bisect_right(self.addrs, addr, first, last) - 1
                if k >= first:
                    return self.file_idx[k], self.lines[k], self.cols[k]
        return None

    def path(self, index: int, comp_dir: str) -> Optional[str]:
        """Full path of file `index` (DWARF numbering of this table's version)."""
        got = self._paths.get(index, False)
        if got is not False:
            return got
        path = None
        if 0 <= index < len(self.file_names):
            name, d = self.file_names[index]
            if name:
                path = name
                if not name.startswith("/"):
                    directory = self.dirs[d] if 0 <= d < len(self.dirs) else ""
                    if directory and not directory.startswith("/") and comp_dir:
                        directory = posixpath.join(comp_dir, directory)
                    elif not directory:
                        directory = comp_dir
                    if directory:
                        path = directory.rstrip("/") + "/" + name
        self._paths[index] = path
        return path


def decode(data: bytes, offset: int, addr_size: int, comp_dir: str,
           strings: Callable[[int, object], str]) -> LineTable:
    """Decode the line program at `offset` of .debug_line.

    `strings(form, value)` resolves string forms (strp, line_strp, strx) of DWARF 5
    headers. Raises DwarfError on malformed input.
    """
    try:
        return _decode(data, offset, addr_size, comp_dir, strings)
    except (IndexError, struct.error, OverflowError) as e:
        raise DwarfError(f"bad line program at {offset:#x}: {e}") from None


def _decode(data: bytes, offset: int, addr_size: int, comp_dir: str,
            strings: Callable[[int, object], str]) -> LineTable:
    if not 0 <= offset < len(data):
        raise DwarfError(f"line program offset {offset:#x} out of range")
    pos = offset
    length = struct.unpack_from("<I", data, pos)[0]
    pos += 4
    offset_size = 4
    if length == 0xFFFFFFFF:
        length = struct.unpack_from("<Q", data, pos)[0]
        pos += 8
        offset_size = 8
    end = pos + length
    if end > len(data):
        raise DwarfError("line program longer than .debug_line")
    version = struct.unpack_from("<H", data, pos)[0]
    pos += 2
    if not 2 <= version <= 5:
        raise DwarfError(f"unsupported line table version {version}")
    if version >= 5:
        addr_size = data[pos]
        pos += 2  # address_size, segment_selector_size
    header_length = int.from_bytes(data[pos:pos + offset_size], "little")
    pos += offset_size
    program = pos + header_length
    if program > end:
        raise DwarfError("line program header longer than the program")
    min_inst = data[pos]
    pos += 1
    if version >= 4:
        pos += 1  # maximum_operations_per_instruction: VLIW only
    default_is_stmt = data[pos]
    line_base = struct.unpack_from("<b", data, pos + 1)[0]
    line_range = data[pos + 2]
    opcode_base = data[pos + 3]
    pos += 4
    if line_range == 0 or opcode_base == 0:
        raise DwarfError("line program with line_range or opcode_base 0")
    std_lengths = list(data[pos:pos + opcode_base - 1])
    pos += opcode_base - 1
    del default_is_stmt  # rows are kept whatever is_stmt says, as binutils does

    table = LineTable()
    table.version = version
    if version >= 5:
        pos = _v5_entries(data, pos, program, table, addr_size, offset_size, strings, True)
        pos = _v5_entries(data, pos, program, table, addr_size, offset_size, strings, False)
    else:
        table.dirs.append(comp_dir)
        while True:
            d, pos = cstring(data, pos)
            if not d:
                break
            table.dirs.append(d.decode("utf-8", "replace"))
            if len(table.dirs) > _MAX_ENTRIES:
                raise DwarfError("too many directories")
        table.file_names.append(("", 0))   # DWARF < 5 numbers files from 1
        while True:
            name, pos = cstring(data, pos)
            if not name:
                break
            d, pos = uleb(data, pos)
            _, pos = uleb(data, pos)
            _, pos = uleb(data, pos)
            table.file_names.append((name.decode("utf-8", "replace"), d))
            if len(table.file_names) > _MAX_ENTRIES:
                raise DwarfError("too many files")
    _run(data, program, end, table, min_inst, line_base, line_range, opcode_base,
         std_lengths, addr_size)
    return table


def _v5_entries(data: bytes, pos: int, limit: int, table: LineTable, addr_size: int,
                offset_size: int, strings: Callable[[int, object], str], dirs: bool) -> int:
    nfmt = data[pos]
    pos += 1
    fmts = []
    for _ in range(nfmt):
        ct, pos = uleb(data, pos)
        form, pos = uleb(data, pos)
        if form not in _ALLOWED_ENTRY_FORMS:
            raise DwarfError(f"form {form:#x} in a line table entry")
        fmts.append((ct, form))
    count, pos = uleb(data, pos)
    if count > _MAX_ENTRIES or count > limit - pos:
        raise DwarfError("too many line table entries")
    for _ in range(count):
        path = ""
        d = 0
        for ct, form in fmts:
            val, pos = read_form(data, pos, form, addr_size, offset_size, 5)
            if ct == LNCT_PATH:
                path = (val.decode("utf-8", "replace") if isinstance(val, bytes)
                        else strings(form, val))
            elif ct == LNCT_DIRECTORY_INDEX and isinstance(val, int):
                d = val
        if pos > limit:
            raise DwarfError("line table entries run past the header")
        if dirs:
            table.dirs.append(path)
        else:
            table.file_names.append((path, d))
    return pos


def _run(data: bytes, pos: int, end: int, table: LineTable, min_inst: int, line_base: int,
         line_range: int, opcode_base: int, std_lengths: list, addr_size: int) -> None:
    # Special opcodes, precomputed: address and line advance per opcode.
    adv_addr = [0] * 256
    adv_line = [0] * 256
    for op in range(opcode_base, 256):
        adj = op - opcode_base
        adv_addr[op] = (adj // line_range) * min_inst
        adv_line[op] = line_base + adj % line_range
    const_add = adv_addr[255]

    addrs: list = []
    lines: list = []
    files: list = []
    cols: list = []
    a_add, l_add, f_add, c_add = addrs.append, lines.append, files.append, cols.append
    seqs: list = []   # (start, end, first row, last row)
    address = 0
    file = 1
    line = 1
    col = 0
    seq_first = 0
    while pos < end:
        op = data[pos]
        pos += 1
        if op >= opcode_base:
            address += adv_addr[op]
            line += adv_line[op]
            a_add(address)
            l_add(line)
            f_add(file)
            c_add(col)
        elif op == 0:
            n, pos = uleb(data, pos)
            if n == 0:
                continue
            sub = data[pos]
            nxt = pos + n
            if nxt > end:
                raise DwarfError("extended opcode past the end of the program")
            if sub == 1:     # DW_LNE_end_sequence
                if len(addrs) > seq_first:
                    seqs.append((addrs[seq_first], address, seq_first, len(addrs)))
                seq_first = len(addrs)
                address = 0
                file = 1
                line = 1
                col = 0
            elif sub == 2:   # DW_LNE_set_address
                address = int.from_bytes(data[pos + 1:nxt], "little")
            elif sub == 3:   # DW_LNE_define_file (DWARF < 5)
                name, p = cstring(data, pos + 1)
                d, _ = uleb(data, p)
                table.file_names.append((name.decode("utf-8", "replace"), d))
            pos = nxt
        elif op == 1:        # DW_LNS_copy
            a_add(address)
            l_add(line)
            f_add(file)
            c_add(col)
        elif op == 2:        # DW_LNS_advance_pc
            n, pos = uleb(data, pos)
            address += n * min_inst
        elif op == 3:        # DW_LNS_advance_line
            n, pos = sleb(data, pos)
            line += n
        elif op == 4:        # DW_LNS_set_file
            file, pos = uleb(data, pos)
        elif op == 5:        # DW_LNS_set_column
            col, pos = uleb(data, pos)
        elif op == 8:        # DW_LNS_const_add_pc
            address += const_add
        elif op == 9:        # DW_LNS_fixed_advance_pc
            address += data[pos] | (data[pos + 1] << 8)
            pos += 2
        elif op in (6, 7, 10, 11):  # negate_stmt, basic_block, prologue_end, epilogue_begin
            pass
        else:                # set_isa and unknown standard opcodes: skip their operands
            for _ in range(std_lengths[op - 1] if op - 1 < len(std_lengths) else 0):
                _, pos = uleb(data, pos)
    # Rows after the last end_sequence belong to no sequence: binutils drops them too.
    keep = [s for s in seqs if 0 < s[0] < _TOMBSTONE_MIN and s[1] > s[0]]
    keep.sort()
    table.seq_start = [s[0] for s in keep]
    table.seq_end = [s[1] for s in keep]
    table.seq_first = [s[2] for s in keep]
    table.seq_last = [s[3] for s in keep]
    table.addrs = array("Q", addrs)
    table.lines = array("q", lines)
    table.file_idx = array("Q", files)
    table.cols = array("Q", cols)
