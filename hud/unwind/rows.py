"""Run an FDE's call frame instructions (DWARF 5 §6.4.2) into a compact row table.

A row says, for the addresses [loc, next loc), how to compute the CFA and where each
saved register lives. Rows are plain tuples for speed:

    row  = (cfa_reg, cfa_off, cfa_expr, rules)   cfa_expr is bytes or None (then cfa_reg+off)
    rules = ((regno, kind, arg), ...)             only registers with an explicit rule

The instruction stream is untrusted: instruction count, row count and remember-state depth
are bounded, and any decoding error raises CfiError for the whole FDE.
"""
from __future__ import annotations

from hud.unwind.cfi import Cie, Fde, FrameSection
from hud.unwind.encoding import _U16, _U32, CfiError, fixed, pointer, sleb, u8, uleb

RULE_UNDEF = 0       # register not recoverable (RA undefined: the outermost frame)
RULE_SAME = 1        # same value as in the callee
RULE_OFFSET = 2      # saved at CFA + arg
RULE_VAL_OFFSET = 3  # value is CFA + arg
RULE_REGISTER = 4    # value is in register arg
RULE_EXPR = 5        # saved at the address the expression arg computes (CFA pushed first)
RULE_VAL_EXPR = 6    # value is what the expression computes

MAX_INSNS = 1 << 16
MAX_ROWS = 1 << 14
MAX_REMEMBER = 64
MAX_REGNO = 128      # DWARF register numbers we accept (x86_64 and aarch64 use < 128)

Row = tuple  # (cfa_reg, cfa_off, cfa_expr, rules)


def _row(cfa: tuple, regs: dict) -> Row:
    return (cfa[0], cfa[1], cfa[2], tuple((r, k, a) for r, (k, a) in sorted(regs.items())))


def _block(data: bytes, pos: int, end: int) -> tuple[bytes, int]:
    n, pos = uleb(data, pos)
    if pos + n > end:
        raise CfiError("expression block runs past the FDE")
    return bytes(data[pos:pos + n]), pos + n


def _reg(data: bytes, pos: int) -> tuple[int, int]:
    r, pos = uleb(data, pos)
    if r >= MAX_REGNO:
        raise CfiError(f"register number {r} out of range")
    return r, pos


