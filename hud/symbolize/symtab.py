"""Function symbols of ELF files (.symtab, .dynsym) as sorted arrays for bisect lookups.

Building walks the raw entries once with struct.iter_unpack; what is kept is three arrays
(start, end, name offset) and the string tables, so a lookup allocates nothing but its
result and names are decoded only when asked for.
"""
from __future__ import annotations

import bisect
import struct
from array import array
from collections.abc import Sequence
from typing import Optional

from hud.errors import BadInput
from hud.symbolize.elf import SHF_EXECINSTR, SHT_DYNSYM, SHT_SYMTAB, ElfFile

STT_NOTYPE = 0
STT_FUNC = 2
STT_FILE = 4
STT_GNU_IFUNC = 10
SHN_UNDEF = 0
SHN_ABS = 0xFFF1
STB_LOCAL, STB_GLOBAL, STB_WEAK = 0, 1, 2

_MAX_SYMBOLS = 1 << 24
# Rank offset of a sized STT_NOTYPE code symbol: below every function symbol there.
_NOTYPE_RANK = 16


class SymbolTable:
    """Function symbols of one or more ELF files of the same object, merged.

    Pass the richest file first (a separate debug file's .symtab), then the binary
    (.symtab and .dynsym): at one address the first file's name wins.
    """

    def __init__(self, elves: Sequence[ElfFile]) -> None:
        self._strtabs: list[bytes] = []
        rows: list[tuple[int, int, int, int, int, int, int]] = []
        for elf in elves:
            for sec in elf.sections:
                if sec.type not in (SHT_SYMTAB, SHT_DYNSYM):
                    continue
                try:
                    rows.extend(self._read(elf, sec, len(rows)))
                except BadInput:
                    continue   # a broken table costs its names, nothing else
        # Sort by address; at one address prefer sized, then global, then earlier files,
        # then table order. Rows lead with (address, rank, index): compared as they are,
        # with no key function (a tuple per row on 150,000-symbol C++ binaries).
        rows.sort()
        starts = array("Q")
        ends = array("Q")
        names = array("Q")
        files = array("Q")
        sized = bytearray()
        last = -1
        # Other names at an address (aliases, folded functions): few, kept aside.
        aliases: dict[int, list[int]] = {}
        for value, _rank, _index, size, name, tab, file in rows:
            if value == last:
                aliases.setdefault(value, []).append((tab << 40) | name)
                continue
            last = value
            starts.append(value)
            ends.append(value + size if size else 0)
            sized.append(1 if size else 0)
            names.append((tab << 40) | name)
            files.append((tab << 40) | file if file else 0)
        # A symbol without a size reaches to the next symbol.
        for i in range(len(starts)):
            if ends[i] == 0:
                ends[i] = starts[i + 1] if i + 1 < len(starts) else starts[i] + 1
        self._starts = starts
        self._ends = ends
        self._names = names
        self._files = files
        self._sized = sized
        self._aliases = aliases
        self._spans: dict[int, tuple[int, Optional[int], tuple[str, ...]]] = {}
        self._last: tuple = (0, 0, None)   # (start, end, span) of the last span_of hit

    def _read(self, elf: ElfFile, sec: object, base: int) -> list:
        entsize = 24 if elf.is64 else 16
        if sec.entsize not in (0, entsize) or not 0 <= sec.link < len(elf.sections):
            return []
        count = sec.size // entsize
        if count > _MAX_SYMBOLS:
            raise BadInput(f"{elf.name}: {count} symbols is too many")
        data = elf.section_data(sec)[:count * entsize]
        strtab = elf.section_data(elf.sections[sec.link])
        tab = len(self._strtabs)
        self._strtabs.append(strtab)
        fmt = elf.endian + ("IBBHQQ" if elf.is64 else "IIIBBH")
        out = []
        dynsym = sec.type == SHT_DYNSYM
        # The source file of a function is the STT_FILE symbol before it, as binutils
        # reads it: always for locals; for globals only while no STT_FILE has followed
        # an ordinary symbol (after that, globals belong to no particular file).
        file = 0
        seen_symbol = False
        file_after_symbol = False
        # Assembly routines often carry no .type: STT_NOTYPE symbols in code sections
        # with a .size are functions to binutils, eu-addr2line and gdb, and to us. A
        # label without a size is not: where it ends is a guess (to the next symbol), and
        # as one it would stretch the zero-size symbol before it too (musl's libc.so:
        # `_dlstart` made `memset` reach over the hidden code after it, and the stack
        # scan read that code as memset's).
        # (ARM, AArch64 and RISC-V mapping symbols, "$x" and "$d", are labels too.)
        code = {i for i, s in enumerate(elf.sections) if s.flags & SHF_EXECINSTR}
        for ent in struct.iter_unpack(fmt, data[entsize:]):
            if elf.is64:
                name, info, _other, shndx, value, size = ent
            else:
                name, value, size, info, _other, shndx = ent
            kind = info & 0xF
            if kind == STT_FILE:
                file = name
                if seen_symbol:
                    file_after_symbol = True
                continue
            seen_symbol = True
            if kind == STT_NOTYPE:
                if not size or shndx not in code or value == 0:
                    continue
                rank = _NOTYPE_RANK
            elif (kind != STT_FUNC and kind != STT_GNU_IFUNC) or shndx == SHN_UNDEF \
                    or value == 0 or shndx == SHN_ABS:
                continue
            else:
                rank = 0
            bind = info >> 4
            rank += (0 if size else 4) + (0 if bind == STB_GLOBAL else
                                          1 if bind == STB_WEAK else 2) + (8 if dynsym else 0)
            owner = file if (bind == STB_LOCAL or not file_after_symbol) else 0
            out.append((value, rank * 64 + tab, base + len(out), size, name, tab, owner))
        return out

    def __len__(self) -> int:
        return len(self._starts)

    def lookup(self, addr: int) -> Optional[tuple[str, int]]:
        """(symbol name, offset of `addr` into it) of the function holding `addr`."""
        i = bisect.bisect_right(self._starts, addr) - 1
        if i < 0 or addr >= self._ends[i]:
            return None
        return self._name(i), addr - self._starts[i]

    def file_of(self, addr: int) -> Optional[str]:
        """The STT_FILE name that owns the function symbol holding `addr`, if any."""
        i = bisect.bisect_right(self._starts, addr) - 1
        if i < 0 or addr >= self._ends[i] or not self._files[i]:
            return None
        return self._str(self._files[i])

    def _name(self, i: int) -> str:
        return self._str(self._names[i])

    def _str(self, ref: int) -> str:
        tab = self._strtabs[ref >> 40]
        off = ref & ((1 << 40) - 1)
        end = tab.find(b"\0", off)
        return tab[off:end if end >= 0 else len(tab)].decode("utf-8", "replace")

    def start_of(self, addr: int) -> Optional[int]:
        """Start address of the function symbol holding `addr`."""
        i = bisect.bisect_right(self._starts, addr) - 1
        if i < 0 or addr >= self._ends[i]:
            return None
        return self._starts[i]

    def span_of(self, addr: int) -> Optional[tuple[int, Optional[int], tuple[str, ...]]]:
        """(start, end, names) of the function symbol holding `addr`: end None if the
        symbol has no size; names are every function symbol at that start."""
        last = self._last   # the symbol of the previous call: batches come sorted
        if last[0] <= addr < last[1]:
            return last[2]
        i = bisect.bisect_right(self._starts, addr) - 1
        if i < 0 or addr >= self._ends[i]:
            return None
        got = self._spans.get(i)
        if got is None:
            # Once per symbol: a batch asks for every address, ~10 per function.
            start = self._starts[i]
            names = (self._name(i), *(self._str(r) for r in self._aliases.get(start, ())))
            got = self._spans[i] = (start, (self._ends[i] if self._sized[i] else None),
                                    names)
        if i + 1 >= len(self._starts) or self._starts[i + 1] >= self._ends[i]:
            self._last = (self._starts[i], self._ends[i], got)   # nothing starts inside
        return got
