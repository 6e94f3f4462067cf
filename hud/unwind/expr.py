"""A bounded DWARF expression evaluator (DWARF 5 §2.5) for CFA and register rules.

Only what CFI uses in practice: constants, breg/bregx, arithmetic and logic, comparisons,
stack ops, branches and deref from the captured stack. Anything else, a stack underflow,
an unreadable address or too many steps gives None: the frame fails softly.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Callable, Optional

from hud.unwind.encoding import MASK64, CfiError, sleb, uleb

MAX_STEPS = 256
MAX_STACK = 64

ReadFn = Callable[[int, int], Optional[int]]  # (address, size) -> value or None


def _signed(v: int) -> int:
    return v - (1 << 64) if v & (1 << 63) else v


_BINARY = {
    0x1A: lambda a, b: a & b,                             # and
    0x1C: lambda a, b: a - b,                             # minus
    0x1E: lambda a, b: a * b,                             # mul
    0x21: lambda a, b: a | b,                             # or
    0x22: lambda a, b: a + b,                             # plus
    0x24: lambda a, b: a << b if b < 64 else 0,           # shl
    0x25: lambda a, b: a >> b if b < 64 else 0,           # shr
    0x26: lambda a, b: _signed(a) >> min(b, 63),          # shra
    0x27: lambda a, b: a ^ b,                             # xor
    0x29: lambda a, b: int(a == b),                       # eq
    0x2A: lambda a, b: int(_signed(a) >= _signed(b)),     # ge
    0x2B: lambda a, b: int(_signed(a) > _signed(b)),      # gt
    0x2C: lambda a, b: int(_signed(a) <= _signed(b)),     # le
    0x2D: lambda a, b: int(_signed(a) < _signed(b)),      # lt
    0x2E: lambda a, b: int(a != b),                       # ne
}
_CONST_SIZES = {0x08: (1, False), 0x09: (1, True), 0x0A: (2, False), 0x0B: (2, True),
                0x0C: (4, False), 0x0D: (4, True), 0x0E: (8, False), 0x0F: (8, True)}


def evaluate(expr: bytes, regs: Mapping[int, int], read: ReadFn,
             push: Optional[int] = None) -> Optional[int]:
    """Value on top of the stack after running `expr`, or None when it cannot be computed.

    `regs` maps DWARF register numbers to values (a missing register fails the evaluation);
    `push` is pushed first (the CFA, for DW_CFA_expression / val_expression).
    """
    try:
        return _run(expr, regs, read, push)
    except (CfiError, IndexError, KeyError):
        return None


def _run(expr: bytes, regs: Mapping[int, int], read: ReadFn,
         push: Optional[int]) -> Optional[int]:
    stack: list[int] = [] if push is None else [push & MASK64]
    pos = 0
    n = len(expr)
    steps = 0
    while pos < n:
        steps += 1
        if steps > MAX_STEPS or len(stack) > MAX_STACK:
            return None
        op = expr[pos]
        pos += 1
        if 0x30 <= op <= 0x4F:                       # lit0..lit31
            stack.append(op - 0x30)
        elif 0x70 <= op <= 0x8F:                     # breg0..breg31
            off, pos = sleb(expr, pos)
            stack.append((regs[op - 0x70] + off) & MASK64)
        elif op == 0x92:                             # bregx
            r, pos = uleb(expr, pos)
            off, pos = sleb(expr, pos)
            stack.append((regs[r] + off) & MASK64)
        elif op in _BINARY:
            b = stack.pop()
            a = stack.pop()
            stack.append(_BINARY[op](a, b) & MASK64)
        elif op in _CONST_SIZES:
            size, signed = _CONST_SIZES[op]
            if pos + size > n:
                return None
            v = int.from_bytes(expr[pos:pos + size], "little", signed=signed)
            pos += size
            stack.append(v & MASK64)
        elif op == 0x10:                             # constu
            v, pos = uleb(expr, pos)
            stack.append(v)
        elif op == 0x11:                             # consts
            v, pos = sleb(expr, pos)
            stack.append(v & MASK64)
        elif op == 0x23:                             # plus_uconst
            v, pos = uleb(expr, pos)
            stack.append((stack.pop() + v) & MASK64)
        elif op == 0x06 or op == 0x94:               # deref, deref_size
            size = 8
            if op == 0x94:
                if pos >= n:
                    return None
                size = expr[pos]
                pos += 1
                if size not in (1, 2, 4, 8):
                    return None
            v = read(stack.pop(), size)
            if v is None:
                return None
            stack.append(v)
        elif op == 0x12:                             # dup
            stack.append(stack[-1])
        elif op == 0x13:                             # drop
            stack.pop()
        elif op == 0x14:                             # over
            stack.append(stack[-2])
        elif op == 0x15:                             # pick
            if pos >= n:
                return None
            idx = expr[pos]
            pos += 1
            stack.append(stack[-1 - idx])
        elif op == 0x16:                             # swap
            stack[-1], stack[-2] = stack[-2], stack[-1]
        elif op == 0x17:                             # rot
            stack[-1], stack[-2], stack[-3] = stack[-2], stack[-3], stack[-1]
        elif op == 0x19:                             # abs
            stack.append(abs(_signed(stack.pop())) & MASK64)
        elif op == 0x1F:                             # neg
            stack.append(-_signed(stack.pop()) & MASK64)
        elif op == 0x20:                             # not
            stack.append(~stack.pop() & MASK64)
        elif op == 0x2F or op == 0x28:               # skip, bra
            if pos + 2 > n:
                return None
            delta = int.from_bytes(expr[pos:pos + 2], "little", signed=True)
            pos += 2
            if op == 0x2F or stack.pop() != 0:
                pos += delta
                if pos < 0 or pos > n:
                    return None
        elif op == 0x96:                             # nop
            pass
        else:
            return None                              # unsupported op: give up softly
    return stack[-1] if stack else None
