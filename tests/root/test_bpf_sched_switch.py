"""A sched_switch tracepoint program that calls every helper hud needs, attached for real;
its records reach userspace through the BPF ringbuf and the perf buffers, including
wraparound on tiny rings and counted losses."""
from __future__ import annotations

import ctypes
import os
import struct
import threading
import time

import pytest

from hud.bpf import records
from hud.bpf.loader import Loader
from hud.bpf.perfbuf import PerfEventArray
from hud.bpf.ringbuf import RingBuf
from hud.linux import perf_event, procfs, tracefs
from kernel import abi, uapi
from kernel.abi import Layout, MapSpec
from kernel.asm import Assembler, Image, r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10

# What the program sends: the same 192 bytes through ringbuf_output and perf_event_output,
# plus a 16-byte record through ringbuf_reserve/submit.
EVENT = Layout("hud_test_event", [
    ("ts", "Q"), ("pid_tgid", "Q"), ("cpu", "I"), ("prev_pid", "I"), ("next_pid", "I"),
    ("mark", "I"), ("stackid", "q"), ("stack_len", "q"), ("probe_ret", "q"),
    ("probe_word", "Q"), ("ips", "16Q")], 192)
SMALL = Layout("hud_test_small", [("tag", "Q"), ("pid_tgid", "Q")], 16)
SMALL_TAG = 0xFEED
MARK = 0xC0FFEE
WORD = 0x1122334455667788
# counts[] slots
RUNS, RESERVE_FAIL, OUTPUT_FAIL, PERF_FAIL = range(4)


def maps(ring_size: int) -> list[MapSpec]:
    return [
        MapSpec("counts", uapi.BPF_MAP_TYPE_ARRAY, 4, 8, 4),
        MapSpec("cfg", uapi.BPF_MAP_TYPE_ARRAY, 4, 16, 1),
        MapSpec("marks", uapi.BPF_MAP_TYPE_HASH, 4, 4, 64),
        MapSpec("scratch", uapi.BPF_MAP_TYPE_PERCPU_ARRAY, 4, EVENT.size, 1),
        MapSpec("stacks", uapi.BPF_MAP_TYPE_STACK_TRACE, 4, abi.MAX_STACK_DEPTH * 8, 256),
        MapSpec("rb", uapi.BPF_MAP_TYPE_RINGBUF, 0, 0, ring_size),
        MapSpec("pea", uapi.BPF_MAP_TYPE_PERF_EVENT_ARRAY, 4, 4, 0),
    ]


def _count(a: Assembler, slot: int, tag: str) -> None:
    """counts[slot] += 1 (atomic); clobbers r0-r5."""
    a.st("u32", r10, -4, slot).ld_map(r1, "counts").mov(r2, r10).alu64("+=", r2, -4)
    a.call("map_lookup_elem").jmp("==", r0, 0, f"nocount_{tag}")
    a.mov(r1, 1).atomic_add("u64", r0, 0, r1).label(f"nocount_{tag}")


