"""One CFI unwinding step: from a frame's registers and its CFI row to the caller's registers.

Registers without a rule keep their value (callee-saved by the ABI, which is what GCC and
LLVM assume); registers that cannot be recovered are dropped, and only a missing CFA base
or return address fails the step.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Optional

from hud.unwind.arch import Arch
from hud.unwind.expr import evaluate
from hud.unwind.fp import END, STACK_EXHAUSTED
from hud.unwind.memory import StackMemory
from hud.unwind.rows import (
    RULE_EXPR,
    RULE_OFFSET,
    RULE_REGISTER,
    RULE_SAME,
    RULE_UNDEF,
    RULE_VAL_EXPR,
    RULE_VAL_OFFSET,
)
from hud.unwind.table import CfiRow

MASK64 = (1 << 64) - 1
UNKNOWN_REGISTER = "unknown_register"  # the CFA is based on a register we could not recover
BAD_EXPRESSION = "bad_expression"      # a CFA expression could not be evaluated


def value(regs: dict, reg: int, mem: StackMemory) -> Optional[int]:
    """A register's value; a register saved on the stack is read only now, when needed.

    Callee-saved registers are restored lazily (as a 1-tuple holding the stack address):
    most are never needed, since CFA rules use sp or the frame pointer. Reading only what
    the walk needs is faster, and makes a walk depend on fewer stack bytes, which is what
    lets the unwinder's memo recognize a thread leaving the CPU at the same place again.
    """
    v = regs.get(reg)
    if type(v) is tuple:
        v = mem.u64(v[0])
    return v


class _Values(Mapping):
    """A read-only view of a register file with lazy entries resolved (for expressions)."""

    __slots__ = ("_mem", "_regs")

    def __init__(self, regs: dict, mem: StackMemory) -> None:
        self._regs, self._mem = regs, mem

    def __getitem__(self, reg: int) -> int:
        v = value(self._regs, reg, self._mem)
        if v is None:
            raise KeyError(reg)
        return v

    def __iter__(self) -> Iterator[int]:
        return iter(self._regs)

    def __len__(self) -> int:
        return len(self._regs)


def cfi_step(arch: Arch, crow: CfiRow, regs: dict[int, int], mem: StackMemory
             ) -> tuple[Optional[dict[int, int]], int, str]:
    """(caller regs, return address, reason): reason is "" on success, else why it failed."""
    cfa_reg, cfa_off, cfa_expr, rules = crow.row
    if cfa_expr is None:
        base = value(regs, cfa_reg, mem)
        if base is None:
            return None, 0, UNKNOWN_REGISTER
        cfa = (base + cfa_off) & MASK64
    else:
        v = evaluate(cfa_expr, _Values(regs, mem), mem.read)
        if v is None:
            return None, 0, BAD_EXPRESSION
        cfa = v
    new = dict(regs)
    ra_reg = crow.ra_reg
    ra_failed = ""
    for reg, kind, arg in rules:
        if kind == RULE_OFFSET:
            if reg != ra_reg:
                new[reg] = ((cfa + arg) & MASK64,)     # read when (if ever) needed
                continue
            v = mem.u64((cfa + arg) & MASK64)
        elif kind == RULE_SAME:
            continue
        elif kind == RULE_UNDEF:
            if reg == ra_reg:
                return None, 0, END
            new.pop(reg, None)
            continue
        elif kind == RULE_VAL_OFFSET:
            v = (cfa + arg) & MASK64
        elif kind == RULE_REGISTER:
            v = regs.get(arg)
        elif kind == RULE_EXPR:
            addr = evaluate(arg, _Values(regs, mem), mem.read, push=cfa)
            v = None if addr is None else mem.u64(addr)
        elif kind == RULE_VAL_EXPR:
            v = evaluate(arg, _Values(regs, mem), mem.read, push=cfa)
        else:
            v = None
        if v is None:
            new.pop(reg, None)
            if reg == ra_reg:
                ra_failed = STACK_EXHAUSTED if kind in (RULE_OFFSET, RULE_EXPR) \
                    else UNKNOWN_REGISTER
        else:
            new[reg] = v
    if ra_failed:
        return None, 0, ra_failed
    ra = value(new, ra_reg, mem)
    if ra is None:
        return None, 0, UNKNOWN_REGISTER
    ra &= arch.ra_mask
    new[arch.sp] = cfa
    if arch.ip >= 0:
        new[arch.ip] = ra
    return new, ra, ""
