"""Verifier-style text for eBPF instructions, and its parser (a lossless round trip).

One line per instruction, as the verifier log and `bpftool prog dump xlated` print them:
`12: (85) call bpf_ktime_get_ns#5`, `3: (79) r1 = *(u64 *)(r10 -8)`,
`7: (15) if r0 == 0x0 goto pc+4`. A 64-bit immediate load takes two slots and one line.
An instruction no form describes exactly (e.g. a non-zero field the form would drop) is
printed raw as `.insn code=0x.. dst=.. src=.. off=.. imm=..`, so `parse(disassemble(x))`
gives `x` back for every input, which is what makes text goldens trustworthy.
"""
from __future__ import annotations

import re
from typing import Optional

from kernel import isa, uapi
from kernel.asm import Image, Reloc
from kernel.isa import Insn

_ALU_STR = {isa.BPF_ADD: "+=", isa.BPF_SUB: "-=", isa.BPF_MUL: "*=", isa.BPF_DIV: "/=",
            isa.BPF_OR: "|=", isa.BPF_AND: "&=", isa.BPF_LSH: "<<=", isa.BPF_RSH: ">>=",
            isa.BPF_MOD: "%=", isa.BPF_XOR: "^=", isa.BPF_ARSH: "s>>="}
_SIGNED_ALU_STR = {isa.BPF_DIV: "s/=", isa.BPF_MOD: "s%="}
_JMP_STR = {isa.BPF_JEQ: "==", isa.BPF_JGT: ">", isa.BPF_JGE: ">=", isa.BPF_JSET: "&",
            isa.BPF_JNE: "!=", isa.BPF_JSGT: "s>", isa.BPF_JSGE: "s>=", isa.BPF_JLT: "<",
            isa.BPF_JLE: "<=", isa.BPF_JSLT: "s<", isa.BPF_JSLE: "s<="}
_SIZE_STR = {isa.BPF_B: "u8", isa.BPF_H: "u16", isa.BPF_W: "u32", isa.BPF_DW: "u64"}
_SSIZE_STR = {isa.BPF_B: "s8", isa.BPF_H: "s16", isa.BPF_W: "s32"}
_ATOMIC_STR = {isa.BPF_ADD: "+=", isa.BPF_OR: "|=", isa.BPF_AND: "&=", isa.BPF_XOR: "^="}
_ATOMIC_FETCH = {isa.BPF_ADD | isa.BPF_FETCH: "fetch_add", isa.BPF_OR | isa.BPF_FETCH: "fetch_or",
                 isa.BPF_AND | isa.BPF_FETCH: "fetch_and",
                 isa.BPF_XOR | isa.BPF_FETCH: "fetch_xor", isa.BPF_XCHG: "xchg"}


class DisasmError(ValueError):
    """Text that does not parse as an instruction."""


def _mem(size: str, reg: int, off: int) -> str:
    return f"*({size} *)(r{reg} {off:+d})"


def format_insn(insn: Insn, next_insn: Optional[Insn] = None,
                map_name: Optional[str] = None) -> str:
    """The text of one instruction (`next_insn` is the second slot of an ld_imm64)."""
    text = _format(insn, next_insn, map_name)
    return text if text is not None else _raw(insn)


def _raw(i: Insn) -> str:
    return f".insn code={i.code:#04x} dst={i.dst} src={i.src} off={i.off} imm={i.imm}"