def _execute(sec: FrameSection, cie: Cie, start: int, end: int, loc: int, limit_loc: int,
             cfa: tuple, regs: dict, initial: dict, rows: list) -> tuple:
    """Interpret [start, end) of the section; append (loc, row) to rows at each advance.

    Returns (cfa, regs, loc) after the last instruction.
    """
    data = sec.data
    stack: list = []
    ca = cie.code_align
    da = cie.data_align
    pos = start
    steps = 0
    while pos < end:
        steps += 1
        if steps > MAX_INSNS:
            raise CfiError("too many call frame instructions")
        op = data[pos]
        pos += 1
        hi = op & 0xC0
        new_loc = -1
        if hi == 0x40:                      # DW_CFA_advance_loc
            new_loc = loc + (op & 0x3F) * ca
        elif hi == 0x80:                    # DW_CFA_offset
            off, pos = uleb(data, pos)
            regs[op & 0x3F] = (RULE_OFFSET, off * da)
        elif hi == 0xC0:                    # DW_CFA_restore
            r = op & 0x3F
            if r in initial:
                regs[r] = initial[r]
            else:
                regs.pop(r, None)
        elif op == 0x00:                    # DW_CFA_nop
            pass
        elif op == 0x01:                    # DW_CFA_set_loc
            new_loc, pos = pointer(data, pos, cie.fde_encoding, sec.addr, sec.data_base,
                                   addr_size=cie.addr_size)
        elif op == 0x02:                    # DW_CFA_advance_loc1
            d, pos = u8(data, pos)
            new_loc = loc + d * ca
        elif op == 0x03:                    # DW_CFA_advance_loc2
            d, pos = fixed(data, pos, _U16)
            new_loc = loc + d * ca
        elif op == 0x04:                    # DW_CFA_advance_loc4
            d, pos = fixed(data, pos, _U32)
            new_loc = loc + d * ca
        elif op == 0x05:                    # DW_CFA_offset_extended
            r, pos = _reg(data, pos)
            off, pos = uleb(data, pos)
            regs[r] = (RULE_OFFSET, off * da)
        elif op == 0x06:                    # DW_CFA_restore_extended
            r, pos = _reg(data, pos)
            if r in initial:
                regs[r] = initial[r]
            else:
                regs.pop(r, None)
        elif op == 0x07:                    # DW_CFA_undefined
            r, pos = _reg(data, pos)
            regs[r] = (RULE_UNDEF, 0)
        elif op == 0x08:                    # DW_CFA_same_value
            r, pos = _reg(data, pos)
            regs[r] = (RULE_SAME, 0)
        elif op == 0x09:                    # DW_CFA_register
            r, pos = _reg(data, pos)
            r2, pos = _reg(data, pos)
            regs[r] = (RULE_REGISTER, r2)
        elif op == 0x0A:                    # DW_CFA_remember_state
            if len(stack) >= MAX_REMEMBER:
                raise CfiError("remember_state nested too deep")
            stack.append((cfa, dict(regs)))
        elif op == 0x0B:                    # DW_CFA_restore_state
            if not stack:
                raise CfiError("restore_state without remember_state")
            # The CFA rule is part of the remembered state (DWARF 5 §6.4.2.4).
            cfa, regs = stack.pop()
        elif op == 0x0C:                    # DW_CFA_def_cfa
            r, pos = _reg(data, pos)
            off, pos = uleb(data, pos)
            cfa = (r, off, None)
        elif op == 0x0D:                    # DW_CFA_def_cfa_register
            r, pos = _reg(data, pos)
            cfa = (r, cfa[1] if cfa[2] is None else 0, None)
        elif op == 0x0E:                    # DW_CFA_def_cfa_offset
            off, pos = uleb(data, pos)
            cfa = (cfa[0], off, None)
        elif op == 0x0F:                    # DW_CFA_def_cfa_expression
            expr, pos = _block(data, pos, end)
            cfa = (-1, 0, expr)
        elif op == 0x10:                    # DW_CFA_expression
            r, pos = _reg(data, pos)
            expr, pos = _block(data, pos, end)
            regs[r] = (RULE_EXPR, expr)
        elif op == 0x11:                    # DW_CFA_offset_extended_sf
            r, pos = _reg(data, pos)
            off, pos = sleb(data, pos)
            regs[r] = (RULE_OFFSET, off * da)
        elif op == 0x12:                    # DW_CFA_def_cfa_sf
            r, pos = _reg(data, pos)
            off, pos = sleb(data, pos)
            cfa = (r, off * da, None)
        elif op == 0x13:                    # DW_CFA_def_cfa_offset_sf
            off, pos = sleb(data, pos)
            cfa = (cfa[0], off * da, None)
        elif op == 0x14:                    # DW_CFA_val_offset
            r, pos = _reg(data, pos)
            off, pos = uleb(data, pos)
            regs[r] = (RULE_VAL_OFFSET, off * da)
        elif op == 0x15:                    # DW_CFA_val_offset_sf
            r, pos = _reg(data, pos)
            off, pos = sleb(data, pos)
            regs[r] = (RULE_VAL_OFFSET, off * da)
        elif op == 0x16:                    # DW_CFA_val_expression
            r, pos = _reg(data, pos)
            expr, pos = _block(data, pos, end)
            regs[r] = (RULE_VAL_EXPR, expr)
        elif op == 0x2D:                    # DW_CFA_GNU_window_save / AARCH64_negate_ra_state
            pass                            # PAC bits are stripped from every RA on aarch64
        elif op == 0x2E:                    # DW_CFA_GNU_args_size
            _, pos = uleb(data, pos)
        elif op == 0x2F:                    # DW_CFA_GNU_negative_offset_extended
            r, pos = _reg(data, pos)
            off, pos = uleb(data, pos)
            regs[r] = (RULE_OFFSET, -off * da)
        else:
            raise CfiError(f"unknown call frame instruction 0x{op:02x}")
        if new_loc >= 0:
            if new_loc < loc:
                raise CfiError("call frame location goes backwards")
            if new_loc != loc and rows is not None:
                if len(rows) >= MAX_ROWS:
                    raise CfiError("too many CFI rows")
                rows.append((loc, _row(cfa, regs)))
            loc = new_loc
            if loc >= limit_loc:
                break
    return cfa, regs, loc


def initial_state(sec: FrameSection, cie: Cie) -> tuple[tuple, dict]:
    """(cfa, register rules) after the CIE's initial instructions."""
    cfa: tuple = (-1, 0, None)
    regs: dict = {}
    cfa, regs, _ = _execute(sec, cie, cie.insn_start, cie.insn_end, 0, 1 << 64, cfa, regs,
                            {}, None)
    return cfa, regs


def row_table(sec: FrameSection, fde: Fde, cie_state: tuple) -> tuple[list, list]:
    """(locs, rows) of one FDE, sorted by loc; row i covers [locs[i], locs[i+1] or end)."""
    cfa, init_regs = cie_state
    regs = dict(init_regs)
    rows: list = []
    cfa, regs, loc = _execute(sec, fde.cie, fde.insn_start, fde.insn_end, fde.start, fde.end,
                              cfa, regs, init_regs, rows)
    if loc < fde.end:
        rows.append((loc, _row(cfa, regs)))
    return [r[0] for r in rows], [r[1] for r in rows]
