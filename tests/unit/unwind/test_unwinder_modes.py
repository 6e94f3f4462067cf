"""How the unwinder combines CFI, its own FP steps and the kernel's FP chain, per module."""
from __future__ import annotations

import struct

from test_cfi_synthetic import SEC, build

from hud.model import StackCapture, UserRegs
from hud.symbolize.normalize import KIND_ELF, Module
from hud.unwind.cfi import FrameSection
from hud.unwind.prologue import ModuleStrategy
from hud.unwind.sources import ModuleInfo
from hud.unwind.table import CfiTable
from hud.unwind.unwinder import Unwinder

SP = 0x7FFF0000
A = Module("a.so", "", 0x4000, 0x4100, 0, None, KIND_ELF)      # has CFI: CFA=rsp+8
B = Module("b.so", "", 0x9000, 0x9100, 0, None, KIND_ELF)      # no CFI at all


class _Maps:
    def find(self, addr: int):
        return next((m for m in (A, B) if m.start <= addr < m.end), None)


def _unwinder(b_strategy: str) -> Unwinder:
    uw = Unwinder(_Maps())
    table = CfiTable(FrameSection(build([(0x4000, 0x100, b"")]), SEC, True))
    uw.add_module_info(ModuleInfo.from_table(A, table, "x86_64"))
    frac = 1.0 if b_strategy == "fp" else 0.0
    uw.add_module_info(ModuleInfo.from_table(
        B, CfiTable(), "x86_64", ModuleStrategy("b.so", b_strategy, False, frac, 10)))
    return uw


def _capture(words: list[int], fp_ips=()) -> StackCapture:
    regs = UserRegs("x86_64", ip=0x4010, sp=SP, fp=SP + 0x20)
    return StackCapture(fp_ips=tuple(fp_ips), regs=regs,
                        stack=struct.pack(f"<{len(words)}Q", *words))


# [SP] = RA into B; the frame record at SP+0x20 = (caller fp 0, RA 0x9050).
WORDS = [0x9010, 0, 0, 0, 0, 0x9050, 0, 0]


def test_cfi_then_fp_steps_in_a_module_that_keeps_frame_pointers():
    res = _unwinder("fp").unwind(_capture(WORDS))
    assert res.ips == (0x4010, 0x9010, 0x9050)
    assert res.reason == "end" and res.method == "cfi+fp"


def test_no_fp_step_where_frame_pointers_are_not_trusted():
    res = _unwinder("none").unwind(_capture(WORDS))
    assert res.ips == (0x4010, 0x9010) and res.reason == "no_cfi" and res.method == "cfi"


def test_cfi_only_mode_never_uses_frame_pointers():
    res = _unwinder("fp").unwind(_capture(WORDS), mode="cfi")
    assert res.ips == (0x4010, 0x9010) and res.reason == "no_cfi"


def test_kernel_fp_chain_is_spliced_where_trusted():
    # The copy ends before B's frame record: our walk stops, the kernel's chain goes on.
    kernel = (0x4010, 0x9010, 0x9050, 0x9070)
    res = _unwinder("fp").unwind(_capture(WORDS[:2], kernel))
    assert res.ips == kernel and res.method == "cfi+fp" and res.reason == "stack_exhausted"
    untrusted = _unwinder("cfi").unwind(_capture(WORDS[:2], kernel))
    assert untrusted.ips == (0x4010, 0x9010)


def test_kernel_chain_that_disagrees_is_not_spliced():
    res = _unwinder("fp").unwind(_capture(WORDS[:2], (0x4010, 0x9999, 0x9050)))
    assert res.ips == (0x4010, 0x9010)


def test_fp_mode_and_max_frames():
    uw = _unwinder("fp")
    assert uw.unwind(_capture(WORDS), mode="fp").ips == (0x4010, 0x9050)
    assert uw.unwind(_capture(WORDS), max_frames=2).ips == (0x4010, 0x9010)
    assert uw.unwind(_capture(WORDS), max_frames=2).reason == "max_depth"


def test_pc_outside_every_module():
    uw = _unwinder("fp")
    cap = StackCapture(regs=UserRegs("x86_64", ip=0x1, sp=SP), stack=b"\0" * 16)
    assert uw.unwind(cap).reason == "no_module"


def test_strategies_are_reported_per_module():
    uw = _unwinder("fp")
    uw.unwind(_capture(WORDS))
    got = {s.path: s.strategy for s in uw.strategies()}
    assert got["b.so"] == "fp"