def _format(i: Insn, nxt: Optional[Insn], map_name: Optional[str]) -> Optional[str]:
    cls, op, src_bit = i.code & 0x07, i.code & 0xF0, i.code & 0x08
    mode, size = i.code & 0xE0, i.code & 0x18
    if i.dst > 10 or (i.src > 10 and not i.is_ld_imm64):
        return None
    if cls in (isa.BPF_ALU, isa.BPF_ALU64):
        p = "r" if cls == isa.BPF_ALU64 else "w"
        if op == isa.BPF_END:
            if i.src or i.off or i.imm not in (16, 32, 64):
                return None
            if cls == isa.BPF_ALU64:
                return None if src_bit else f"r{i.dst} = bswap{i.imm} r{i.dst}"
            return f"r{i.dst} = {'be' if src_bit else 'le'}{i.imm} r{i.dst}"
        if op == isa.BPF_NEG:
            return f"{p}{i.dst} = -{p}{i.dst}" if not (src_bit or i.src or i.off or i.imm) \
                else None
        if op == isa.BPF_MOV:
            if src_bit:
                if i.imm:
                    return None
                if i.off == 0:
                    return f"{p}{i.dst} = {p}{i.src}"
                if i.off in (8, 16, 32):
                    return f"{p}{i.dst} = (s{i.off}){p}{i.src}"
                return None
            return f"{p}{i.dst} = {i.imm}" if not (i.src or i.off) else None
        if op not in _ALU_STR:
            return None
        name = _ALU_STR[op]
        if i.off == 1 and op in _SIGNED_ALU_STR:
            name = _SIGNED_ALU_STR[op]
        elif i.off:
            return None
        if src_bit:
            return f"{p}{i.dst} {name} {p}{i.src}" if not i.imm else None
        return f"{p}{i.dst} {name} {i.imm}" if not i.src else None
    if cls == isa.BPF_LDX:
        if mode == isa.BPF_MEM and not i.imm:
            return f"r{i.dst} = {_mem(_SIZE_STR[size], i.src, i.off)}"
        if mode == isa.BPF_MEMSX and not i.imm and size in _SSIZE_STR:
            return f"r{i.dst} = {_mem(_SSIZE_STR[size], i.src, i.off)}"
        return None
    if cls == isa.BPF_STX:
        if mode == isa.BPF_MEM and not i.imm:
            return f"{_mem(_SIZE_STR[size], i.dst, i.off)} = r{i.src}"
        if mode == isa.BPF_ATOMIC and size in (isa.BPF_W, isa.BPF_DW):
            p = "r" if size == isa.BPF_DW else "w"
            width = "64" if size == isa.BPF_DW else ""
            ptr = f"({_SIZE_STR[size]} *)(r{i.dst} {i.off:+d})"
            if i.imm in _ATOMIC_STR:
                return f"lock {_mem(_SIZE_STR[size], i.dst, i.off)} {_ATOMIC_STR[i.imm]} {p}{i.src}"
            if i.imm in _ATOMIC_FETCH:
                return f"{p}{i.src} = atomic{width}_{_ATOMIC_FETCH[i.imm]}({ptr}, {p}{i.src})"
            if i.imm == isa.BPF_CMPXCHG:
                return f"{p}0 = atomic{width}_cmpxchg({ptr}, {p}0, {p}{i.src})"
        return None
    if cls == isa.BPF_ST:
        if mode == isa.BPF_MEM and not i.src:
            return f"{_mem(_SIZE_STR[size], i.dst, i.off)} = {i.imm}"
        return None
    if cls == isa.BPF_LD:
        if not i.is_ld_imm64 or nxt is None or i.off or nxt.code or nxt.dst or nxt.src \
                or nxt.off:
            return None
        if i.src == 0:
            return f"r{i.dst} = {((nxt.imm & 0xFFFFFFFF) << 32) | (i.imm & 0xFFFFFFFF):#x}"
        if i.src == uapi.BPF_PSEUDO_MAP_FD and nxt.imm == 0:
            if map_name and i.imm == 0:
                return f"r{i.dst} = map[{map_name}]"
            return f"r{i.dst} = map[fd:{i.imm}]"
        if i.src == uapi.BPF_PSEUDO_MAP_VALUE and map_name is None:
            return f"r{i.dst} = map_value[fd:{i.imm}]+{nxt.imm}"
        return None
    if cls in (isa.BPF_JMP, isa.BPF_JMP32):
        p = "r" if cls == isa.BPF_JMP else "w"
        if op == isa.BPF_JA:
            if cls == isa.BPF_JMP and not (src_bit or i.dst or i.src or i.imm):
                return f"goto pc{i.off:+d}"
            if cls == isa.BPF_JMP32 and not (src_bit or i.dst or i.src or i.off):
                return f"gotol pc{i.imm:+d}"
            return None
        if op == isa.BPF_CALL:
            if cls != isa.BPF_JMP or src_bit or i.dst or i.off:
                return None
            if i.src == 0:
                name = uapi.HELPER_NAMES.get(i.imm)
                return f"call bpf_{name}#{i.imm}" if name else f"call #{i.imm}"
            if i.src == uapi.BPF_PSEUDO_CALL:
                return f"call pc{i.imm:+d}"
            if i.src == uapi.BPF_PSEUDO_KFUNC_CALL:
                return f"call kfunc#{i.imm}"
            return None
        if op == isa.BPF_EXIT:
            return "exit" if cls == isa.BPF_JMP and not (src_bit or i.dst or i.src or i.off
                                                         or i.imm) else None
        if op not in _JMP_STR:
            return None
        if src_bit:
            return f"if {p}{i.dst} {_JMP_STR[op]} {p}{i.src} goto pc{i.off:+d}" \
                if not i.imm else None
        return f"if {p}{i.dst} {_JMP_STR[op]} {i.imm & 0xFFFFFFFF:#x} goto pc{i.off:+d}" \
            if not i.src else None
    return None


