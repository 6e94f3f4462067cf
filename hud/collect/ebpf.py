"""The eBPF collector: off-CPU episodes with the blocker's own stack, cpu samples, times.

    from hud.collect.ebpf import EbpfCollector

    with EbpfCollector(pid, threshold_ns=5_000_000) as col:   # loads and attaches
        col.set_role(tid, "worker")          # "worker" | "blocking" | "other" | "ignore"
        for ev in col.poll(0.1):             # OffCpuEvent, CpuSample, ThreadTimes,
            ...                              # ThreadExit, Lost, TargetExit, Wake
        col.mark_park(tid, ip, sp)           # this (tid, user ip, sp) is a Tokio park
        col.stats()                          # counters, losses, BPF run time per program
    # leaving the block (or close()) releases every BPF object

API (stable; everything else is private):
- `EbpfCollector(pid, threshold_ns=5_000_000, freq=None, stack_bytes=16384, *,
  sample=True, sample_stack_bytes=None, fp_depth=127, kernel_depth=48, ringbuf_bytes=16 MiB,
  max_threads=4096, times_interval_s=1.0, probe_interval_ns=50_000_000,
  runq_stacks=True, wakers=True, bpf_stats=False, timing=False)`. `pid` is the target's pid in the
  initial pid namespace. `freq` None: enough samples to resolve the threshold
  (`default_freq`: 400 Hz at 5 ms). `stack_bytes`: user stack copied per capture (8 ..
  65536); `sample_stack_bytes` (default the same) caps it for samples. `fp_depth` 0
  skips the kernel's frame-pointer walk (~1.5 us less per capture; the copy still
  unwinds). `kernel_depth`: kernel frames taken with each blocked switch-out and each
  sample that lands in the kernel (`StackCapture.kernel_ips`); 0 takes none.
- `open()` / `__enter__`: build the programs for this kernel (sched_switch field offsets
  and prev_state bits from the live tracepoint format), create maps, load, attach through
  BPF links. `close()` / `__exit__`: idempotent; nothing is pinned, so a SIGKILL frees
  everything too.
- `set_role(tid, role)`: "worker", "blocking", "other", "ignore" or "unknown". Threads
  absent from the role map are tracked as unknown (new threads are never missed);
  "ignore" = time accounting only: no stacks, no records, no samples. May be called
  before open().
- `mark_park(tid, ip, sp) -> bool`: switch-outs of `tid` at this user (ip, sp) are
  parks: their time goes to `parked_ns`, no stack is copied, no record is sent.
  `mark_not_park(tid, ip, sp) -> bool`: classified, not a park: no more probes from it
  (below). Both return False when the site map is full. `unmark_park(tid, ip, sp)`
  forgets either mark.
- `poll(timeout_s) -> list[Event]`: waits up to `timeout_s` for ring records (checking
  every 10 ms: records are sent without wakeups) and returns them decoded, plus every
  `times_interval_s` one `ThreadTimes` per tracked thread, `Lost` deltas by source, and
  `TargetExit` once the target is gone. A thread's exit arrives as its final
  `ThreadTimes` then `ThreadExit`. Events of one poll are in ring order (per-CPU
  producers interleave; not sorted by time).
- `thread_times()`, `counters()`: read now. `stats() -> dict`: events by type, losses
  by source, kernel counters, ring state, BPF run time per program (run_cnt,
  run_time_ns, ns_per_run) when `bpf_stats` is on. `path_times()`: with `timing=True`
  (benchmarks only: an instrumented build), (count, total ns) per program path.

Semantics: an `OffCpuEvent` is sent at switch-in when the thread was off CPU (or waiting
for a CPU) at least `threshold_ns`, with the stack captured at its switch-out; parks
marked with mark_park() never produce one. A run-queue wait's holder
(`holder_pid`/`holder_comm`) is the task that took the CPU at that switch-out: the one
that displaced it. A blocked wait's waker (`waker_tid`/`waker_comm`, with `wakers`: a
sched_waking program, with two timer-flag programs on hrtimer_expire_entry/exit) is the
task current when the thread was woken, when it sat inside a call that ends futex waits
(FUTEX_WAKE, exit, a signal) outside an hrtimer callback: the one that released a
futex; 0 when no such wake was seen (an interrupt's, a timeout's). When that wait has lasted the threshold and the waker
is a thread of the target, a `Wake` event carries the waker's own capture, taken at the
wake (where it released the lock); it comes before the wakee's OffCpuEvent. Site probes: a thread that slept at a site not marked either way is also
sent below the threshold, at most once per `probe_interval_ns` per thread (0 = never),
so that short parks, which are most parks of a busy runtime, get classified and marked
too. They are OffCpuEvents whose duration is below the threshold: classify their stack,
call mark_park or mark_not_park, and do not count them as episodes. Run-queue waits
(`runnable`) carry the stack where the thread was preempted; with `runq_stacks=False`
only its registers (preemptions are the most frequent captures of a loaded server: a
wakee preempting a worker inside send()). The first off-CPU stretch of a thread after
attach is not reported (its switch-out was not seen). `CpuSample.switch_seq` counts the
thread's voluntary switch-outs since hud first saw it (-1 before the first).
Times are CLOCK_MONOTONIC ns (bpf_ktime_get_ns).
"""
from __future__ import annotations

