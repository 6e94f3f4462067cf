"""The assembler: labels, jump offsets and their range, helpers by name, map relocations."""
from __future__ import annotations

import pytest

from kernel import isa, uapi
from kernel.asm import AsmError, Assembler, Reloc, check_name, r0, r1, r2, r3, r6, r10


def _prog() -> Assembler:
    a = Assembler()
    a.mov(r6, r1)                       # 0
    a.call("ktime_get_ns")              # 1
    a.jmp("==", r0, 0, "out")           # 2 -> 7: off = 7 - 3 = 4
    a.ld_map(r1, "counts")              # 3, 4
    a.mov(r2, r10)                      # 5
    a.ja("out")                         # 6 -> 7: off 0
    a.label("out")
    a.mov(r0, 0)                        # 7
    a.label("loop")
    a.alu64("+=", r0, 1)                # 8
    a.jmp32("s<", r0, 4, "loop")        # 9 -> 8: off -2
    a.exit()                            # 10
    return a


def test_jump_offsets_count_slots_including_ld_imm64():
    insns = _prog().insns()
    assert len(insns) == 11
    assert insns[2] == isa.BPF_JMP_IMM(isa.BPF_JEQ, 0, 0, 4)
    assert insns[6] == isa.BPF_JMP_A(0)
    assert insns[9] == isa.BPF_JMP32_IMM(isa.BPF_JSLT, 0, 4, -2)
    assert insns[1] == isa.BPF_EMIT_CALL(5)   # BPF_FUNC_ktime_get_ns


def test_map_references_are_relocations_filled_by_fd():
    img = _prog().image("t", uapi.BPF_PROG_TYPE_TRACEPOINT)
    assert img.relocs == (Reloc(3, "counts"),)
    assert img.maps == ("counts",)
    assert img.insns[3].imm == 0 and img.insns[3].src == uapi.BPF_PSEUDO_MAP_FD
    filled = img.with_map_fds({"counts": 42})
    assert filled[3] == isa.BPF_LD_MAP_FD(1, 42)[0]
    assert filled[4] == isa.BPF_LD_MAP_FD(1, 42)[1]
    assert filled[:3] == img.insns[:3] and filled[5:] == img.insns[5:]
    with pytest.raises(AsmError):
        img.with_map_fds({})


def test_helper_names_with_or_without_prefix():
    a = Assembler().call("bpf_ringbuf_output").call("get_stack").call(113)
    assert [i.imm for i in a.insns()] == [130, 67, 113]
    with pytest.raises(AsmError):
        Assembler().call("no_such_helper")


def test_register_vs_immediate_operands():
    a = Assembler().mov(r1, r2).mov(r1, 2).mov32(r3, -1).alu32("&=", r1, r2)
    assert a.insns() == (isa.BPF_MOV64_REG(1, 2), isa.BPF_MOV64_IMM(1, 2),
                         isa.BPF_MOV32_IMM(3, -1), isa.BPF_ALU32_REG(isa.BPF_AND, 1, 2))


def test_memory_forms():
    a = Assembler().ldx("u32", r0, r1, 24).stx("u64", r10, -8, r0).st("u8", r10, -9, 1) \
        .atomic_add("u64", r0, 0, r1)
    assert a.insns() == (isa.BPF_LDX_MEM(isa.BPF_W, 0, 1, 24),
                         isa.BPF_STX_MEM(isa.BPF_DW, 10, 0, -8),
                         isa.BPF_ST_MEM(isa.BPF_B, 10, -9, 1),
                         isa.BPF_STX_XADD(isa.BPF_DW, 0, 1, 0))
    with pytest.raises(AsmError):
        Assembler().ldx(8, r0, r1, 0)   # byte counts are ambiguous with BPF_H: refused


def test_undefined_and_duplicate_labels():
    with pytest.raises(AsmError, match="undefined"):
        Assembler().ja("nowhere").insns()
    with pytest.raises(AsmError, match="twice"):
        Assembler().label("a").label("a")


def test_jump_range_is_checked_both_ways():
    far = Assembler().jmp("!=", r0, 0, "end")
    for _ in range(1 << 15):
        far.mov(r0, 0)
    far.label("end").exit()
    with pytest.raises(AsmError, match="range"):
        far.insns()
    ok = Assembler().jmp("!=", r0, 0, "end")
    for _ in range((1 << 15) - 1):
        ok.mov(r0, 0)
    ok.label("end").exit()
    assert ok.insns()[0].off == (1 << 15) - 1
    back = Assembler().label("top")
    for _ in range((1 << 15) - 1):
        back.mov(r0, 0)
    back.ja("top")
    assert back.insns()[-1].off == -(1 << 15)
    with pytest.raises(AsmError, match="range"):
        back.ja("top").insns()


def test_object_names():
    assert check_name("hud_switch.v1") == "hud_switch.v1"
    for bad in ("bad-name", "x" * 16, "naïve"):
        with pytest.raises(AsmError):
            check_name(bad)
