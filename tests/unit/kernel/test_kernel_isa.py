"""Byte-exact encodings of every builder, hand-computed from the instruction-set spec.

Each expected value is written out from Documentation/bpf/standardization/
instruction-set.rst: opcode = operation | source | class (ALU/JMP) or mode | size | class
(load/store); byte 1 = dst | src << 4; then s16 off and s32 imm, little-endian.
"""
from __future__ import annotations

import pytest

from kernel import isa
from kernel.isa import (
    BPF_ADD,
    BPF_ALU32_IMM,
    BPF_ALU32_REG,
    BPF_ALU64_IMM,
    BPF_ALU64_REG,
    BPF_AND,
    BPF_ARSH,
    BPF_ATOMIC_OP,
    BPF_B,
    BPF_CALL_REL,
    BPF_DIV,
    BPF_DW,
    BPF_EMIT_CALL,
    BPF_ENDIAN,
    BPF_EXIT_INSN,
    BPF_H,
    BPF_JEQ,
    BPF_JGE,
    BPF_JGT,
    BPF_JLE,
    BPF_JLT,
    BPF_JMP32_IMM,
    BPF_JMP32_REG,
    BPF_JMP_A,
    BPF_JMP_IMM,
    BPF_JMP_REG,
    BPF_JNE,
    BPF_JSET,
    BPF_JSGE,
    BPF_JSGT,
    BPF_JSLE,
    BPF_JSLT,
    BPF_LD_IMM64,
    BPF_LD_MAP_FD,
    BPF_LD_MAP_VALUE,
    BPF_LDX_MEM,
    BPF_LDX_MEMSX,
    BPF_LSH,
    BPF_MOD,
    BPF_MOV32_IMM,
    BPF_MOV32_REG,
    BPF_MOV64_IMM,
    BPF_MOV64_REG,
    BPF_MUL,
    BPF_NEG,
    BPF_OR,
    BPF_RAW_INSN,
    BPF_RSH,
    BPF_ST_MEM,
    BPF_STX_MEM,
    BPF_STX_XADD,
    BPF_SUB,
    BPF_TO_BE,
    BPF_TO_LE,
    BPF_W,
    BPF_XCHG,
    BPF_XOR,
    R0,
    R1,
    R2,
    R3,
    R6,
    R10,
    EncodingError,
    Insn,
)

