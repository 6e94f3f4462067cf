"""CIE and FDE records of .eh_frame (LSB 5.0 §10.6) and .debug_frame (DWARF 5 §6.4.1).

Records are decoded lazily, one at a time, from untrusted section bytes; a malformed
record raises CfiError (the caller skips it), never anything else.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Optional

from hud.unwind.encoding import (
    _U32,
    _U64,
    PE_ABSPTR,
    PE_OMIT,
    CfiError,
    cstring,
    fixed,
    pointer,
    sleb,
    u8,
    uleb,
)

_DWARF64_ESCAPE = 0xFFFFFFFF
_DEBUG_CIE_ID32 = 0xFFFFFFFF
_DEBUG_CIE_ID64 = (1 << 64) - 1
# No single record of a real binary comes close; larger is corruption.
MAX_RECORD = 1 << 24


@dataclass(frozen=True)
class Cie:
    """A Common Information Entry: shared parameters and initial instructions."""

    offset: int
    version: int
    augmentation: bytes
    code_align: int
    data_align: int
    ra_reg: int
    fde_encoding: int
    lsda_encoding: int
    signal_frame: bool
    has_z: bool
    addr_size: int
    insn_start: int
    insn_end: int


@dataclass(frozen=True)
class Fde:
    """A Frame Description Entry: the code range [start, end) and its instructions."""

    offset: int
    cie: Cie
    start: int
    end: int
    insn_start: int
    insn_end: int


@dataclass(frozen=True)
class FrameSection:
    """One CFI section: its bytes, where it is mapped (link-time address), and its kind."""

    data: bytes
    addr: int
    is_eh: bool           # .eh_frame (True) or .debug_frame (False)
    addr_size: int = 8
    data_base: int = 0    # DW_EH_PE_datarel base (the GOT / .eh_frame_hdr, per use)


def _header(data: bytes, off: int) -> tuple[int, int, int, bool]:
    """(length, start of contents, end of record, is 64-bit) of the record at off."""
    length, pos = fixed(data, off, _U32)
    is64 = False
    if length == _DWARF64_ESCAPE:
        length, pos = fixed(data, pos, _U64)
        is64 = True
    if length > MAX_RECORD:
        raise CfiError("CFI record too long")
    end = pos + length
    if end > len(data):
        raise CfiError("CFI record runs past the section")
    return length, pos, end, is64


def _is_cie(sec: FrameSection, ident: int, is64: bool) -> bool:
    if sec.is_eh:
        return ident == 0
    return ident == (_DEBUG_CIE_ID64 if is64 else _DEBUG_CIE_ID32)


def parse_cie(sec: FrameSection, off: int) -> Cie:
    """Decode the CIE at offset `off` of the section."""
    data = sec.data
    length, pos, end, is64 = _header(data, off)
    if length == 0:
        raise CfiError("terminator where a CIE was expected")
    ident, pos = fixed(data, pos, _U64 if is64 else _U32)
    if not _is_cie(sec, ident, is64):
        raise CfiError("CIE pointer does not point at a CIE")
    version, pos = u8(data, pos)
    if version not in (1, 3, 4):
        raise CfiError(f"unsupported CIE version {version}")
    aug, pos = cstring(data, pos)
    addr_size = sec.addr_size
    if aug.startswith(b"eh"):
        pos += addr_size  # old GCC "eh" augmentation: an EH data pointer we never need
    if version == 4:
        addr_size, pos = u8(data, pos)
        _seg, pos = u8(data, pos)
        if addr_size not in (4, 8):
            raise CfiError("bad CIE address size")
    code_align, pos = uleb(data, pos)
    data_align, pos = sleb(data, pos)
    if version == 1:
        ra_reg, pos = u8(data, pos)
    else:
        ra_reg, pos = uleb(data, pos)
    fde_enc = PE_ABSPTR
    lsda_enc = PE_OMIT
    signal = False
    has_z = aug.startswith(b"z")
    if has_z:
        aug_len, pos = uleb(data, pos)
        aug_end = pos + aug_len
        if aug_end > end:
            raise CfiError("CIE augmentation data runs past the record")
        for ch in aug[1:]:
            if ch == 0x52:    # 'R': FDE pointer encoding
                fde_enc, pos = u8(data, pos)
            elif ch == 0x4C:  # 'L': LSDA pointer encoding
                lsda_enc, pos = u8(data, pos)
            elif ch == 0x50:  # 'P': personality encoding + pointer (value unused)
                penc, pos = u8(data, pos)
                _, pos = pointer(data, pos, penc & 0x7F, sec.addr, sec.data_base,
                                 addr_size=addr_size)
            elif ch == 0x53:  # 'S': signal frame
                signal = True
            else:
                # 'B' (aarch64 BTI), 'G' (MTE) and unknowns: the length tells us where the
                # instructions start, so we may ignore the rest safely.
                break
        pos = aug_end
    elif aug not in (b"", b"eh"):
        raise CfiError(f"unknown CIE augmentation {aug!r}")
    return Cie(off, version, aug, code_align, data_align, ra_reg, fde_enc, lsda_enc, signal,
               has_z, addr_size, pos, end)


def parse_fde(sec: FrameSection, off: int, cies: dict[int, Cie]) -> Optional[Fde]:
    """Decode the record at `off`: an Fde, or None when it is a CIE. `cies` caches CIEs."""
    data = sec.data
    length, pos, end, is64 = _header(data, off)
    if length == 0:
        return None
    id_pos = pos
    ident, pos = fixed(data, pos, _U64 if is64 else _U32)
    if _is_cie(sec, ident, is64):
        return None
    cie_off = id_pos - ident if sec.is_eh else ident
    cie = cies.get(cie_off)
    if cie is None:
        if cie_off < 0 or cie_off >= len(data):
            raise CfiError("FDE refers to a CIE outside the section")
        cie = parse_cie(sec, cie_off)
        cies[cie_off] = cie
    enc = cie.fde_encoding if sec.is_eh or cie.has_z else PE_ABSPTR
    start, pos = pointer(data, pos, enc, sec.addr, sec.data_base, addr_size=cie.addr_size)
    size, pos = pointer(data, pos, enc & 0x0F, sec.addr, addr_size=cie.addr_size,
                        relative=False)
    if cie.has_z:
        aug_len, pos = uleb(data, pos)
        pos += aug_len
    if pos > end:
        raise CfiError("FDE header runs past the record")
    return Fde(off, cie, start, start + size, pos, end)


def iter_fdes(sec: FrameSection, limit: int = 1 << 22) -> Iterator[Fde]:
    """Every well-formed FDE of the section, in section order. Bad records are skipped
    when their length is sane; a bad length ends the walk (nothing after it can be found)."""
    data = sec.data
    cies: dict[int, Cie] = {}
    off = 0
    count = 0
    while off + 4 <= len(data) and count < limit:
        count += 1
        try:
            length, _pos, end, _ = _header(data, off)
        except CfiError:
            return
        if length == 0:
            if sec.is_eh:
                return  # the .eh_frame terminator
            off = end
            continue
        try:
            fde = parse_fde(sec, off, cies)
        except CfiError:
            fde = None
        if fde is not None and fde.end > fde.start:
            yield fde
        off = end
