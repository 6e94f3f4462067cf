"""Frozen dataclasses shared by every layer: threads, captured stacks, events, frames, findings.

Events are what a collector backend (eBPF or perf) yields, already decoded from kernel
records; frames and findings are what symbolization and analysis make of them. Times are
CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns and perf `use_clockid` agree on it).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional, Union

# Thread roles, decided by discovery.
ROLE_WORKER = "worker"
ROLE_BLOCKING = "blocking"   # Tokio blocking pool (spawn_blocking, fs, DNS off-load)
ROLE_OTHER = "other"

# Finding and episode kinds.
KIND_BLOCKING = "blocking"        # a worker off CPU, not parked, longer than the threshold
KIND_CPU = "cpu"                  # one task poll on CPU longer than the threshold
KIND_SCHED_DELAY = "sched_delay"  # a worker runnable but waiting for a CPU
KIND_PARK = "park"                # a worker idle in Tokio's park: not a finding
KIND_POOL = "pool"                # a blocking-pool thread off CPU: shown, never a finding
FINDING_KINDS = (KIND_BLOCKING, KIND_CPU, KIND_SCHED_DELAY)

# Frame classes (classify.py decides).
CLASS_USER = "user"
CLASS_THIRD_PARTY = "third-party"
CLASS_STD = "std"
CLASS_RUNTIME = "runtime"
CLASS_KERNEL = "kernel"
CLASS_UNKNOWN = "unknown"


@dataclass(frozen=True)
class Thread:
    """A thread of the target and what discovery decided it is."""

    tid: int
    name: str
    role: str = ROLE_OTHER
    runtime: int = 0  # which runtime it belongs to, when the target has several


@dataclass(frozen=True)
class Target:
    """The profiled process."""

    pid: int
    exe: str
    comm: str = ""
    threads: tuple[Thread, ...] = ()

    @property
    def workers(self) -> tuple[Thread, ...]:
        return tuple(t for t in self.threads if t.role == ROLE_WORKER)


@dataclass(frozen=True)
class UserRegs:
    """User-mode registers where a stack was captured.

    `fp` is rbp (x86_64) or x29 (aarch64); `lr` is x30 on aarch64 and 0 on x86_64.
    `extra` holds further registers as (DWARF register number, value) pairs when the
    capture had them.
    """

    arch: str  # "x86_64" | "aarch64"
    ip: int
    sp: int
    fp: int = 0
    lr: int = 0
    extra: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class StackCapture:
    """What the kernel side captured of a thread's user stack at one moment.

    `fp_ips` is the kernel's own frame-pointer walk (innermost first, zeros dropped);
    `stack` is a copy of user memory starting at `regs.sp`, for CFI unwinding.
    """

    fp_ips: tuple[int, ...] = ()
    regs: Optional[UserRegs] = None
    stack: bytes = b""
    kernel_ips: tuple[int, ...] = ()


@dataclass(frozen=True)
class OffCpuEvent:
    """A thread was off CPU from `start_ns` to `end_ns` (emitted only past the threshold).

    `stack` is the thread's own stack at switch-out. `runnable` is True when it left the
    CPU still runnable (preempted or yielded): the whole episode was run-queue wait.
    `holder_pid`/`holder_comm` name the task that took the CPU when this one was
    switched out (for run-queue waits: who held the CPU meanwhile). `waker_tid`/
    `waker_comm` name the task current when a blocked thread was woken (0 / "" when the
    backend did not see it): the thread that released a futex (the eBPF backend names
    only tasks inside a call that wakes futex waiters). `fault`: the thread slept in a
    page fault, not in a system call (its stack ends at the faulting instruction).
    """

    pid: int
    tid: int
    cpu: int
    start_ns: int
    end_ns: int
    state: int
    runnable: bool
    stack: StackCapture
    holder_pid: int = 0
    holder_comm: str = ""
    waker_tid: int = 0
    waker_comm: str = ""
    fault: bool = False

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns


@dataclass(frozen=True)
class CpuSample:
    """A timer sample of a thread on CPU.

    `switch_seq` counts the thread's voluntary switch-outs so far (-1 when the backend
    cannot tell): two samples with the same value were taken in one on-CPU stretch.
    `oncpu_ns` is the thread's on-CPU time so far (-1 when unknown): between two samples of
    one stretch it excludes the time the thread was preempted. `kernel`: the timer
    interrupted kernel code run for the thread (a system call, a fault, or interrupt
    work done in its time); its user stack is where it entered the kernel.
    """

    pid: int
    tid: int
    cpu: int
    time_ns: int
    period_ns: int
    stack: StackCapture
    switch_seq: int = -1
    oncpu_ns: int = -1
    kernel: bool = False


@dataclass(frozen=True)
class ThreadTimes:
    """Cumulative time accounting of one thread, as kept by the kernel side."""

    tid: int
    time_ns: int
    oncpu_ns: int = 0
    parked_ns: int = 0      # off CPU at a known park site
    offcpu_ns: int = 0      # off CPU elsewhere (blocked, or parks not yet learned)
    runq_ns: int = 0        # runnable but waiting for a CPU


@dataclass(frozen=True)
class ThreadSeen:
    """A thread of the target appeared (or was found at start) with this name."""

    tid: int
    name: str
    time_ns: int = 0


@dataclass(frozen=True)
class ThreadExit:
    tid: int
    time_ns: int = 0


@dataclass(frozen=True)
class Wake:
    """`waker_tid` (a thread of the target) woke `tid`, blocked since `start_ns`, at
    `time_ns`. Sent only for a blocked wait already past the threshold (its OffCpuEvent
    follows at the switch-in); `stack` is the waker's own, taken at the wake: where it
    released the lock, set the event, sent on the channel."""

    pid: int
    tid: int
    waker_tid: int
    waker_comm: str
    start_ns: int
    time_ns: int
    stack: StackCapture


@dataclass(frozen=True)
class Lost:
    """Records the kernel side could not deliver: never silent."""

    source: str   # e.g. "ringbuf", "perf cpu 1", "stack copy"
    count: int
    time_ns: int = 0


@dataclass(frozen=True)
class TargetExit:
    pid: int
    time_ns: int = 0


Event = Union[OffCpuEvent, CpuSample, ThreadTimes, ThreadSeen, ThreadExit, Lost, TargetExit,
              Wake]


@dataclass(frozen=True)
class Frame:
    """One symbolized frame; an address with inlines gives several, innermost first.

    `function` is the demangled path without the Rust hash suffix, or None when the
    address could not be resolved, in which case `reason` says why.
    """

    address: int
    function: Optional[str] = None
    file: Optional[str] = None
    line: Optional[int] = None
    column: Optional[int] = None
    inlined: bool = False
    module: Optional[str] = None
    cls: str = CLASS_UNKNOWN
    reason: Optional[str] = None

    @property
    def resolved(self) -> bool:
        return self.function is not None

    def to_dict(self) -> dict:
        return {"function": self.function if self.function is not None else "[unknown]",
                "file": self.file, "line": self.line, "inlined": self.inlined,
                "module": self.module, "class": self.cls, "address": f"0x{self.address:x}"}


Stack = tuple[Frame, ...]

# Frame is a plain frozen dataclass (no __slots__, no __post_init__): a new one can be
# made by filling __dict__ directly (with_class here, the symbolizer's make_frame).
# Checked here, beside the class, so a change to it cannot go unseen.
PLAIN_FRAME = not hasattr(Frame, "__slots__") and not hasattr(Frame, "__post_init__")


def with_class(frame: Frame, cls: str) -> Frame:
    """`frame` with class `cls`: dataclasses.replace, without its cost (a frozen
    dataclass's __init__ calls object.__setattr__ per field; ~1.2 us instead of ~4 us
    here, paid for every frame of every new stack)."""
    if not PLAIN_FRAME:
        return replace(frame, cls=cls)
    new = object.__new__(Frame)
    new.__dict__.update(frame.__dict__)
    new.__dict__["cls"] = cls
    return new


@dataclass(frozen=True)
class Episode:
    """One classified stretch of a thread's time, with the stack that explains it."""

    kind: str
    tid: int
    start_ns: int
    end_ns: int
    stack: Stack = ()
    detail: str = ""
    # A blocking episode's waker: (`comm (tid N)`, where it woke this one: `function
    # (file:line)`, or "" when its stack was not taken).
    waker: Optional[tuple[str, str]] = None
    # A cpu episode's share of its time in kernel code (from its samples), in ns.
    kernel_ns: int = 0
    # A blocking episode spent in a page fault (not a system call).
    fault: bool = False
    # A cpu episode's kernel time by the kernel function its samples ran in
    # (hud.analysis.episodes.kernel_site), in ns, largest first.
    kernel_sites: tuple[tuple[str, int], ...] = ()

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns


@dataclass(frozen=True)
class Finding:
    """Episodes of one kind grouped by their blocking function (first user frame)."""

    kind: str
    function: str
    file: Optional[str]
    line: Optional[int]
    count: int
    total_ms: float
    max_ms: float
    p99_ms: float
    workers: tuple[int, ...]
    stack: Stack = ()
    detail: str = ""
    extra: tuple[tuple[str, object], ...] = field(default=())

    def to_dict(self) -> dict:
        d = {"kind": self.kind, "function": self.function, "file": self.file,
             "line": self.line, "count": self.count, "total_ms": round(self.total_ms, 3),
             "max_ms": round(self.max_ms, 3), "p99_ms": round(self.p99_ms, 3),
             "workers": list(self.workers), "stack": [f.to_dict() for f in self.stack]}
        if self.detail:
            d["detail"] = self.detail
        d.update(dict(self.extra))
        return d
