"""A big debug section read from its file a piece at a time, as lookups reach it.

A service built with full debug info carries hundreds of MB of .debug_info, .debug_str
and .debug_line; a profile touches the units of the functions it saw. Reading whole
sections put all of it in hud's memory on a host that is already in trouble. Here the
section is an anonymous private mapping the size of the section, filled chunk by chunk
with pread: untouched pages are never backed, offsets stay the section's own (the
decoders index it like the bytes they had), and nothing maps the file itself, whose
truncation under a file mapping would kill hud with SIGBUS.
"""
from __future__ import annotations

import mmap
from typing import Callable

from hud.errors import BadInput
from hud.symbolize.dwarf_forms import DwarfError

# Small enough that reading a unit's root for its attributes costs little, big enough
# that a unit of a few hundred KB is a handful of preads.
CHUNK = 1 << 14
# Sections smaller than this are read whole: in pieces, a batch that reaches every unit
# costs ~4% more instructions (bookkeeping, and indexing an mmap rather than bytes),
# which only pays for itself where the sections are big enough to matter in memory.
LAZY_MIN = 8 << 20


class LazySection:
    """`data` is indexable like bytes; a range must be `ensure`d before it is read
    (unloaded bytes read as zeros)."""

    def __init__(self, read: Callable[[int, int], bytes], offset: int, size: int,
                 name: str = "") -> None:
        self.name = name
        self.size = size
        # MAP_PRIVATE spelled out: Python's default for an anonymous mapping is
        # MAP_SHARED, which a forked helper (hud.symbolize.fanout) would write into.
        self.data = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE) if size > 0 else b""
        self.resident = 0
        self._read = read
        self._base = offset
        self._have = bytearray((size + CHUNK - 1) // CHUNK)

    def __len__(self) -> int:
        return self.size

    def ensure(self, start: int, end: int) -> None:
        """Make [start, end) (clipped to the section) readable in `data`; raises
        DwarfError when the file cannot give those bytes."""
        start = max(start, 0)
        end = min(end, self.size)
        if start >= end:
            return
        have = self._have
        first = start // CHUNK
        last = (end - 1) // CHUNK
        if have[first] and have[last] and (last - first < 2 or
                                           have.find(0, first, last) < 0):
            return
        k = first
        while k <= last:
            if have[k]:
                k += 1
                continue
            j = k + 1
            while j <= last and not have[j]:
                j += 1
            lo = k * CHUNK
            hi = min(j * CHUNK, self.size)
            self.data[lo:hi] = self._fetch(lo, hi)
            have[k:j] = b"\x01" * (j - k)
            self.resident += hi - lo
            k = j

    def peek(self, start: int, end: int) -> bytes:
        """The bytes of [start, end) (clipped), read from the file if they are not
        resident, without keeping them: for scattered small reads (unit headers)."""
        start = max(start, 0)
        end = min(end, self.size)
        if start >= end:
            return b""
        have = self._have
        if have[start // CHUNK] and have[(end - 1) // CHUNK]:
            return self.data[start:end]
        return self._fetch(start, end)

    def _fetch(self, lo: int, hi: int) -> bytes:
        try:
            got = self._read(self._base + lo, hi - lo)
        except (BadInput, OSError, ValueError) as e:
            raise DwarfError(f"{self.name or 'section'}: {e}") from None
        if len(got) != hi - lo:
            raise DwarfError(f"{self.name or 'section'}: short read at {lo:#x}")
        return got

    def cstring_end(self, offset: int) -> int:
        """The position of the NUL that ends the string at `offset` (-1 if none),
        reading chunks as the search goes."""
        have, data, size = self._have, self.data, self.size
        pos = offset
        while pos < size:
            k = pos // CHUNK
            stop = min((k + 1) * CHUNK, size)
            if not have[k]:
                self.ensure(pos, stop)
            end = data.find(b"\0", pos, stop)
            if end >= 0:
                return end
            pos = stop
        return -1

    def close(self) -> None:
        """Unmap (idempotent); later reads raise ValueError, a data error to callers."""
        data = self.data
        if isinstance(data, mmap.mmap) and not data.closed:
            try:
                data.close()
            except BufferError:
                pass   # a view of it is still held: unmapped when that goes