def disassemble(insns: tuple[Insn, ...] | list[Insn], relocs: tuple[Reloc, ...] = ()) -> str:
    """Verifier-style listing, one `N: (code) text` line per instruction."""
    names = {r.index: r.name for r in relocs}
    lines = []
    i = 0
    while i < len(insns):
        insn = insns[i]
        nxt = insns[i + 1] if i + 1 < len(insns) else None
        text = _format(insn, nxt, names.get(i)) if insn.is_ld_imm64 else _format(insn, None, None)
        if text is None:
            text = _raw(insn)
        lines.append(f"{i}: ({insn.code:02x}) {text}")
        i += 2 if insn.is_ld_imm64 and not text.startswith(".insn") else 1
    return "\n".join(lines) + ("\n" if lines else "")


def disassemble_image(image: Image) -> str:
    """The listing of an assembled program, with map relocations shown by name."""
    return disassemble(image.insns, image.relocs)


# -- parser -------------------------------------------------------------------------
_R = r"([rw])(\d+)"
_NUM = r"(-?(?:0x[0-9a-fA-F]+|\d+))"
_MEM = r"\*\((u8|u16|u32|u64|s8|s16|s32) \*\)\(r(\d+) ([+-]\d+)\)"
_PREFIX = re.compile(r"^\s*(\d+):\s*\(([0-9a-fA-F]{2})\)\s*")
_SIZE_OF = {v: k for k, v in _SIZE_STR.items()}
_SSIZE_OF = {v: k for k, v in _SSIZE_STR.items()}
_ALU_OF = {v: k for k, v in _ALU_STR.items()}
_JMP_OF = {v: k for k, v in _JMP_STR.items()}
_ATOMIC_OF = {v: k for k, v in _ATOMIC_STR.items()}
_FETCH_OF = {v: k for k, v in _ATOMIC_FETCH.items()}

