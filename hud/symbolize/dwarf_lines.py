"""DWARF 2-5 line tables: headers, file names, and rows decoded lazily per sequence.

pyelftools builds a Python object per row and per state (ENV-FACTS: 340k rows in 4.3 s);
this decoder skims a unit's program once for its sequences (with LLVM and GCC's function
sections that is one per function) and decodes a sequence's rows (dwarf_lineops) only
when an address falls in it; a batch that needs most sequences decodes them all in one
pass instead.
"""
from __future__ import annotations

import bisect
import posixpath
import struct
from collections.abc import Sequence
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
    initial_length,
    read_form,
    uleb,
)
from hud.symbolize.dwarf_lineops import (
    Unterminated,
    leading_address,
    live,
    only_state_ops,
    run_sequence,
    skim_sequence,
)

LNCT_PATH = 1
LNCT_DIRECTORY_INDEX = 2

_ALLOWED_ENTRY_FORMS = frozenset({FORM_STRING, FORM_LINE_STRP, FORM_STRP, FORM_UDATA,
                                  FORM_DATA1, FORM_DATA2, FORM_DATA4, FORM_DATA8,
                                  FORM_DATA16, FORM_BLOCK}) | STRX_FORMS
_MAX_ENTRIES = 1 << 20


class LineTable:
    """The line program of one unit, decoded one sequence at a time.

    `decode` reads only the header. A lookup with a hint (the start of the function
    symbol holding the address) first looks for the DW_LNE_set_address that opens that
    function's sequence (LLVM and GCC's function sections give each function one) and
    decodes just it; otherwise the program is skimmed once for every sequence's start and
    byte offset, and a sequence's rows are decoded the first time an address falls in it.
    """

    __slots__ = ("_by_offset", "_by_start", "_data", "_decoded", "_found_at", "_params",
                 "_paths", "_program",
                 "_skimmed", "addr_size", "dirs", "file_names", "seq_offset",
                 "seq_start", "version")

    def __init__(self) -> None:
        self.version = 0
        self.addr_size = 8
        self.dirs: list[str] = []
        self.file_names: list[tuple[str, int]] = []   # (name, dir index), DWARF numbering
        self.seq_start: list[int] = []
        self.seq_offset: list[int] = []
        self._decoded: dict[int, tuple] = {}
        self._by_start: dict[int, Optional[tuple]] = {}
        self._by_offset: dict[int, tuple] = {}    # sequences decoded through hints
        self._found_at = -1
        self._paths: dict[int, Optional[str]] = {}
        self._data = b""
        self._params: tuple = ()
        self._program = 0
        self._skimmed = False

    def __len__(self) -> int:
        """Rows decoded so far."""
        seqs = list(self._decoded.values()) + [s for s in self._by_start.values() if s]
        return sum(len(d[1]) for d in seqs)

    def lookup(self, addr: int, hint: Optional[int] = None) -> Optional[tuple[int, int, int]]:
        """(file index, line, column) of the row covering `addr`, or None.

        The row is the last one at or below `addr` in the sequence holding it: when
        several rows share an address the last wins, as in binutils. `hint` is where the
        function holding `addr` starts, if known. Raises DwarfError when the sequence is
        malformed.
        """
        if not self._skimmed:
            if hint is not None:
                seq = self._by_start.get(hint, False)
                if seq is False:
                    seq = self._sequence_at(hint)
                if seq is not None:
                    end, addrs, lines, files, cols = seq
                    if addrs and addrs[0] <= addr < end:
                        k = bisect.bisect_right(addrs, addr) - 1
                        return files[k], lines[k], cols[k]
            self._skim()
        i = bisect.bisect_right(self.seq_start, addr) - 1
        # Sequences do not overlap in sane tables; one step back covers the odd case.
        for j in (i, i - 1):
            if j < 0:
                break
            seq = self._decoded.get(j)
            if seq is None:
                seq = self._decode_seq(j)
            end, addrs, lines, files, cols = seq
            if addrs and addrs[0] <= addr < end:
                k = bisect.bisect_right(addrs, addr) - 1
                return files[k], lines[k], cols[k]
        return None

    def find_sequences(self, starts: Sequence[int]) -> None:
        """Decode the sequences of a batch's functions (their symbols' starts, sorted),
        searching for each one's DW_LNE_set_address on from where the last was found
        (a unit's sequences are in about the order of their addresses): only the
        sequences asked for are read, none of the linker-discarded ones (half of a Rust
        program). Gives up when the functions do not have a sequence each (code built
        without function sections): lookups then skim the program."""
        if self._skimmed:
            return
        found = misses = 0
        at = -1
        for start in starts:
            if start in self._by_start:
                continue
            if self._sequence_at(start, at) is None:
                misses += 1
                if misses > 8 and misses > found:
                    return
            else:
                found += 1
                at = self._found_at

    def _sequence_at(self, start: int, at: int = -1) -> Optional[tuple]:
        """The sequence whose DW_LNE_set_address is `start`, decoded from its true first
        byte (just after the previous end_sequence, or the program start, with only
        state-setting opcodes in between); None if there is no such sequence. The
        search starts at `at` (wrapping around) when given."""
        seq = None
        data, n = self._data, self.addr_size
        needle = bytes((0, n + 1, 2)) + start.to_bytes(n, "little")
        end = self._params[0]
        regions = [(self._program, end)]
        if at > self._program:
            regions = [(at, end), (self._program, at + len(needle) - 1)]
        for lo, hi in regions:
            pos = data.find(needle, lo, hi)
            tries = 0
            while pos >= 0 and tries < 4:
                first = self._sequence_start(pos)
                if first >= 0:
                    seq = self._by_offset.get(first)
                    if seq is None:
                        try:
                            seq = run_sequence(data, first, *self._params)[0]
                        except (IndexError, struct.error, OverflowError, DwarfError):
                            seq = None
                    if seq is not None:
                        self._by_offset[first] = seq
                    self._found_at = pos
                    self._by_start[start] = seq
                    return seq
                pos = data.find(needle, pos + 1, hi)
                tries += 1
        self._by_start[start] = None
        return None

    def _sequence_start(self, pos: int) -> int:
        """Where the sequence holding the set_address at `pos` begins, or -1.

        Compilers put a few state opcodes (file, column, line, prologue_end) before the
        set_address. Accept a start only if those parse exactly up to `pos`.
        """
        data = self._data
        lo = max(self._program, pos - 32)
        cand = pos
        while cand >= lo:
            if cand == self._program or data[cand - 3:cand] == b"\x00\x01\x01":
                if only_state_ops(data, cand, pos, self._params[3]):
                    return cand
            cand -= 1
        return -1

    def index_all(self) -> None:
        """Skim the whole program for its sequences now (raises DwarfError if malformed)."""
        if not self._skimmed:
            self._skim()

    def decode_all(self) -> None:
        """Decode every sequence now, in one pass over the program: what a batch that
        falls in most of a unit's functions needs (a skim first, then most sequences,
        would read the program twice). Raises DwarfError if malformed."""
        if self._skimmed:
            return
        self._skimmed = True
        self._by_start.clear()
        data, params = self._data, self._params
        end, opcode_base, std_lengths = params[0], params[3], params[5]
        found: list[tuple[int, int, tuple]] = []
        pos = self._program
        try:
            while pos < end:
                try:
                    lead = leading_address(data, pos, end, opcode_base)
                    if lead >= 0 and not live(lead):
                        # A function the linker discarded (over half of a Rust binary's
                        # sequences): skim it, its rows would never be asked for.
                        pos = skim_sequence(data, pos, end, opcode_base, std_lengths,
                                            self.file_names)[1]
                        continue
                    seq, first, nxt = run_sequence(data, pos, *params, self.file_names)
                except Unterminated:
                    break   # rows after the last end_sequence: dropped, as by the skim
                if live(first):
                    found.append((first, pos, seq))
                pos = nxt
        except (IndexError, struct.error, OverflowError) as e:
            raise DwarfError(f"bad line program: {e}") from None
        found.sort(key=lambda f: (f[0], f[1]))
        self.seq_start = [f[0] for f in found]
        self.seq_offset = [f[1] for f in found]
        self._decoded = {j: f[2] for j, f in enumerate(found)}

    def _skim(self) -> None:
        self._skimmed = True
        self._by_start.clear()
        data, (end, _aa, _al, opcode_base, _mi, std_lengths) = self._data, self._params
        seqs: list[tuple[int, int]] = []
        pos = self._program
        try:
            while pos < end:
                try:
                    start, nxt = skim_sequence(data, pos, end, opcode_base, std_lengths,
                                               self.file_names)
                except Unterminated:
                    break   # rows after the last end_sequence: binutils drops them too
                if live(start):
                    seqs.append((start, pos))
                pos = nxt
        except (IndexError, struct.error, OverflowError) as e:
            raise DwarfError(f"bad line program: {e}") from None
        seqs.sort()
        self.seq_start = [q[0] for q in seqs]
        self.seq_offset = [q[1] for q in seqs]

    def _decode_seq(self, j: int) -> tuple:
        seq = self._by_offset.get(self.seq_offset[j])   # decoded through a hint
        if seq is not None:
            self._decoded[j] = seq
            return seq
        try:
            seq = run_sequence(self._data, self.seq_offset[j], *self._params)[0]
        except (IndexError, struct.error, OverflowError) as e:
            raise DwarfError(f"bad line sequence: {e}") from None
        self._decoded[j] = seq
        return seq

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
    length, pos, offset_size = initial_length(data, offset)
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
    adv_addr = [0] * 256
    adv_line = [0] * 256
    for op in range(opcode_base, 256):
        adj = op - opcode_base
        adv_addr[op] = (adj // line_range) * min_inst
        adv_line[op] = line_base + adj % line_range
    table._data = data
    table._params = (end, adv_addr, adv_line, opcode_base, min_inst, std_lengths)
    table._program = program
    table.addr_size = addr_size
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


