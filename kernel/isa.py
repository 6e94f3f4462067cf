"""eBPF instruction encoding: opcode fields and builders named like the kernel's filter.h.

`struct bpf_insn` is 8 bytes: u8 code, u8 dst_reg:4 | src_reg:4 (dst in the low nibble on
little-endian hosts), s16 off, s32 imm. A 64-bit immediate load (BPF_LD_IMM64) occupies two
slots, the second with code 0 holding the upper 32 bits; jump offsets count slots, relative
to the slot after the jump. Encodings follow Documentation/bpf/standardization/
instruction-set.rst. Only little-endian hosts are supported (x86_64, aarch64).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

# Instruction classes (low 3 bits of code)
BPF_LD = 0x00
BPF_LDX = 0x01
BPF_ST = 0x02
BPF_STX = 0x03
BPF_ALU = 0x04
BPF_JMP = 0x05
BPF_JMP32 = 0x06
BPF_ALU64 = 0x07

# Size (load/store)
BPF_W = 0x00
BPF_H = 0x08
BPF_B = 0x10
BPF_DW = 0x18

# Mode (load/store)
BPF_IMM = 0x00
BPF_ABS = 0x20
BPF_IND = 0x40
BPF_MEM = 0x60
BPF_MEMSX = 0x80
BPF_ATOMIC = 0xC0

# Source operand (ALU/JMP)
BPF_K = 0x00
BPF_X = 0x08

# ALU operations
BPF_ADD = 0x00
BPF_SUB = 0x10
BPF_MUL = 0x20
BPF_DIV = 0x30
BPF_OR = 0x40
BPF_AND = 0x50
BPF_LSH = 0x60
BPF_RSH = 0x70
BPF_NEG = 0x80
BPF_MOD = 0x90
BPF_XOR = 0xA0
BPF_MOV = 0xB0
BPF_ARSH = 0xC0
BPF_END = 0xD0

# Byte-swap direction (in the source bit of BPF_ALU | BPF_END)
BPF_TO_LE = 0x00
BPF_TO_BE = 0x08

# Jump operations
BPF_JA = 0x00
BPF_JEQ = 0x10
BPF_JGT = 0x20
BPF_JGE = 0x30
BPF_JSET = 0x40
BPF_JNE = 0x50
BPF_JSGT = 0x60
BPF_JSGE = 0x70
BPF_CALL = 0x80
BPF_EXIT = 0x90
BPF_JLT = 0xA0
BPF_JLE = 0xB0
BPF_JSLT = 0xC0
BPF_JSLE = 0xD0

# Atomic operations (in imm of BPF_STX | BPF_ATOMIC)
BPF_FETCH = 0x01
BPF_XCHG = 0xE0 | BPF_FETCH
BPF_CMPXCHG = 0xF0 | BPF_FETCH

# Registers: r0 return value, r1-r5 arguments (clobbered by calls), r6-r9 callee-saved,
# r10 read-only frame pointer.
BPF_REG_0, BPF_REG_1, BPF_REG_2, BPF_REG_3, BPF_REG_4, BPF_REG_5 = range(6)
BPF_REG_6, BPF_REG_7, BPF_REG_8, BPF_REG_9, BPF_REG_10 = range(6, 11)
R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = range(11)
BPF_REG_FP = BPF_REG_10
MAX_BPF_STACK = 512

INSN_SIZE = 8
_INSN = struct.Struct("<BBhi")


class EncodingError(ValueError):
    """A field does not fit its encoding (register, offset or immediate out of range)."""


def s32(value: int) -> int:
    """`value` as the signed 32-bit imm field; unsigned 32-bit inputs wrap (0xffffffff -> -1)."""
    if not -(1 << 31) <= value < (1 << 32):
        raise EncodingError(f"immediate {value} does not fit 32 bits")
    return value - (1 << 32) if value >= (1 << 31) else value


def _reg(r: int) -> int:
    if not 0 <= r <= 10:
        raise EncodingError(f"register r{r} does not exist (r0-r10)")
    return r


def _off(off: int) -> int:
    if not -(1 << 15) <= off < (1 << 15):
        raise EncodingError(f"offset {off} does not fit 16 bits")
    return off


@dataclass(frozen=True)
class Insn:
    """One 8-byte instruction slot."""

    code: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.code <= 0xFF:
            raise EncodingError(f"opcode {self.code:#x} does not fit 8 bits")
        # Registers are nibbles; the second slot of ld_imm64 and pseudo sources use 0-15.
        if not (0 <= self.dst <= 15 and 0 <= self.src <= 15):
            raise EncodingError(f"register field out of range: dst={self.dst} src={self.src}")
        _off(self.off)
        object.__setattr__(self, "imm", s32(self.imm))

    def encode(self) -> bytes:
        return _INSN.pack(self.code, self.dst | (self.src << 4), self.off, self.imm)

    @classmethod
    def decode(cls, raw: bytes, offset: int = 0) -> Insn:
        code, regs, off, imm = _INSN.unpack_from(raw, offset)
        return cls(code, regs & 0xF, regs >> 4, off, imm)

    @property
    def cls(self) -> int:
        return self.code & 0x07

    @property
    def is_ld_imm64(self) -> bool:
        return self.code == BPF_LD | BPF_DW | BPF_IMM


def encode(insns: list[Insn] | tuple[Insn, ...]) -> bytes:
    """The byte image the kernel's BPF_PROG_LOAD reads."""
    return b"".join(i.encode() for i in insns)


