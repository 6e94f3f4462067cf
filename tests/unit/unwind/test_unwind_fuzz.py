"""Random, looping and truncated stacks never hang or crash the unwinder: every walk is
bounded and ends with a termination reason."""
from __future__ import annotations

import os
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_cfi_synthetic import SEC, build, sleb, uleb
from unwind_support import A64, StaticMaps, a64_capture, a64_vectors

from hud.model import StackCapture, UserRegs
from hud.symbolize.normalize import KIND_ELF, Module
from hud.unwind.cfi import FrameSection
from hud.unwind.sources import ModuleInfo
from hud.unwind.table import CfiTable
from hud.unwind.unwinder import REASONS, Unwinder

VECTORS = a64_vectors()
LIBC = "/lib/x86_64-linux-gnu/libc.so.6"
LIBC_BIAS = 0x7F0000000000
SP = 0x7FFF00000000
FUNC = 0x4000
MAX = 64


class _OneModule:
    def __init__(self, module: Module) -> None:
        self.module = module

    def find(self, addr: int):
        return self.module if self.module.start <= addr < self.module.end else None


def synthetic_unwinder(fde_insns: bytes, size: int = 0x100) -> Unwinder:
    module = Module("synthetic", "", FUNC, FUNC + size, 0, None, KIND_ELF)
    table = CfiTable(FrameSection(build([(FUNC, size, fde_insns)]), SEC, True))
    uw = Unwinder(_OneModule(module))
    uw.add_module_info(ModuleInfo.from_table(module, table, "x86_64"))
    return uw


def _capture(ip: int, words: list[int], fp: int = 0) -> StackCapture:
    regs = UserRegs("x86_64", ip=ip, sp=SP, fp=fp)
    return StackCapture(regs=regs, stack=struct.pack(f"<{len(words)}Q", *words))


def _check(res, ip: int, max_frames: int = MAX) -> None:
    assert res.reason in REASONS
    assert 1 <= len(res.ips) <= max_frames
    assert res.ips[0] == ip


def test_a_frame_returning_to_itself_at_the_same_sp_is_no_progress():
    # CFA = rsp + 0, RA at CFA + 0: the "caller" has the same sp and, here, the same pc.
    uw = synthetic_unwinder(b"\x0c" + uleb(7) + uleb(0) + b"\x90" + uleb(0))
    res = uw.unwind(_capture(FUNC + 4, [FUNC + 4 + 1] * 8), mode="cfi")
    _check(res, FUNC + 4)
    assert res.reason == "no_progress" and len(res.ips) <= 3


def test_a_cfa_below_sp_is_no_progress():
    uw = synthetic_unwinder(b"\x12" + uleb(7) + sleb(2))   # def_cfa_sf rsp, 2 * -8 = -16
    res = uw.unwind(_capture(FUNC + 4, [FUNC + 8] * 8), mode="cfi")
    assert res.reason in ("no_progress", "stack_exhausted") and len(res.ips) == 1


def test_an_endless_valid_chain_stops_at_max_depth():
    # Every frame: CFA = rsp+16, RA = [CFA-8] pointing back into the same function.
    uw = synthetic_unwinder(b"\x0e" + uleb(16))
    words = [0, FUNC + 9] * 4096
    res = uw.unwind(_capture(FUNC + 8, words), max_frames=MAX, mode="cfi")
    assert res.reason == "max_depth" and len(res.ips) == MAX


def test_undefined_ra_is_the_end():
    uw = synthetic_unwinder(b"\x07" + uleb(16))
    res = uw.unwind(_capture(FUNC, [0] * 4))
    assert res.ips == (FUNC,) and res.reason == "end"


