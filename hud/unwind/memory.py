"""Reads from a captured user stack copy: the only memory an unwinder may look at."""
from __future__ import annotations

import struct
from typing import Optional

_U64 = struct.Struct("<Q")
_SIZES = {1: struct.Struct("<B"), 2: struct.Struct("<H"), 4: struct.Struct("<I"), 8: _U64}


class StackMemory:
    """Little-endian words of a stack copy that starts at `base` (the captured sp).

    A read outside the copy returns None: the caller ends the walk with a reason.
    """

    __slots__ = ("base", "data", "end")

    def __init__(self, base: int, data: bytes) -> None:
        self.base = base
        self.data = data
        self.end = base + len(data)

    def u64(self, addr: int) -> Optional[int]:
        off = addr - self.base
        if off < 0 or off + 8 > len(self.data):
            return None
        return _U64.unpack_from(self.data, off)[0]

    def read(self, addr: int, size: int) -> Optional[int]:
        """`size`-byte little-endian value at addr (1, 2, 4 or 8), or None."""
        st = _SIZES.get(size)
        off = addr - self.base
        if st is None or off < 0 or off + size > len(self.data):
            return None
        return st.unpack_from(self.data, off)[0]

    def contains(self, addr: int, size: int = 8) -> bool:
        return self.base <= addr and addr + size <= self.end

    def words(self, addr: int, count: int) -> tuple[int, ...]:
        """Up to `count` u64 words from addr, fewer where the copy ends."""
        off = addr - self.base
        n = min(count, (len(self.data) - off) // 8) if off >= 0 else 0
        if n <= 0:
            return ()
        return struct.unpack_from(f"<{n}Q", self.data, off)


class RecordingMemory(StackMemory):
    """A StackMemory that remembers which bytes a walk read, so a later capture can be
    checked against them: a walk is a function of the registers and of exactly these
    reads, so equal reads mean an equal result (the unwinder's memo)."""

    __slots__ = ("reads",)

    def __init__(self, base: int, data: bytes) -> None:
        super().__init__(base, data)
        self.reads: list = []

    def u64(self, addr: int) -> Optional[int]:
        self.reads.append((addr - self.base, 8))
        return StackMemory.u64(self, addr)

    def read(self, addr: int, size: int) -> Optional[int]:
        self.reads.append((addr - self.base, size))
        return StackMemory.read(self, addr, size)

    def contains(self, addr: int, size: int = 8) -> bool:
        self.reads.append((addr - self.base, -size))   # a bounds check reads no bytes
        return StackMemory.contains(self, addr, size)

    def words(self, addr: int, count: int) -> tuple[int, ...]:
        got = StackMemory.words(self, addr, count)
        # What was read, and where the copy ended when it gave fewer words.
        self.reads.append((addr - self.base, 8 * len(got)))
        if len(got) < count:
            self.reads.append((addr - self.base + 8 * len(got), -8))
        return got

    def fingerprint(self) -> tuple:
        """Every read as (offset, size, bytes) — bytes None when it was out of bounds
        (or a bounds check) — in walk order."""
        return tuple((off, size, _bytes_at(self.data, off, size)) for off, size in self.reads)


def _bytes_at(data: bytes, off: int, size: int) -> Optional[bytes]:
    n = abs(size)
    if off < 0 or off + n > len(data):
        return None
    return data[off:off + n] if size > 0 else b""


def same_reads(fingerprint: tuple, data: bytes) -> bool:
    """Would every read of a recorded walk see the same thing in `data`?"""
    for off, size, value in fingerprint:
        if _bytes_at(data, off, size) != value:
            return False
    return True
