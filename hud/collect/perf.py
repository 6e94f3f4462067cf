"""The perf backend: the eBPF backend's event stream from perf_event_open() alone (no bpf()).

    from hud.collect.perf import PerfCollector

    with PerfCollector(pid, threshold_ns=5_000_000, freq=401) as col:  # opens and enables
        col.set_role(tid, "worker")          # "worker" | "blocking" | "other" | "ignore"
        for ev in col.poll(0.1):             # OffCpuEvent, CpuSample, ThreadTimes,
            ...                              # ThreadExit, Lost, TargetExit
        col.mark_park(tid, ip, sp)           # this (tid, user ip, sp) is a Tokio park
        col.stats()
    # leaving the block (or close()) closes every fd and unmaps every ring

For hosts that refuse bpf() (no CAP_BPF, seccomp-filtered containers, lockdown). It needs
root, CAP_PERFMON or perf_event_paranoid <= 1 (switch-out samples are kernel-mode samples);
naming run-queue holders also needs tracefs and raw tracepoint data (CAP_PERFMON), and is
skipped, with the reason in stats()["preemptors"], without them.

- Off-CPU (hud.collect.perf_switch): per (thread, CPU), with inherit, a software
  context-switches event whose sample is taken at the thread's own switch-out, so it
  carries that thread's user registers, stack copy and frame-pointer chain, and whose
  PERF_RECORD_SWITCH records mark switch-outs (PREEMPT: still runnable) and switch-ins.
  There is no in-kernel threshold: every switch-out is copied, and `SwitchTracker` pairs
  it with its switch-in in userspace and emits an `OffCpuEvent` only past the threshold.
  Known parks (`mark_park`) are dropped before anything is decoded or unwound; their time
  still goes to `ThreadTimes.parked_ns`.
- Run-queue waits: the holder is the task that took the CPU when the thread was preempted
  (sched_switch's next_pid/next_comm, from a tracepoint filtered in the kernel to runnable
  switch-outs), as with the eBPF backend.
- A blocked wait in a page fault (`OffCpuEvent.fault`): the instruction before the saved
  user ip, read from /proc/PID/mem for the reported waits only, is no system call.
- No wakers (`OffCpuEvent.waker_tid` stays 0): sched_waking fires in the waker's
  context, so it would need a host-wide event per CPU filtered on every wakeup of the
  host, not one live only while a target thread runs.
- On-CPU: cpu-clock samples from hud.collect.perf_sampler, with `switch_seq` (voluntary
  switch-outs so far, -1 before the thread's first switch record) filled in here.
- A reader thread (hud.collect.perf_pump) copies records out of the rings every 20 ms,
  so a poller busy resolving stacks does not make the kernel drop them. Records of the
  per-CPU rings are merged in time order: each poll releases those older than the last
  full read minus `holdback_ns`, so a switch-in read from one ring is never handled
  before its switch-out from another.
- Time: CLOCK_MONOTONIC (use_clockid), the clock of bpf_ktime_get_ns.
- Losses: PERF_RECORD_LOST of each ring becomes a `Lost` event and counts in stats();
  pending off-CPU stretches that may have lost their switch-in make no event.
- Target exit: a pidfd (or /proc where pidfd_open is missing) -> the rings are drained,
  then `TargetExit`.
"""
from __future__ import annotations

import os
import resource
import time
from collections import Counter
from dataclasses import replace
from typing import Any, Optional