def decode(raw: bytes) -> list[Insn]:
    """Split a byte image into instruction slots."""
    if len(raw) % INSN_SIZE:
        raise EncodingError(f"{len(raw)} bytes is not a whole number of instructions")
    return [Insn.decode(raw, o) for o in range(0, len(raw), INSN_SIZE)]


def BPF_RAW_INSN(code: int, dst: int, src: int, off: int, imm: int) -> Insn:
    """Any instruction, field by field."""
    return Insn(code, dst, src, off, imm)


# ALU: dst = dst OP src / dst = dst OP imm, 64-bit (ALU64) or 32-bit with zero-extension.
def BPF_ALU64_REG(op: int, dst: int, src: int) -> Insn:
    return Insn(BPF_ALU64 | op | BPF_X, _reg(dst), _reg(src))


def BPF_ALU32_REG(op: int, dst: int, src: int) -> Insn:
    return Insn(BPF_ALU | op | BPF_X, _reg(dst), _reg(src))


def BPF_ALU64_IMM(op: int, dst: int, imm: int) -> Insn:
    return Insn(BPF_ALU64 | op | BPF_K, _reg(dst), 0, 0, imm)


def BPF_ALU32_IMM(op: int, dst: int, imm: int) -> Insn:
    return Insn(BPF_ALU | op | BPF_K, _reg(dst), 0, 0, imm)


def BPF_ENDIAN(kind: int, dst: int, bits: int) -> Insn:
    """Byte swap to BPF_TO_LE/BPF_TO_BE of the low `bits` (16, 32, 64) of dst."""
    if bits not in (16, 32, 64):
        raise EncodingError(f"byte swap width {bits} (16, 32 or 64)")
    return Insn(BPF_ALU | BPF_END | kind, _reg(dst), 0, 0, bits)


# Moves. MOV64_IMM sign-extends imm to 64 bits; MOV32_IMM zero-extends (w3 = -1 gives
# 0x00000000ffffffff, which is what BPF_F_CURRENT_CPU must be).
def BPF_MOV64_REG(dst: int, src: int) -> Insn:
    return Insn(BPF_ALU64 | BPF_MOV | BPF_X, _reg(dst), _reg(src))


def BPF_MOV32_REG(dst: int, src: int) -> Insn:
    return Insn(BPF_ALU | BPF_MOV | BPF_X, _reg(dst), _reg(src))


def BPF_MOV64_IMM(dst: int, imm: int) -> Insn:
    return Insn(BPF_ALU64 | BPF_MOV | BPF_K, _reg(dst), 0, 0, imm)


def BPF_MOV32_IMM(dst: int, imm: int) -> Insn:
    return Insn(BPF_ALU | BPF_MOV | BPF_K, _reg(dst), 0, 0, imm)


# 64-bit immediates: two slots.
def BPF_LD_IMM64_RAW(dst: int, src: int, imm: int) -> tuple[Insn, Insn]:
    """ld_imm64 with a pseudo source (`src`), e.g. BPF_PSEUDO_MAP_FD with a map fd."""
    if not -(1 << 63) <= imm < (1 << 64):
        raise EncodingError(f"immediate {imm} does not fit 64 bits")
    imm &= (1 << 64) - 1
    return (Insn(BPF_LD | BPF_DW | BPF_IMM, _reg(dst), src, 0, imm & 0xFFFFFFFF),
            Insn(0, 0, 0, 0, imm >> 32))


