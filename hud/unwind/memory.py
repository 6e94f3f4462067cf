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
