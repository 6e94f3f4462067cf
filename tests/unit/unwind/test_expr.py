"""The bounded DWARF expression evaluator: PLT CFA expressions, deref, failure modes."""
from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from hud.unwind.expr import evaluate
from hud.unwind.memory import StackMemory

# What ld writes for .plt entries (x86_64): CFA = rsp + 8 + ((rip & 15) >= 11 ? 8 : 0).
PLT_EXPR = bytes([0x77, 0x08, 0x80, 0x00, 0x3F, 0x1A, 0x3B, 0x2A, 0x33, 0x24, 0x22])


def _no_mem(addr: int, size: int):
    return None


def test_plt_cfa_expression():
    for off in range(16):
        regs = {7: 0x7000, 16: 0x401020 + off}
        want = 0x7008 + (8 if off >= 11 else 0)
        assert evaluate(PLT_EXPR, regs, _no_mem) == want


def test_deref_reads_only_the_stack_copy():
    mem = StackMemory(0x1000, struct.pack("<QQ", 0xAAAA, 0xBBBB))
    # breg7(rsp)+8; deref
    assert evaluate(bytes([0x77, 0x08, 0x06]), {7: 0x1000}, mem.read) == 0xBBBB
    assert evaluate(bytes([0x77, 0x10, 0x06]), {7: 0x1000}, mem.read) is None
    # deref_size 4
    assert evaluate(bytes([0x77, 0x00, 0x94, 0x04]), {7: 0x1000}, mem.read) == 0xAAAA


def test_pushed_cfa_and_arithmetic():
    # CFA pushed first; lit16; minus -> CFA - 16
    assert evaluate(bytes([0x40, 0x1C]), {}, _no_mem, push=0x2000) == 0x1FF0
    # const1s -1; neg -> 1; lit3; shl -> 8; constu 5; mul -> 40
    assert evaluate(bytes([0x09, 0xFF, 0x1F, 0x33, 0x24, 0x10, 0x05, 0x1E]), {},
                    _no_mem) == 40
    # bregx r12 -8
    assert evaluate(bytes([0x92, 0x0C, 0x78]), {12: 0x100}, _no_mem) == 0xF8


def test_branch_loop_is_bounded():
    # lit1; bra -3 (jumps back onto itself forever, the stack growing each turn)
    assert evaluate(bytes([0x31, 0x28, 0xFD, 0xFF]), {}, _no_mem) is None
    # skip 0 forever: skip -3
    assert evaluate(bytes([0x2F, 0xFD, 0xFF]), {}, _no_mem) is None


def test_failures_are_none():
    assert evaluate(bytes([0x22]), {}, _no_mem) is None            # underflow
    assert evaluate(bytes([0x75, 0x00]), {}, _no_mem) is None      # missing register
    assert evaluate(bytes([0xE0]), {}, _no_mem) is None            # unsupported op
    assert evaluate(bytes([0x0E, 0x01]), {}, _no_mem) is None      # truncated const8u
    assert evaluate(b"", {}, _no_mem) is None                      # empty


@settings(max_examples=300)
@given(st.binary(max_size=64), st.dictionaries(st.integers(0, 40),
                                               st.integers(0, (1 << 64) - 1)))
def test_random_expressions_never_raise(expr, regs):
    mem = StackMemory(0x1000, bytes(range(256)))
    v = evaluate(expr, regs, mem.read, push=0x1010)
    assert v is None or 0 <= v < (1 << 64)
