"""Attachment paths besides tracepoints: raw_tp (probe_read_kernel at BTF offsets), tp_btf
(direct task_struct reads), cpu-clock perf_event programs; BPF_ENABLE_STATS run counts."""
from __future__ import annotations

import os
import struct
import threading
import time

from hud.bpf.loader import Loader
from hud.bpf.maps import Map
from hud.linux import bpf, btf
from kernel import abi, uapi
from kernel.abi import MapSpec
from kernel.asm import Assembler, Image, r0, r1, r2, r3, r6, r7, r8, r10

RES = MapSpec("res", uapi.BPF_MAP_TYPE_ARRAY, 4, 8, 2)     # [0] last value, [1] count


def _record(a: Assembler, value) -> None:
    """res[0] = value register; res[1] += 1. Clobbers r0-r5; `value` must be r6-r9."""
    a.st("u32", r10, -4, 0).ld_map(r1, "res").mov(r2, r10).alu64("+=", r2, -4)
    a.call("map_lookup_elem").jmp("==", r0, 0, "out").stx("u64", r0, 0, value)
    a.st("u32", r10, -4, 1).ld_map(r1, "res").mov(r2, r10).alu64("+=", r2, -4)
    a.call("map_lookup_elem").jmp("==", r0, 0, "out")
    a.mov(r1, 1).atomic_add("u64", r0, 0, r1)


def _res(m: Map) -> tuple[int, int]:
    return tuple(struct.unpack("<Q", m.lookup(struct.pack("<I", i)))[0] for i in (0, 1))


def _until(m: Map, work, n: int = 300) -> tuple[int, int]:
    for _ in range(n):
        work()
        value, count = _res(m)
        if count >= 3:
            break
    return value, count


def _sleep():
    time.sleep(0.001)


def raw_tp_image(tgid: int) -> Image:
    task = btf.vmlinux()
    pid_off = task.member_offset("task_struct", "pid")
    a = Assembler()
    a.ldx("u64", r7, r1, 8)                                  # args[1]: prev task
    a.call("get_current_pid_tgid").alu64(">>=", r0, 32)
    a.jmp("!=", r0, tgid, "out")
    a.mov(r1, r10).alu64("+=", r1, -16).mov(r2, 4).mov(r3, r7).alu64("+=", r3, pid_off)
    a.call("probe_read_kernel").jmp("!=", r0, 0, "out")
    a.ldx("u32", r6, r10, -16)
    _record(a, r6)
    a.label("out").mov(r0, 0).exit()
    return a.image("hud_t_rawtp", uapi.BPF_PROG_TYPE_RAW_TRACEPOINT)


def tp_btf_image(tgid: int) -> Image:
    b = btf.vmlinux()
    a = Assembler()
    a.ldx("u64", r7, r1, 8)                                  # prev, a trusted task pointer
    a.ldx("u32", r8, r7, b.member_offset("task_struct", "tgid"))
    a.jmp("!=", r8, tgid, "out")
    a.ldx("u32", r6, r7, b.member_offset("task_struct", "pid"))
    _record(a, r6)
    a.label("out").mov(r0, 0).exit()
    return a.image("hud_t_tpbtf", uapi.BPF_PROG_TYPE_TRACING,
                   expected_attach_type=uapi.BPF_TRACE_RAW_TP,
                   attach_btf_name="btf_trace_sched_switch")


def test_raw_tracepoint_reads_prev_pid_through_btf_offsets():
    tids = {threading.get_native_id()}
    with Loader() as ld:
        res = ld.create_map(RES)
        prog = ld.load(raw_tp_image(os.getpid()))
        link = ld.attach_raw_tracepoint(prog, "sched_switch")
        assert link.info.type == uapi.BPF_LINK_TYPE_RAW_TRACEPOINT
        value, count = _until(res, _sleep)
    assert count >= 3 and value in tids | set(int(t) for t in os.listdir("/proc/self/task"))


def test_tp_btf_reads_task_struct_directly():
    with Loader() as ld:
        res = ld.create_map(RES)
        prog = ld.load(tp_btf_image(os.getpid()))
        link = ld.attach_tp_btf(prog)
        # RAW_TRACEPOINT_OPEN makes a raw_tracepoint link even for a tp_btf program.
        assert link.info.type == uapi.BPF_LINK_TYPE_RAW_TRACEPOINT
        assert prog.info().type == uapi.BPF_PROG_TYPE_TRACING
        value, count = _until(res, _sleep)
    assert count >= 3 and value in set(int(t) for t in os.listdir("/proc/self/task"))


def test_cpu_clock_perf_event_program_samples_this_process_and_counts_runtime():
    pid = os.getpid()
    a = Assembler()
    a.mov(r6, r1).call("get_current_pid_tgid").alu64(">>=", r0, 32)
    a.jmp("!=", r0, pid, "out")
    a.ldx("u64", r6, r6, abi.PERF_EVENT_DATA_X86_64["sample_period"])
    _record(a, r6)
    a.label("out").mov(r0, 0).exit()
    stats = bpf.enable_stats()
    try:
        with Loader() as ld:
            res = ld.create_map(RES)
            prog = ld.load(a.image("hud_t_pe", uapi.BPF_PROG_TYPE_PERF_EVENT))
            links = ld.attach_cpu_clock(prog, freq=499)
            assert {link.info.type for link in links} == {uapi.BPF_LINK_TYPE_PERF_EVENT}

            def spin():
                x = 0
                for i in range(200_000):
                    x ^= i
            period, count = _until(res, spin)
            info = prog.info()
        assert count >= 3
        assert period > 0                     # cpu-clock periods are nanoseconds
        assert info.run_cnt >= count and info.run_time_ns > 0
    finally:
        os.close(stats)
