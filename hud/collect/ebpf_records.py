"""Pure decoders of the eBPF collector's ring records and map values into hud.model events.

The layouts are the programs' own (kernel.programs.common), so a change on one side is a
change on the other. Every function here takes bytes and returns values: unit-tested on
synthetic records without root.
"""
from __future__ import annotations

import re
import struct
from typing import Optional, Union

from hud.bpf.records import cstring, stack_ips
from hud.errors import BadInput
from hud.model import (
    CpuSample,
    OffCpuEvent,
    StackCapture,
    ThreadExit,
    ThreadTimes,
    UserRegs,
    Wake,
)
from kernel.programs import common as c

Decoded = Union[OffCpuEvent, CpuSample, Wake, tuple[ThreadTimes, ThreadExit]]
_TYPE = struct.Struct("<I")


def record_type(raw: bytes) -> int:
    if len(raw) < 4:
        raise BadInput(f"eBPF record of {len(raw)} bytes has no type")
    return _TYPE.unpack_from(raw)[0]


def decode_capture(raw: bytes, arch: str, fp_depth: int, kernel_depth: int = 0
                   ) -> StackCapture:
    """The CAPTURE part of an off-CPU or sample record (regs, frame-pointer ips, kernel
    ips, stack); `fp_depth` and `kernel_depth` are the programs' Params."""
    kernel_off = c.FP_OFF + 8 * fp_depth
    stack_off = kernel_off + 8 * kernel_depth
    if len(raw) < stack_off:
        raise BadInput(f"eBPF capture record is {len(raw)} bytes, shorter than its "
                       f"{stack_off}-byte header")
    cap = c.CAPTURE.unpack(raw, c.CAP_OFF)
    fp_bytes = cap["fp_bytes"]
    ips = stack_ips(raw[c.FP_OFF:kernel_off], fp_bytes // 8) if fp_bytes > 0 else ()
    kernel_bytes = cap["kernel_bytes"] if kernel_depth else 0
    kips = stack_ips(raw[kernel_off:stack_off], kernel_bytes // 8) if kernel_bytes > 0 else ()
    stack_len = min(cap["stack_len"], len(raw) - stack_off)
    regs: Optional[UserRegs] = None
    if cap["sp"] or cap["ip"]:
        regs = UserRegs(arch, ip=cap["ip"], sp=cap["sp"], fp=cap["fp"], lr=cap["lr"])
    return StackCapture(fp_ips=ips, regs=regs, stack=bytes(raw[stack_off:stack_off + stack_len]),
                        kernel_ips=kips)


def decode_offcpu(raw: bytes, arch: str, fp_depth: int, kernel_depth: int = 0) -> OffCpuEvent:
    h = c.OFFCPU_HDR.unpack(raw)
    runnable = bool(h["flags"] & c.F_RUNNABLE)
    # One pair of header fields, two meanings: a run-queue wait's holder of the CPU, a
    # blocked wait's waker (kernel/programs/sched_waking.py).
    who, comm = h["holder_pid"], cstring(h["holder_comm"])
    return OffCpuEvent(pid=h["pid"], tid=h["tid"], cpu=h["cpu"], start_ns=h["start_ns"],
                       end_ns=h["end_ns"], state=h["state"], runnable=runnable,
                       stack=decode_capture(raw, arch, fp_depth, kernel_depth),
                       holder_pid=who if runnable else 0,
                       holder_comm=comm if runnable else "",
                       waker_tid=0 if runnable else who,
                       waker_comm="" if runnable else comm,
                       fault=bool(h["flags"] & c.F_FAULT))


def decode_wake(raw: bytes, arch: str, fp_depth: int, kernel_depth: int = 0) -> Wake:
    h = c.OFFCPU_HDR.unpack(raw)
    return Wake(pid=h["pid"], tid=h["tid"], waker_tid=h["holder_pid"],
                waker_comm=cstring(h["holder_comm"]), start_ns=h["start_ns"],
                time_ns=h["end_ns"], stack=decode_capture(raw, arch, fp_depth, kernel_depth))


def decode_sample(raw: bytes, arch: str, fp_depth: int, kernel_depth: int = 0) -> CpuSample:
    h = c.SAMPLE_HDR.unpack(raw)
    return CpuSample(pid=h["pid"], tid=h["tid"], cpu=h["cpu"], time_ns=h["time_ns"],
                     period_ns=h["period_ns"],
                     stack=decode_capture(raw, arch, fp_depth, kernel_depth),
                     switch_seq=h["switch_seq"], oncpu_ns=h["oncpu_ns"],
                     kernel=bool(h["flags"] & c.F_KERNEL_MODE))


def thread_times(tid: int, value: bytes, time_ns: int, live: bool = True) -> ThreadTimes:
    """A hud_threads value as cumulative times at `time_ns` (CLOCK_MONOTONIC).

    The kernel adds a stretch when it ends; with `live`, the stretch in progress at
    `time_ns` is added too, to the bucket it will go to (on CPU since in_ns, or off CPU
    since out_ns as out_kind says), so an idle worker's parked time grows between its
    wake-ups. Later snapshots never go backwards: the kernel adds at least as much.
    """
    t = c.THREAD.unpack(value)
    times = {"oncpu_ns": t["oncpu_ns"], "parked_ns": t["parked_ns"],
             "offcpu_ns": t["offcpu_ns"], "runq_ns": t["runq_ns"]}
    if live:
        if t["out_ns"] and time_ns > t["out_ns"]:
            kind = t["out_kind"] & 0xF
            bucket = {c.KIND_PARKED: "parked_ns", c.KIND_RUNNABLE: "runq_ns",
                      c.KIND_BLOCKED: "offcpu_ns"}.get(kind)
            if bucket:
                times[bucket] += time_ns - t["out_ns"]
        elif t["in_ns"] and not t["out_ns"] and time_ns > t["in_ns"]:
            times["oncpu_ns"] += time_ns - t["in_ns"]
    return ThreadTimes(tid=tid, time_ns=time_ns, **times)


def decode_exit(raw: bytes) -> tuple[ThreadTimes, ThreadExit]:
    """An EXIT record: the thread's final times, then its exit."""
    if len(raw) < c.EXIT_HDR.size + c.THREAD.size:
        raise BadInput(f"eBPF exit record is {len(raw)} bytes")
    h = c.EXIT_HDR.unpack(raw)
    times = thread_times(h["tid"], raw[c.EXIT_HDR.size:c.EXIT_HDR.size + c.THREAD.size],
                         h["time_ns"], live=False)
    return times, ThreadExit(h["tid"], h["time_ns"])


def decode(raw: bytes, arch: str, fp_depth: int, kernel_depth: int = 0) -> Decoded:
    """Any ring record; raises BadInput on an unknown type or a truncated record."""
    kind = record_type(raw)
    try:
        if kind == c.REC_OFFCPU:
            return decode_offcpu(raw, arch, fp_depth, kernel_depth)
        if kind == c.REC_SAMPLE:
            return decode_sample(raw, arch, fp_depth, kernel_depth)
        if kind == c.REC_EXIT:
            return decode_exit(raw)
        if kind == c.REC_WAKE:
            return decode_wake(raw, arch, fp_depth, kernel_depth)
    except struct.error as e:
        raise BadInput(f"truncated eBPF record of type {kind}: {e}") from None
    raise BadInput(f"unknown eBPF record type {kind}")


def sum_counters(per_cpu: list[bytes]) -> dict[str, int]:
    """hud_counts per-CPU values summed by counter name."""
    n = len(c.COUNTERS)
    total = [0] * n
    for value in per_cpu:
        for i, v in enumerate(struct.unpack_from(f"<{n}Q", value)):
            total[i] += v
    return dict(zip(c.COUNTERS, total))


def state_masks(print_fmt: str) -> tuple[int, int]:
    """(state_mask, exit_mask) from the sched_switch format's print fmt: the bits it names
    as task states ({ 0x00000001, "S" } ...) and those named X or Z (a dead task). The
    preempted marker (TASK_REPORT_MAX) is the next bit, not a state: without any of these
    bits set the task was runnable. Falls back to (0xff, 0x30) when nothing is named."""
    pairs = re.findall(r'\{\s*(0x[0-9a-fA-F]+|\d+)\s*,\s*"([A-Za-z])"\s*\}', print_fmt)
    state = exit_ = 0
    for value, letter in pairs:
        v = int(value, 0)
        state |= v
        if letter in "XZ":
            exit_ |= v
    return (state, exit_) if state and exit_ else (0xFF, 0x30)