from hud.collect.perf_pump import RingPump
from hud.collect.perf_records import (
    Capture,
    decode_exit,
    decode_lost,
    decode_preempt,
    sample_id,
    trailer,
)
from hud.collect.perf_sampler import PerfSampler
from hud.collect.perf_state import Reorder, SwitchTracker
from hud.collect.perf_switch import CAPTURE, SwitchEvents
from hud.errors import BadInput, TargetExited, UsageError
from hud.linux import libc, procfs
from hud.linux.perf_event import (
    PERF_RECORD_EXIT,
    PERF_RECORD_LOST,
    PERF_RECORD_MISC_SWITCH_OUT,
    PERF_RECORD_MISC_SWITCH_OUT_PREEMPT,
    PERF_RECORD_SAMPLE,
    PERF_RECORD_SWITCH,
)
from hud.model import CpuSample, Event, Lost, OffCpuEvent, TargetExit
from kernel.programs.common import ARCH_REGS

ROLES = ("worker", "blocking", "other", "ignore", "unknown")
MAX_WAIT_S = 0.1           # the longest poll() waits
_FAULT_SITES = 4096        # user ips whose page-fault verdict is kept
PUMP_INTERVAL_S = 0.02     # the reader thread empties the rings this often
HOLDBACK_NS = 5_000_000    # records this much younger than the last read wait for the next
RING_BUDGET = 64 << 20    # bytes of ring memory for all CPUs and both kinds of ring
_FD_MARGIN = 64
# Kinds of the (time, kind, tid, ...) tuples the reorder buffer holds.
_IN, _OUT, _CAP, _PRE, _SAMPLE, _EXIT, _LOST = range(7)


