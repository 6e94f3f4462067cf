"""Stack scanning of x86_64 code without CFI (hud.unwind.scan) on synthetic code and
stacks: which words are taken as return addresses and which are left as stale."""
from __future__ import annotations

import os
import struct
from typing import Optional

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hud.unwind import prologue, scan
from hud.unwind.memory import StackMemory
from hud.unwind.scan import (
    Code,
    call_target,
    frame_size,
    is_indirect_call,
    jumps_to,
    prologue_saves,
    scan_step,
)

CODE = 0x400000          # one module's code, [CODE, CODE + len(image))
OTHER = 0x7F0000000000   # a second module (a shared libc)
SP = 0x7FFF0000


def _call(at: int, target: int) -> bytes:
    return b"\xe8" + struct.pack("<i", target - (at + 5))


class Image:
    """Bytes of two modules and their function symbols. Code is int3 where a test put
    nothing: no path runs through it, so no frame size is known there."""

    def __init__(self) -> None:
        self.mem: dict[int, bytearray] = {CODE: bytearray(b"\xcc" * 0x4000),
                                          OTHER: bytearray(b"\xcc" * 0x1000)}
        self.funcs: dict[int, list[tuple[int, int, str]]] = {CODE: [], OTHER: []}
        self.symbols = True

    def put(self, addr: int, data: bytes) -> None:
        base = OTHER if addr >= OTHER else CODE
        self.mem[base][addr - base:addr - base + len(data)] = data

    def func(self, start: int, end: int, name: str = "f") -> None:
        base = OTHER if start >= OTHER else CODE
        self.funcs[base].append((start, end, name))

    def code(self) -> Code:
        def base(addr: int) -> Optional[int]:
            for b, m in self.mem.items():
                if b <= addr < b + len(m):
                    return b
            return None

        def read(addr: int, size: int) -> Optional[bytes]:
            b = base(addr)
            if b is None or addr + size > b + len(self.mem[b]):
                return None
            return bytes(self.mem[b][addr - b:addr - b + size])

        def function(addr: int) -> Optional[tuple[int, tuple[str, ...]]]:
            b = base(addr)
            if b is None or not self.symbols:
                return None
            return next(((s, (n,)) for s, e, n in self.funcs[b] if s <= addr < e), None)

        return Code(lambda addr: base(addr) is not None, read, function)


def _stack(*words: int) -> StackMemory:
    return StackMemory(SP, b"".join(struct.pack("<Q", w) for w in words))


def test_call_forms_before_a_return_address():
    assert call_target(_call(0x1000, 0x2000), 0x1005) == 0x2000
    assert call_target(b"\x90" + _call(0x1000, 0x800), 0x1005) == 0x800
    # Through the GOT or a register: no destination, but a call all the same.
    assert call_target(b"\xff\x15\x10\x20\x00\x00", 0x1006) is None
    assert is_indirect_call(b"\xff\x15\x10\x20\x00\x00")
    assert is_indirect_call(b"\x90\x90\x90\xff\xd0")          # call rax
    assert is_indirect_call(b"\x90\x90\xff\x55\x08")          # call [rbp + 8]
    assert not is_indirect_call(b"\x00\x00\x00\x00\x00")
    assert call_target(b"\x00\x00\x00\x00\x00", 0x1005) is None


def test_tail_jumps_are_found_in_a_stub():
    assert jumps_to(b"\xe9" + struct.pack("<i", -0x30), 0x1000, 0x1000 + 5 - 0x30)
    assert jumps_to(b"\xf3\x0f\x1e\xfa\xeb\x10", 0x1000, 0x1004 + 2 + 0x10)
    # After setting arguments up (musl's qsort: mov r8, rcx; lea rcx, [rip-0x1a]; jmp).
    qsort = b"\x49\x89\xc8\x48\x8d\x0d\xe6\xff\xff\xff\xe9" + struct.pack("<i", 0x1701)
    assert jumps_to(qsort, 0x4017C0, 0x4017CA + 5 + 0x1701)
    assert not jumps_to(qsort, 0x4017C0, 0x4017CA + 5 + 0x1700)
    assert not jumps_to(b"\x48\x89\xe5", 0x1000, 0x1003)


def _musl_like() -> Image:
    """caller (CFI) -> outer (no CFI) -> stub `jmp leaf` -> leaf (no CFI, pc inside),
    the shape of musl's nanosleep -> __clock_nanosleep -> __syscall_cp -> __syscall_cp_c."""
    im = Image()
    im.func(CODE + 0x100, CODE + 0x200)                 # caller (has CFI)
    im.func(CODE + 0x1000, CODE + 0x1100)               # outer
    im.func(CODE + 0x1200, CODE + 0x1210)               # stub
    im.func(CODE + 0x1300, CODE + 0x1340)               # leaf
    im.put(CODE + 0x150, _call(CODE + 0x150, CODE + 0x1000))
    im.put(CODE + 0x1050, _call(CODE + 0x1050, CODE + 0x1200))
    im.put(CODE + 0x1200, b"\xe9" + struct.pack("<i", 0x1300 - 0x1205))
    im.put(CODE + 0x1080, _call(CODE + 0x1080, CODE + 0x1300))   # a direct call of leaf
    im.put(CODE + 0x1090, _call(CODE + 0x1090, CODE + 0x1000))   # outer calling itself
    return im


