"""PerfRing against real perf rings: cpu-clock samples of this thread, wraparound, loss."""
from __future__ import annotations

import os
import struct
import threading

import pytest

from hud.bpf.perfbuf import PerfRing
from hud.errors import UsageError
from hud.linux import perf_event as pe

SAMPLE = struct.Struct("<IIQ")  # PERF_SAMPLE_TID | PERF_SAMPLE_TIME


def _cpu_clock_self(period_ns: int) -> int:
    attr = pe.PerfEventAttr(type=pe.PERF_TYPE_SOFTWARE, config=pe.PERF_COUNT_SW_CPU_CLOCK,
                            period_or_freq=period_ns,
                            sample_type=pe.PERF_SAMPLE_TID | pe.PERF_SAMPLE_TIME,
                            disabled=True)
    return pe.perf_event_open(attr, pid=0, cpu=-1)


def _spin(n: int = 20000) -> int:
    x = 0
    for i in range(n):
        x ^= i * 7
    return x


def _samples(records, stats) -> list:
    out = []
    for rtype, _misc, body in records:
        stats[rtype] = stats.get(rtype, 0) + 1
        if rtype == pe.PERF_RECORD_SAMPLE:
            out.append(SAMPLE.unpack_from(body))
    return out


def test_rejects_non_power_of_two_pages():
    fd = _cpu_clock_self(1_000_000)
    try:
        with pytest.raises(UsageError):
            PerfRing(fd, 3)
        os.fstat(fd)                        # not owned: still open
    finally:
        os.close(fd)
    fd = _cpu_clock_self(1_000_000)
    with pytest.raises(UsageError):
        PerfRing(fd, 0, own_fd=True)
    with pytest.raises(OSError):            # owned: closed although the ring failed
        os.fstat(fd)


def test_samples_wrap_around_a_one_page_ring_intact():
    fd = _cpu_clock_self(20_000)
    with PerfRing(fd, 1, own_fd=True) as ring:
        assert ring.size == os.sysconf("SC_PAGE_SIZE")
        pe.enable(fd)
        stats: dict = {}
        samples = []
        # 24-byte records in a 4096-byte ring: 4096 is not a multiple of 24, so a record
        # straddles the end on most passes. Bounded by iterations, not by time.
        for _ in range(5000):
            _spin(3000)
            samples += _samples(ring.read(), stats)
            if ring.wrapped >= 5 and len(samples) >= 1000:
                break
        pe.disable(fd)
        samples += _samples(ring.read(), stats)
        assert ring.pending() == 0
        assert ring.wrapped >= 5, (ring.wrapped, stats)
        assert ring.corrupt == 0
        pid, tid = os.getpid(), threading.get_native_id()
        assert all(s[0] == pid and s[1] == tid for s in samples)
        times = [s[2] for s in samples]
        assert times == sorted(times), "a torn copy would break time order"


def test_overflow_is_counted_from_lost_records():
    fd = _cpu_clock_self(10_000)
    with PerfRing(fd, 1, own_fd=True) as ring:
        pe.enable(fd)
        # Fill the ring without consuming, then keep sampling so the kernel drops records.
        for _ in range(20000):
            _spin(2000)
            if ring.pending() > ring.size - 64:
                break
        for _ in range(50):
            _spin(2000)
        stats: dict = {}
        list(ring.read())
        # The kernel writes PERF_RECORD_LOST at the next output after space frees up.
        for _ in range(5000):
            _spin(2000)
            _samples(ring.read(), stats)
            if ring.lost:
                break
        pe.disable(fd)
        assert stats.get(pe.PERF_RECORD_LOST, 0) >= 1, stats
        assert ring.lost > 0


def test_closed_ring_refuses_reads():
    fd = _cpu_clock_self(1_000_000)
    ring = PerfRing(fd, 2, own_fd=True)
    ring.close()
    ring.close()
    with pytest.raises(UsageError):
        list(ring.read())


def test_user_regs_and_stack_copies_decode_from_real_samples():
    from hud.bpf import records
    from hud.linux import procfs

    mask = (1 << pe.X86_REG["bp"]) | (1 << pe.X86_REG["sp"]) | (1 << pe.X86_REG["ip"])
    st = (pe.PERF_SAMPLE_IP | pe.PERF_SAMPLE_TID | pe.PERF_SAMPLE_TIME | pe.PERF_SAMPLE_CPU
          | pe.PERF_SAMPLE_PERIOD | pe.PERF_SAMPLE_CALLCHAIN | pe.PERF_SAMPLE_REGS_USER
          | pe.PERF_SAMPLE_STACK_USER)
    attr = pe.PerfEventAttr(type=pe.PERF_TYPE_SOFTWARE, config=pe.PERF_COUNT_SW_CPU_CLOCK,
                            period_or_freq=999, freq=True, sample_type=st, disabled=True,
                            exclude_kernel=True, sample_regs_user=mask,
                            sample_stack_user=4096, use_clockid=True,
                            clockid=pe.CLOCK_MONOTONIC)
    fd = pe.perf_event_open(attr, pid=0, cpu=-1)
    samples = []
    with PerfRing(fd, 8, own_fd=True) as ring:
        pe.enable(fd)
        for _ in range(2000):
            _spin(20000)
            samples += [records.parse_sample(b, st, mask) for t, _m, b in ring.read()
                        if t == pe.PERF_RECORD_SAMPLE]
            if len(samples) >= 20:
                break
        pe.disable(fd)
    assert len(samples) >= 20
    stack_map = next(m for m in procfs.read_maps(os.getpid()) if m.path == "[stack]")
    main = threading.current_thread() is threading.main_thread()
    tid = threading.get_native_id()
    for s in samples:
        assert s.regs_abi == pe.PERF_SAMPLE_REGS_ABI_64 and s.tid == tid
        assert s.reg(pe.X86_REG["ip"]) == s.ip           # user-mode samples only
        sp = s.reg(pe.X86_REG["sp"])
        assert not main or stack_map.start <= sp < stack_map.end   # the main thread's stack
        assert 0 < len(s.stack) <= 4096
        assert s.callchain[0] == pe.PERF_CONTEXT_USER and s.callchain[1] == s.ip
