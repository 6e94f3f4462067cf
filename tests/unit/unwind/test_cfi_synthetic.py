"""CIE/FDE parsing, row tables and lookups on hand-built .eh_frame / .debug_frame bytes."""
from __future__ import annotations

import struct

from hud.unwind.cfi import FrameSection, iter_fdes
from hud.unwind.rows import (
    RULE_EXPR,
    RULE_OFFSET,
    RULE_REGISTER,
    RULE_SAME,
    RULE_UNDEF,
    RULE_VAL_OFFSET,
)
from hud.unwind.table import CfiTable

SEC = 0x10000      # where the synthetic .eh_frame is "mapped"
RSP, RBP, RBX, RA = 7, 6, 3, 16


def uleb(v: int) -> bytes:
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def sleb(v: int) -> bytes:
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        done = (v == 0 and not b & 0x40) or (v == -1 and b & 0x40)
        out.append(b | (0 if done else 0x80))
        if done:
            return bytes(out)


def record(body: bytes) -> bytes:
    body += b"\x00" * (-(len(body) + 4) % 8)   # DW_CFA_nop padding
    return struct.pack("<I", len(body)) + body


def cie(aug: bytes = b"zR", aug_data: bytes = b"\x1b", insns: bytes = b"",
        ra: int = RA, cie_id: bytes = b"\0\0\0\0", version: int = 1,
        extra: bytes = b"") -> bytes:
    body = cie_id + bytes([version]) + aug + b"\0" + extra + uleb(1) + sleb(-8)
    body += bytes([ra]) if version == 1 else uleb(ra)
    if aug.startswith(b"z"):
        body += uleb(len(aug_data)) + aug_data
    return record(body + insns)


X86_CIE_INSNS = b"\x0c" + uleb(RSP) + uleb(8) + bytes([0x80 | RA]) + uleb(1)


def fde(offset: int, cie_offset: int, start: int, size: int, insns: bytes,
        aug: bytes = b"\x00") -> bytes:
    """An .eh_frame FDE at section offset `offset` with pcrel|sdata4 addresses."""
    field = offset + 8  # address of initial_location
    body = struct.pack("<I", offset + 4 - cie_offset)
    body += struct.pack("<i", start - (SEC + field)) + struct.pack("<i", size)
    return record(body + uleb(len(aug)) + aug + insns)


def build(fdes: list[tuple[int, int, bytes]], cie_bytes: bytes | None = None) -> bytes:
    data = cie_bytes if cie_bytes is not None else cie(insns=X86_CIE_INSNS)
    for start, size, insns in fdes:
        data += fde(len(data), 0, start, size, insns)
    return data + b"\0\0\0\0"


# push rbp; mov rbp,rsp; ...; remember; leave; ret-path; restore
FUNC_INSNS = (
    b"\x41" + b"\x0e" + uleb(16) + bytes([0x80 | RBP]) + uleb(2)   # loc+1: cfa=rsp+16, rbp@cfa-16
    + b"\x43" + b"\x0d" + uleb(RBP)                                 # loc+4: cfa=rbp+16
    + b"\x42" + bytes([0x80 | RBX]) + uleb(3)                       # loc+6: rbx@cfa-24
    + b"\x4a" + b"\x0a" + b"\x0c" + uleb(RSP) + uleb(8)             # loc+16: remember; cfa=rsp+8
    + b"\x41" + b"\x0b"                                             # loc+17: restore
)


def test_rows_follow_the_instructions():
    data = build([(0x4000, 0x40, FUNC_INSNS)])
    table = CfiTable(FrameSection(data, SEC, True))
    assert table.lookup(0x3FFF) is None and table.lookup(0x4040) is None
    r0 = table.lookup(0x4000)
    assert r0.row[:3] == (RSP, 8, None) and (RA, RULE_OFFSET, -8) in r0.row[3]
    assert table.lookup(0x4001).row[:2] == (RSP, 16)
    r4 = table.lookup(0x4005)
    assert r4.row[:2] == (RBP, 16) and (RBP, RULE_OFFSET, -16) in r4.row[3]
    assert (RBX, RULE_OFFSET, -24) in table.lookup(0x4006).row[3]
    assert table.lookup(0x4010).row[:2] == (RSP, 8)
    after = table.lookup(0x4011)
    assert after.row[:2] == (RBP, 16) and (RBX, RULE_OFFSET, -24) in after.row[3]
    assert table.lookup(0x403F).row == after.row
    assert r0.ra_reg == RA and not r0.signal_frame and r0.fde_start == 0x4000


def test_many_fdes_sorted_lookup_and_function_starts():
    fdes = [(0x8000 - 0x100 * i, 0x80, b"\x41\x0e" + uleb(16)) for i in range(50)]
    table = CfiTable(FrameSection(build(fdes), SEC, True))
    for start, _, _ in fdes:
        assert table.lookup(start + 0x10).fde_start == start
        assert table.lookup(start + 0x90) is None  # the gap between functions
    assert table.function_starts() == sorted(f[0] for f in fdes)


def _hdr(eh_addr: int, entries: list[tuple[int, int]], hdr_addr: int) -> bytes:
    out = bytes([1, 0x1B, 0x03, 0x3B])
    out += struct.pack("<i", eh_addr - (hdr_addr + 4)) + struct.pack("<I", len(entries))
    for start, fde_addr in sorted(entries):
        out += struct.pack("<ii", start - hdr_addr, fde_addr - hdr_addr)
    return out


