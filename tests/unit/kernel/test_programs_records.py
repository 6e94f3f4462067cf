"""Decoding the eBPF collector's records (synthetic bytes in the programs' own layouts)."""
from __future__ import annotations

import struct

import pytest

from hud.collect import ebpf_records as rec
from hud.collect.ebpf import default_freq
from hud.errors import BadInput
from hud.model import CpuSample, OffCpuEvent, ThreadExit, ThreadTimes
from kernel.programs import common as c

FP_DEPTH = 127
STACK_OFF = c.FP_OFF + 8 * FP_DEPTH

# This kernel's sched_switch print fmt (6.18), abridged to the part state_masks() reads.
PRINT_FMT_618 = (
    'print fmt: "prev_comm=%s prev_pid=%d prev_prio=%d prev_state=%s%s ==> next_comm=%s '
    'next_pid=%d next_prio=%d", REC->prev_comm, REC->prev_pid, REC->prev_prio, '
    '(REC->prev_state & ((((0x00000000 | 0x00000001 | 0x00000002 | 0x00000004 | 0x00000008 '
    '| 0x00000010 | 0x00000020 | 0x00000040) + 1) << 1) - 1)) ? __print_flags(REC->prev_state '
    '& ((((0x00000000 | 0x00000001 | 0x00000002 | 0x00000004 | 0x00000008 | 0x00000010 | '
    '0x00000020 | 0x00000040) + 1) << 1) - 1), "|", { 0x00000001, "S" }, { 0x00000002, "D" }, '
    '{ 0x00000004, "T" }, { 0x00000008, "t" }, { 0x00000010, "X" }, { 0x00000020, "Z" }, '
    '{ 0x00000040, "P" }, { 0x00000080, "I" }) : "R", REC->prev_state & (((0x00000000 | '
    '0x00000001 | 0x00000002 | 0x00000004 | 0x00000008 | 0x00000010 | 0x00000020 | '
    '0x00000040) + 1) << 1) ? "+" : "", REC->next_comm, REC->next_pid, REC->next_prio')


def _capture(ip=0x401000, sp=0x7FFF0000, fp=0x7FFF0100, fp_ips=(0x401000, 0x402000),
             stack=b"\x11" * 40, fp_bytes=None, stack_len=None) -> bytes:
    ips = b"".join(struct.pack("<Q", v) for v in fp_ips).ljust(8 * FP_DEPTH, b"\0")
    cap = c.CAPTURE.pack(ip=ip, sp=sp, fp=fp, lr=0,
                         fp_bytes=8 * len(fp_ips) if fp_bytes is None else fp_bytes,
                         stack_len=len(stack) if stack_len is None else stack_len)
    return cap + ips + stack


def _offcpu(**kw) -> bytes:
    hdr = c.OFFCPU_HDR.pack(type=c.REC_OFFCPU, tid=11, pid=10, cpu=1, start_ns=1_000,
                            end_ns=51_000, state=1, holder_pid=7, flags=0,
                            holder_comm=b"kworker/1:1\0\0\0\0\0")
    return hdr + _capture(**kw)


def test_offcpu_record():
    ev = rec.decode(_offcpu(), "x86_64", FP_DEPTH)
    assert isinstance(ev, OffCpuEvent)
    assert (ev.pid, ev.tid, ev.cpu, ev.start_ns, ev.end_ns, ev.duration_ns) == \
        (10, 11, 1, 1_000, 51_000, 50_000)
    assert ev.state == 1 and not ev.runnable
    # A blocked wait's holder fields carry its waker (sched_waking).
    assert (ev.waker_tid, ev.waker_comm) == (7, "kworker/1:1")
    assert (ev.holder_pid, ev.holder_comm) == (0, "")
    assert ev.stack.fp_ips == (0x401000, 0x402000)
    assert ev.stack.regs.arch == "x86_64" and ev.stack.regs.ip == 0x401000
    assert ev.stack.regs.sp == 0x7FFF0000 and ev.stack.regs.fp == 0x7FFF0100
    assert ev.stack.stack == b"\x11" * 40


