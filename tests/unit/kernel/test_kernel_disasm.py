"""Disassembler: verifier-style text for known instructions, and a lossless round trip."""
from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from kernel import isa, uapi
from kernel.asm import Assembler, Reloc, r0, r1, r2, r3, r6, r10
from kernel.disasm import disassemble, disassemble_image, format_insn, parse
from kernel.isa import Insn

# The texts the kernel's print_bpf_insn() gives for these (verifier log / bpftool xlated).
KNOWN = [
    (isa.BPF_MOV64_IMM(1, 0), "(b7) r1 = 0"),
    (isa.BPF_MOV32_IMM(3, -1), "(b4) w3 = -1"),
    (isa.BPF_MOV64_REG(6, 1), "(bf) r6 = r1"),
    (isa.BPF_ALU64_IMM(isa.BPF_ADD, 2, -8), "(07) r2 += -8"),
    (isa.BPF_ALU64_IMM(isa.BPF_RSH, 0, 32), "(77) r0 >>= 32"),
    (isa.BPF_ALU32_REG(isa.BPF_XOR, 1, 2), "(ac) w1 ^= w2"),
    (isa.BPF_ALU64_REG(isa.BPF_ARSH, 1, 2), "(cf) r1 s>>= r2"),
    (isa.BPF_ALU64_IMM(isa.BPF_NEG, 0, 0), "(87) r0 = -r0"),
    (isa.BPF_ENDIAN(isa.BPF_TO_BE, 1, 16), "(dc) r1 = be16 r1"),
    (isa.BPF_LDX_MEM(isa.BPF_DW, 0, 1, 8), "(79) r0 = *(u64 *)(r1 +8)"),
    (isa.BPF_LDX_MEM(isa.BPF_W, 7, 1, 24), "(61) r7 = *(u32 *)(r1 +24)"),
    (isa.BPF_STX_MEM(isa.BPF_DW, 10, 1, -8), "(7b) *(u64 *)(r10 -8) = r1"),
    (isa.BPF_ST_MEM(isa.BPF_W, 10, -4, 0), "(62) *(u32 *)(r10 -4) = 0"),
    (isa.BPF_STX_XADD(isa.BPF_DW, 0, 1, 0), "(db) lock *(u64 *)(r0 +0) += r1"),
    (isa.BPF_JMP_IMM(isa.BPF_JEQ, 0, 0, 3), "(15) if r0 == 0x0 goto pc+3"),
    (isa.BPF_JMP_IMM(isa.BPF_JSGT, 0, -1, -2), "(65) if r0 s> 0xffffffff goto pc-2"),
    (isa.BPF_JMP32_REG(isa.BPF_JLT, 1, 2, 1), "(ae) if w1 < w2 goto pc+1"),
    (isa.BPF_JMP_A(5), "(05) goto pc+5"),
    (isa.BPF_EMIT_CALL(5), "(85) call bpf_ktime_get_ns#5"),
    (isa.BPF_EMIT_CALL(130), "(85) call bpf_ringbuf_output#130"),
    (isa.BPF_EXIT_INSN(), "(95) exit"),
]


def test_known_texts():
    for insn, text in KNOWN:
        assert f"({insn.code:02x}) {format_insn(insn)}" == text


def test_ld_imm64_is_one_line_of_two_slots():
    insns = [*isa.BPF_LD_IMM64(1, 0xFFFFFFFF), *isa.BPF_LD_MAP_FD(2, 9), isa.BPF_EXIT_INSN()]
    assert disassemble(insns) == ("0: (18) r1 = 0xffffffff\n"
                                  "2: (18) r2 = map[fd:9]\n"
                                  "4: (95) exit\n")


