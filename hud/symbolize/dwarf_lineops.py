"""DWARF line-program opcodes: decoding one sequence's rows, and skimming sequences.

The state machine runs in locals; special opcodes use precomputed address and line
advances. Branches come in the order Rust and C line programs use the opcodes (per 100
rows: ~95 special opcodes, 80 advance_line, 75 set_column, 55 set_file, 40 negate_stmt)
and their one- and two-byte LEB128 operands are read inline: a call per operand was
half of the decoding time.
"""
from __future__ import annotations

from typing import Optional

from hud.symbolize.dwarf_forms import DwarfError, cstring, sleb, uleb

# Linkers put discarded functions at 0 (or at -1/-2 with newer lld): not real code.
TOMBSTONE_MIN = 0xFFFFFFFF00000000


class Unterminated(DwarfError):
    """A sequence runs to the end of the program without DW_LNE_end_sequence."""


def live(start: int) -> bool:
    """Is a sequence starting at `start` real code (not discarded by the linker)?"""
    return 0 < start < TOMBSTONE_MIN


def run_sequence(data: bytes, pos: int, end: int, adv_addr: list, adv_line: list,
                 opcode_base: int, min_inst: int, std_lengths: list,
                 defines: Optional[list] = None) -> tuple:
    """Rows of the sequence starting at `pos`: ((end address, addrs, lines, files, cols),
    its first DW_LNE_set_address or -1, the position after its end). DW_LNE_define_file
    entries are appended to `defines` when given (a pass over the whole program).
    Raises Unterminated, DwarfError or IndexError on malformed input."""
    addrs: list = []
    lines: list = []
    files: list = []
    cols: list = []
    a_add, l_add, f_add, c_add = addrs.append, lines.append, files.append, cols.append
    const_add = adv_addr[255]
    address = 0
    file = 1
    line = 1
    col = 0
    first = -1
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
        elif op == 3:        # DW_LNS_advance_line
            b = data[pos]
            if b < 0x80:
                pos += 1
                line += b - 0x80 if b & 0x40 else b
            else:
                b2 = data[pos + 1]
                if b2 < 0x80:
                    n = (b & 0x7F) | (b2 << 7)
                    line += n - 0x4000 if b2 & 0x40 else n
                    pos += 2
                else:
                    n, pos = sleb(data, pos)
                    line += n
        elif op == 5:        # DW_LNS_set_column
            col = data[pos]
            if col < 0x80:
                pos += 1
            else:
                col, pos = uleb(data, pos)
        elif op == 4:        # DW_LNS_set_file
            file = data[pos]
            if file < 0x80:
                pos += 1
            else:
                file, pos = uleb(data, pos)
        elif op == 6 or op == 10 or op == 11 or op == 7:
            pass             # negate_stmt, prologue_end, epilogue_begin, basic_block
        elif op == 0:
            n, pos = uleb(data, pos)
            if n == 0:
                continue
            sub = data[pos]
            nxt = pos + n
            if sub == 1:     # DW_LNE_end_sequence
                return (address, addrs, lines, files, cols), first, nxt
            if sub == 2:     # DW_LNE_set_address
                address = int.from_bytes(data[pos + 1:nxt], "little")
                if first < 0:
                    first = address
            elif sub == 3 and defines is not None:   # DW_LNE_define_file (DWARF < 5)
                name, p = cstring(data, pos + 1)
                d, _ = uleb(data, p)
                defines.append((name.decode("utf-8", "replace"), d))
            pos = nxt
        elif op == 1:        # DW_LNS_copy
            a_add(address)
            l_add(line)
            f_add(file)
            c_add(col)
        elif op == 8:        # DW_LNS_const_add_pc
            address += const_add
        elif op == 2:        # DW_LNS_advance_pc
            n, pos = uleb(data, pos)
            address += n * min_inst
        elif op == 9:        # DW_LNS_fixed_advance_pc
            address += data[pos] | (data[pos + 1] << 8)
            pos += 2
        else:                # set_isa and unknown standard opcodes: skip their operands
            for _ in range(std_lengths[op - 1] if op - 1 < len(std_lengths) else 0):
                _, pos = uleb(data, pos)
    raise Unterminated("line sequence without an end")


def skim_sequence(data: bytes, pos: int, end: int, opcode_base: int, std_lengths: list,
                  defines: Optional[list] = None) -> tuple[int, int]:
    """(first DW_LNE_set_address or -1, position after the end) of the sequence at
    `pos`, without decoding its rows; define_file entries go to `defines`."""
    start = -1
    while pos < end:
        op = data[pos]
        pos += 1
        if op >= opcode_base:
            continue
        if op == 0:
            n, pos = uleb(data, pos)
            nxt = pos + n
            if n == 0:
                continue
            if nxt > end:
                raise DwarfError("extended opcode past the end of the program")
            sub = data[pos]
            if sub == 1:     # DW_LNE_end_sequence
                return start, nxt
            if sub == 2 and start < 0:
                start = int.from_bytes(data[pos + 1:nxt], "little")
            elif sub == 3 and defines is not None:   # DW_LNE_define_file (DWARF < 5)
                name, p = cstring(data, pos + 1)
                d, _ = uleb(data, p)
                defines.append((name.decode("utf-8", "replace"), d))
            pos = nxt
        elif op == 9:        # DW_LNS_fixed_advance_pc: a 2-byte operand
            pos += 2
        elif 2 <= op <= 5 or op == 12:   # one LEB128 operand
            while data[pos] >= 0x80:
                pos += 1
            pos += 1
        elif op in (1, 6, 7, 8, 10, 11):
            pass
        else:
            for _ in range(std_lengths[op - 1] if op - 1 < len(std_lengths) else 0):
                _, pos = uleb(data, pos)
    raise Unterminated("line sequence without an end")


def leading_address(data: bytes, pos: int, end: int, opcode_base: int) -> int:
    """The DW_LNE_set_address a sequence opens with (after state-only opcodes), or -1
    when it does not start that way: tells a discarded function's sequence (address 0
    or a tombstone) before decoding it."""
    for _ in range(16):
        if pos >= end:
            return -1
        op = data[pos]
        pos += 1
        if op >= opcode_base:
            return -1
        if op == 0:
            n, pos = uleb(data, pos)
            if n < 2 or pos + n > end or data[pos] != 2:
                return -1
            return int.from_bytes(data[pos + 1:pos + n], "little")
        if op in (4, 5, 12):            # set_file, set_column, set_isa: one ULEB
            _, pos = uleb(data, pos)
        elif op == 3:                   # advance_line: one SLEB
            _, pos = sleb(data, pos)
        elif op not in (6, 7, 10, 11):  # anything that may emit a row or move the pc
            return -1
    return -1


def only_state_ops(data: bytes, pos: int, stop: int, opcode_base: int) -> bool:
    """True if [pos, stop) is a run of standard opcodes that emit no row."""
    while pos < stop:
        op = data[pos]
        pos += 1
        if op in (4, 5, 12):            # set_file, set_column, set_isa: one ULEB
            _, pos = uleb(data, pos)
        elif op == 3:                   # advance_line: one SLEB
            _, pos = sleb(data, pos)
        elif op in (6, 7, 10, 11) and op < opcode_base:   # flags without operands
            pass
        else:
            return False
    return pos == stop
