"""Frame-pointer walks over synthetic stacks: chains, loops, truncation, the end."""
from __future__ import annotations

import struct

from hud.unwind.arch import AARCH64, X86_64
from hud.unwind.fp import fp_walk
from hud.unwind.memory import StackMemory

BASE = 0x7FFF0000


def _stack(frames: list[tuple[int, int, int]], size: int = 0x400) -> bytes:
    """frames: (offset of the frame record, saved fp, return address)."""
    buf = bytearray(size)
    for off, fp, ra in frames:
        struct.pack_into("<QQ", buf, off, fp, ra)
    return bytes(buf)


def test_chain_to_the_end():
    data = _stack([(0x20, BASE + 0x80, 0x401111), (0x80, BASE + 0x100, 0x402222),
                   (0x100, 0, 0x403333)])
    for arch in (X86_64, AARCH64):
        ips, reason = fp_walk(arch, 0x400000, BASE, BASE + 0x20, StackMemory(BASE, data))
        assert ips == (0x400000, 0x401111, 0x402222, 0x403333)
        assert reason == "end"


def test_loop_is_no_progress():
    data = _stack([(0x20, BASE + 0x40, 0x401111), (0x40, BASE + 0x20, 0x402222)])
    ips, reason = fp_walk(X86_64, 0x400000, BASE, BASE + 0x20, StackMemory(BASE, data))
    assert reason == "no_progress" and len(ips) <= 3


def test_self_loop_is_no_progress():
    data = _stack([(0x20, BASE + 0x20, 0x401111)])
    _ips, reason = fp_walk(X86_64, 0x400000, BASE, BASE + 0x20, StackMemory(BASE, data))
    assert reason == "no_progress"


def test_truncated_copy_is_stack_exhausted():
    data = _stack([(0x20, BASE + 0x3F8, 0x401111)])
    ips, reason = fp_walk(X86_64, 0x400000, BASE, BASE + 0x20, StackMemory(BASE, data))
    assert ips == (0x400000, 0x401111) and reason == "stack_exhausted"


def test_fp_below_sp_or_misaligned_stops():
    data = _stack([])
    assert fp_walk(X86_64, 1, BASE + 8, BASE, StackMemory(BASE, data))[1] == "no_progress"
    assert fp_walk(X86_64, 1, BASE, BASE + 3, StackMemory(BASE, data))[1] == "no_progress"


def test_max_depth():
    frames = [(0x10 * i, BASE + 0x10 * (i + 1), 0x400000 + i) for i in range(60)]
    data = _stack(frames, 0x10 * 61)
    ips, reason = fp_walk(X86_64, 1, BASE, BASE, StackMemory(BASE, data), max_frames=10)
    assert len(ips) == 10 and reason == "max_depth"


def test_aarch64_pac_bits_are_stripped():
    data = _stack([(0x20, 0, 0x7F00_0000_1234 | (0x2B << 56))])
    ips, _ = fp_walk(AARCH64, 1, BASE, BASE + 0x20, StackMemory(BASE, data))
    assert ips[1] == 0x7F00_0000_1234