CASES = [
    # ALU64 immediate / register (class 0x07, K=0x00, X=0x08)
    (BPF_MOV64_IMM(R1, 0), "b7 01 0000 00000000"),
    (BPF_MOV64_IMM(R3, -1), "b7 03 0000 ffffffff"),
    (BPF_MOV64_REG(R2, R10), "bf a2 0000 00000000"),
    (BPF_ALU64_IMM(BPF_ADD, R2, -8), "07 02 0000 f8ffffff"),
    (BPF_ALU64_REG(BPF_SUB, R1, R2), "1f 21 0000 00000000"),
    (BPF_ALU64_IMM(BPF_MUL, R0, 3), "27 00 0000 03000000"),
    (BPF_ALU64_IMM(BPF_DIV, R0, 10), "37 00 0000 0a000000"),
    (BPF_ALU64_IMM(BPF_OR, R0, 1), "47 00 0000 01000000"),
    (BPF_ALU64_IMM(BPF_AND, R0, 0xff), "57 00 0000 ff000000"),
    (BPF_ALU64_IMM(BPF_LSH, R1, 32), "67 01 0000 20000000"),
    (BPF_ALU64_IMM(BPF_RSH, R0, 32), "77 00 0000 20000000"),
    (BPF_ALU64_IMM(BPF_NEG, R0, 0), "87 00 0000 00000000"),
    (BPF_ALU64_IMM(BPF_MOD, R0, 7), "97 00 0000 07000000"),
    (BPF_ALU64_IMM(BPF_XOR, R6, 5), "a7 06 0000 05000000"),
    (BPF_ALU64_REG(BPF_ARSH, R1, R6), "cf 61 0000 00000000"),
    # ALU (32-bit, class 0x04): moves zero-extend
    (BPF_MOV32_IMM(R3, -1), "b4 03 0000 ffffffff"),
    (BPF_MOV32_IMM(R3, 0xFFFFFFFF), "b4 03 0000 ffffffff"),
    (BPF_MOV32_REG(R1, R2), "bc 21 0000 00000000"),
    (BPF_ALU32_REG(BPF_ADD, R1, R2), "0c 21 0000 00000000"),
    (BPF_ALU32_IMM(BPF_AND, R0, 1), "54 00 0000 01000000"),
    (BPF_ENDIAN(BPF_TO_BE, R1, 16), "dc 01 0000 10000000"),
    (BPF_ENDIAN(BPF_TO_LE, R1, 64), "d4 01 0000 40000000"),
    # LD_IMM64: two slots, low half first; src_reg 1 = BPF_PSEUDO_MAP_FD, 2 = MAP_VALUE
    (BPF_LD_IMM64(R1, 0x1122334455667788),
     "18 01 0000 88776655 00 00 0000 44332211"),
    (BPF_LD_IMM64(R0, -1), "18 00 0000 ffffffff 00 00 0000 ffffffff"),
    (BPF_LD_MAP_FD(R1, 7), "18 11 0000 07000000 00 00 0000 00000000"),
    (BPF_LD_MAP_VALUE(R2, 5, 16), "18 22 0000 05000000 00 00 0000 10000000"),
    # LDX / STX / ST (mode MEM 0x60, sizes W 0x00 H 0x08 B 0x10 DW 0x18)
    (BPF_LDX_MEM(BPF_DW, R0, R1, 8), "79 10 0800 00000000"),
    (BPF_LDX_MEM(BPF_W, R6, R1, 24), "61 16 1800 00000000"),
    (BPF_LDX_MEM(BPF_H, R2, R3, -2), "69 32 feff 00000000"),
    (BPF_LDX_MEM(BPF_B, R0, R0, 0), "71 00 0000 00000000"),
    (BPF_LDX_MEMSX(BPF_W, R0, R1, 4), "81 10 0400 00000000"),
    (BPF_STX_MEM(BPF_DW, R10, R1, -8), "7b 1a f8ff 00000000"),
    (BPF_STX_MEM(BPF_W, R10, R0, -4), "63 0a fcff 00000000"),
    (BPF_STX_MEM(BPF_B, R1, R2, 1), "73 21 0100 00000000"),
    (BPF_STX_MEM(BPF_H, R1, R2, 2), "6b 21 0200 00000000"),
    (BPF_ST_MEM(BPF_W, R10, -4, 7), "62 0a fcff 07000000"),
    (BPF_ST_MEM(BPF_DW, R10, -16, -1), "7a 0a f0ff ffffffff"),
    # Atomics (mode ATOMIC 0xc0, op in imm)
    (BPF_STX_XADD(BPF_DW, R0, R1, 0), "db 10 0000 00000000"),
    (BPF_STX_XADD(BPF_W, R0, R1, 4), "c3 10 0400 00000000"),
    (BPF_ATOMIC_OP(BPF_DW, BPF_XCHG, R1, R2, 0), "db 21 0000 e1000000"),
    # JMP (class 0x05) and JMP32 (class 0x06); offsets count slots after the jump
    (BPF_JMP_IMM(BPF_JEQ, R0, 0, 3), "15 00 0300 00000000"),
    (BPF_JMP_IMM(BPF_JNE, R0, -14, 1), "55 00 0100 f2ffffff"),
    (BPF_JMP_IMM(BPF_JGT, R1, 5, 2), "25 01 0200 05000000"),
    (BPF_JMP_IMM(BPF_JGE, R1, 5, 2), "35 01 0200 05000000"),
    (BPF_JMP_IMM(BPF_JSET, R1, 4, 2), "45 01 0200 04000000"),
    (BPF_JMP_IMM(BPF_JLT, R1, 5, 2), "a5 01 0200 05000000"),
    (BPF_JMP_IMM(BPF_JLE, R1, 5, 2), "b5 01 0200 05000000"),
    (BPF_JMP_IMM(BPF_JSGT, R1, 0, 1), "65 01 0100 00000000"),
    (BPF_JMP_IMM(BPF_JSGE, R1, 0, 1), "75 01 0100 00000000"),
    (BPF_JMP_IMM(BPF_JSLT, R1, 0, 1), "c5 01 0100 00000000"),
    (BPF_JMP_IMM(BPF_JSLE, R1, 0, 1), "d5 01 0100 00000000"),
    (BPF_JMP_REG(BPF_JSGT, R1, R2, -2), "6d 21 feff 00000000"),
    (BPF_JMP_REG(BPF_JEQ, R6, R0, 0), "1d 06 0000 00000000"),
    (BPF_JMP32_IMM(BPF_JNE, R0, 1, 1), "56 00 0100 01000000"),
    (BPF_JMP32_REG(BPF_JSLT, R1, R2, 4), "ce 21 0400 00000000"),
    (BPF_JMP32_IMM(BPF_JSGE, R0, -1, -3), "76 00 fdff ffffffff"),
    (BPF_JMP_A(-1), "05 00 ffff 00000000"),
    (BPF_EMIT_CALL(5), "85 00 0000 05000000"),
    (BPF_CALL_REL(3), "85 10 0000 03000000"),
    (BPF_EXIT_INSN(), "95 00 0000 00000000"),
    (BPF_RAW_INSN(0xbf, 1, 6, 0, 0), "bf 61 0000 00000000"),
]


def _hex(insns) -> str:
    if isinstance(insns, Insn):
        insns = (insns,)
    return " ".join(f"{i.code:02x} {i.dst | i.src << 4:02x} {i.encode()[2:4].hex()} "
                    f"{i.encode()[4:].hex()}" for i in insns)


@pytest.mark.parametrize("insns, expected", CASES, ids=[c[1] for c in CASES])
def test_builder_encodes_byte_exactly(insns, expected):
    assert _hex(insns) == expected
    raw = isa.encode(insns if isinstance(insns, tuple) else (insns,))
    assert raw == bytes.fromhex(expected.replace(" ", ""))


def test_decode_inverts_encode():
    insns = []
    for item, _ in CASES:
        insns.extend(item if isinstance(item, tuple) else (item,))
    assert isa.decode(isa.encode(insns)) == insns


@pytest.mark.parametrize("build", [
    lambda: BPF_MOV64_REG(R1, 11),
    lambda: BPF_LDX_MEM(BPF_DW, R0, R1, 1 << 15),
    lambda: BPF_JMP_A(-(1 << 15) - 1),
    lambda: BPF_MOV64_IMM(R0, 1 << 32),
    lambda: BPF_MOV64_IMM(R0, -(1 << 31) - 1),
    lambda: BPF_LD_IMM64(R0, 1 << 64),
    lambda: BPF_ENDIAN(BPF_TO_BE, R0, 8),
    lambda: BPF_ATOMIC_OP(BPF_B, BPF_ADD, R0, R1, 0),
])
def test_out_of_range_fields_are_refused(build):
    with pytest.raises(EncodingError):
        build()


def test_decode_rejects_partial_slots():
    with pytest.raises(EncodingError):
        isa.decode(b"\x95" + b"\0" * 8)