def test_eh_frame_hdr_index_gives_the_same_answers():
    fdes = [(0x4000 + 0x100 * i, 0x80, FUNC_INSNS) for i in range(10)]
    data = build(fdes)
    sec = FrameSection(data, SEC, True)
    entries = [(f.start, SEC + f.offset) for f in iter_fdes(sec)]
    assert len(entries) == 10
    hdr_addr = 0x9000
    with_hdr = CfiTable(sec, (hdr_addr, _hdr(SEC, entries, hdr_addr)))
    without = CfiTable(sec)
    for pc in range(0x3FF0, 0x4A00, 3):
        a, b = with_hdr.lookup(pc), without.lookup(pc)
        assert (a is None) == (b is None)
        if a is not None:
            assert a.row == b.row and a.fde_start == b.fde_start


def test_a_corrupt_hdr_falls_back_to_a_full_parse():
    data = build([(0x4000, 0x40, FUNC_INSNS)])
    sec = FrameSection(data, SEC, True)
    table = CfiTable(sec, (0x9000, b"\x07garbage"))
    assert table.lookup(0x4005).row[:2] == (RBP, 16)


def test_augmentations_zplr_and_signal_frame():
    # 'P': personality, indirect|pcrel|sdata4 (0x9b) then 4 bytes; 'L': lsda pcrel|sdata4;
    # 'R': FDE encoding; 'S': signal frame (no data).
    aug_data = b"\x9b" + b"\x00\x00\x00\x00" + b"\x1b" + b"\x1b"
    c = cie(aug=b"zPLRS", aug_data=aug_data, insns=X86_CIE_INSNS)
    data = c + fde(len(c), 0, 0x5000, 0x20, b"\x41\x0e" + uleb(24), aug=b"\x00\x00\x00\x00")
    data += b"\0\0\0\0"
    table = CfiTable(FrameSection(data, SEC, True))
    row = table.lookup(0x5001)
    assert row is not None and row.signal_frame and row.row[:2] == (RSP, 24)


def test_unknown_augmentation_after_z_is_skipped_by_length():
    c = cie(aug=b"zRB", aug_data=b"\x1b", insns=X86_CIE_INSNS)
    data = c + fde(len(c), 0, 0x6000, 0x10, b"") + b"\0\0\0\0"
    assert CfiTable(FrameSection(data, SEC, True)).lookup(0x6004).row[:2] == (RSP, 8)


def test_debug_frame_version4_absolute_addresses():
    c = cie(aug=b"", cie_id=b"\xff\xff\xff\xff", version=4, extra=b"\x08\x00",
            insns=X86_CIE_INSNS)
    body = struct.pack("<I", 0) + struct.pack("<QQ", 0x7000, 0x30) + b"\x42\x0e" + uleb(32)
    data = c + record(body)
    table = CfiTable(debug_frame=FrameSection(data, 0, False))
    assert table.lookup(0x7000).row[:2] == (RSP, 8)
    assert table.lookup(0x7002).row[:2] == (RSP, 32)
    assert table.lookup(0x7030) is None


def test_dwarf64_lengths():
    body = b"\0" * 8 + bytes([1]) + b"zR\0" + uleb(1) + sleb(-8) + bytes([RA]) + uleb(1)
    body += b"\x1b" + X86_CIE_INSNS
    body += b"\0" * (-len(body) % 8)
    c = struct.pack("<IQ", 0xFFFFFFFF, len(body)) + body
    off = len(c)
    fbody = struct.pack("<Q", off + 12 - 0)             # CIE pointer (64-bit)
    field = off + 20
    fbody += struct.pack("<i", 0x8000 - (SEC + field)) + struct.pack("<i", 0x10) + b"\x00"
    fbody += b"\x41\x0e" + uleb(16)
    f = struct.pack("<IQ", 0xFFFFFFFF, len(fbody)) + fbody
    table = CfiTable(FrameSection(c + f + b"\0\0\0\0", SEC, True))
    assert table.lookup(0x8001).row[:2] == (RSP, 16)


def test_register_rules_of_every_kind():
    insns = (b"\x07" + uleb(12)                              # undefined r12
             + b"\x08" + uleb(13)                            # same_value r13
             + b"\x09" + uleb(14) + uleb(RBX)                # r14 in rbx
             + b"\x14" + uleb(15) + uleb(2)                  # r15 = cfa-16 (val_offset)
             + b"\x10" + uleb(RBX) + uleb(2) + b"\x77\x10"   # rbx @ [rsp+16] (expression)
             + b"\x0f" + uleb(2) + b"\x77\x08")              # cfa = rsp + 8 (expression)
    table = CfiTable(FrameSection(build([(0x4000, 0x10, insns)]), SEC, True))
    row = table.lookup(0x4000).row
    rules = {r: (k, a) for r, k, a in row[3]}
    assert rules[12] == (RULE_UNDEF, 0) and rules[13] == (RULE_SAME, 0)
    assert rules[14] == (RULE_REGISTER, RBX) and rules[15] == (RULE_VAL_OFFSET, -16)
    assert rules[RBX] == (RULE_EXPR, b"\x77\x10")
    assert row[2] == b"\x77\x08"


def test_malformed_fde_is_skipped_not_fatal():
    bad = b"\x0b"   # restore_state without remember_state
    good = b"\x41\x0e" + uleb(16)
    table = CfiTable(FrameSection(build([(0x4000, 0x10, bad), (0x5000, 0x10, good)]), SEC,
                                  True))
    assert table.lookup(0x4001) is None
    assert table.lookup(0x5001).row[:2] == (RSP, 16)
