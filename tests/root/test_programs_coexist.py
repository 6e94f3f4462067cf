"""hud's sched_switch program must not blind other tracers of sched_switch (perf record,
our own perf backend): a tracepoint program that returns 0 makes the kernel drop the
event for every perf event on that tracepoint, host-wide."""
from __future__ import annotations

import os
import time

from hud.bpf.perfbuf import PerfRing
from hud.collect.ebpf import EbpfCollector
from hud.linux import perf_event as pe
from hud.linux import tracefs


def _count_own_switch_samples(sleeps: int) -> int:
    attr = pe.PerfEventAttr(type=pe.PERF_TYPE_TRACEPOINT,
                            config=tracefs.tracepoint_id("sched", "sched_switch"),
                            period_or_freq=1, sample_type=pe.PERF_SAMPLE_TID,
                            disabled=True)
    fd = pe.perf_event_open(attr, 0, -1)      # this thread, any CPU
    with PerfRing(fd, 8, own_fd=True) as ring:
        pe.enable(fd)
        for _ in range(sleeps):
            time.sleep(0.002)                 # one voluntary switch-out each
        pe.disable(fd)
        me = os.getpid()
        samples = 0
        for rtype, _, body in ring.read():
            if rtype == pe.PERF_RECORD_SAMPLE and int.from_bytes(body[:4], "little") == me:
                samples += 1
        return samples


def test_perf_still_sees_sched_switch_while_hud_is_attached():
    alone = _count_own_switch_samples(40)
    with EbpfCollector(os.getpid(), sample=False) as col:
        col.set_role(os.getpid(), "worker")
        with_hud = _count_own_switch_samples(40)
    assert alone >= 40
    assert with_hud >= 40, (alone, with_hud)