def test_the_first_call_into_the_current_function_is_taken_stale_ones_are_not():
    im = _musl_like()
    code = im.code()
    into_outer_via_stub = CODE + 0x1055
    into_caller = CODE + 0x155
    stale_into_outer = CODE + 0x1095       # a call of outer, not of leaf
    mem = _stack(7, stale_into_outer, 0, into_outer_via_stub, 0x1234, into_caller)
    # In leaf: its caller reached it through the stub; the call of outer is skipped.
    assert scan_step(CODE + 0x1310, SP, mem, code)[:2] == (into_outer_via_stub, SP + 24)
    # From outer (pc = return address - 1 in it): the next call of outer above.
    assert scan_step(into_outer_via_stub - 1, SP + 32, mem, code)[:2] == (into_caller, SP + 40)


def test_without_a_symbol_a_direct_call_is_taken_only_when_the_frame_size_agrees():
    im = _musl_like()
    im.symbols = False
    # leaf (CODE+0x1300): push rbx; sub rsp, 0x10; nop...: 24 bytes below its RA slot.
    im.put(CODE + 0x1300, bytes.fromhex("53" "4883ec10") + b"\x90" * 0x20)
    near = CODE + 0x1085                   # a real call of leaf (CODE+0x1080)
    other = CODE + 0x155                   # a call of outer: another function's frame
    mem = _stack(other, near, 0, near, 0)   # the first `near` is at the wrong depth
    assert scan_step(CODE + 0x1310, SP, mem, im.code()) == (near, SP + 24, [(RBX, SP + 16)])
    # At the first nop: only the push and the sub ran, the same 24 bytes.
    assert scan_step(CODE + 0x1305, SP, mem, im.code())[:2] == (near, SP + 24)
    # Where no path reaches the pc (int3 on the way), nothing is claimed.
    im.put(CODE + 0x1308, b"\xcc")
    assert scan_step(CODE + 0x1310, SP, mem, im.code()) is None


def test_a_known_frame_size_picks_the_slot_even_through_a_plt_entry():
    im = _musl_like()
    im.func(OTHER + 0x100, OTHER + 0x200)                # libc's function: a leaf
    im.put(OTHER + 0x100, b"\x90" * 0x40)
    im.put(CODE + 0x1400, b"\xff\x25\x00\x10\x00\x00")   # PLT entry: jmp [rip + x]
    im.put(CODE + 0x160, _call(CODE + 0x160, CODE + 0x1400))
    im.put(OTHER + 0x300, _call(OTHER + 0x300, OTHER + 0x100))  # a direct call, stale
    via_plt, stale = CODE + 0x165, OTHER + 0x305
    assert scan_step(OTHER + 0x120, SP, _stack(via_plt, stale), im.code())[:2] == (via_plt, SP)
    # The frame size puts the return address at sp: a good call in another slot is stale.
    assert scan_step(OTHER + 0x120, SP, _stack(0, stale), im.code()) is None


def test_frame_sizes_follow_branches_and_give_up_on_what_they_cannot_follow():
    at = 0x1000
    # push rbp; push rbx; sub rsp, 0x28; jmp L; T: int3; int3; L: call rax; nop; jmp T
    code = bytes.fromhex("55" "53" "4883ec28" "eb02" "cccc" "ffd0" "90" "ebf9")
    assert frame_size(code, at, at + 0x0C) == 0x38          # past the call, jumped to
    assert frame_size(code, at, at + 0x08) == 0x38          # reached by the jump back
    assert frame_size(code, at, at + 0x03) is None          # inside an instruction
    assert frame_size(code, at, at + 0x01) == 8             # after push rbp
    assert frame_size(bytes.fromhex("55" "4883e4f0" "90"), at, at + 5) is None   # and rsp
    assert frame_size(bytes.fromhex("55" "c9" "90"), at, at + 2) is None         # leave


def test_the_scan_ends_at_the_end_of_the_copy_or_its_window():
    im = _musl_like()
    assert scan_step(CODE + 0x1310, SP, _stack(1, 2, 3), im.code()) is None
    assert scan_step(CODE + 0x1310, SP, _stack(), im.code()) is None