_FORMS = [
    ("raw", re.compile(r"^\.insn code=(0x[0-9a-fA-F]+) dst=(\d+) src=(\d+) off=(-?\d+) "
                       r"imm=(-?\d+)$")),
    ("exit", re.compile(r"^exit$")),
    ("goto", re.compile(r"^goto pc([+-]\d+)$")),
    ("gotol", re.compile(r"^gotol pc([+-]\d+)$")),
    ("call_helper", re.compile(r"^call (?:bpf_\w+)?#(-?\d+)$")),
    ("call_rel", re.compile(r"^call pc([+-]\d+)$")),
    ("call_kfunc", re.compile(r"^call kfunc#(-?\d+)$")),
    ("jmp", re.compile(rf"^if {_R} (==|!=|>=|<=|>|<|s>=|s<=|s>|s<|&) (?:{_R}|{_NUM}) "
                       r"goto pc([+-]\d+)$")),
    ("ld_map", re.compile(r"^r(\d+) = map\[(?:fd:(\d+)|([A-Za-z0-9_.]+))\]$")),
    ("ld_map_value", re.compile(r"^r(\d+) = map_value\[fd:(\d+)\]\+(-?\d+)$")),
    ("ld_imm64", re.compile(r"^r(\d+) = (0x[0-9a-fA-F]+)$")),
    ("ldx", re.compile(rf"^r(\d+) = {_MEM}$")),
    ("stx", re.compile(rf"^{_MEM} = r(\d+)$")),
    ("st", re.compile(rf"^{_MEM} = {_NUM}$")),
    ("lock", re.compile(rf"^lock {_MEM} (\+=|\|=|&=|\^=) {_R}$")),
    ("fetch", re.compile(r"^([rw])(\d+) = atomic(64)?_(\w+)\(\((u32|u64) \*\)\(r(\d+) "
                         r"([+-]\d+)\), ([rw])(\d+)\)$")),
    ("cmpxchg", re.compile(r"^([rw])0 = atomic(64)?_cmpxchg\(\((u32|u64) \*\)\(r(\d+) "
                           r"([+-]\d+)\), [rw]0, ([rw])(\d+)\)$")),
    ("end", re.compile(r"^r(\d+) = (le|be|bswap)(16|32|64) r(\d+)$")),
    ("neg", re.compile(rf"^{_R} = -{_R}$")),
    ("movsx", re.compile(rf"^{_R} = \(s(8|16|32)\){_R}$")),
    ("mov", re.compile(rf"^{_R} = (?:{_R}|{_NUM})$")),
    ("alu", re.compile(rf"^{_R} (\+=|-=|\*=|/=|\|=|&=|<<=|>>=|%=|\^=|s>>=|s/=|s%=) "
                       rf"(?:{_R}|{_NUM})$")),
]


def _int(text: str) -> int:
    return int(text, 0)


def _cls(p: str, wide: int, narrow: int) -> int:
    return wide if p == "r" else narrow


def parse_insn(text: str) -> tuple[list[Insn], Optional[str]]:
    """Parse one instruction's text; returns its slots and a symbolic map name, if any."""
    for kind, rx in _FORMS:
        m = rx.match(text)
        if m:
            return _build(kind, m.groups())
    raise DisasmError(f"cannot parse instruction {text!r}")