def test_no_regs_and_unknown_arch():
    uw = synthetic_unwinder(b"")
    assert uw.unwind(StackCapture()).reason == "no_regs"
    assert uw.unwind(StackCapture(fp_ips=(1, 2, 3))).ips == (1, 2, 3)
    odd = StackCapture(regs=UserRegs("riscv64", ip=5, sp=SP), stack=b"\0" * 16)
    assert uw.unwind(odd).reason == "unsupported_arch"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(insns=st.binary(max_size=48), words=st.lists(st.integers(0, (1 << 64) - 1),
                                                      max_size=64),
       off=st.integers(0, 0xFF))
def test_random_cfi_and_random_stacks(insns, words, off):
    uw = synthetic_unwinder(insns)
    # Sprinkle pointers back into the function and into the stack copy itself.
    words = [w if i % 3 else (FUNC + w % 0x100 if i % 2 else SP + w % 512)
             for i, w in enumerate(words)]
    for mode in ("auto", "cfi", "fp"):
        _check(uw.unwind(_capture(FUNC + off, words, fp=SP + 8 * (off % 8)), MAX, mode),
               FUNC + off)


@pytest.mark.skipif(not os.path.exists(LIBC), reason="needs the x86_64 glibc")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 1 << 30), words=st.lists(st.integers(0, (1 << 64) - 1),
                                                      min_size=0, max_size=256))
def test_random_stacks_over_real_libc_cfi(libc_unwinder, seed, words):
    uw, starts = libc_unwinder
    ip = LIBC_BIAS + starts[seed % len(starts)] + (seed >> 20) % 64
    # Words that look like return addresses into libc and like stack addresses.
    words = [LIBC_BIAS + starts[w % len(starts)] + 5 if i % 4 == 1 else
             SP + (w % 2048) if i % 4 == 2 else w for i, w in enumerate(words)]
    for mode in ("auto", "cfi", "fp"):
        _check(uw.unwind(_capture(ip, words, fp=SP + 16), MAX, mode), ip)


@pytest.fixture(scope="module")
def libc_unwinder():
    maps = StaticMaps([(LIBC, LIBC_BIAS)])
    uw = Unwinder(maps)
    info = uw._info(maps.modules[0])
    return uw, info.table.function_starts()


@settings(max_examples=100, deadline=None)
@given(idx=st.integers(0, len(VECTORS) - 1), cut=st.integers(0, 9000))
def test_truncated_real_stacks_give_a_prefix(idx, cut):
    vec = VECTORS[idx]
    uw = _a64_unwinder(vec["binary"], vec["bias"])
    cap = a64_capture(vec)
    full = uw.unwind(cap, mode="cfi")
    short = uw.unwind(StackCapture(regs=cap.regs, stack=cap.stack[:cut]), mode="cfi")
    assert short.reason in REASONS
    assert full.ips[:len(short.ips)] == short.ips
    if len(short.ips) < len(full.ips):
        assert short.reason in ("stack_exhausted", "no_regs")


_A64_CACHE: dict = {}


def _a64_unwinder(binary: str, bias: int) -> Unwinder:
    key = (binary, bias)
    if key not in _A64_CACHE:
        _A64_CACHE[key] = Unwinder(StaticMaps([(str(A64 / binary), bias)]))
    return _A64_CACHE[key]


@settings(max_examples=100, deadline=None)
@given(idx=st.integers(0, len(VECTORS) - 1), data=st.data())
def test_corrupted_real_stacks_terminate(idx, data):
    vec = VECTORS[idx]
    cap = a64_capture(vec)
    stack = bytearray(cap.stack)
    for _ in range(data.draw(st.integers(1, 16))):
        pos = data.draw(st.integers(0, max(0, len(stack) - 8)))
        word = data.draw(st.sampled_from([0, cap.regs.sp, cap.regs.sp - 64, cap.regs.ip,
                                          vec["gdb_pcs"][-1], (1 << 64) - 1]))
        stack[pos:pos + 8] = struct.pack("<Q", word)
    uw = _a64_unwinder(vec["binary"], vec["bias"])
    res = uw.unwind(StackCapture(regs=cap.regs, stack=bytes(stack)), max_frames=MAX)
    _check(res, cap.regs.ip)