# musl's trinkle (gcc 12 -O2): pushes with moves scheduled between them, then the frame.
TRINKLE = bytes.fromhex("4157" "4989cf" "4156" "4155" "4989fd" "4154" "55" "53" "bb01000000"
                        "4881ecd8030000" "498b28")
R15, R14, R13, R12, RBP, RBX = 15, 14, 13, 12, 6, 3


def test_prologue_pushes_are_found_between_scheduled_moves():
    assert prologue.capstone_available("x86_64")
    at = 0x402CB0
    assert prologue_saves(TRINKLE, at, at + 0x100) == (
        (R15, 8), (R14, 16), (R13, 24), (R12, 32), (RBP, 40), (RBX, 48))
    # At a pc inside the prologue, only the pushes before it have run.
    assert prologue_saves(TRINKLE, at, at + 7) == ((R15, 8), (R14, 16))
    # endbr64 first; a push of an immediate takes a slot but saves no register; a
    # change of rsp ends the prologue.
    code = bytes.fromhex("f30f1efa" "6a00" "55" "4883ec08" "53")
    assert prologue_saves(code, 0x1000, 0x2000) == ((RBP, 16),)


def test_without_capstone_only_back_to_back_pushes_are_read(monkeypatch):
    monkeypatch.setattr(scan.prologue, "_disassembler", lambda arch: None)
    prologue_saves.cache_clear()
    assert prologue_saves(TRINKLE, 0x402CB0, 0x402E00) == ((R15, 8),)
    assert prologue_saves(bytes.fromhex("f30f1efa" "4157" "55" "53" "4889e5"), 0, 100) == (
        (R15, 8), (RBP, 16), (RBX, 24))
    prologue_saves.cache_clear()


def test_the_scan_restores_what_the_prologue_pushed():
    im = _musl_like()
    im.put(CODE + 0x1000, bytes.fromhex("55" "53" "4883ec18"))   # outer: push rbp, rbx
    into_caller = CODE + 0x155
    mem = _stack(0, 0, 0, 0xBB, 0xAA, into_caller)
    ra, slot, saves = scan_step(CODE + 0x1055 - 1, SP, mem, im.code())
    assert (ra, slot) == (into_caller, SP + 40)
    assert saves == [(RBP, SP + 32), (RBX, SP + 24)]


def test_musl_entry_points_end_the_stack_without_a_scan():
    im = _musl_like()
    im.func(CODE + 0x2000, CODE + 0x2100, "libc_start_main_stage2")
    im.func(CODE + 0x2100, CODE + 0x2200, "start")
    for pc in (CODE + 0x2010, CODE + 0x2110):
        assert scan_step(pc, SP, _stack(CODE + 0x155), im.code()) == (0, 0, [])


@settings(max_examples=int(os.environ.get("HUD_FUZZ_EXAMPLES", "150")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(code=st.binary(min_size=64, max_size=512), words=st.lists(
    st.one_of(st.integers(0, (1 << 64) - 1), st.integers(CODE, CODE + 0x3FFF)), max_size=40),
    pc=st.integers(0, 0x1FF), exact=st.booleans(), symbols=st.booleans())
def test_hostile_code_and_stacks_give_a_slot_in_the_copy_or_nothing(code, words, pc, exact,
                                                                    symbols):
    """Bytes from the target are hostile: any code and any stack give None, the end of
    the stack, or a return address read from a slot inside the copy, never an error."""
    im = Image()
    im.symbols = symbols
    im.func(CODE + 0x1000, CODE + 0x1000 + len(code))
    im.put(CODE + 0x1000, code)
    mem = _stack(*words)
    got = scan_step(CODE + 0x1000 + pc % len(code), SP, mem, im.code(), exact)
    if got is not None and got != (0, 0, []):
        ra, slot, saves = got
        assert SP <= slot < SP + 8 * len(words) and mem.u64(slot) == ra
        assert all(addr < slot for _reg, addr in saves)   # below the return address


def test_a_module_scans_with_the_symbol_table_it_is_given():
    """The resolver hands the unwinder the symbolizer's table: a module's symbols are
    not read a second time for its stack scans."""
    import sys

    from hud.symbolize.elf import ElfFile
    from hud.symbolize.normalize import KIND_ELF, Module
    from hud.symbolize.symtab import SymbolTable
    from hud.unwind.sources import ModuleInfo
    with ElfFile.open(sys.executable) as elf:
        table = SymbolTable([elf])
    assert len(table) > 0
    start = table._starts[len(table) // 2]
    mod = Module(sys.executable, "", 0, 1 << 47, 0, None, KIND_ELF)
    given = ModuleInfo(mod, lambda: None, symbols=lambda: table)
    assert given.function_span(start)[0] == start
    # The same module with nothing given and no file to read has no symbols.
    assert ModuleInfo(mod, lambda: None).function_span(start) is None