def _build(kind: str, g: tuple) -> tuple[list[Insn], Optional[str]]:
    if kind == "raw":
        return [Insn(_int(g[0]), int(g[1]), int(g[2]), int(g[3]), int(g[4]))], None
    if kind == "exit":
        return [isa.BPF_EXIT_INSN()], None
    if kind == "goto":
        return [isa.BPF_JMP_A(int(g[0]))], None
    if kind == "gotol":
        return [Insn(isa.BPF_JMP32 | isa.BPF_JA, 0, 0, 0, int(g[0]))], None
    if kind == "call_helper":
        return [isa.BPF_EMIT_CALL(int(g[0]))], None
    if kind == "call_rel":
        return [isa.BPF_CALL_REL(int(g[0]))], None
    if kind == "call_kfunc":
        return [Insn(isa.BPF_JMP | isa.BPF_CALL, 0, uapi.BPF_PSEUDO_KFUNC_CALL, 0,
                     int(g[0]))], None
    if kind == "jmp":
        p, dst, op, sp, src, imm, off = g
        cls = _cls(p, isa.BPF_JMP, isa.BPF_JMP32)
        if sp is not None:
            return [Insn(cls | _JMP_OF[op] | isa.BPF_X, int(dst), int(src), int(off))], None
        return [Insn(cls | _JMP_OF[op] | isa.BPF_K, int(dst), 0, int(off), _int(imm))], None
    if kind == "ld_map":
        dst, fd, name = g
        return list(isa.BPF_LD_MAP_FD(int(dst), int(fd) if fd else 0)), name
    if kind == "ld_map_value":
        return list(isa.BPF_LD_MAP_VALUE(int(g[0]), int(g[1]), int(g[2]))), None
    if kind == "ld_imm64":
        return list(isa.BPF_LD_IMM64(int(g[0]), _int(g[1]))), None
    if kind == "ldx":
        dst, size, src, off = g
        if size in _SSIZE_OF:
            return [isa.BPF_LDX_MEMSX(_SSIZE_OF[size], int(dst), int(src), int(off))], None
        return [isa.BPF_LDX_MEM(_SIZE_OF[size], int(dst), int(src), int(off))], None
    if kind == "stx":
        size, dst, off, src = g
        return [isa.BPF_STX_MEM(_SIZE_OF[size], int(dst), int(src), int(off))], None
    if kind == "st":
        size, dst, off, imm = g
        return [isa.BPF_ST_MEM(_SIZE_OF[size], int(dst), int(off), _int(imm))], None
    if kind == "lock":
        size, dst, off, op, _p, src = g
        return [isa.BPF_ATOMIC_OP(_SIZE_OF[size], _ATOMIC_OF[op], int(dst), int(src),
                                  int(off))], None
    if kind == "fetch":
        _p, _fetch_reg, _w, name, size, dst, off, _sp, src = g
        if name not in _FETCH_OF:
            raise DisasmError(f"unknown atomic operation {name!r}")
        return [isa.BPF_ATOMIC_OP(_SIZE_OF[size], _FETCH_OF[name], int(dst), int(src),
                                  int(off))], None
    if kind == "cmpxchg":
        _p, _w, size, dst, off, _sp, src = g
        return [isa.BPF_ATOMIC_OP(_SIZE_OF[size], isa.BPF_CMPXCHG, int(dst), int(src),
                                  int(off))], None
    if kind == "end":
        dst, how, bits, _src = g
        if how == "bswap":
            return [Insn(isa.BPF_ALU64 | isa.BPF_END, int(dst), 0, 0, int(bits))], None
        kind_bit = isa.BPF_TO_BE if how == "be" else isa.BPF_TO_LE
        return [isa.BPF_ENDIAN(kind_bit, int(dst), int(bits))], None
    if kind == "neg":
        p, dst, _p2, _src = g
        return [Insn(_cls(p, isa.BPF_ALU64, isa.BPF_ALU) | isa.BPF_NEG, int(dst))], None
    if kind == "movsx":
        p, dst, bits, _p2, src = g
        return [Insn(_cls(p, isa.BPF_ALU64, isa.BPF_ALU) | isa.BPF_MOV | isa.BPF_X, int(dst),
                     int(src), int(bits))], None
    if kind == "mov":
        p, dst, _sp, src, imm = g
        cls = _cls(p, isa.BPF_ALU64, isa.BPF_ALU)
        if src is not None:
            return [Insn(cls | isa.BPF_MOV | isa.BPF_X, int(dst), int(src))], None
        return [Insn(cls | isa.BPF_MOV | isa.BPF_K, int(dst), 0, 0, _int(imm))], None
    # alu
    p, dst, op, _sp, src, imm = g
    cls = _cls(p, isa.BPF_ALU64, isa.BPF_ALU)
    off = 0
    if op in ("s/=", "s%="):
        off, op = 1, op[1:]
    if src is not None:
        return [Insn(cls | _ALU_OF[op] | isa.BPF_X, int(dst), int(src), off)], None
    return [Insn(cls | _ALU_OF[op] | isa.BPF_K, int(dst), 0, off, _int(imm))], None


def parse(text: str) -> tuple[list[Insn], list[Reloc]]:
    """Parse a listing back into slots; `map[name]` lines become relocations.

    Lines may carry the `N: (code)` prefix (checked against the parsed code when present);
    blank lines and `;` comments are ignored.
    """
    insns: list[Insn] = []
    relocs: list[Reloc] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split(";", 1)[0].rstrip()
        if not line.strip():
            continue
        m = _PREFIX.match(line)
        body = line[m.end():] if m else line.strip()
        try:
            slots, name = parse_insn(body)
        except (DisasmError, isa.EncodingError, KeyError) as e:
            raise DisasmError(f"line {lineno}: {e}") from None
        if m and (int(m.group(1)) != len(insns) or int(m.group(2), 16) != slots[0].code):
            raise DisasmError(f"line {lineno}: index or opcode does not match {body!r}")
        if name is not None:
            relocs.append(Reloc(len(insns), name))
        insns.extend(slots)
    return insns, relocs
