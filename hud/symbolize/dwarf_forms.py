"""DWARF constants and primitive readers: LEB128, C strings, attribute forms.

Readers take (data, pos) and return (value, new_pos). They raise DwarfError (a BadInput)
on truncated or absurd input; callers catch it per compilation unit so one bad unit costs
only its own frames.
"""
from __future__ import annotations

import struct

from hud.errors import BadInput


class DwarfError(BadInput):
    """Malformed DWARF (truncated, out of range, unknown form)."""


# Tags hud cares about.
TAG_COMPILE_UNIT = 0x11
TAG_PARTIAL_UNIT = 0x3C
TAG_SKELETON_UNIT = 0x4A
TAG_SUBPROGRAM = 0x2E
TAG_INLINED_SUBROUTINE = 0x1D
TAG_ENTRY_POINT = 0x03

# Attributes.
AT_SIBLING = 0x01
AT_NAME = 0x03
AT_STMT_LIST = 0x10
AT_LOW_PC = 0x11
AT_HIGH_PC = 0x12
AT_COMP_DIR = 0x1B
AT_ABSTRACT_ORIGIN = 0x31
AT_SPECIFICATION = 0x47
AT_RANGES = 0x55
AT_CALL_COLUMN = 0x57
AT_CALL_FILE = 0x58
AT_CALL_LINE = 0x59
AT_LINKAGE_NAME = 0x6E
AT_MIPS_LINKAGE_NAME = 0x2007
AT_STR_OFFSETS_BASE = 0x72
AT_ADDR_BASE = 0x73
AT_RNGLISTS_BASE = 0x74
AT_DWO_NAME = 0x76
AT_GNU_DWO_NAME = 0x2130
AT_GNU_DWO_ID = 0x2131
AT_GNU_RANGES_BASE = 0x2132
AT_GNU_ADDR_BASE = 0x2133

# Forms.
FORM_ADDR = 0x01
FORM_BLOCK2 = 0x03
FORM_BLOCK4 = 0x04
FORM_DATA2 = 0x05
FORM_DATA4 = 0x06
FORM_DATA8 = 0x07
FORM_STRING = 0x08
FORM_BLOCK = 0x09
FORM_BLOCK1 = 0x0A
FORM_DATA1 = 0x0B
FORM_FLAG = 0x0C
FORM_SDATA = 0x0D
FORM_STRP = 0x0E
FORM_UDATA = 0x0F
FORM_REF_ADDR = 0x10
FORM_REF1 = 0x11
FORM_REF2 = 0x12
FORM_REF4 = 0x13
FORM_REF8 = 0x14
FORM_REF_UDATA = 0x15
FORM_INDIRECT = 0x16
FORM_SEC_OFFSET = 0x17
FORM_EXPRLOC = 0x18
FORM_FLAG_PRESENT = 0x19
FORM_STRX = 0x1A
FORM_ADDRX = 0x1B
FORM_REF_SUP4 = 0x1C
FORM_STRP_SUP = 0x1D
FORM_DATA16 = 0x1E
FORM_LINE_STRP = 0x1F
FORM_REF_SIG8 = 0x20
FORM_IMPLICIT_CONST = 0x21
FORM_LOCLISTX = 0x22
FORM_RNGLISTX = 0x23
FORM_REF_SUP8 = 0x24
FORM_STRX1 = 0x25
FORM_STRX2 = 0x26
FORM_STRX3 = 0x27
FORM_STRX4 = 0x28
FORM_ADDRX1 = 0x29
FORM_ADDRX2 = 0x2A
FORM_ADDRX3 = 0x2B
FORM_ADDRX4 = 0x2C
FORM_GNU_ADDR_INDEX = 0x1F01
FORM_GNU_STR_INDEX = 0x1F02
FORM_GNU_REF_ALT = 0x1F20
FORM_GNU_STRP_ALT = 0x1F21

# Forms whose value is a reference to another DIE, relative to the unit start.
REF_FORMS = frozenset({FORM_REF1, FORM_REF2, FORM_REF4, FORM_REF8, FORM_REF_UDATA})
STRX_FORMS = frozenset({FORM_STRX, FORM_STRX1, FORM_STRX2, FORM_STRX3, FORM_STRX4,
                        FORM_GNU_STR_INDEX})
ADDRX_FORMS = frozenset({FORM_ADDRX, FORM_ADDRX1, FORM_ADDRX2, FORM_ADDRX3, FORM_ADDRX4,
                         FORM_GNU_ADDR_INDEX})