def build() -> Image:
    fmt = tracefs.tracepoint_format("sched", "sched_switch")
    e = EVENT.offsets
    a = Assembler()
    a.mov(r6, r1)                                            # r6 = ctx
    _count(a, RUNS, "runs")
    a.call("get_current_pid_tgid").mov(r7, r0)               # r7 = pid_tgid of prev task
    a.st("u32", r10, -4, 0).ld_map(r1, "cfg").mov(r2, r10).alu64("+=", r2, -4)
    a.call("map_lookup_elem").jmp("==", r0, 0, "out").mov(r9, r0)   # r9 = &cfg
    a.ldx("u32", r1, r9, 0).mov(r2, r7).alu64(">>=", r2, 32)
    a.jmp("!=", r1, r2, "out")                               # only the test's own threads
    a.st("u32", r10, -4, 0).ld_map(r1, "scratch").mov(r2, r10).alu64("+=", r2, -4)
    a.call("map_lookup_elem").jmp("==", r0, 0, "out").mov(r8, r0)   # r8 = per-CPU event
    a.call("ktime_get_ns").stx("u64", r8, e["ts"], r0)
    a.stx("u64", r8, e["pid_tgid"], r7)
    a.call("get_smp_processor_id").stx("u32", r8, e["cpu"], r0)
    a.ldx("u32", r1, r6, fmt.offset("prev_pid")).stx("u32", r8, e["prev_pid"], r1)
    a.ldx("u32", r1, r6, fmt.offset("next_pid")).stx("u32", r8, e["next_pid"], r1)
    a.stx("u32", r10, -8, r7).ld_map(r1, "marks").mov(r2, r10).alu64("+=", r2, -8)
    a.call("map_lookup_elem").mov(r1, 0).jmp("==", r0, 0, "nomark").ldx("u32", r1, r0, 0)
    a.label("nomark").stx("u32", r8, e["mark"], r1)
    a.mov(r1, r6).ld_map(r2, "stacks").mov(r3, uapi.BPF_F_USER_STACK).call("get_stackid")
    a.stx("u64", r8, e["stackid"], r0)
    a.mov(r1, r6).mov(r2, r8).alu64("+=", r2, e["ips"]).mov(r3, 16 * 8)
    a.mov(r4, uapi.BPF_F_USER_STACK).call("get_stack").stx("u64", r8, e["stack_len"], r0)
    a.mov(r1, r8).alu64("+=", r1, e["probe_word"]).mov(r2, 8).ldx("u64", r3, r9, 8)
    a.call("probe_read_user").stx("u64", r8, e["probe_ret"], r0)
    a.ld_map(r1, "rb").mov(r2, r8).mov(r3, EVENT.size).mov(r4, 0).call("ringbuf_output")
    a.jmp("==", r0, 0, "rb_ok")
    _count(a, OUTPUT_FAIL, "output")
    a.label("rb_ok")
    a.ld_map(r1, "rb").mov(r2, SMALL.size).mov(r3, 0).call("ringbuf_reserve")
    a.jmp("!=", r0, 0, "reserved")
    _count(a, RESERVE_FAIL, "reserve")
    a.ja("perf")
    a.label("reserved").mov(r1, SMALL_TAG).stx("u64", r0, 0, r1).stx("u64", r0, 8, r7)
    a.mov(r1, r0).mov(r2, 0).call("ringbuf_submit")
    a.label("perf")
    # BPF_F_CURRENT_CPU must be 0xffffffff: a 32-bit move, not a sign-extended mov64 -1.
    a.mov(r1, r6).ld_map(r2, "pea").mov32(r3, -1).mov(r4, r8).mov(r5, EVENT.size)
    a.call("perf_event_output").jmp("==", r0, 0, "out")
    _count(a, PERF_FAIL, "perf")
    a.label("out").mov(r0, 0).exit()
    return a.image("hud_t_switch", uapi.BPF_PROG_TYPE_TRACEPOINT)


def _u64(m, slot: int) -> int:
    return struct.unpack("<Q", m.lookup(struct.pack("<I", slot)))[0]


def _setup(ld: Loader, ring_size: int, word: ctypes.c_uint64) -> None:
    ld.create_maps(maps(ring_size))
    ld.maps["cfg"].update(struct.pack("<I", 0),
                          struct.pack("<IIQ", os.getpid(), 0, ctypes.addressof(word)))
    ld.maps["marks"].update(struct.pack("<I", threading.get_native_id()),
                            struct.pack("<I", MARK))


def _switch_out(n: int) -> None:
    for _ in range(n):
        time.sleep(0.0002)   # each sleep is a voluntary switch-out of this thread