import errno
import os
import struct
import time
from collections import Counter
from typing import Any, Optional

from hud.bpf.loader import Loader, Program
from hud.bpf.ringbuf import RingBuf
from hud.collect import ebpf_records as rec
from hud.errors import BadInput, HudError, TargetExited, Unsupported, UsageError
from hud.linux import bpf, procfs, tracefs
from hud.linux.libc import ARCH
from hud.model import ROLE_BLOCKING, ROLE_OTHER, ROLE_WORKER, Event, Lost, TargetExit
from kernel.programs import common as c
from kernel.programs import sampler, sched_switch, sched_waking, timer_flag

ROLE_IGNORE = "ignore"
ROLE_UNKNOWN = "unknown"
ROLES = {ROLE_UNKNOWN: c.ROLE_UNKNOWN, ROLE_WORKER: c.ROLE_WORKER,
         ROLE_BLOCKING: c.ROLE_BLOCKING, ROLE_OTHER: c.ROLE_OTHER, ROLE_IGNORE: c.ROLE_IGNORE}
LOST_SOURCES = {"ringbuf_offcpu": "ringbuf offcpu", "ringbuf_sample": "ringbuf sample",
                "ringbuf_exit": "ringbuf exit", "stack_copy": "stack copy",
                "fp_stack": "fp stack", "threads_full": "threads full",
                "captures_full": "captures full", "ringbuf_wake": "ringbuf wake",
                "kernel_stack": "kernel stack"}
POLL_STEP_S = 0.025   # 16 MiB of 32 KiB records drains 20k records/s at this pace
_KEY0 = struct.pack("<I", 0)
_U32 = struct.Struct("<I")


