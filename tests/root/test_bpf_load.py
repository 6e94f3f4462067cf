"""Loading real programs: verifier rejections carry the log, the ENOSPC trap, test runs
that check computed results against Python, xlated code against bpftool's disassembly."""
from __future__ import annotations

import ctypes
import errno
import json
import random
import re
import struct
import subprocess

import pytest

from hud.bpf.loader import Loader, Program
from hud.errors import HudError, ProgramRejected
from hud.linux import bpf
from kernel import isa, uapi
from kernel.abi import MapSpec
from kernel.asm import Assembler, r0, r1, r2, r3, r4, r6, r7, r8, r10
from kernel.disasm import disassemble

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1


def _retval(a: Assembler) -> None:
    """Fold r0 to 32 bits (test runs return u32): r0 = (r0 ^ r0 >> 32) & 0xffffffff."""
    a.mov(r1, r0).alu64(">>=", r1, 32).alu64("^=", r0, r1).mov32(r0, r0).exit()


def _fold(v: int) -> int:
    v &= M64
    return (v ^ (v >> 32)) & M32


def _s64(v: int) -> int:
    v &= M64
    return v - (1 << 64) if v >> 63 else v


# op, 64-bit?, python semantics on (a, b) as unsigned 64-bit values
ALU = [
    ("+=", True, lambda a, b: a + b), ("-=", True, lambda a, b: a - b),
    ("*=", True, lambda a, b: a * b), ("|=", True, lambda a, b: a | b),
    ("&=", True, lambda a, b: a & b), ("^=", True, lambda a, b: a ^ b),
    ("<<=", True, lambda a, b: a << (b & 63)), (">>=", True, lambda a, b: a >> (b & 63)),
    ("s>>=", True, lambda a, b: _s64(a) >> (b & 63)),
    ("/=", True, lambda a, b: a // b if b else 0), ("%=", True, lambda a, b: a % b if b else a),
    ("+=", False, lambda a, b: (a + b) & M32), ("*=", False, lambda a, b: (a * b) & M32),
    ("-=", False, lambda a, b: (a - b) & M32), (">>=", False, lambda a, b: (a & M32) >> (b & 31)),
    ("/=", False, lambda a, b: (a & M32) // (b & M32) if b & M32 else 0),
]


def _alu_prog(op: str, wide: bool, imm=None) -> Program:
    a = Assembler()
    a.ldx("u64", r0, r1, 0).ldx("u64", r2, r1, 8)
    if wide:
        a.alu64(op, r0, r2 if imm is None else imm)
    else:
        a.alu32(op, r0, r2 if imm is None else imm)
    _retval(a)
    return Program(a.image("hud_t_alu", uapi.BPF_PROG_TYPE_RAW_TRACEPOINT))


def test_raw_tracepoint_test_runs_compute_like_python():
    rng = random.Random(7)
    values = [0, 1, 2, 63, 64, 0xFFFFFFFF, 1 << 32, M64, 1 << 63, 12345678901234567]
    values += [rng.getrandbits(64) for _ in range(6)]
    for op, wide, model in ALU:
        with _alu_prog(op, wide) as prog:
            for _ in range(12):
                x, y = rng.choice(values), rng.choice(values)
                if op in ("<<=", ">>=", "s>>="):
                    y &= 63 if wide else 31
                got = prog.test_run(struct.pack("<QQ", x, y)).retval
                assert got == _fold(model(x, y)), (op, wide, hex(x), hex(y))


def test_signed_and_32_bit_jumps_and_zero_extension():
    a = Assembler()
    a.ldx("u64", r6, r1, 0).mov(r0, 0)
    a.jmp("s<", r6, 0, "neg").alu64("|=", r0, 1).label("neg")      # bit0: x >= 0 (signed)
    a.jmp("<", r6, 10, "small").alu64("|=", r0, 2).label("small")  # bit1: x >= 10 (unsigned)
    a.jmp32("==", r6, 5, "five").ja("notfive")
    a.label("five").alu64("|=", r0, 4).label("notfive")            # bit2: low 32 bits == 5
    a.mov32(r7, -1).alu64(">>=", r7, 32)                           # w7 = -1 zero-extends
    a.jmp("!=", r7, 0, "bad").alu64("|=", r0, 8).label("bad")      # bit3: always
    a.mov(r8, -1).alu64(">>=", r8, 32)                             # r8 = -1 sign-extends
    a.jmp("==", r8, 0, "end").alu64("|=", r0, 16).label("end")     # bit4: always
    a.exit()
    with Program(a.image("hud_t_jmp", uapi.BPF_PROG_TYPE_RAW_TRACEPOINT)) as prog:
        def run(x):
            return prog.test_run(struct.pack("<Q", x & M64)).retval

        def want(x):
            x &= M64
            return ((_s64(x) >= 0) | (x >= 10) << 1 | ((x & M32) == 5) << 2 | 8 | 16)
        for x in (0, 5, 9, 10, -1, -5, (7 << 32) | 5, 1 << 63, 11):
            assert run(x) == want(x), x


def test_syscall_program_writes_a_map_through_a_relocation():
    a = Assembler()
    a.ldx("u64", r6, r1, 0).ldx("u64", r7, r1, 8)
    a.alu64("*=", r6, r7).stx("u64", r10, -16, r6)
    a.st("u32", r10, -4, 1)
    a.ld_map(r1, "out").mov(r2, r10).alu64("+=", r2, -4)
    a.mov(r3, r10).alu64("+=", r3, -16).mov(r4, 0).call("map_update_elem")
    a.exit()
    img = a.image("hud_t_sys", uapi.BPF_PROG_TYPE_SYSCALL, prog_flags=uapi.BPF_F_SLEEPABLE)
    with Loader() as ld:
        out = ld.create_map(MapSpec("out", uapi.BPF_MAP_TYPE_ARRAY, 4, 8, 2))
        prog = ld.load(img)
        assert out.id in prog.info().map_ids
        res = prog.test_run(struct.pack("<QQ", 6, 7))
        assert res.retval == 0
        assert struct.unpack("<Q", out.lookup(struct.pack("<I", 1)))[0] == 42
        with pytest.raises(HudError) as exc:        # repeat must be 0 for syscall programs
            prog.test_run(struct.pack("<QQ", 1, 1), repeat=5)
        assert exc.value.errno == errno.EINVAL


def test_rejected_program_raises_with_the_verifier_log():
    a = Assembler().exit()                          # r0 never written
    with pytest.raises(ProgramRejected) as exc:
        Program(a.image("hud_t_bad", uapi.BPF_PROG_TYPE_TRACEPOINT))
    e = exc.value
    assert e.exit_code == 6 and e.errno == errno.EACCES
    assert "R0 !read_ok" in e.log and "R0 !read_ok" in e.message
    bad_ctx = Assembler().ldx("u32", r0, r1, 4).exit()   # common_* fields are off limits
    with pytest.raises(ProgramRejected) as exc:
        Program(bad_ctx.image("hud_t_ctx", uapi.BPF_PROG_TYPE_TRACEPOINT))
    assert "invalid bpf_context access" in exc.value.log


def test_small_log_buffer_trap_is_avoided():
    a = Assembler().mov(r0, 0)
    for _ in range(20):
        a.alu64("+=", r0, 1)
    a.exit()
    image = a.image("hud_t_log", uapi.BPF_PROG_TYPE_RAW_TRACEPOINT)
    # The trap itself: a valid program with a tiny log fails to load.
    tiny = ctypes.create_string_buffer(64)
    ret = bpf._load(image.encode(), image.prog_type, "GPL", "t", 0, 0, 0, tiny, 1)
    assert ret == -errno.ENOSPC
    # prog_load never passes a small log.
    with Program(image) as p0:
        assert p0.log == ""
    with Program(image, log_level=1) as p1:
        assert "processed 22 insns" in p1.log


def test_xlated_code_matches_bpftool_and_our_disassembler():
    a = Assembler()
    a.mov(r6, r1).ldx("u64", r2, r6, 8).mov32(r3, -1).alu64("&=", r2, r3)
    a.jmp("s>", r2, 3, "big").mov(r0, 1).ja("end").label("big").mov(r0, 2)
    a.label("end").stx("u64", r10, -8, r0).ldx("u64", r0, r10, -8).exit()
    with Program(a.image("hud_t_xl", uapi.BPF_PROG_TYPE_RAW_TRACEPOINT)) as prog:
        xl = prog.xlated()
        assert xl == list(prog.image.insns)          # nothing here needs rewriting
        ours = disassemble(xl).splitlines()
        out = subprocess.run(["bpftool", "prog", "dump", "xlated", "id", str(prog.id)],
                             capture_output=True, text=True, check=True).stdout
        theirs = [ln.strip() for ln in out.splitlines() if re.match(r"\s*\d+: \(", ln)]
        assert ours == theirs
        info = json.loads(subprocess.run(["bpftool", "-j", "prog", "show", "id",
                                          str(prog.id)], capture_output=True, text=True,
                                         check=True).stdout)
        assert info["name"] == "hud_t_xl" and info["type"] == "raw_tracepoint"
        assert isa.encode(xl) == prog.image.encode()