def test_runnable_flag_and_preempted_state():
    raw = bytearray(_offcpu())
    struct.pack_into("<q", raw, c.OFFCPU_HDR.offset("state"), 0x100)
    struct.pack_into("<I", raw, c.OFFCPU_HDR.offset("flags"), c.F_RUNNABLE)
    ev = rec.decode(bytes(raw), "x86_64", FP_DEPTH)
    assert ev.runnable and ev.state == 0x100
    # A run-queue wait's: the task that took the CPU.
    assert (ev.holder_pid, ev.holder_comm) == (7, "kworker/1:1")
    assert (ev.waker_tid, ev.waker_comm) == (0, "")


def test_sample_record():
    hdr = c.SAMPLE_HDR.pack(type=c.REC_SAMPLE, tid=12, pid=10, cpu=0, time_ns=5_000,
                            period_ns=2_500_000, switch_seq=-1, flags=c.F_KERNEL_MODE)
    ev = rec.decode(hdr + _capture(stack=b"\x22" * 16), "aarch64", FP_DEPTH)
    assert isinstance(ev, CpuSample)
    assert (ev.tid, ev.time_ns, ev.period_ns, ev.switch_seq) == (12, 5_000, 2_500_000, -1)
    assert ev.stack.regs.arch == "aarch64" and ev.stack.stack == b"\x22" * 16


def test_capture_edge_cases():
    ev = rec.decode(_offcpu(fp_bytes=-14, ip=0, sp=0, stack=b""), "x86_64", FP_DEPTH)
    assert ev.stack.fp_ips == () and ev.stack.regs is None and ev.stack.stack == b""
    # zero ips are padding; a stack_len beyond the record is clipped to what arrived
    ev = rec.decode(_offcpu(fp_ips=(0x401000, 0, 0x403000), stack=b"ab", stack_len=4096),
                    "x86_64", FP_DEPTH)
    assert ev.stack.fp_ips == (0x401000, 0x403000) and ev.stack.stack == b"ab"


def test_exit_record_and_thread_times():
    times = c.THREAD.pack(oncpu_ns=1, parked_ns=2, offcpu_ns=3, runq_ns=4, switch_seq=9)
    raw = c.EXIT_HDR.pack(type=c.REC_EXIT, tid=13, time_ns=77) + times
    t, gone = rec.decode(raw, "x86_64", FP_DEPTH)
    assert t == ThreadTimes(13, 77, oncpu_ns=1, parked_ns=2, offcpu_ns=3, runq_ns=4)
    assert gone == ThreadExit(13, 77)
    assert rec.thread_times(5, times, 9) == ThreadTimes(5, 9, 1, 2, 3, 4)


@pytest.mark.parametrize("raw", [b"", b"\x01\x00", struct.pack("<I", 99) + bytes(200),
                                 _offcpu()[:100], _offcpu()[:STACK_OFF - 1],
                                 c.EXIT_HDR.pack(type=c.REC_EXIT, tid=1, time_ns=1)])
def test_bad_records_raise_bad_input(raw):
    with pytest.raises(BadInput):
        rec.decode(raw, "x86_64", FP_DEPTH)


def test_state_masks_from_the_print_fmt():
    assert rec.state_masks(PRINT_FMT_618) == (0xFF, 0x30)
    # A kernel naming fewer states gets exactly those bits.
    assert rec.state_masks('{ 0x01, "S" }, { 0x02, "D" }, { 0x10, "X" }') == (0x13, 0x10)
    assert rec.state_masks("nothing here") == (0xFF, 0x30)


