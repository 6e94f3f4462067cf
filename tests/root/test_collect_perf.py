"""PerfCollector against real processes: episodes, times, samples, new threads, losses,
parks, preemptors, target exit, and no fd left behind.

The target is a small Python program whose threads do known things (sleep in a loop,
spin), so what the collector reports can be checked against what the threads did; Tokio
targets are the e2e tests' business.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from hud.collect.perf import PerfCollector
from hud.model import CpuSample, Lost, OffCpuEvent, TargetExit, ThreadExit, ThreadTimes

MS = 1_000_000

# The spinner burns CPU in hashlib, which releases the GIL for large buffers: the sleeper's
# off-CPU time is then its sleeps, not waits for the GIL.
TARGET = r"""
import hashlib, json, os, sys, threading, time
def sleeper(ms):
    while True:
        time.sleep(ms / 1000)
def spinner():
    buf = bytes(1 << 22)
    while True:
        hashlib.sha256(buf).digest()
def start(fn, *a):
    ready = threading.Event()
    box = []
    def run():
        box.append(threading.get_native_id()); ready.set(); fn(*a)
    threading.Thread(target=run, daemon=True).start()
    ready.wait()
    return box[0]
tids = {"sleeper": start(sleeper, int(sys.argv[1])), "spinner": start(spinner)}
print(json.dumps(tids), flush=True)
def brief():
    time.sleep(0.05)
for line in sys.stdin:
    if line.strip() == "spawn":
        print(json.dumps({"late": start(sleeper, int(sys.argv[1]))}), flush=True)
    elif line.strip() == "brief":
        print(json.dumps({"late": start(brief)}), flush=True)