def test_image_listing_names_maps_and_parses_back():
    a = Assembler()
    a.mov(r6, r1).ld_map(r1, "events").mov(r2, r10).alu64("+=", r2, -8)
    a.st("u64", r10, -8, 0).call("map_lookup_elem").jmp("==", r0, 0, "out")
    a.mov32(r3, -1).label("out").mov(r0, 0).exit()
    img = a.image("t", uapi.BPF_PROG_TYPE_TRACEPOINT)
    text = disassemble_image(img)
    assert "1: (18) r1 = map[events]\n" in text
    assert "7: (15) if r0 == 0x0 goto pc+1\n" in text
    insns, relocs = parse(text)
    assert tuple(insns) == img.insns and tuple(relocs) == img.relocs == (Reloc(1, "events"),)


def test_parse_checks_index_and_opcode_and_ignores_comments():
    insns, _ = parse("0: (b7) r0 = 0   ; clear\n\n1: (95) exit\n")
    assert insns == [isa.BPF_MOV64_IMM(0, 0), isa.BPF_EXIT_INSN()]
    for bad in ("0: (b4) r0 = 0", "3: (95) exit", "r0 = frobnicate"):
        try:
            parse(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} parsed")


def test_unknown_encodings_print_raw_and_survive():
    odd = [Insn(0xB7, 1, 3, 0, 5),       # mov imm with a stray src field
           Insn(0xFF, 15, 15, -1, -1),    # no such opcode
           Insn(0x18, 1, 0, 0, 1)]        # ld_imm64 cut short at the end
    text = disassemble(odd)
    assert text.count(".insn") == 3
    assert parse(text)[0] == odd


_slot = st.builds(Insn, st.integers(0, 255), st.integers(0, 15), st.integers(0, 15),
                  st.integers(-(1 << 15), (1 << 15) - 1), st.integers(-(1 << 31), (1 << 31) - 1))


@settings(max_examples=800)
@given(st.lists(_slot, max_size=6))
@example([Insn(0x85, 0, 0, 0, -1)])     # a helper call with a negative id: "call #-1"
def test_round_trip_of_arbitrary_slots(insns):
    assert parse(disassemble(insns))[0] == insns


_reg = st.integers(0, 10)
_off = st.integers(-(1 << 15), (1 << 15) - 1)
_imm = st.integers(-(1 << 31), (1 << 31) - 1)
_valid = st.one_of(
    st.builds(isa.BPF_ALU64_IMM, st.sampled_from([0, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70,
                                                  0x90, 0xA0, 0xB0, 0xC0]), _reg, _imm),
    st.builds(isa.BPF_ALU32_REG, st.sampled_from([0, 0x10, 0x40, 0xA0, 0xB0]), _reg, _reg),
    st.builds(isa.BPF_LDX_MEM, st.sampled_from([0, 8, 0x10, 0x18]), _reg, _reg, _off),
    st.builds(isa.BPF_STX_MEM, st.sampled_from([0, 8, 0x10, 0x18]), _reg, _reg, _off),
    st.builds(isa.BPF_ST_MEM, st.sampled_from([0, 8, 0x10, 0x18]), _reg, _off, _imm),
    st.builds(isa.BPF_JMP_IMM, st.sampled_from([0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0xA0,
                                                0xB0, 0xC0, 0xD0]), _reg, _imm, _off),
    st.builds(isa.BPF_JMP32_REG, st.sampled_from([0x10, 0x20, 0x60, 0xD0]), _reg, _reg, _off),
    st.builds(isa.BPF_EMIT_CALL, st.integers(0, 300)),
    st.builds(lambda d, v: isa.BPF_LD_IMM64(d, v), _reg, st.integers(0, (1 << 64) - 1)),
)


@settings(max_examples=500)
@given(st.lists(_valid, max_size=8))
def test_well_formed_programs_print_without_raw_lines(items):
    insns = []
    for it in items:
        insns.extend(it if isinstance(it, tuple) else (it,))
    text = disassemble(insns)
    assert ".insn" not in text
    assert parse(text)[0] == insns


def test_helper_numbers_print_by_name():
    assert "call bpf_get_stack#67" in disassemble([isa.BPF_EMIT_CALL(67)])
    assert "call #999" in disassemble([isa.BPF_EMIT_CALL(999)])