def BPF_LD_IMM64(dst: int, imm: int) -> tuple[Insn, Insn]:
    return BPF_LD_IMM64_RAW(dst, 0, imm)


def BPF_LD_MAP_FD(dst: int, map_fd: int) -> tuple[Insn, Insn]:
    """dst = the map whose fd is `map_fd` (the verifier turns it into a map pointer)."""
    return BPF_LD_IMM64_RAW(dst, 1, map_fd)  # 1 = BPF_PSEUDO_MAP_FD


def BPF_LD_MAP_VALUE(dst: int, map_fd: int, value_off: int) -> tuple[Insn, Insn]:
    """dst = &map[0] + value_off of an array map (BPF_PSEUDO_MAP_VALUE)."""
    return (Insn(BPF_LD | BPF_DW | BPF_IMM, _reg(dst), 2, 0, map_fd),
            Insn(0, 0, 0, 0, value_off))


# Memory. dst/src are registers; `off` is a signed 16-bit displacement.
def BPF_LDX_MEM(size: int, dst: int, src: int, off: int) -> Insn:
    """dst = *(size *)(src + off)"""
    return Insn(BPF_LDX | size | BPF_MEM, _reg(dst), _reg(src), _off(off))


def BPF_LDX_MEMSX(size: int, dst: int, src: int, off: int) -> Insn:
    """dst = *(signed size *)(src + off), sign-extended (kernel >= 6.6)."""
    return Insn(BPF_LDX | size | BPF_MEMSX, _reg(dst), _reg(src), _off(off))


def BPF_STX_MEM(size: int, dst: int, src: int, off: int) -> Insn:
    """*(size *)(dst + off) = src"""
    return Insn(BPF_STX | size | BPF_MEM, _reg(dst), _reg(src), _off(off))


def BPF_ST_MEM(size: int, dst: int, off: int, imm: int) -> Insn:
    """*(size *)(dst + off) = imm"""
    return Insn(BPF_ST | size | BPF_MEM, _reg(dst), 0, _off(off), imm)


def BPF_ATOMIC_OP(size: int, op: int, dst: int, src: int, off: int) -> Insn:
    """Atomic read-modify-write of *(size *)(dst + off) with src; `op` goes in imm."""
    if size not in (BPF_W, BPF_DW):
        raise EncodingError("atomic operations are 32 or 64 bits wide")
    return Insn(BPF_STX | size | BPF_ATOMIC, _reg(dst), _reg(src), _off(off), op)


def BPF_STX_XADD(size: int, dst: int, src: int, off: int) -> Insn:
    """lock *(size *)(dst + off) += src (the historical name of atomic add)."""
    return BPF_ATOMIC_OP(size, BPF_ADD, dst, src, off)


# Jumps: `off` is relative to the next slot.
def BPF_JMP_REG(op: int, dst: int, src: int, off: int) -> Insn:
    return Insn(BPF_JMP | op | BPF_X, _reg(dst), _reg(src), _off(off))


def BPF_JMP_IMM(op: int, dst: int, imm: int, off: int) -> Insn:
    return Insn(BPF_JMP | op | BPF_K, _reg(dst), 0, _off(off), imm)


def BPF_JMP32_REG(op: int, dst: int, src: int, off: int) -> Insn:
    return Insn(BPF_JMP32 | op | BPF_X, _reg(dst), _reg(src), _off(off))


def BPF_JMP32_IMM(op: int, dst: int, imm: int, off: int) -> Insn:
    return Insn(BPF_JMP32 | op | BPF_K, _reg(dst), 0, _off(off), imm)


def BPF_JMP_A(off: int) -> Insn:
    """goto pc+off"""
    return Insn(BPF_JMP | BPF_JA, 0, 0, _off(off), 0)


def BPF_EMIT_CALL(func_id: int) -> Insn:
    """call helper number `func_id` (enum bpf_func_id); arguments r1-r5, result r0."""
    return Insn(BPF_JMP | BPF_CALL, 0, 0, 0, func_id)


def BPF_CALL_REL(off: int) -> Insn:
    """call a BPF subprogram at pc+off+1 (src_reg BPF_PSEUDO_CALL)."""
    return Insn(BPF_JMP | BPF_CALL, 0, 1, 0, off)


def BPF_EXIT_INSN() -> Insn:
    return Insn(BPF_JMP | BPF_EXIT)


SIZE_BYTES = {BPF_B: 1, BPF_H: 2, BPF_W: 4, BPF_DW: 8}
SIZE_OF_BYTES = {v: k for k, v in SIZE_BYTES.items()}