"""


class Target:
    def __init__(self, sleep_ms: int = 30, cpu: int = -1) -> None:
        argv = [sys.executable, "-c", TARGET, str(sleep_ms)]
        if cpu >= 0:
            argv = ["taskset", "-c", str(cpu), *argv]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, start_new_session=True)
        assert self.proc.stdout is not None
        self.tids = json.loads(self.proc.stdout.readline())

    @property
    def pid(self) -> int:
        return self.proc.pid

    def spawn(self, what: str = "spawn") -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{what}\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())["late"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                f.close()


@pytest.fixture
def target() -> Iterator[Target]:
    t = Target()
    yield t
    t.stop()


def collect(col: PerfCollector, seconds: float) -> list:
    events: list = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        events += col.poll(0.1)
    return events


def open_fds() -> set:
    return set(os.listdir("/proc/self/fd"))


def test_sleeps_become_offcpu_events_with_the_sleeper_stack(target):
    sleeper, spinner = target.tids["sleeper"], target.tids["spinner"]
    t0 = time.monotonic_ns()
    with PerfCollector(target.pid, threshold_ns=10 * MS, freq=199,
                       times_interval_s=0.2) as col:
        events = collect(col, 1.5)
        stats = col.stats()
    t1 = time.monotonic_ns()
    offs = [e for e in events if isinstance(e, OffCpuEvent) and e.tid == sleeper]
    sleeps = [e for e in offs if e.duration_ns >= 30 * MS and not e.runnable]
    assert len(sleeps) >= 5, stats
    for e in offs:
        # CLOCK_MONOTONIC, the clock of time.monotonic_ns() and of the eBPF backend.
        assert t0 <= e.start_ns < e.end_ns <= t1
        assert e.duration_ns >= 10 * MS and e.pid == target.pid      # the threshold
        regs = e.stack.regs
        assert regs is not None and e.stack.stack, "the sleeper's own regs and stack"
        assert e.stack.fp_ips and e.stack.fp_ips[0] == regs.ip
        assert e.stack.kernel_ips == ()   # not asked for: ~3 us per switch-out in a VM
    samples = [e for e in events if isinstance(e, CpuSample)]
    assert any(s.tid == spinner for s in samples)
    assert all(t0 <= s.time_ns <= t1 for s in samples)
    times = {e.tid: e for e in events if isinstance(e, ThreadTimes)}
    counted = [e for e in sleeps if e.end_ns <= times[sleeper].time_ns]
    assert counted and times[sleeper].offcpu_ns >= 30 * MS * len(counted)
    assert times[spinner].oncpu_ns > times[sleeper].oncpu_ns
    assert stats["lost"] == 0 and stats["events"]["OffCpuEvent"] >= len(offs)


def test_threads_created_later_are_followed_through_inheritance(target):
    with PerfCollector(target.pid, threshold_ns=10 * MS, freq=99) as col:
        collect(col, 0.2)
        late = target.spawn()
        events = collect(col, 1.0)
        assert late not in col._switch.direct    # no events of its own: inherited ones
    assert any(isinstance(e, OffCpuEvent) and e.tid == late for e in events)


def test_a_thread_that_exits_sends_its_final_times_then_its_exit(target):
    with PerfCollector(target.pid, threshold_ns=10 * MS, freq=99) as col:
        collect(col, 0.2)
        brief = target.spawn("brief")
        events = collect(col, 0.8)
    mine = [e for e in events if getattr(e, "tid", None) == brief]
    exits = [i for i, e in enumerate(mine) if isinstance(e, ThreadExit)]
    assert len(exits) == 1, mine
    final = mine[exits[0] - 1]
    assert isinstance(final, ThreadTimes) and final.time_ns == mine[exits[0]].time_ns
    assert final.offcpu_ns >= 40 * MS      # its 50 ms sleep


def test_ignored_threads_send_no_stacks_or_samples(target):
    sleeper, spinner = target.tids["sleeper"], target.tids["spinner"]
    with PerfCollector(target.pid, threshold_ns=10 * MS, freq=199,
                       times_interval_s=0.2) as col:
        col.set_role(sleeper, "ignore")
        col.set_role(spinner, "ignore")
        events = collect(col, 0.8)
    assert not any(isinstance(e, (OffCpuEvent, CpuSample)) and e.tid in (sleeper, spinner)
                   for e in events)
    times = [e for e in events if isinstance(e, ThreadTimes) and e.tid == sleeper]
    assert times and times[-1].offcpu_ns > 0     # time accounting goes on


def test_marked_parks_are_dropped_and_counted_as_parked(target):
    sleeper = target.tids["sleeper"]
    with PerfCollector(target.pid, threshold_ns=10 * MS, freq=99,
                       times_interval_s=0.2) as col:
        sites = Counter((e.stack.regs.ip, e.stack.regs.sp) for e in collect(col, 0.6)
                        if isinstance(e, OffCpuEvent) and e.tid == sleeper
                        and e.stack.regs is not None)
        assert sites
        ip, sp = sites.most_common(1)[0][0]
        col.mark_park(sleeper, ip, sp)
        marked = time.monotonic_ns()
        events = collect(col, 1.0)
    # A switch-out handled before the mark was a blocker then; none may follow it.
    at_site = [e for e in events if isinstance(e, OffCpuEvent) and e.tid == sleeper
               and e.start_ns > marked and e.stack.regs is not None
               and (e.stack.regs.ip, e.stack.regs.sp) == (ip, sp)]
    assert at_site == []
    parked = [e.parked_ns for e in events if isinstance(e, ThreadTimes) and e.tid == sleeper]
    assert parked and parked[-1] >= 60 * MS


@pytest.mark.skipif(not shutil.which("taskset"), reason="needs taskset (util-linux)")
def test_run_queue_waits_name_the_task_that_took_the_cpu():
    # The target's spinner and a competing spinner share CPU 0: both get preempted.
    hog = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-c",
                            "import ctypes; ctypes.CDLL(None).prctl(15, b'hud-hog', 0, 0, 0)\n"
                            "while True: pass"], start_new_session=True)
    t = Target(cpu=0)
    try:
        with PerfCollector(t.pid, threshold_ns=1 * MS, freq=99, times_interval_s=0.2) as col:
            events = collect(col, 1.5)
            preemptors = col.stats()["preemptors"]
    finally:
        t.stop()
        hog.kill()
        hog.wait()
    waits = [e for e in events if isinstance(e, OffCpuEvent) and e.runnable]
    assert waits, "a spinner sharing a CPU is preempted for a slice or more"
    assert any(isinstance(e, ThreadTimes) and e.tid == t.tids["spinner"] and e.runq_ns > 0
               for e in events)
    holders = Counter((e.holder_comm, e.holder_pid) for e in waits)
    assert all(pid > 0 and comm for comm, pid in holders if (comm, pid) != ("", 0))
    if preemptors.startswith("suppressed"):
        # Another tracer's BPF program on sched_switch (a concurrent eBPF-backend run on
        # a shared host, bpftrace ...) swallows the tracepoint's perf samples: holders are
        # then mostly unknown, never made up, and stats() says why.
        assert holders[("", 0)] * 2 > len(waits), holders
    else:
        assert preemptors == "yes"
        assert ("hud-hog", hog.pid) in holders, holders


def test_a_tiny_ring_loses_records_and_says_so(target):
    # A 4 KiB switch ring cannot hold one 4 KiB stack copy: every capture is lost, and
    # the small SWITCH records after them carry the count; an 8 KiB sample ring holds one.
    # (A ring where no record ever fits gets no LOST record at all: perf writes it just
    # before the next record that fits.)
    with PerfCollector(target.pid, threshold_ns=10 * MS, freq=199, stack_bytes=4096,
                       data_pages=1, sample_pages=2) as col:
        events = collect(col, 0.8)
        stats = col.stats()
    lost = [e for e in events if isinstance(e, Lost)]
    assert lost and stats["lost"] == sum(e.count for e in lost) > 0
    assert any(e.source.startswith("perf switch cpu") for e in lost)
    assert any(e.source.startswith("perf cpu") for e in lost)      # the sampler's
    assert set(stats["lost_by_source"]) == {e.source for e in lost}


def test_target_exit_is_reported_once_and_nothing_is_left_open():
    before = open_fds()
    t = Target()
    try:
        col = PerfCollector(t.pid, threshold_ns=10 * MS, freq=99).start()
        collect(col, 0.3)
        t.proc.kill()
        events = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(isinstance(e, TargetExit)
                                                      for e in events):
            events += col.poll(0.1)
        assert [e.pid for e in events if isinstance(e, TargetExit)] == [t.pid]
        assert col.poll(0.05) == []
        col.close()
        col.close()
    finally:
        t.stop()
    assert open_fds() == before


def test_a_missing_target_is_an_error_and_leaves_nothing_open():
    from hud.errors import TargetExited
    before = open_fds()
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    with pytest.raises(TargetExited):
        PerfCollector(p.pid).start()
    assert open_fds() == before
