"""parse_sample over synthetic PERF_RECORD_SAMPLE bodies (no kernel needed)."""
from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from hud.collect.perf_sampler import REGS_MASK, parse_sample, sample_attr, split_callchain
from hud.linux.perf_event import PERF_CONTEXT_KERNEL, PERF_CONTEXT_USER

K = [0xFFFFFFFF81000010, 0xFFFFFFFF81000020]
U = [0x401000, 0x402000, 0x403000]


def body(arch="x86_64", regs=(0x7FFE0100, 0x7FFE0000, 0x401000), abi=2,
         stack=b"\x11" * 64, size=None, dyn=None, chain=None, tid=43):
    chain = chain if chain is not None else [PERF_CONTEXT_KERNEL, *K, PERF_CONTEXT_USER, *U]
    out = struct.pack("<QIIQIIQ", 0x401000, 42, tid, 123456789, 1, 0, 1000)
    out += struct.pack("<Q", len(chain)) + struct.pack(f"<{len(chain)}Q", *chain)
    out += struct.pack("<Q", abi)
    if abi:
        out += struct.pack(f"<{len(regs)}Q", *regs)
    size = len(stack) if size is None else size
    out += struct.pack("<Q", size)
    if size:
        out += stack.ljust(size, b"\0") + struct.pack("<Q", len(stack) if dyn is None else dyn)
    return out


def test_x86_sample():
    s = parse_sample(body(), pid=42, arch="x86_64")
    assert (s.pid, s.tid, s.cpu, s.time_ns, s.period_ns) == (42, 43, 1, 123456789, 1000)
    r = s.stack.regs
    assert (r.arch, r.ip, r.sp, r.fp) == ("x86_64", 0x401000, 0x7FFE0000, 0x7FFE0100)
    assert s.stack.fp_ips == tuple(U) and s.stack.kernel_ips == tuple(K)
    assert s.stack.stack == b"\x11" * 64
    assert not s.kernel


def test_the_header_cpumode_tells_a_sample_of_kernel_code():
    # perf_event.h: misc & PERF_RECORD_MISC_CPUMODE_MASK; KERNEL 1, USER 2, GUEST_* 4-5.
    assert parse_sample(body(), pid=42, misc=1).kernel
    assert not parse_sample(body(), pid=42, misc=2).kernel
    assert not parse_sample(body(), pid=42, misc=2 | 1 << 13).kernel
    assert parse_sample(body(), pid=42, misc=1 | 1 << 14).kernel


def test_aarch64_sample_register_order():
    s = parse_sample(body(regs=(0xF0, 0x4010, 0xE0, 0x4000)), pid=1, arch="aarch64")
    r = s.stack.regs
    assert (r.fp, r.lr, r.sp, r.ip) == (0xF0, 0x4010, 0xE0, 0x4000)


def test_dyn_size_trims_the_copy():
    s = parse_sample(body(stack=b"\x22" * 24, size=64, dyn=24), pid=1, arch="x86_64")
    assert s.stack.stack == b"\x22" * 24


def test_kernel_thread_has_no_regs_and_no_stack():
    s = parse_sample(body(abi=0, size=0, stack=b""), pid=1, arch="x86_64")
    assert s.stack.regs is None and s.stack.stack == b""


def test_truncated_bodies_are_none():
    full = body()
    for cut in (0, 8, 40, 60, len(full) - 9, len(full) - 1):
        assert parse_sample(full[:cut], pid=1, arch="x86_64") is None


def test_absurd_callchain_is_none():
    b = bytearray(body())
    struct.pack_into("<Q", b, 40, 1 << 40)
    assert parse_sample(bytes(b), pid=1, arch="x86_64") is None


def test_split_callchain_drops_zeros_and_unknown_contexts():
    hv = (1 << 64) - 32
    assert split_callchain([PERF_CONTEXT_USER, 1, 0, 2]) == ((), (1, 2))
    assert split_callchain([hv, 9, PERF_CONTEXT_USER, 3]) == ((), (3,))
    assert split_callchain([5, 6]) == ((), (5, 6))


@given(st.binary(max_size=300))
def test_random_bodies_never_raise(data):
    parse_sample(data, pid=1, arch="x86_64")


def test_attr_limits():
    a = sample_attr(99, 70000, "x86_64")
    assert a.sample_stack_user == 65528 and a.inherit and a.use_clockid
    assert sample_attr(99, 1001, "aarch64").sample_stack_user == 1000
    assert a.sample_regs_user == REGS_MASK["x86_64"] == 0x1C0
