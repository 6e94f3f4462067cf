"""An eBPF assembler: named labels, range-checked jumps, helpers by name, map relocations.

Programs are built without file descriptors: `ld_map(dst, "events")` emits a BPF_LD_MAP_FD
with imm 0 and records a relocation (slot index, map name) that the loader
(hud.bpf.loader) fills with the real fd. `Assembler.image()` returns an `Image`: the
instructions plus everything BPF_PROG_LOAD needs besides fds and BTF ids.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

from kernel import isa, uapi
from kernel.isa import Insn

Operand = Union[int, "Reg"]


@dataclass(frozen=True)
class Reg:
    """A register operand, to tell `mov(r1, r2)` from `mov(r1, 2)`."""

    n: int

    def __repr__(self) -> str:
        return f"r{self.n}"


r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10 = (Reg(i) for i in range(11))
fp = r10

ALU_OPS = {"+=": isa.BPF_ADD, "-=": isa.BPF_SUB, "*=": isa.BPF_MUL, "/=": isa.BPF_DIV,
           "|=": isa.BPF_OR, "&=": isa.BPF_AND, "<<=": isa.BPF_LSH, ">>=": isa.BPF_RSH,
           "%=": isa.BPF_MOD, "^=": isa.BPF_XOR, "=": isa.BPF_MOV, "s>>=": isa.BPF_ARSH}
JMP_OPS = {"==": isa.BPF_JEQ, "!=": isa.BPF_JNE, ">": isa.BPF_JGT, ">=": isa.BPF_JGE,
           "<": isa.BPF_JLT, "<=": isa.BPF_JLE, "s>": isa.BPF_JSGT, "s>=": isa.BPF_JSGE,
           "s<": isa.BPF_JSLT, "s<=": isa.BPF_JSLE, "&": isa.BPF_JSET}
# Access sizes by C name only: byte counts would collide with the BPF_H (8) field value.
SIZES = {"u8": isa.BPF_B, "u16": isa.BPF_H, "u32": isa.BPF_W, "u64": isa.BPF_DW}


class AsmError(ValueError):
    """A program that cannot be assembled: unknown label, jump out of range, bad operand."""


@dataclass(frozen=True)
class Reloc:
    """Slot `index` (an ld_imm64) must be loaded with the fd of map `name`."""

    index: int
    name: str


@dataclass(frozen=True)
class Image:
    """An assembled program and how to load it; fds and BTF ids are resolved at load.

    `attach_btf_name` names a BTF type of vmlinux (e.g. "btf_trace_sched_switch" for a
    tp_btf program), which the loader turns into attach_btf_id.
    """

    name: str
    prog_type: int
    insns: tuple[Insn, ...]
    relocs: tuple[Reloc, ...] = ()
    license: str = "GPL"
    expected_attach_type: int = 0
    attach_btf_name: Optional[str] = None
    prog_flags: int = 0

    def encode(self) -> bytes:
        return isa.encode(self.insns)

    def __len__(self) -> int:
        return len(self.insns)

    @property
    def maps(self) -> tuple[str, ...]:
        """Names of the maps the program refers to, in first-use order."""
        seen: dict[str, None] = {}
        for r in self.relocs:
            seen.setdefault(r.name, None)
        return tuple(seen)

    def with_map_fds(self, fds: dict[str, int]) -> tuple[Insn, ...]:
        """The instructions with every relocation filled from `fds` (name -> fd)."""
        out = list(self.insns)
        for r in self.relocs:
            if r.name not in fds:
                raise AsmError(f"program {self.name}: no fd for map {r.name!r}")
            head, tail = out[r.index], out[r.index + 1]
            if not head.is_ld_imm64:
                raise AsmError(f"relocation at {r.index} is not an ld_imm64")
            out[r.index] = Insn(head.code, head.dst, head.src, head.off, fds[r.name])
            out[r.index + 1] = Insn(tail.code, tail.dst, tail.src, tail.off, 0)
        return tuple(out)


@dataclass
class _Jump:
    """A jump whose offset is filled in once every label is known."""

    code: int
    dst: int
    src: int
    imm: int
    label: str
    slot: int = 0


@dataclass
class Assembler:
    """Builds one program slot by slot; `image()` resolves labels and returns an Image."""

    _items: list = field(default_factory=list)
    _labels: dict = field(default_factory=dict)
    _relocs: list = field(default_factory=list)
    _slots: int = 0

    # -- raw emission -------------------------------------------------------------
    def emit(self, *insns: Union[Insn, tuple[Insn, ...]]) -> Assembler:
        """Append instructions built with kernel.isa (tuples from BPF_LD_IMM64 too)."""
        for item in insns:
            for insn in (item if isinstance(item, tuple) else (item,)):
                self._items.append(insn)
                self._slots += 1
        return self

    def label(self, name: str) -> Assembler:
        """Name the next slot."""
        if name in self._labels:
            raise AsmError(f"label {name!r} defined twice")
        self._labels[name] = self._slots
        return self

    @property
    def pc(self) -> int:
        """Index of the next slot."""
        return self._slots

    # -- ALU ------------------------------------------------------------------------
    def alu64(self, op: Union[str, int], dst: Reg, src: Operand) -> Assembler:
        """dst OP= src (64-bit); `op` is "+=", "<<=", "s>>=" ... or a BPF_* op."""
        code = _op(ALU_OPS, op)
        if isinstance(src, Reg):
            return self.emit(isa.BPF_ALU64_REG(code, _r(dst), src.n))
        return self.emit(isa.BPF_ALU64_IMM(code, _r(dst), src))

    def alu32(self, op: Union[str, int], dst: Reg, src: Operand) -> Assembler:
        """wDST OP= src (32-bit; the upper half of dst becomes zero)."""
        code = _op(ALU_OPS, op)
        if isinstance(src, Reg):
            return self.emit(isa.BPF_ALU32_REG(code, _r(dst), src.n))
        return self.emit(isa.BPF_ALU32_IMM(code, _r(dst), src))

    def mov(self, dst: Reg, src: Operand) -> Assembler:
        """dst = src (64-bit; an immediate is sign-extended from 32 bits)."""
        return self.alu64(isa.BPF_MOV, dst, src)

    def mov32(self, dst: Reg, src: Operand) -> Assembler:
        """wDST = src (zero-extended: mov32(r3, -1) gives 0xffffffff, BPF_F_CURRENT_CPU)."""
        return self.alu32(isa.BPF_MOV, dst, src)

    def neg(self, dst: Reg) -> Assembler:
        return self.emit(isa.BPF_ALU64_IMM(isa.BPF_NEG, _r(dst), 0))

    def ld_imm64(self, dst: Reg, imm: int) -> Assembler:
        """dst = 64-bit constant (two slots)."""
        return self.emit(isa.BPF_LD_IMM64(_r(dst), imm))

    def ld_map(self, dst: Reg, name: str) -> Assembler:
        """dst = pointer to map `name`; the loader fills the fd (relocation)."""
        self._relocs.append(Reloc(self._slots, name))
        return self.emit(isa.BPF_LD_MAP_FD(_r(dst), 0))

    # -- memory ---------------------------------------------------------------------
    def ldx(self, size: str, dst: Reg, src: Reg, off: int = 0) -> Assembler:
        """dst = *(size *)(src + off); size is "u8", "u16", "u32" or "u64"."""
        return self.emit(isa.BPF_LDX_MEM(_size(size), _r(dst), _r(src), off))

    def stx(self, size: str, dst: Reg, off: int, src: Reg) -> Assembler:
        """*(size *)(dst + off) = src"""
        return self.emit(isa.BPF_STX_MEM(_size(size), _r(dst), _r(src), off))

    def st(self, size: str, dst: Reg, off: int, imm: int) -> Assembler:
        """*(size *)(dst + off) = imm"""
        return self.emit(isa.BPF_ST_MEM(_size(size), _r(dst), off, imm))

    def atomic_add(self, size: str, dst: Reg, off: int, src: Reg) -> Assembler:
        """lock *(size *)(dst + off) += src"""
        return self.emit(isa.BPF_STX_XADD(_size(size), _r(dst), _r(src), off))

    # -- control flow -------------------------------------------------------------
    def jmp(self, op: Union[str, int], dst: Reg, src: Operand, label: str) -> Assembler:
        """if dst OP src goto label (64-bit compare; "s<" etc. are signed)."""
        return self._jump(isa.BPF_JMP, op, dst, src, label)

    def jmp32(self, op: Union[str, int], dst: Reg, src: Operand, label: str) -> Assembler:
        """if wDST OP src goto label (32-bit compare)."""
        return self._jump(isa.BPF_JMP32, op, dst, src, label)

    def ja(self, label: str) -> Assembler:
        """goto label"""
        self._items.append(_Jump(isa.BPF_JMP | isa.BPF_JA, 0, 0, 0, label))
        self._slots += 1
        return self

    def call(self, helper: Union[str, int]) -> Assembler:
        """Call a helper by name ("ringbuf_output" or "bpf_ringbuf_output") or number."""
        func_id = helper if isinstance(helper, int) else _helper(helper)
        return self.emit(isa.BPF_EMIT_CALL(func_id))

    def exit(self) -> Assembler:
        return self.emit(isa.BPF_EXIT_INSN())

    def _jump(self, cls: int, op: Union[str, int], dst: Reg, src: Operand,
              label: str) -> Assembler:
        code = cls | _op(JMP_OPS, op)
        if isinstance(src, Reg):
            item = _Jump(code | isa.BPF_X, _r(dst), src.n, 0, label)
        else:
            item = _Jump(code | isa.BPF_K, _r(dst), 0, isa.s32(src), label)
        self._items.append(item)
        self._slots += 1
        return self

    # -- output ---------------------------------------------------------------------
    def insns(self) -> tuple[Insn, ...]:
        """Resolve every label; raises AsmError on unknown labels or out-of-range jumps."""
        out = []
        slot = 0
        for item in self._items:
            if isinstance(item, _Jump):
                if item.label not in self._labels:
                    raise AsmError(f"jump to undefined label {item.label!r} at {slot}")
                target = self._labels[item.label]
                off = target - (slot + 1)
                if not -(1 << 15) <= off < (1 << 15):
                    raise AsmError(f"jump from {slot} to {item.label!r} ({off:+d} slots) is "
                                   "out of the 16-bit range")
                out.append(Insn(item.code, item.dst, item.src, off, item.imm))
            else:
                out.append(item)
            slot += 1
        for name, target in self._labels.items():
            if target > slot:
                raise AsmError(f"label {name!r} points past the end")
        return tuple(out)

    def image(self, name: str, prog_type: int, *, license: str = "GPL",
              expected_attach_type: int = 0, attach_btf_name: Optional[str] = None,
              prog_flags: int = 0) -> Image:
        """The finished program. `name` is its kernel name: <= 15 chars of [A-Za-z0-9_.]."""
        check_name(name)
        return Image(name, prog_type, self.insns(), tuple(self._relocs), license,
                     expected_attach_type, attach_btf_name, prog_flags)


def check_name(name: str) -> str:
    """Kernel object names: at most 15 characters of [A-Za-z0-9_.] (else EINVAL)."""
    if len(name) >= uapi.BPF_OBJ_NAME_LEN or not all(c.isalnum() or c in "_." for c in name) \
            or not name.isascii():
        raise AsmError(f"object name {name!r}: at most 15 characters of [A-Za-z0-9_.]")
    return name


def _r(reg: Reg) -> int:
    if not isinstance(reg, Reg):
        raise AsmError(f"expected a register, got {reg!r}")
    return reg.n


def _op(table: dict, op: Union[str, int]) -> int:
    if isinstance(op, int):
        return op
    try:
        return table[op]
    except KeyError:
        raise AsmError(f"unknown operator {op!r}") from None


def _size(size: str) -> int:
    try:
        return SIZES[size]
    except (KeyError, TypeError):
        raise AsmError(f"unknown access size {size!r} (u8, u16, u32 or u64)") from None


def _helper(name: str) -> int:
    try:
        return uapi.helper_id(name)
    except KeyError as e:
        raise AsmError(str(e)) from None
