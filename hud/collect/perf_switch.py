"""Per-thread switch events of one process: switch-out stacks, switch times, preemptors.

Per (thread, CPU), with `inherit=1` (threads the target creates later get child events at
clone, so none is missed; an inherit event cannot be mmapped with cpu=-1, hence one per
CPU):

- a software context-switches event, period 1, `context_switch=1`, `task=1`: its sample is
  taken at the thread's own switch-out (prev == current) with the thread's user registers,
  stack copy and callchain; PERF_RECORD_SWITCH marks switch-outs (PREEMPT: still
  runnable) and switch-ins, PERF_RECORD_EXIT thread exits. Not the sched_switch
  tracepoint: that needs tracefs, and a TRACEPOINT BPF program on sched_switch that
  returns 0 (bpftrace's, or the eBPF backend's) silently suppresses every perf sample of
  the tracepoint on the host (measured: 163 samples for 703 switch-outs);
- where tracefs is readable, a sched:sched_switch tracepoint event filtered in the kernel to
  switch-outs of a still-runnable task, raw data only: who took the CPU (the holder of a
  run-queue wait). Optional: without it, holders are unknown.

A per-task event is live only while its thread is on a CPU, so other tasks' switches cost
nothing (a pid=-1 event with a `prev_pid == ...` filter costs +0.43 us at every switch of
every task on the host, measured: docs/PERFORMANCE.md, perf backend). The events of one
CPU share one ring (PERF_EVENT_IOC_SET_OUTPUT), which wakes its reader only when a quarter
full (wakeup_watermark): records are read on a timer, as a wakeup per record costs an
irq_work each.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Optional

from hud.bpf.perfbuf import PerfRing, close_rings
from hud.collect.ebpf_records import state_masks
from hud.collect.perf_records import CAPTURE_SAMPLE_TYPE, PREEMPT_SAMPLE_TYPE, SwitchFields
from hud.collect.perf_sampler import MAX_STACK_USER, REGS_MASK
from hud.errors import HudError, UsageError
from hud.linux import procfs, tracefs
from hud.linux.libc import ARCH, PAGE_SIZE
from hud.linux.perf_event import (
    CLOCK_MONOTONIC,
    PERF_COUNT_SW_CONTEXT_SWITCHES,
    PERF_TYPE_SOFTWARE,
    PERF_TYPE_TRACEPOINT,
    PerfEventAttr,
    enable,
    event_id,
    perf_event_open,
    set_filter,
    set_output,
)

CAPTURE, PREEMPT = "capture", "preempt"
_ESRCH = 3


def capture_attr(stack_bytes: int, wakeup_bytes: int, arch: str = ARCH) -> PerfEventAttr:
    """The per-thread context-switches event (see the module docstring)."""
    if arch not in REGS_MASK:
        raise UsageError(f"no register mask for {arch}", "hud supports x86_64 and aarch64")
    stack_bytes = max(8, min(MAX_STACK_USER, stack_bytes)) // 8 * 8
    return PerfEventAttr(
        type=PERF_TYPE_SOFTWARE, config=PERF_COUNT_SW_CONTEXT_SWITCHES, period_or_freq=1,
        sample_type=CAPTURE_SAMPLE_TYPE, disabled=True, inherit=True, context_switch=True,
        task=True, sample_id_all=True, exclude_callchain_kernel=True,
        sample_regs_user=REGS_MASK[arch],
        sample_stack_user=stack_bytes, use_clockid=True, clockid=CLOCK_MONOTONIC,
        watermark=True, wakeup=wakeup_bytes)


def preempt_attr(tp_id: int) -> PerfEventAttr:
    """The per-thread sched_switch event for preemptions (raw data only)."""
    return PerfEventAttr(
        type=PERF_TYPE_TRACEPOINT, config=tp_id, period_or_freq=1,
        sample_type=PREEMPT_SAMPLE_TYPE, disabled=True, inherit=True, sample_id_all=True,
        use_clockid=True, clockid=CLOCK_MONOTONIC)


def switch_tracepoint() -> tuple[int, SwitchFields]:
    """(id, raw field layout) of sched:sched_switch; HudError when tracefs is unreadable."""
    path = os.path.join(tracefs.tracefs_root(), "events", "sched", "sched_switch", "format")
    text = procfs.read_text(path)
    if text is None:
        raise HudError(f"cannot read {path}", exit_code=5)
    fmt = tracefs.parse_format(text)
    return fmt.id, SwitchFields.from_format(fmt, state_masks(text)[0])


class SwitchEvents:
    """The switch events of one process and their per-CPU rings; see the module docstring.

    `kind(id)` maps a record's event id (for inherited events, PERF_SAMPLE_IDENTIFIER is the
    parent's) to (tid the event was opened on, CAPTURE or PREEMPT). A thread that has events
    of its own and inherited ones too (created while the events were being opened) is
    read from its own only.
    """

    def __init__(self, pid: int, stack_bytes: int = 16384, data_pages: int = 256,
                 arch: str = ARCH, cpus: Optional[Sequence[int]] = None,
                 preemptions: bool = True) -> None:
        self.pid = pid
        self.arch = arch
        self.cpus = list(cpus) if cpus is not None else procfs.online_cpus()
        self.data_pages = data_pages
        wakeup = max(PAGE_SIZE, data_pages * PAGE_SIZE // 4)
        self.attr = capture_attr(stack_bytes, wakeup, arch)
        self.fields: Optional[SwitchFields] = None
        self._preempt: Optional[PerfEventAttr] = None
        self.preempt_error = "" if preemptions else "not asked for"
        if preemptions:
            try:
                tp_id, self.fields = switch_tracepoint()
                self._preempt = preempt_attr(tp_id)
            except HudError as e:
                self.preempt_error = e.message
        self.rings: dict[int, PerfRing] = {}
        self._fds: list[int] = []
        self.kinds: dict[int, tuple[int, str]] = {}   # event id -> (tid opened on, kind)
        self.direct: set[int] = set()        # tids with events of their own
        self._enabled = False

    def attach(self, rounds: int = 8) -> int:
        """Open events on every thread, re-listing until no new thread shows up (one
        created meanwhile by a covered thread is inherited anyway). Returns the number of
        threads with events of their own."""
        try:
            for _ in range(rounds):
                new = [t for t in procfs.list_tids(self.pid) if t not in self.direct]
                if not new:
                    break
                for tid in new:
                    self.add_thread(tid)
        except BaseException:
            self.close()
            raise
        return len(self.direct)

    def add_thread(self, tid: int) -> bool:
        """Open the thread's events (per CPU); False when it exited meanwhile."""
        try:
            for cpu in self.cpus:
                fd = self._open(self.attr, tid, cpu, CAPTURE)
                ring = self.rings.get(cpu)
                if ring is None:
                    self.rings[cpu] = PerfRing(fd, self.data_pages)
                else:
                    set_output(fd, ring.fd)
                if self._preempt is not None:
                    self._open_preempt(tid, cpu)
        except HudError as e:
            if e.errno == _ESRCH:
                return False
            raise
        self.direct.add(tid)
        return True

    def _open(self, attr: PerfEventAttr, tid: int, cpu: int, kind: str) -> int:
        fd = perf_event_open(attr, tid, cpu, what=f"perf_event_open({kind} event, tid={tid}, "
                                                   f"cpu={cpu})")
        self._fds.append(fd)    # closed by close(), also when a later step fails
        self.kinds[event_id(fd)] = (tid, kind)
        if self._enabled:
            enable(fd)
        return fd

    def _open_preempt(self, tid: int, cpu: int) -> None:
        assert self._preempt is not None and self.fields is not None
        fd = -1
        try:
            fd = perf_event_open(self._preempt, tid, cpu,
                                 what=f"perf_event_open(sched:sched_switch, tid={tid}, "
                                      f"cpu={cpu})")
            set_filter(fd, self.fields.runnable_filter())
            set_output(fd, self.rings[cpu].fd)
            self.kinds[event_id(fd)] = (tid, PREEMPT)
        except HudError as e:
            if fd >= 0:
                os.close(fd)
            if e.errno == _ESRCH:
                raise
            # Preemptors are a detail: without them (no CAP_PERFMON for raw tracepoint
            # data, say) the rest works, and stats() says why they are missing.
            self._preempt = None
            self.preempt_error = e.message
            return
        self._fds.append(fd)
        if self._enabled:
            enable(fd)

    @property
    def preemptions(self) -> bool:
        return self._preempt is not None

    def enable(self) -> None:
        for fd in self._fds:
            enable(fd)
        self._enabled = True

    def kind(self, event: int) -> Optional[tuple[int, str]]:
        """(tid opened on, CAPTURE | PREEMPT) of an event id, or None."""
        return self.kinds.get(event)

    def poll_fds(self) -> list[int]:
        return [r.fd for r in self.rings.values()]

    def read(self) -> Iterator[tuple[int, int, int, bytes]]:
        """(cpu, type, misc, body) of every record now in the rings, ring by ring."""
        for cpu, ring in self.rings.items():
            for rtype, misc, body in ring.read():
                yield cpu, rtype, misc, body

    @property
    def lost(self) -> int:
        """Records the kernel dropped (sum of PERF_RECORD_LOST counts of every ring)."""
        return sum(r.lost for r in self.rings.values())

    @property
    def nfds(self) -> int:
        return len(self._fds)

    def close(self) -> None:
        """Unmap the rings and close every event fd (idempotent)."""
        close_rings(self.rings, self._fds)
        self.kinds.clear()
        self.direct.clear()