def test_every_helper_program_feeds_both_readers():
    word = ctypes.c_uint64(WORD)
    tid, pid = threading.get_native_id(), os.getpid()
    with Loader() as ld:
        _setup(ld, 1 << 16, word)
        prog = ld.load(build(), log_level=1)
        assert "processed" in prog.log
        with RingBuf(ld.maps["rb"]) as rb, PerfEventArray(ld.maps["pea"], 8) as pea:
            t0 = time.monotonic_ns()
            link = ld.attach_tracepoint(prog, "sched", "sched_switch")
            info = link.info
            assert (info.type, info.prog_id) == (uapi.BPF_LINK_TYPE_PERF_EVENT, prog.id)
            big, small, perf = [], [], []
            for _ in range(200):
                _switch_out(5)
                for rec in rb.read():
                    (big if len(rec) == EVENT.size else small).append(rec)
                for _cpu, rtype, _misc, body in pea.read():
                    if rtype == perf_event.PERF_RECORD_SAMPLE:
                        perf.append(records.raw_sample(body))
                if len(big) >= 50 and len(perf) >= 50:
                    break
            link.close()
            t1 = time.monotonic_ns()
            # get_stackid and get_stack agree: the stack map holds the same user ips.
            agreed = 0
            for raw in big:
                ev = EVENT.unpack(raw)
                if ev["stackid"] >= 0 and ev["stack_len"] > 0:
                    stack = ld.maps["stacks"].lookup(struct.pack("<I", ev["stackid"]))
                    mine = records.stack_ips(raw[EVENT.offset("ips"):], ev["stack_len"] // 8)
                    assert stack is not None
                    assert records.stack_ips(stack)[:len(mine)] == mine
                    agreed += 1
            assert agreed > 0   # this Python thread has a (short) user stack at switch-out
            counts = ld.maps["counts"]
            assert _u64(counts, RUNS) > len(big)            # it saw other tasks' switches too
            assert _u64(counts, OUTPUT_FAIL) == _u64(counts, RESERVE_FAIL) == 0
            assert _u64(counts, PERF_FAIL) == 0
    assert len(big) >= 50 and len(perf) >= 50 and len(small) >= 50
    # The RAW size counts its padding: 4 + 192 rounds up to 200, so 196 bytes arrive.
    assert {len(p) for p in perf} == {196}
    ncpu = len(procfs.possible_cpus())
    for raw in big + [p[:EVENT.size] for p in perf]:
        ev = EVENT.unpack(raw)
        assert t0 <= ev["ts"] <= t1
        assert ev["pid_tgid"] >> 32 == pid
        assert ev["prev_pid"] == ev["pid_tgid"] & 0xFFFFFFFF     # prev is current at switch
        assert ev["cpu"] < ncpu
        assert ev["probe_ret"] == 0 and ev["probe_word"] == WORD
        if ev["prev_pid"] == tid:
            assert ev["mark"] == MARK
        assert ev["stack_len"] <= 16 * 8
        ips = records.stack_ips(raw[EVENT.offset("ips"):EVENT.size],
                                max(ev["stack_len"], 0) // 8)
        assert ips == tuple(ip for ip in ev["ips"][:max(ev["stack_len"], 0) // 8] if ip)
    assert any(EVENT.unpack(r)["prev_pid"] == tid and EVENT.unpack(r)["mark"] == MARK
               for r in big)
    for raw in small:
        s = SMALL.unpack(raw)
        assert s["tag"] == SMALL_TAG and s["pid_tgid"] >> 32 == pid


@pytest.fixture
def one_cpu():
    """This thread kept on one CPU: a perf ring is per CPU, and the kernel writes its
    PERF_RECORD_LOST into the ring that lost records only at that ring's next output.
    A thread that moved to another CPU after the losses never sees it (CI did once)."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    yield
    os.sched_setaffinity(0, before)


def test_tiny_rings_wrap_and_count_losses(one_cpu):
    word = ctypes.c_uint64(WORD)
    page = os.sysconf("SC_PAGE_SIZE")
    with Loader() as ld:
        _setup(ld, page, word)              # a one-page ringbuf: 200 + 24 bytes per switch
        prog = ld.load(build())
        with RingBuf(ld.maps["rb"]) as rb, PerfEventArray(ld.maps["pea"], 1) as pea:
            ld.attach_tracepoint(prog, "sched", "sched_switch")
            got_rb = got_perf = 0
            # Phase 1: read often, so records keep crossing the end of both rings.
            for _ in range(400):
                _switch_out(3)
                for rec in rb.read():
                    assert len(rec) in (EVENT.size, SMALL.size)
                    if len(rec) == EVENT.size:
                        assert EVENT.unpack(rec)["probe_word"] == WORD
                    got_rb += 1
                for _cpu, rtype, _m, body in pea.read():
                    if rtype == perf_event.PERF_RECORD_SAMPLE:
                        ev = EVENT.unpack(records.raw_sample(body))
                        assert ev["probe_word"] == WORD and ev["pid_tgid"] >> 32 == os.getpid()
                        got_perf += 1
                wraps = sum(r.wrapped for r in pea.rings.values())
                if rb.wrapped >= 3 and wraps >= 3:
                    break
            assert rb.wrapped >= 3, (rb.wrapped, got_rb)
            assert sum(r.wrapped for r in pea.rings.values()) >= 3
            assert all(r.corrupt == 0 for r in pea.rings.values())
            # Phase 2: stop reading; both rings fill and the kernel drops records.
            _switch_out(400)
            counts = ld.maps["counts"]
            assert _u64(counts, OUTPUT_FAIL) > 0       # ringbuf: counted by the program
            assert _u64(counts, RESERVE_FAIL) > 0
            assert _u64(counts, PERF_FAIL) > 0         # perf: output returned -ENOSPC ...
            list(rb.read())
            list(pea.read())
            for _ in range(200):                       # ... and PERF_RECORD_LOST says so
                _switch_out(2)
                list(pea.read())
                if pea.lost:
                    break
            assert pea.lost > 0
            assert got_rb > 0 and got_perf > 0
