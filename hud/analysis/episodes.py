"""Events + thread roles -> Episodes: off-CPU episodes by stack signature, cpu stretches.

Off-CPU (`OffCpuEvent`), by the thread's effective role:

- worker, runnable at switch-out -> `sched_delay` (detail: who held the CPU), unless the
  stack is a park (an idle worker waiting for a CPU harms nobody: `park`);
- worker, sleeping -> `park` when the stack is a Tokio park, else `blocking` (detail:
  `woken by COMM (tid N)` for a futex wait whose waker the backend saw, with `at
  FUNCTION (file:line)` when a `Wake` brought the waker's own stack; else `in a page
  fault` when the thread slept in one: its stack ends at the faulting instruction);
- blocking-pool thread (or `block_in_place` work) -> `pool` (detail `idle`/`busy`).

The effective role of an event is decided by its own stack first (a worker stack runs
`worker::run`, a pool stack runs `blocking::pool::Inner::run` without it: thread names
cannot tell them apart), then by what earlier stacks of the thread showed, then by the
role discovery gave. Threads that are neither are ignored (counted). An event with an
empty capture is counted (`offcpu_without_stack`) and makes no episode: without a stack
a park cannot be told from a blocker.

On-CPU (`CpuSample`): consecutive samples of one worker with the same `switch_seq` and the
same task (`StackInfo.task`) are one stretch, from the first sample's time to the last
sample's time + one period (cut at the switch-out that ends it; its `kernel_ns` is the
share of samples that interrupted kernel code), as long as the thread's
on-CPU time grew between them (`CpuSample.oncpu_ns`, when the backend knows it): a short
poll preempted between two samples is not a long one. A sample in a park or
between polls, a different task or switch_seq, any reported `OffCpuEvent` of the thread
(a run-queue wait too: that time is the sched_delay's, not cpu time; a poll preempted
that long continues as a new stretch) or the thread's exit ends it. When the backend cannot count switches (`switch_seq == -1`) samples continue a stretch
only while they are at most 1.5 periods apart. Stretches of at least the threshold become
`cpu` episodes whose stack is a sample of the most-sampled blocking function.

Time on CPU that the sampling timer could not observe (on-CPU time grew by more than 1.5
periods between two samples, though the timer fires every period, kernel mode included)
is left out of a stretch: the guest's vCPU was stopped by the hypervisor, which the guest
counts as running (counted: `unsampled_gaps`). Lost samples look the same and are left
out too, which can only shorten a stretch.

Polls of two tasks running the same async fn back to back show the same functions; when
the resolver can tell which task a sample polls (`poll_identity`, see hud.task_identity:
the bytes of Tokio's harness frame, which hold the task's Waker), two samples of
different tasks end a stretch too. Where it cannot tell (the future inlined into the
harness frame, a frame the walk or the stack copy does not reach), such polls still
merge into one stretch.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Optional

from hud.classify import Classifier, StackInfo, blocking_frame, display_function
from hud.model import (
    CLASS_KERNEL,
    CLASS_USER,
    KIND_BLOCKING,
    KIND_CPU,
    KIND_PARK,
    KIND_POOL,
    KIND_SCHED_DELAY,
    ROLE_BLOCKING,
    ROLE_OTHER,
    ROLE_WORKER,
    CpuSample,
    Episode,
    Frame,
    OffCpuEvent,
    Stack,
    StackCapture,
    Wake,
)

Resolver = Callable[[int, StackCapture], Stack]
# (pid, capture, its stack, its StackInfo) -> which task it polls (None: cannot tell).
PollIdentity = Callable[[int, StackCapture, Stack, StackInfo], Optional[int]]


def unresolved_stack(capture: StackCapture, reason: str) -> Stack:
    """Frames for a capture the resolver failed on: addresses kept, reason given."""
    ips = capture.fp_ips or ((capture.regs.ip,) if capture.regs is not None else (0,))
    return tuple(Frame(address=ip, reason=reason) for ip in ips)


@dataclass
class _Stretch:
    tid: int
    seq: int
    task: str
    first_ns: int
    last_ns: int
    period_ns: int
    first_oncpu: int = -1
    last_oncpu: int = -1
    samples: int = 1
    kernel: int = 0                # samples in kernel code on the thread's behalf
    ksites: Counter = field(default_factory=Counter)   # ... by kernel_site
    irq: int = 0                   # samples in interrupt work (see in_interrupt)
    poll: Optional[int] = None     # the polled task, once a sample has told
    stalled_ns: int = 0            # on CPU, yet unsampled: the vCPU was not running
    by_function: Counter = field(default_factory=Counter)
    stack_of: dict = field(default_factory=dict)

    def note(self, stack: Stack, info: StackInfo, kernel: bool) -> None:
        name = display_function(info.blocker.function if info.blocker else None)
        self.by_function[name] += 1
        self.stack_of.setdefault(name, stack)
        if not kernel:
            return
        if in_interrupt(stack):
            self.irq += 1
            return
        self.kernel += 1
        site = kernel_site(stack)
        if site:
            self.ksites[site] += 1


class EpisodeBuilder:
    """Turns events into episodes for one target; see the module docstring for the rules."""

    def __init__(self, resolve: Resolver, classifier: Classifier, threshold_ns: int,
                 poll_identity: Optional[PollIdentity] = None) -> None:
        self.resolve = resolve
        self.poll_identity = poll_identity
        self.classifier = classifier
        self.threshold_ns = threshold_ns
        self.roles: dict = {}      # tid -> role from discovery
        self.learned: dict = {}    # tid -> role shown by its own stacks
        self._open: dict = {}      # tid -> _Stretch
        self._wakes: dict = {}     # tid -> the Wake of its current blocked wait
        self.counts: Counter = Counter()
        self.first_resolve_error = ""

    # -- roles ----------------------------------------------------------------------------

    def set_role(self, tid: int, role: str) -> None:
        """What discovery says `tid` is (ROLE_WORKER / ROLE_BLOCKING / ROLE_OTHER)."""
        self.roles[tid] = role

    def role_of(self, tid: int) -> str:
        """The thread's role as known now (learned from stacks, else discovery)."""
        return self.learned.get(tid) or self.roles.get(tid, ROLE_OTHER)

    def _effective_role(self, tid: int, info: StackInfo) -> str:
        if info.pool:
            if not info.block_in_place:
                self.learned[tid] = ROLE_BLOCKING
            return ROLE_BLOCKING
        if info.worker:
            self.learned[tid] = ROLE_WORKER
            return ROLE_WORKER
        return self.role_of(tid)

    # -- stacks ---------------------------------------------------------------------------

    def stack_of(self, pid: int, capture: StackCapture) -> tuple[Stack, StackInfo]:
        """Resolve and classify a capture. A resolver failure is data, not an exception."""
        try:
            raw = self.resolve(pid, capture)
        except Exception as exc:  # a bug in a resolver must not end a profiling run
            self.counts["resolve_errors"] += 1
            if not self.first_resolve_error:
                self.first_resolve_error = f"{type(exc).__name__}: {exc}"
            raw = unresolved_stack(capture, "resolver failed")
        return self.classifier.classify(raw)

    # -- events ---------------------------------------------------------------------------

    def _waker(self, ev: OffCpuEvent, stack: Stack) -> Optional[tuple[str, str]]:
        """(`comm (tid N)`, where) of a futex wait whose waker the backend saw, else None;
        where is the waker's own frame when its stack was taken at the wake."""
        wake = self._wakes.pop(ev.tid, None)
        if not ev.waker_tid or ev.waker_tid == ev.tid or not _futex_wait(stack):
            return None
        where = ""
        if wake is not None and wake.start_ns == ev.start_ns and \
                wake.waker_tid == ev.waker_tid and not _empty(wake.stack):
            where = _place(self.stack_of(wake.pid, wake.stack)[0])
        return f"{ev.waker_comm or '?'} (tid {ev.waker_tid})", where

    def wake(self, ev: Wake) -> None:
        """Who woke a thread's current wait, and from where (kept for its OffCpuEvent)."""
        if len(self._wakes) > 4096:
            self._wakes.clear()   # waits whose OffCpuEvent never came (lost, exited)
        self._wakes[ev.tid] = ev

    def offcpu(self, ev: OffCpuEvent) -> tuple[list[Episode], str]:
        """Episodes an off-CPU event makes (closed stretches first) and the role used."""
        # Any switch-out long enough to be reported ends an on-CPU stretch; a long
        # run-queue wait too, so its time is the sched_delay's and never also cpu time.
        out: list[Episode] = list(self._close(ev.tid, ev.start_ns))
        if _empty(ev.stack):
            # Nothing tells a park from a blocker (a park the kernel side already knows
            # may arrive like this): counted, never guessed into a finding.
            self.counts["offcpu_without_stack"] += 1
            return out, self.role_of(ev.tid)
        stack, info = self.stack_of(ev.pid, ev.stack)
        role = self._effective_role(ev.tid, info)
        if role not in (ROLE_WORKER, ROLE_BLOCKING):
            self.counts["ignored_offcpu"] += 1
            return out, role
        if ev.duration_ns < self.threshold_ns or ev.duration_ns <= 0:
            self.counts["below_threshold"] += 1
            return out, role
        waker = None
        if role == ROLE_BLOCKING:
            kind, detail = KIND_POOL, ("idle" if info.pool_idle else "busy")
        elif ev.runnable:
            kind = KIND_PARK if info.park else KIND_SCHED_DELAY
            detail = _holder(ev) if kind == KIND_SCHED_DELAY else "runnable"
        else:
            kind = KIND_PARK if info.park else KIND_BLOCKING
            waker = self._waker(ev, stack) if kind == KIND_BLOCKING else None
            detail = WOKEN_BY + waker_text(waker) if waker is not None else \
                IN_PAGE_FAULT if ev.fault else ""
        out.append(Episode(kind, ev.tid, ev.start_ns, ev.end_ns, stack, detail, waker,
                           fault=ev.fault))
        return out, role

    def sample(self, ev: CpuSample) -> tuple[list[Episode], Stack, StackInfo, str]:
        """Feed a sample: closed cpu episodes, the sample's stack, signature and role."""
        stack, info = self.stack_of(ev.pid, ev.stack)
        role = self._effective_role(ev.tid, info)
        out: list[Episode] = []
        if role != ROLE_WORKER:
            out.extend(self._close(ev.tid, None))
            return out, stack, info, role
        cur = self._open.get(ev.tid)
        task = None if info.park else info.task
        period = max(1, ev.period_ns)
        poll = self._poll_of(ev, stack, info) if task is not None else None
        if cur is not None and task is not None and task == cur.task \
                and ev.time_ns >= cur.last_ns and self._continues(cur, ev, period):
            if poll is None or cur.poll is None or poll == cur.poll:
                if ev.oncpu_ns >= 0 and cur.last_oncpu >= 0 \
                        and ev.oncpu_ns - cur.last_oncpu > period + period // 2:
                    # The thread never left the CPU, yet the timer that samples it every
                    # period (in kernel mode too) did not fire: the guest's vCPU was not
                    # running (hypervisor steal), which the guest counts as on-CPU time.
                    # Not the poll's time: a stalled 1 ms poll must not look like 7 ms.
                    cur.stalled_ns += ev.oncpu_ns - cur.last_oncpu - period
                    self.counts["unsampled_gaps"] += 1
                cur.last_ns = ev.time_ns
                cur.last_oncpu = ev.oncpu_ns
                cur.samples += 1
                if cur.poll is None:
                    cur.poll = poll
                cur.note(stack, info, ev.kernel)
                return out, stack, info, role
            # The same async fn, but another task: the last poll ended, a new one began.
            self.counts["polls_told_apart"] += 1
        out.extend(self._close(ev.tid, None))
        if task is not None:
            st = _Stretch(ev.tid, ev.switch_seq, task, ev.time_ns, ev.time_ns, period,
                          ev.oncpu_ns, ev.oncpu_ns, poll=poll)
            st.note(stack, info, ev.kernel)
            self._open[ev.tid] = st
        return out, stack, info, role

    def _poll_of(self, ev: CpuSample, stack: Stack, info: StackInfo) -> Optional[int]:
        if self.poll_identity is None or info.poll_frames[0] < 0:
            return None
        try:
            poll = self.poll_identity(ev.pid, ev.stack, stack, info)
        except Exception:  # a bug here must cost the distinction, not the run
            self.counts["poll_identity_errors"] += 1
            return None
        self.counts["polls_identified" if poll is not None else "polls_unidentified"] += 1
        return poll

    @staticmethod
    def _continues(cur: _Stretch, ev: CpuSample, period: int) -> bool:
        if ev.switch_seq >= 0 and cur.seq >= 0:
            return ev.switch_seq == cur.seq
        return ev.time_ns - cur.last_ns <= period + period // 2

    def thread_exit(self, tid: int, time_ns: int) -> list[Episode]:
        """The thread is gone: close its stretch."""
        return self._close(tid, time_ns or None)

    def flush(self) -> list[Episode]:
        """End of the run: close every open stretch."""
        out: list[Episode] = []
        for tid in list(self._open):
            out.extend(self._close(tid, None))
        return out

    def _close(self, tid: int, at_ns: Optional[int]) -> list[Episode]:
        st = self._open.pop(tid, None)
        if st is None:
            return []
        end = st.last_ns + st.period_ns
        if at_ns is not None and st.last_ns <= at_ns < end:
            end = at_ns   # the thread switched out before the last period ran out
        if 0 <= st.first_oncpu <= st.last_oncpu:
            # Time on CPU, not wall time: a short poll preempted between two samples
            # (too briefly to be reported) spans the wait but did not use the CPU.
            oncpu = st.last_oncpu - st.first_oncpu - st.stalled_ns + (end - st.last_ns)
            end = min(end, st.first_ns + oncpu)
        if end - st.first_ns < self.threshold_ns:
            self.counts["short_stretches"] += 1
            return []
        name = st.by_function.most_common(1)[0][0]
        detail = f"{st.samples} samples"
        if st.kernel:
            detail += f", {st.kernel} {IN_KERNEL}"
        if st.irq:
            detail += f", {st.irq} {IN_INTERRUPTS}"
        kernel_ns = (end - st.first_ns) * st.kernel // st.samples
        sites = tuple((k, (end - st.first_ns) * n // st.samples)
                      for k, n in st.ksites.most_common())
        return [Episode(KIND_CPU, tid, st.first_ns, end, st.stack_of[name], detail,
                        kernel_ns=kernel_ns, kernel_sites=sites)]


def _empty(c: StackCapture) -> bool:
    return not (c.fp_ips or c.regs is not None or c.stack or c.kernel_ips)


def _holder(ev: OffCpuEvent) -> str:
    comm = ev.holder_comm or "?"
    return f"{comm} (tid {ev.holder_pid})" if ev.holder_pid else comm


WOKEN_BY = "woken by "
IN_PAGE_FAULT = "in a page fault"
IN_KERNEL = "in the kernel"
IN_INTERRUPTS = "in interrupts"
# Waits that only another task ends, with FUTEX_WAKE: the task current at the wake is
# then the one that released the lock, set the event, sent on the channel. Other waits
# (sleeps, disk and network I/O) end from interrupts, where the current task is
# whichever one the interrupt found running: naming it would mislead.
_FUTEX_WAITS = ("futex", "lll_lock_wait", "pthread_cond_wait", "pthread_cond_timedwait",
                "pthread_cond_clockwait", "pthread_mutex_lock", "pthread_rwlock",
                "sem_wait", "sem_timedwait", "sem_clockwait", "pthread_join")


def waker_text(waker: tuple[str, str]) -> str:
    """`comm (tid N) at function (file:line)` of an Episode.waker (its place when known)."""
    return f"{waker[0]} at {waker[1]}" if waker[1] else waker[0]


def _futex_wait(stack: Stack) -> bool:
    # The wait primitive sits between the leaf and the code that called it (the first
    # user frame, included: it may be its own futex wrapper).
    for f in stack:
        name = f.function
        if name is not None and any(k in name for k in _FUTEX_WAITS):
            return True
        if f.cls == CLASS_USER:
            break
    return False


# The scheduler's own frames, on top of every sleeping thread's kernel stack (and of a
# sample that lands in a context switch): they say that it sleeps, not why.
# (`schedule`, `__schedule`, `io_schedule`, `schedule_hrtimeout_range`, poll's
# `poll_schedule_timeout` ...).
_SCHEDULER = re.compile(r"(?:^|_)(?:schedule|cond_resched|finish_task_switch|context_switch)"
                        r"(?:$|[._])")
# Where interrupts come back on. A cpu-clock sample cannot fire while they are off, so
# it lands here, at the end of the caller's interrupts-off section (sampling skid): the
# caller is where the time went.
_IRQS_ON = re.compile(r"^_raw_(?:spin|read|write)_unlock_irq(?:restore)?$")


def kernel_site(stack: Stack) -> str:
    """The kernel function a thread sleeps or runs in, below the scheduler's frames
    (`do_nanosleep`, `futex_do_wait`, `folio_wait_bit_common`, `handle_userfault`,
    `clear_user_erms` ...), without the compiler's clone suffix (`.constprop.0`,
    `.isra.0`); "" when the stack has no named kernel frame."""
    for f in stack:
        if f.cls != CLASS_KERNEL:
            break
        name = f.function
        if name is not None and not _SCHEDULER.search(name) and not _IRQS_ON.match(name):
            return name.split(".", 1)[0] or name
    return ""


# Interrupt entries: x86_64 (`asm_sysvec_apic_timer_interrupt`, `sysvec_*`,
# `asm_common_interrupt`, `common_interrupt`) and aarch64 (`el0t_64_irq`, `el1h_64_irq`,
# `el0_interrupt`). Softirq work under one (`handle_softirqs` at `__irq_exit_rcu`) is
# the interrupt's too; but softirqs run from a system call (`__local_bh_enable_ip` in
# `sendto`: on loopback the sender delivers the packet) are that call's own work, as
# are exceptions (`asm_exc_page_fault`).
_INTERRUPT = re.compile(r"^(?:asm_)?(?:sysvec_|common_interrupt|spurious_interrupt)"
                        r"|^el[01]\w*_irq(?:_handler)?$|^el[01]_interrupt$")


def in_interrupt(stack: Stack) -> bool:
    """Is a sample's kernel code interrupt work (a timer or device interrupt, network
    processing in its softirq)? Such work runs in whatever thread the interrupt found
    on the CPU: it is not the thread's system call or fault."""
    for f in stack:
        if f.cls != CLASS_KERNEL:
            return False
        if f.function is not None and _INTERRUPT.search(f.function):
            return True
    return False


def kernel_sites_of(ep: Episode) -> tuple[tuple[str, int], ...]:
    """(kernel site, ns) of an episode, largest first: a cpu episode's from its kernel
    samples (Episode.kernel_sites), a wait's from its stack (the whole wait)."""
    if ep.kernel_sites:
        return ep.kernel_sites
    site = kernel_site(ep.stack)
    return ((site, ep.duration_ns),) if site else ()


def _place(stack: Stack) -> str:
    """`function (file:line)` of the frame that explains a waker's stack, or ""."""
    f = blocking_frame(stack)
    if f is None or f.function is None:
        return ""
    where = f"{f.file.rsplit('/', 1)[-1]}:{f.line}" if f.file and f.line else ""
    name = display_function(f.function)
    return f"{name} ({where})" if where else name