def default_freq(threshold_ns: int) -> int:
    """Two samples per threshold (as the eBPF backend), odd, within [19, 4999] Hz."""
    hz = -(-2 * 1_000_000_000 // max(threshold_ns, 1))
    return max(19, min(hz, 4999)) | 1


def ring_pages(stack_bytes: int, ncpus: int, records: int = 128,
               budget: int = RING_BUDGET) -> int:
    """Data pages per ring: room for `records` stack-carrying records, a power of two,
    within an overall budget for 2 * ncpus rings."""
    page = libc.PAGE_SIZE
    want = max(1, (records * (stack_bytes + 512)) // page)
    cap = max(1, budget // (2 * max(1, ncpus) * page))
    n = 1
    while n < min(want, cap):
        n <<= 1
    return n if n <= cap else max(1, n >> 1)


class PerfCollector:
    """See the module docstring."""

    name = "perf"

    def __init__(self, pid: int, threshold_ns: int = 5_000_000, freq: Optional[int] = None,
                 stack_bytes: int = 16384, *, sample: bool = True,
                 data_pages: Optional[int] = None, sample_pages: Optional[int] = None,
                 times_interval_s: float = 1.0, holdback_ns: int = HOLDBACK_NS) -> None:
        if threshold_ns <= 0:
            raise UsageError("the threshold must be positive")
        self.pid = pid
        self.threshold_ns = threshold_ns
        self.freq = freq if freq else default_freq(threshold_ns)
        self.stack_bytes = stack_bytes
        self.sample = sample
        ncpus = len(procfs.online_cpus())
        self.data_pages = data_pages or ring_pages(stack_bytes, ncpus)
        self.sample_pages = sample_pages or ring_pages(stack_bytes, ncpus)
        self.times_interval_s = times_interval_s
        self.holdback_ns = holdback_ns
        self._switch: Optional[SwitchEvents] = None
        self._sampler: Optional[PerfSampler] = None
        self._pidfd = -1
        self._tracker = SwitchTracker(pid, threshold_ns)
        self._fault_at: dict[int, bool] = {}   # user ip -> slept in a page fault there
        self._reorder = Reorder()
        self._roles: dict[int, str] = {}
        self._events: Counter = Counter()
        self._lost: Counter = Counter()
        self._pump: Optional[RingPump] = None
        self._next_times = 0.0
        self._ended = False

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> PerfCollector:
        """Open every event and ring, then enable them; on failure nothing is left open."""
        if self._switch is not None:
            return self
        if not procfs.alive(self.pid):
            raise TargetExited(f"process {self.pid} does not exist", "check the pid")
        try:
            self._pidfd = _pidfd_open(self.pid)
            _raise_nofile(len(procfs.list_tids(self.pid)) * len(procfs.online_cpus())
                          * (2 if self.sample else 1) + _FD_MARGIN)
            self._switch = SwitchEvents(self.pid, self.stack_bytes, self.data_pages)
            self._switch.attach()
            if self.sample:
                self._sampler = PerfSampler(self.pid, self.freq, self.stack_bytes,
                                            self.sample_pages)
            self._pump = RingPump(self._drain, self._switch.poll_fds(), self._pidfd,
                                  interval_s=PUMP_INTERVAL_S)
            self._tracker.start_ns = time.monotonic_ns()
            self._switch.enable()
            if self._sampler is not None:
                self._sampler.start()
            self._pump.start()
        except BaseException:
            self.close()
            raise
        self._next_times = time.monotonic() + self.times_interval_s
        return self

    open = start

    def close(self) -> None:
        """Stop the reader thread, close every fd and unmap every ring (idempotent)."""
        pump, self._pump = self._pump, None
        if pump is not None:
            pump.stop()          # before the rings it reads are unmapped
        sw, self._switch = self._switch, None
        sampler, self._sampler = self._sampler, None
        for obj in (sw, sampler):
            if obj is not None:
                obj.close()
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1

    def __enter__(self) -> PerfCollector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what the session tells us ------------------------------------------------------------
    def set_role(self, tid: int, role: str) -> None:
        """"ignore": time accounting only (stacks dropped, no events); other roles: full."""
        if role not in ROLES:
            raise UsageError(f"unknown thread role {role!r}", f"one of {', '.join(ROLES)}")
        self._roles[tid] = role
        if role == "ignore":
            self._tracker.ignored.add(tid)
        else:
            self._tracker.ignored.discard(tid)

    def mark_park(self, tid: int, ip: int, sp: int) -> bool:
        """Switch-outs of `tid` at user (ip, sp) are parks from now on. perf cannot skip
        the copy in the kernel; they are dropped here before any unwinding."""
        self._tracker.parks.add((tid, ip, sp))
        return True

    def set_threshold(self, threshold_ns: int) -> None:
        if threshold_ns <= 0:
            raise UsageError("the threshold must be positive")
        self.threshold_ns = threshold_ns
        self._tracker.threshold_ns = threshold_ns

    # -- events -------------------------------------------------------------------------------
    def poll(self, timeout_s: float = 0.1) -> list[Event]:
        """Events released since the last call, waiting up to `timeout_s` (at most
        MAX_WAIT_S) first; see the module docstring."""
        pump = self._pump
        if pump is None or self._switch is None:
            raise UsageError("the perf collector is not started")
        if self._ended:
            return []
        if timeout_s > 0 and not pump.gone:
            pump.wake.wait(min(timeout_s, MAX_WAIT_S))
        gone = pump.gone or (self._pidfd < 0 and not procfs.alive(self.pid))
        if gone:
            pump.stop()
            if self._pidfd < 0:
                pump.read_once()    # the pump is stopped: one last read, from here
        raw, drained_at = pump.take()
        out: list[Event] = []
        self._decode(raw, out)
        # Release what every ring has been read past (all of it once the target is gone).
        upto = None if gone else drained_at - self.holdback_ns
        self._handle(self._reorder.pop(upto), out)
        now = time.monotonic()
        if gone or now >= self._next_times:
            self._next_times = now + self.times_interval_s
            stamp = self._reorder.released_upto or time.monotonic_ns()
            out.extend(self._tracker.times(stamp))
        if gone:
            self._ended = True
            out.append(TargetExit(self.pid, time.monotonic_ns()))
        for ev in out:
            self._events[type(ev).__name__] += 1
        return out

    def _drain(self, batch: list) -> None:
        """The pump's pass (its own thread): copy every record out of every ring."""
        sw, sampler = self._switch, self._sampler
        if sw is not None:
            batch.extend(sw.read())
        if sampler is not None:
            # CpuSample or Lost, decoded by the sampler: tagged with cpu -1.
            batch.extend((-1, PERF_RECORD_SAMPLE if isinstance(ev, CpuSample) else 0, 0, ev)
                         for ev in sampler.read())

    def _decode(self, raw: list, out: list[Event]) -> None:
        """Raw records -> (time, kind, tid, ...) tuples in the reorder buffer; Lost events
        straight to `out`. The hot loop of the backend: one pass, no per-record objects
        for switch records."""
        sw = self._switch
        assert sw is not None
        kinds, direct, fields = sw.kinds, sw.direct, sw.fields
        arch, pid, ev = sw.arch, self.pid, self._events
        recs: list = []
        add = recs.append
        for cpu, rtype, misc, body in raw:
            try:
                if rtype == PERF_RECORD_SWITCH:
                    rpid, tid, t, rcpu, sid = trailer(body)
                    owner = kinds.get(sid)
                    if rpid != pid:
                        ev["foreign_records"] += 1   # a forked child process inherited them
                    elif tid in direct and owner is not None and owner[0] != tid:
                        ev["duplicate_records"] += 1  # also inherited: keep its own
                    elif misc & PERF_RECORD_MISC_SWITCH_OUT:
                        add((t, _OUT, tid, rcpu, bool(misc & PERF_RECORD_MISC_SWITCH_OUT_PREEMPT)))
                    else:
                        add((t, _IN, tid))
                elif rtype == PERF_RECORD_SAMPLE:
                    if cpu < 0:                         # the sampler's, decoded
                        add((body.time_ns, _SAMPLE, body.tid, body))
                        continue
                    owner = kinds.get(sample_id(body))
                    if owner is None:
                        ev["unknown_event_records"] += 1
                        continue
                    if owner[1] == CAPTURE:
                        rec: Any = Capture(body, arch)
                    else:
                        assert fields is not None      # preemption events need them
                        rec = decode_preempt(body, fields)
                    if rec.pid != pid:
                        ev["foreign_records"] += 1
                    elif rec.tid in direct and owner[0] != rec.tid:
                        ev["duplicate_records"] += 1
                    else:
                        add((rec.time, _CAP if owner[1] == CAPTURE else _PRE, rec.tid, rec))
                elif rtype == PERF_RECORD_EXIT:
                    e = decode_exit(body)
                    if e.pid == pid:
                        add((e.time, _EXIT, e.tid))
                elif rtype == PERF_RECORD_LOST:
                    lost = decode_lost(body)
                    self._lost[f"perf switch cpu {cpu}"] += lost.lost
                    out.append(Lost(f"perf switch cpu {cpu}", lost.lost, lost.time))
                    add((lost.time, _LOST, 0))
                elif cpu < 0:                           # the sampler's Lost
                    self._lost[body.source] += body.count
                    out.append(body)
                else:
                    ev["other_records"] += 1    # FORK: new threads are found by the session
            except BadInput:
                ev["bad_records"] += 1
        self._reorder.add(recs)

    def _handle(self, recs: list, out: list[Event]) -> None:
        """Released records, oldest first, through the tracker."""
        tr = self._tracker
        for r in recs:
            k = r[1]
            if k == _IN:
                e = tr.switch_in(r[2], r[0])
                if e is not None:
                    if not e.runnable and self._in_page_fault(e):
                        e = replace(e, fault=True)
                    out.append(e)
            elif k == _OUT:
                tr.switch_out(r[2], r[0], r[3], r[4])
            elif k == _CAP:
                tr.capture(r[2], r[3])
            elif k == _SAMPLE:
                s = tr.sample(r[3])
                if s is not None:
                    out.append(s)
            elif k == _PRE:
                tr.preempt(r[2], r[3])
            elif k == _EXIT:
                out.extend(tr.exit(r[2], r[0]))
                if self._switch is not None:
                    # Its own events died with it: a later thread given the same tid has
                    # inherited ones only, and those must not be taken for duplicates.
                    self._switch.direct.discard(r[2])
            else:
                tr.lost(r[0])

    def _in_page_fault(self, ev: OffCpuEvent) -> bool:
        """Did the thread sleep in a page fault? The user ip a system call saves follows
        its instruction; a fault saves the faulting one (kernel/programs/sched_switch.py
        does this check in the kernel). Read from /proc/PID/mem for the few reported
        waits: code does not change under a running thread. Unlike the eBPF check,
        perf's switch records carry no state, so a thread stopped by a signal (SIGSTOP,
        a debugger) would count as well."""
        regs = ev.stack.regs
        arch = ARCH_REGS.get(regs.arch) if regs is not None else None
        if regs is None or arch is None or regs.ip < arch.syscall_insn_len:
            return False
        # Once per code address: until parks are learned, every long park of every
        # worker is reported, all from the same few epoll_wait sites.
        got = self._fault_at.get(regs.ip)
        if got is None:
            n = arch.syscall_insn_len
            code = procfs.read_memory(self.pid, regs.ip - n, n)
            got = len(code) == n and int.from_bytes(code, "little") != arch.syscall_insn
            if len(self._fault_at) >= _FAULT_SITES:
                self._fault_at.clear()   # a bound, not a policy: sites are few
            self._fault_at[regs.ip] = got
        return got

    # -- introspection ------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Events by type, losses (total and by ring), pairing counters, rings and fds."""
        sw, sampler = self._switch, self._sampler
        lost = dict(self._lost)
        if sampler is not None and sampler.bad_records:
            lost["bad sample"] = sampler.bad_records
        pump = self._pump
        return {"events": dict(self._events), "lost": sum(lost.values()),
                "lost_by_source": lost, "tracker": dict(self._tracker.counts),
                "reader": {"passes": pump.passes, "paused": pump.paused} if pump else {},
                "late_records": self._reorder.late, "held_records": len(self._reorder),
                "threads": len(self._tracker), "parks": len(self._tracker.parks),
                "threads_opened": len(sw.direct) if sw else 0,
                "switch_fds": sw.nfds if sw else 0,
                "preemptors": self._preemptors(),
                "ring_pages": {"switch": self.data_pages, "sample": self.sample_pages},
                "freq": self.freq if self.sample else 0}


    def _preemptors(self) -> str:
        """Whether run-queue waits name their holder, and if not, why."""
        sw = self._switch
        if sw is None:
            return "closed"
        if not sw.preemptions:
            return f"no: {sw.preempt_error}"
        c = self._tracker.counts
        if c["runnable_without_preemptor"] >= 20 and \
                c["preempt_samples"] * 10 < c["runnable_without_preemptor"]:
            # A TRACEPOINT BPF program on sched_switch that returns 0 swallows every
            # perf sample of the tracepoint on the host (perf_trace_run_bpf_submit).
            return (f"suppressed: {c['runnable_without_preemptor']} preemptions without a "
                    f"sched_switch sample (a BPF program on sched_switch swallows them?)")
        return "yes"


def _pidfd_open(pid: int) -> int:
    """A pidfd that polls readable when the process exits; -1 where the kernel has none
    (then /proc is checked instead)."""
    fd = libc.raw_syscall("pidfd_open", pid, 0)
    if fd == -3:  # ESRCH
        raise TargetExited(f"process {pid} does not exist", "check the pid")
    return fd if fd >= 0 else -1


def _raise_nofile(need: int) -> None:
    """One fd per (thread, CPU) and kind of event: lift the soft RLIMIT_NOFILE toward the
    hard one when the default (often 1024) is too low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        new = need if hard == resource.RLIM_INFINITY else min(hard, need)
        if new > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


__all__ = ["PerfCollector", "default_freq", "ring_pages"]