def test_sum_counters_adds_cpus_by_name():
    n = len(c.COUNTERS)
    a = struct.pack(f"<{n}Q", *range(n))
    b = struct.pack(f"<{n}Q", *([10] * n))
    total = rec.sum_counters([a, b])
    assert total["captures"] == 10 and total[c.COUNTERS[-1]] == n - 1 + 10
    assert set(total) == set(c.COUNTERS) and set(c.LOSSES) <= set(c.COUNTERS)


def test_default_freq_resolves_the_threshold():
    assert default_freq(5_000_000, max_rate=100_000) == 400     # 2 samples per 5 ms
    assert default_freq(1_000_000, max_rate=100_000) == 2000
    assert default_freq(1_000_000, max_rate=1000) == 1000        # the kernel's limit
    assert default_freq(10_000_000_000, max_rate=100_000) == 19
    assert 2 * 1_000_000_000 / default_freq(3_000_000, 100_000) <= 3_000_000 * 1.0001


def test_thread_times_include_the_stretch_in_progress():
    base = dict(oncpu_ns=10, parked_ns=20, offcpu_ns=30, runq_ns=40)
    parked = c.THREAD.pack(out_ns=1_000, out_kind=c.KIND_PARKED, **base)
    assert rec.thread_times(1, parked, 1_500).parked_ns == 520
    assert rec.thread_times(1, parked, 1_500, live=False).parked_ns == 20
    blocked = c.THREAD.pack(out_ns=1_000, out_kind=c.KIND_BLOCKED | c.KIND_PROBE, **base)
    assert rec.thread_times(1, blocked, 1_100).offcpu_ns == 130
    waiting = c.THREAD.pack(out_ns=1_000, out_kind=c.KIND_RUNNABLE | c.KIND_NOREC, **base)
    assert rec.thread_times(1, waiting, 1_100).runq_ns == 140
    running = c.THREAD.pack(in_ns=2_000, **base)
    t = rec.thread_times(1, running, 2_050)
    assert (t.oncpu_ns, t.parked_ns, t.offcpu_ns, t.runq_ns) == (60, 20, 30, 40)
    assert rec.thread_times(1, running, 1_000).oncpu_ns == 10     # clock before in_ns


def test_kernel_ips_sit_between_the_fp_ips_and_the_stack_copy():
    kernel = (0xFFFF_FFFF_8220_03E0, 0xFFFF_FFFF_8100_2000)
    depth = 4
    hdr = c.OFFCPU_HDR.pack(type=c.REC_OFFCPU, tid=11, pid=10, cpu=1, start_ns=1_000,
                            end_ns=51_000, state=1, holder_pid=0, flags=0,
                            holder_comm=bytes(16))
    fp = b"".join(struct.pack("<Q", v) for v in (0x401000, 0x402000)).ljust(8 * FP_DEPTH,
                                                                            b"\0")
    kips = b"".join(struct.pack("<Q", v) for v in kernel).ljust(8 * depth, b"\0")
    cap = c.CAPTURE.pack(ip=0x401000, sp=0x7FFF0000, fp=0, lr=0, fp_bytes=16, stack_len=3,
                         kernel_bytes=8 * len(kernel))
    ev = rec.decode(hdr + cap + fp + kips + b"abc", "x86_64", FP_DEPTH, depth)
    assert ev.stack.kernel_ips == kernel and ev.stack.fp_ips == (0x401000, 0x402000)
    assert ev.stack.stack == b"abc"
    # A failed or skipped walk (0 or a negative error) gives none; so does a count past
    # the area (kernel_bytes is bounded by the area, not trusted).
    for bad in (0, -14, 8 * (depth + 3)):
        cap = c.CAPTURE.pack(ip=0x401000, sp=0x7FFF0000, fp=0, lr=0, fp_bytes=16,
                             stack_len=3, kernel_bytes=bad)
        got = rec.decode(hdr + cap + fp + kips + b"abc", "x86_64", FP_DEPTH, depth)
        assert got.stack.kernel_ips == (kernel if bad > 0 else ())
