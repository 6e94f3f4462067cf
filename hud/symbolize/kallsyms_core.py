"""vmlinux's own lines of /proc/kallsyms, looked up where they are instead of parsed.

The kernel lists its own symbols first and sorted by address (the order kallsyms_lookup
bisects); modules and BPF programs follow. So the addresses alone are decoded, in C
(one `bytes.fromhex` over the first 16 characters of every line), and the line of an
address is found by bisecting them; only that line is split for its type and name. On a
6.18 kernel's 122k lines this takes ~0.06 s where parsing each line took ~0.18 s.

Text that does not have that shape (another address width, a line that does not start
with its address, lines out of order) is refused: `build` returns None and the caller
parses each line instead. Lookups give exactly what that parse gives: text symbols only
(t, T, w, W), the last of several names at one address, nothing at address 0.
"""
from __future__ import annotations

import operator
import sys
from array import array
from bisect import bisect_right
from itertools import islice
from typing import Optional

# Text symbols only: data (d, D, b, B, r, R ...) never holds an instruction, and leaving
# it out keeps a data symbol from cutting short the function laid out before it.
TEXT_TYPES = frozenset("tTwW")
_WIDTH = 16      # a 64-bit kernel's %px


def text_name(line: str) -> Optional[str]:
    """The name on a vmlinux line "ADDR TYPE NAME" when it is a text symbol, else None."""
    parts = line.split()
    if len(parts) != 3 or parts[1] not in TEXT_TYPES or len(parts[0]) != _WIDTH:
        return None
    return parts[2]


class SortedCore:
    """vmlinux's lines and their addresses, in the kernel's (address) order."""

    __slots__ = ("_addrs", "_count", "_first", "_last", "_lines")

    def __init__(self, addrs: array, lines: list[str], first: int, last: int) -> None:
        self._addrs = addrs          # array('Q'): each line's address, sorted
        self._lines = lines
        self._first = first          # indexes of the first and last text symbols above 0
        self._last = last
        self._count = -1

    @classmethod
    def build(cls, text: str) -> Optional[SortedCore]:
        """The lookup over `text` (vmlinux's lines only), or None when the text does not
        have the kernel's shape (then parse each line) or holds no text symbol."""
        lines = text.splitlines()
        if not lines:
            return None
        joined = "".join([line[:_WIDTH] for line in lines])
        try:
            raw = bytes.fromhex(joined)
        except ValueError:
            return None
        # fromhex skips whitespace: a short or indented line shows up as missing bytes.
        if len(raw) != 8 * len(lines):
            return None
        addrs = array("Q")
        addrs.frombytes(raw)
        if sys.byteorder == "little":
            addrs.byteswap()         # the text is big-endian digits
        if not all(map(operator.le, addrs, islice(addrs, 1, None))):
            return None
        # Data symbols (CONFIG_KALLSYMS_ALL) sit above the text and per-CPU ones at the
        # bottom: where the text starts and ends is found once, here.
        last = len(lines) - 1
        while last >= 0 and not (addrs[last] and text_name(lines[last])):
            last -= 1
        if last < 0:
            return None
        first = 0
        while not (addrs[first] and text_name(lines[first])):
            first += 1
        return cls(addrs, lines, first, last)

    def entry(self, pc: int, max_tail: int) -> Optional[tuple[int, str]]:
        """(start, name) of the text symbol at or below `pc`; None when there is none, or
        when it is the last one and `pc` lies `max_tail` or more past it."""
        addrs = self._addrs
        i = bisect_right(addrs, pc) - 1
        if i < self._first:
            return None
        if i >= self._last:
            if pc - addrs[self._last] >= max_tail:
                return None
            i = self._last
        # Down past aliases and data symbols that are not text to the function: a few
        # lines at most inside vmlinux's text, never below the first text symbol.
        lines = self._lines
        while True:
            if addrs[i]:
                name = text_name(lines[i])
                if name is not None:
                    return addrs[i], name
            i -= 1

    def span(self) -> tuple[int, int]:
        """The addresses of the first and the last text symbol."""
        return self._addrs[self._first], self._addrs[self._last]

    def count(self) -> int:
        """Distinct addresses of text symbols (computed on first use)."""
        if self._count < 0:
            self._count = len({a for a, line in zip(self._addrs, self._lines)
                               if a and text_name(line) is not None})
        return self._count
