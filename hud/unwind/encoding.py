"""LEB128 and DW_EH_PE pointer decoding over untrusted bytes (LSB .eh_frame, DWARF 5 §7.6).

Every reader takes (data, pos) and returns (value, new_pos); running past the end raises
CfiError, which callers turn into a per-frame failure, never a crash.
"""
from __future__ import annotations

import struct
from typing import Optional

from hud.errors import BadInput

# DW_EH_PE value formats (low nibble) ...
PE_ABSPTR = 0x00
PE_ULEB128 = 0x01
PE_UDATA2 = 0x02
PE_UDATA4 = 0x03
PE_UDATA8 = 0x04
PE_SLEB128 = 0x09
PE_SDATA2 = 0x0A
PE_SDATA4 = 0x0B
PE_SDATA8 = 0x0C
# ... and applications (bits 4-6), plus the indirect flag and "omitted".
PE_PCREL = 0x10
PE_TEXTREL = 0x20
PE_DATAREL = 0x30
PE_FUNCREL = 0x40
PE_ALIGNED = 0x50
PE_INDIRECT = 0x80
PE_OMIT = 0xFF

MASK64 = (1 << 64) - 1
# A LEB128 longer than this cannot be a 64-bit value: hostile or corrupt input.
_MAX_LEB_BYTES = 10

_U16 = struct.Struct("<H")
_S16 = struct.Struct("<h")
_U32 = struct.Struct("<I")
_S32 = struct.Struct("<i")
_U64 = struct.Struct("<Q")
_S64 = struct.Struct("<q")


class CfiError(BadInput):
    """Malformed call frame information (truncated, unknown encoding, bad reference)."""


def uleb(data: bytes, pos: int) -> tuple[int, int]:
    """Unsigned LEB128 at pos."""
    result = 0
    shift = 0
    end = min(len(data), pos + _MAX_LEB_BYTES)
    while pos < end:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result & MASK64, pos
        shift += 7
    raise CfiError("truncated or overlong ULEB128")


def sleb(data: bytes, pos: int) -> tuple[int, int]:
    """Signed LEB128 at pos."""
    result = 0
    shift = 0
    end = min(len(data), pos + _MAX_LEB_BYTES)
    while pos < end:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            if byte & 0x40:
                result -= 1 << shift
            return result, pos
    raise CfiError("truncated or overlong SLEB128")


def fixed(data: bytes, pos: int, st: struct.Struct) -> tuple[int, int]:
    """A fixed-size little-endian integer."""
    end = pos + st.size
    if end > len(data) or pos < 0:
        raise CfiError("truncated CFI record")
    return st.unpack_from(data, pos)[0], end


def u8(data: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(data) or pos < 0:
        raise CfiError("truncated CFI record")
    return data[pos], pos + 1


def cstring(data: bytes, pos: int, limit: int = 64) -> tuple[bytes, int]:
    """A NUL-terminated string of at most `limit` bytes (augmentation strings are short)."""
    end = data.find(b"\0", pos, pos + limit + 1)
    if end < 0:
        raise CfiError("unterminated CFI string")
    return data[pos:end], end + 1


_FORMATS = {
    PE_UDATA2: _U16, PE_SDATA2: _S16, PE_UDATA4: _U32, PE_SDATA4: _S32,
    PE_UDATA8: _U64, PE_SDATA8: _S64,
}


def encoded_size(enc: int, addr_size: int = 8) -> Optional[int]:
    """Byte size of a fixed-size encoding, or None for LEB128/unknown."""
    fmt = enc & 0x0F
    if fmt == PE_ABSPTR:
        return addr_size
    st = _FORMATS.get(fmt)
    return st.size if st is not None else None


def pointer(data: bytes, pos: int, enc: int, section_addr: int, data_base: int = 0,
            func_base: int = 0, addr_size: int = 8, relative: bool = True) -> tuple[int, int]:
    """Decode a DW_EH_PE-encoded pointer at pos of a section loaded at section_addr.

    `relative=False` decodes only the value (FDE address ranges use the format of the
    pointer encoding but none of its application). Indirect pointers are returned as the
    address of the slot: resolving them would need the target's memory, and only the
    personality routine (which we never need) uses them.
    """
    if enc == PE_OMIT:
        return 0, pos
    fmt = enc & 0x0F
    if enc & 0x70 == PE_ALIGNED:
        # Aligned pointers: padding up to the address size, then an absolute pointer.
        pos += (-(section_addr + pos)) % addr_size
        fmt = PE_ABSPTR
    field_addr = section_addr + pos
    if fmt == PE_ABSPTR:
        value, pos = fixed(data, pos, _U64 if addr_size == 8 else _U32)
    elif fmt == PE_ULEB128:
        value, pos = uleb(data, pos)
    elif fmt == PE_SLEB128:
        value, pos = sleb(data, pos)
    else:
        st = _FORMATS.get(fmt)
        if st is None:
            raise CfiError(f"unknown pointer encoding 0x{enc:02x}")
        value, pos = fixed(data, pos, st)
    if not relative:
        return value & MASK64, pos
    app = enc & 0x70
    if app == PE_PCREL:
        value += field_addr
    elif app == PE_DATAREL:
        value += data_base
    elif app == PE_FUNCREL:
        value += func_base
    elif app == PE_TEXTREL:
        raise CfiError("DW_EH_PE_textrel is not supported")
    return value & MASK64, pos