def default_freq(threshold_ns: int, max_rate: Optional[int] = None) -> int:
    """Sampling Hz giving at least two samples per threshold (a cpu stretch of exactly the
    threshold is then seen twice), within [19, perf_event_max_sample_rate]."""
    hz = -(-2 * 1_000_000_000 // max(threshold_ns, 1))
    if max_rate is None:
        max_rate = procfs.perf_max_sample_rate() or 100_000
    return max(19, min(hz, max_rate))


def switch_fields() -> c.SwitchFields:
    """sched_switch offsets and prev_state bits from this kernel's tracepoint format."""
    path = os.path.join(tracefs.tracefs_root(), "events", "sched", "sched_switch", "format")
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise Unsupported(f"cannot read {path}: {e.strerror}") from None
    fmt = tracefs.parse_format(text)
    try:
        state, pid, comm = (fmt.field(n) for n in ("prev_state", "next_pid", "next_comm"))
    except KeyError as e:
        raise Unsupported(f"sched_switch format lacks a field hud needs: {e}",
                          "this kernel's sched_switch tracepoint is not supported") from None
    if state.size not in (4, 8) or pid.size != 4 or comm.size != 16:
        raise Unsupported(f"sched_switch fields of unexpected sizes (prev_state {state.size}, "
                          f"next_pid {pid.size}, next_comm {comm.size})")
    state_mask, exit_mask = rec.state_masks(text)
    return c.SwitchFields(prev_state=state.offset, prev_state_size=state.size,
                          next_pid=pid.offset, next_comm=comm.offset,
                          state_mask=state_mask, exit_mask=exit_mask)


def waking_pid_offset() -> Optional[int]:
    """The wakee's `pid` offset in this kernel's sched_waking format; None when the
    tracepoint or the field is missing (wakers are then unknown, nothing else changes)."""
    try:
        pid = tracefs.tracepoint_format("sched", "sched_waking").field("pid")
    except (HudError, KeyError, ValueError):
        return None
    return pid.offset if pid.size == 4 else None


class _StatsFd:
    """BPF_ENABLE_STATS: run_time_ns/run_cnt are kept while this fd is open."""

    def __init__(self) -> None:
        self.fd = bpf.enable_stats()

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


class EbpfCollector:
    """See the module docstring."""

    def __init__(self, pid: int, threshold_ns: int = 5_000_000, freq: Optional[int] = None,
                 stack_bytes: int = 16384, *, sample: bool = True,
                 sample_stack_bytes: Optional[int] = None, fp_depth: int = 127,
                 kernel_depth: int = c.Params.kernel_depth, ringbuf_bytes: int = 1 << 24,
                 max_threads: int = 4096,
                 times_interval_s: float = 1.0, probe_interval_ns: int = 50_000_000,
                 runq_stacks: bool = True, wakers: bool = True, bpf_stats: bool = False,
                 timing: bool = False) -> None:
        if threshold_ns <= 0:
            raise UsageError("the threshold must be positive")
        self.pid = pid
        self.threshold_ns = threshold_ns
        self.freq = freq if freq is not None else default_freq(threshold_ns)
        self.stack_bytes = stack_bytes
        self.fp_depth = fp_depth
        self.kernel_depth = kernel_depth
        self.sample_stack_bytes = stack_bytes if sample_stack_bytes is None \
            else min(sample_stack_bytes, stack_bytes)
        self.sample = sample
        self.ringbuf_bytes = ringbuf_bytes
        self.max_threads = max_threads
        self.times_interval_s = times_interval_s
        self.probe_interval_ns = probe_interval_ns
        self.runq_stacks = runq_stacks
        self.wakers = wakers
        self.bpf_stats = bpf_stats
        self.timing = timing
        self.params: Optional[c.Params] = None
        self._ld: Optional[Loader] = None
        self._rb: Optional[RingBuf] = None
        self._progs: dict[str, Program] = {}
        self._roles: dict[int, int] = {}
        self._sites: dict[int, dict[tuple[int, int], int]] = {}   # tid -> (ip, sp) -> verdict
        self._lost_seen: Counter = Counter()
        self._events: Counter = Counter()
        self._bad = 0
        self._next_times = 0.0
        self._target_gone = False

    # -- lifecycle ------------------------------------------------------------------------
    def open(self) -> EbpfCollector:
        """Build, load and attach; on any failure everything created so far is released."""
        if self._ld is not None:
            return self
        if not procfs.alive(self.pid):
            raise TargetExited(f"process {self.pid} does not exist")
        p = c.Params(fields=switch_fields(), arch=ARCH, stack_bytes=self.stack_bytes,
                     fp_depth=self.fp_depth, kernel_depth=self.kernel_depth,
                     page_size=os.sysconf("SC_PAGE_SIZE"), max_threads=self.max_threads,
                     ringbuf_bytes=self.ringbuf_bytes, ncpus=len(procfs.possible_cpus()),
                     timing=self.timing)
        ld = Loader()
        try:
            if self.bpf_stats:
                ld.own(_StatsFd())
            ld.create_maps(c.map_specs(p))
            ld.maps["hud_cfg"].update(_KEY0, c.CONFIG.pack(
                tgid=self.pid, flags=0 if self.runq_stacks else c.CFG_NO_RUNQ_STACKS,
                threshold_ns=self.threshold_ns,
                stack_bytes=p.stack_bytes, sample_stack_bytes=self.sample_stack_bytes,
                capture_roles=c.DEFAULT_ROLE_MASK,
                sample_roles=c.DEFAULT_ROLE_MASK, probe_ns=self.probe_interval_ns))
            for tid, role in self._roles.items():
                ld.maps["hud_roles"].update(_U32.pack(tid), _U32.pack(role))
            switch = ld.load(sched_switch.build(p))
            self._progs = {sched_switch.NAME: switch}
            if self.sample:
                self._progs[sampler.NAME] = ld.load(sampler.build(p))
            self._rb = ld.own(RingBuf(ld.maps["hud_rb"]))
            ld.attach_tracepoint(switch, "sched", "sched_switch")
            if self.wakers:
                self._attach_waking(ld, p)
            if self.sample:
                ld.attach_cpu_clock(self._progs[sampler.NAME], freq=self.freq)
        except BaseException:
            ld.close()
            self._progs = {}
            self._rb = None
            raise
        self.params = p
        self._ld = ld
        self._next_times = time.monotonic() + self.times_interval_s
        return self

    def _attach_waking(self, ld: Loader, p: c.Params) -> None:
        # Wakers are a detail: a kernel without sched_waking, or one that refuses the
        # program, still gets everything else (stats()["wakers"] says it is off).
        # The timer flag first: sched_waking must never run without it, or a timed wait
        # that times out would name whatever task the timer interrupted.
        pid_off = waking_pid_offset()
        if pid_off is None:
            return
        progs = {}
        try:
            for build, event in ((timer_flag.build_entry, "hrtimer_expire_entry"),
                                 (timer_flag.build_exit, "hrtimer_expire_exit")):
                image = build()
                progs[image.name] = prog = ld.load(image)
                ld.attach_tracepoint(prog, "timer", event)
            progs[sched_waking.NAME] = prog = ld.load(sched_waking.build(pid_off, p))
            ld.attach_tracepoint(prog, "sched", "sched_waking")
        except HudError:
            return   # what did attach only sets a flag; closed with the rest
        self._progs.update(progs)

    def close(self) -> None:
        """Detach and release every BPF object (idempotent)."""
        ld, self._ld = self._ld, None
        self._rb = None
        self._progs = {}
        if ld is not None:
            ld.close()

    def __enter__(self) -> EbpfCollector:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def is_open(self) -> bool:
        return self._ld is not None

    def _loader(self) -> Loader:
        if self._ld is None:
            raise UsageError("the eBPF collector is not open")
        return self._ld

    # -- what userspace tells the kernel side -----------------------------------------------
    def set_role(self, tid: int, role: str) -> None:
        """Role of `tid` for the kernel side: worker, blocking, other, ignore or unknown."""
        if role not in ROLES:
            raise UsageError(f"unknown thread role {role!r}", f"one of {', '.join(ROLES)}")
        value = ROLES[role]
        if value == c.ROLE_UNKNOWN:
            self._roles.pop(tid, None)
        else:
            self._roles[tid] = value
        if self._ld is None:
            return
        m = self._ld.maps["hud_roles"]
        if value == c.ROLE_UNKNOWN:
            m.delete(_U32.pack(tid))
        else:
            m.update(_U32.pack(tid), _U32.pack(value))

    def mark_park(self, tid: int, ip: int, sp: int) -> bool:
        """Switch-outs of `tid` at user (ip, sp) are parks from now on; False if full."""
        return self._mark(tid, ip, sp, c.SITE_PARK)

    def mark_not_park(self, tid: int, ip: int, sp: int) -> bool:
        """(ip, sp) of `tid` is classified and is no park: no more probes from it."""
        return self._mark(tid, ip, sp, c.SITE_NOT_PARK)

    def _mark(self, tid: int, ip: int, sp: int, verdict: int) -> bool:
        key = c.SITE_KEY.pack(tid=tid, ip=ip, sp=sp)
        try:
            self._loader().maps["hud_sites"].update(key, _U32.pack(verdict))
        except HudError as e:
            if e.errno == errno.E2BIG:  # the map is full
                self._events["parks_full"] += 1
                return False
            raise
        self._sites.setdefault(tid, {})[(ip, sp)] = verdict
        return True

    def unmark_park(self, tid: int, ip: int, sp: int) -> None:
        """Forget what (ip, sp) of `tid` was marked as."""
        self._loader().maps["hud_sites"].delete(c.SITE_KEY.pack(tid=tid, ip=ip, sp=sp))
        self._sites.get(tid, {}).pop((ip, sp), None)

    # -- events ---------------------------------------------------------------------------
    def poll(self, timeout_s: float = 0.1) -> list[Event]:
        """Decoded records (waiting up to `timeout_s` for the first), plus periodic
        ThreadTimes, Lost deltas and TargetExit."""
        ld = self._loader()
        assert self._rb is not None and self.params is not None
        out: list[Event] = []
        # Records are sent with BPF_RB_NO_WAKEUP (a wakeup is an irq_work, ~9 us per
        # record in a VM), so the ring is checked every POLL_STEP_S instead.
        deadline = time.monotonic() + max(0.0, timeout_s)
        while not self._rb.pending():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._rb.poll(int(min(left, POLL_STEP_S) * 1000) or 1)
        for raw in self._rb.read():
            self._decode(raw, out)
        now = time.monotonic()
        if now >= self._next_times:
            self._next_times = now + self.times_interval_s
            out.extend(self.thread_times())
            if not self._target_gone and not procfs.alive(self.pid):
                self._target_gone = True
                out.append(TargetExit(self.pid, time.monotonic_ns()))
            # Loss counters once per interval too: a per-CPU map read per 10 ms poll
            # was a visible share of hud's own CPU on a busy target.
            out.extend(self._lost(ld))
        return out

    def _decode(self, raw: bytes, out: list[Event]) -> None:
        p = self.params
        assert p is not None
        try:
            ev = rec.decode(raw, p.arch, p.fp_depth, p.kernel_depth)
        except BadInput:
            self._bad += 1
            return
        if isinstance(ev, tuple):
            self._forget(ev[1].tid)
            out.extend(ev)
            self._events["ThreadExit"] += 1
            return
        self._events[type(ev).__name__] += 1
        out.append(ev)

    def _forget(self, tid: int) -> None:
        """The thread exited (the kernel deleted its entries): drop its parks and role."""
        self._roles.pop(tid, None)
        parks = self._ld.maps["hud_sites"] if self._ld is not None else None
        for ip, sp in self._sites.pop(tid, {}):
            if parks is not None:
                parks.delete(c.SITE_KEY.pack(tid=tid, ip=ip, sp=sp))

    def thread_times(self) -> list:
        """One ThreadTimes per tracked thread, read now."""
        m = self._loader().maps["hud_threads"]
        stamp = time.monotonic_ns()
        out = []
        for key, value in m.items():
            out.append(rec.thread_times(_U32.unpack(key)[0], value, stamp))
        self._events["ThreadTimes"] += len(out)
        return out

    def counters(self) -> dict[str, int]:
        """The kernel side's counters, summed over CPUs."""
        values = self._loader().maps["hud_counts"].lookup_percpu(_KEY0) or []
        return rec.sum_counters(values)

    def _lost(self, ld: Loader) -> list[Event]:
        counts = self.counters()
        counts["bad_record"] = self._bad
        out: list[Event] = []
        stamp = 0
        for name in (*c.LOSSES, "bad_record"):
            delta = counts.get(name, 0) - self._lost_seen[name]
            if delta > 0:
                stamp = stamp or time.monotonic_ns()
                self._lost_seen[name] += delta
                out.append(Lost(LOST_SOURCES.get(name, name.replace("_", " ")), delta, stamp))
        return out

    # -- introspection --------------------------------------------------------------------
    def program_names(self) -> list[str]:
        """The programs loaded and attached, in load order (hud_timer_in, hud_timer_out
        and hud_waking only where this kernel has their tracepoints and `wakers` is on)."""
        return list(self._progs)

    def program_stats(self) -> dict[str, dict[str, Any]]:
        """run_cnt, run_time_ns and ns_per_run per program (zeros unless BPF stats are on)."""
        out = {}
        for name, prog in self._progs.items():
            info = prog.info()
            out[name] = {"run_cnt": info.run_cnt, "run_time_ns": info.run_time_ns,
                         "ns_per_run": info.run_time_ns / info.run_cnt if info.run_cnt else 0.0,
                         "insns": len(prog.image), "verified_insns": info.verified_insns}
        return out

    def path_times(self) -> dict[str, tuple[int, int]]:
        """Timing builds (`timing=True`, benchmarks): (count, total ns) per program path."""
        if not self.timing:
            return {}
        n = len(c.PATHS)
        per_cpu = self._loader().maps["hud_timing"].lookup_percpu(_KEY0) or []
        total = [[0, 0] for _ in range(n)]
        for value in per_cpu:
            vals = struct.unpack_from(f"<{2 * n}Q", value)
            for i in range(n):
                total[i][0] += vals[2 * i + 1]
                total[i][1] += vals[2 * i]
        return {name: (cnt, ns) for name, (cnt, ns) in zip(c.PATHS, total)}

    def stats(self) -> dict[str, Any]:
        """Events by type, losses, kernel counters, ring, BPF run time per program."""
        ld = self._loader()
        counts = self.counters()
        lost = {LOST_SOURCES[k]: counts[k] for k in c.LOSSES if counts.get(k)}
        if self._bad:
            lost["bad record"] = self._bad
        ring = self._rb
        return {"events": dict(self._events), "lost": lost, "counters": counts,
                "parks": sum(v == c.SITE_PARK for s in self._sites.values() for v in s.values()),
                "not_parks": sum(v == c.SITE_NOT_PARK for s in self._sites.values()
                                 for v in s.values()),
                "threads": sum(1 for _ in ld.maps["hud_threads"].keys()),
                "ring": {"records": ring.records if ring else 0,
                         "pending_bytes": ring.pending() if ring else 0,
                         "size": self.ringbuf_bytes},
                "freq": self.freq if self.sample else 0,
                "wakers": sched_waking.NAME in self._progs,
                "programs": self.program_stats(), "bpf_stats": self.bpf_stats}


__all__ = ["ROLES", "EbpfCollector", "default_freq", "switch_fields"]