# Forms that are plain constants (so DW_AT_high_pc is an offset from low_pc).
CONSTANT_FORMS = frozenset({FORM_DATA1, FORM_DATA2, FORM_DATA4, FORM_DATA8, FORM_SDATA,
                            FORM_UDATA, FORM_IMPLICIT_CONST})
# Forms that are LEB128-encoded.
LEB_FORMS = frozenset({FORM_SDATA, FORM_UDATA, FORM_REF_UDATA, FORM_STRX, FORM_ADDRX,
                       FORM_LOCLISTX, FORM_RNGLISTX, FORM_GNU_ADDR_INDEX,
                       FORM_GNU_STR_INDEX})

_MAX_LEB_BYTES = 10  # 70 bits: nothing real is longer, and long runs would cost O(n^2)


def uleb(data: bytes, pos: int) -> tuple[int, int]:
    """Unsigned LEB128 at `pos`."""
    try:
        b = data[pos]
        if b < 0x80:
            return b, pos + 1
        result = b & 0x7F
        shift = 7
        end = pos + _MAX_LEB_BYTES
        pos += 1
        while pos < end:
            b = data[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if b < 0x80:
                return result, pos
            shift += 7
    except IndexError:
        raise DwarfError("truncated LEB128") from None
    raise DwarfError("LEB128 longer than 10 bytes")


def sleb(data: bytes, pos: int) -> tuple[int, int]:
    """Signed LEB128 at `pos`."""
    result = 0
    shift = 0
    end = pos + _MAX_LEB_BYTES
    try:
        while pos < end:
            b = data[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                if b & 0x40:
                    result -= 1 << shift
                return result, pos
    except IndexError:
        raise DwarfError("truncated LEB128") from None
    raise DwarfError("LEB128 longer than 10 bytes")


def skip_leb(data: bytes, pos: int) -> int:
    """Position after the LEB128 at `pos`."""
    end = pos + _MAX_LEB_BYTES
    try:
        while pos < end:
            if data[pos] < 0x80:
                return pos + 1
            pos += 1
    except IndexError:
        raise DwarfError("truncated LEB128") from None
    raise DwarfError("LEB128 longer than 10 bytes")


def initial_length(data: bytes, pos: int) -> tuple[int, int, int]:
    """A unit header's initial length: (length, position after it, offset size 4 or 8).

    0xFFFFFFFF escapes to a 64-bit length (DWARF64); 0xFFFFFFF0-0xFFFFFFFE are reserved.
    """
    if pos + 4 > len(data):
        raise DwarfError("truncated unit length")
    length = struct.unpack_from("<I", data, pos)[0]
    if length < 0xFFFFFFF0:
        return length, pos + 4, 4
    if length != 0xFFFFFFFF or pos + 12 > len(data):
        raise DwarfError(f"bad unit length {length:#x}")
    return struct.unpack_from("<Q", data, pos + 4)[0], pos + 12, 8


def string_end(data: bytes, pos: int) -> int:
    """Where the NUL that ends the string at `pos` is (find, not index: a section read
    in pieces is an mmap, which has no index())."""
    end = data.find(b"\0", pos)
    if end < 0:
        raise DwarfError("unterminated string")
    return end


def cstring(data: bytes, pos: int) -> tuple[bytes, int]:
    """The NUL-terminated bytes at `pos` (without the NUL)."""
    end = string_end(data, pos)
    return data[pos:end], end + 1


def str_at(data: bytes, offset: int) -> str:
    """The NUL-terminated string at `offset` of a string section, as text."""
    if not 0 <= offset < len(data):
        raise DwarfError(f"string offset {offset:#x} out of range")
    end = data.find(b"\0", offset)   # inline, not string_end: once per name read
    if end < 0:
        raise DwarfError("unterminated string")
    return data[offset:end].decode("utf-8", "replace")


def fixed_size(form: int, addr_size: int, offset_size: int, version: int) -> int:
    """Byte size of a value of `form`, or -1 when it varies (LEB, string, block, indirect)."""
    size = _FIXED.get(form)
    if size is not None:
        return size
    if form == FORM_ADDR:
        return addr_size
    if form in (FORM_STRP, FORM_LINE_STRP, FORM_SEC_OFFSET, FORM_STRP_SUP,
                FORM_GNU_REF_ALT, FORM_GNU_STRP_ALT):
        return offset_size
    if form == FORM_REF_ADDR:
        return addr_size if version <= 2 else offset_size
    if form in _VARIABLE:
        return -1
    raise DwarfError(f"unknown attribute form {form:#x}")


_FIXED = {
    FORM_DATA1: 1, FORM_REF1: 1, FORM_FLAG: 1, FORM_STRX1: 1, FORM_ADDRX1: 1,
    FORM_DATA2: 2, FORM_REF2: 2, FORM_STRX2: 2, FORM_ADDRX2: 2,
    FORM_STRX3: 3, FORM_ADDRX3: 3,
    FORM_DATA4: 4, FORM_REF4: 4, FORM_STRX4: 4, FORM_ADDRX4: 4, FORM_REF_SUP4: 4,
    FORM_DATA8: 8, FORM_REF8: 8, FORM_REF_SIG8: 8, FORM_REF_SUP8: 8,
    FORM_DATA16: 16,
    FORM_FLAG_PRESENT: 0, FORM_IMPLICIT_CONST: 0,
}
_VARIABLE = frozenset({FORM_STRING, FORM_BLOCK, FORM_BLOCK1, FORM_BLOCK2, FORM_BLOCK4,
                       FORM_EXPRLOC, FORM_INDIRECT}) | LEB_FORMS

# Unsigned little-endian integer readers by size, for fixed forms.
_U = {1: struct.Struct("<B"), 2: struct.Struct("<H"), 4: struct.Struct("<I"),
      8: struct.Struct("<Q")}


def skip_form(data: bytes, pos: int, form: int, addr_size: int, offset_size: int,
              version: int, depth: int = 0) -> int:
    """Position after a value of `form` at `pos`."""
    size = fixed_size(form, addr_size, offset_size, version)
    if size >= 0:
        return pos + size
    if form in LEB_FORMS:
        return skip_leb(data, pos)
    if form == FORM_STRING:
        return string_end(data, pos) + 1
    if form in (FORM_BLOCK, FORM_EXPRLOC):
        n, pos = uleb(data, pos)
        return pos + n
    if form == FORM_BLOCK1:
        return pos + 1 + data[pos]
    if form == FORM_BLOCK2:
        return pos + 2 + _U[2].unpack_from(data, pos)[0]
    if form == FORM_BLOCK4:
        return pos + 4 + _U[4].unpack_from(data, pos)[0]
    if form == FORM_INDIRECT:
        if depth > 2:
            raise DwarfError("nested DW_FORM_indirect")
        real, pos = uleb(data, pos)
        return skip_form(data, pos, real, addr_size, offset_size, version, depth + 1)
    raise DwarfError(f"unknown attribute form {form:#x}")


def read_form(data: bytes, pos: int, form: int, addr_size: int, offset_size: int,
              version: int, implicit: int = 0, depth: int = 0) -> tuple[object, int]:
    """(raw value, new position) of a value of `form` at `pos`.

    Integers stay raw (an index for strx/addrx/rnglistx, a unit-relative offset for
    ref1..ref_udata); inline strings come back as bytes, blocks as bytes.
    """
    size = fixed_size(form, addr_size, offset_size, version)
    if size > 0 and size != 3 and size != 16:
        end = pos + size
        if end > len(data):
            raise DwarfError("attribute value past the end of its section")
        return int.from_bytes(data[pos:end], "little"), end
    if size == 3:
        if pos + 3 > len(data):
            raise DwarfError("attribute value past the end of its section")
        return int.from_bytes(data[pos:pos + 3], "little"), pos + 3
    if size == 16:
        return data[pos:pos + 16], pos + 16
    if size == 0:
        return (implicit if form == FORM_IMPLICIT_CONST else 1), pos
    if form == FORM_SDATA:
        return sleb(data, pos)
    if form in LEB_FORMS:
        return uleb(data, pos)
    if form == FORM_STRING:
        return cstring(data, pos)
    if form in (FORM_BLOCK, FORM_EXPRLOC):
        n, pos = uleb(data, pos)
        return data[pos:pos + n], pos + n
    if form == FORM_BLOCK1:
        n = data[pos]
        return data[pos + 1:pos + 1 + n], pos + 1 + n
    if form == FORM_BLOCK2:
        n = _U[2].unpack_from(data, pos)[0]
        return data[pos + 2:pos + 2 + n], pos + 2 + n
    if form == FORM_BLOCK4:
        n = _U[4].unpack_from(data, pos)[0]
        return data[pos + 4:pos + 4 + n], pos + 4 + n
    if form == FORM_INDIRECT:
        if depth > 2:
            raise DwarfError("nested DW_FORM_indirect")
        real, pos = uleb(data, pos)
        return read_form(data, pos, real, addr_size, offset_size, version, implicit,
                         depth + 1)
    raise DwarfError(f"unknown attribute form {form:#x}")
