"""The one place that wires a profiling run; also the public Python API (`hud.Profiler`).

    import hud
    with hud.Profiler(pid=1234, threshold_ms=5) as prof:
        prof.run(duration_s=10)            # or: for ep in prof.episodes(10): ...
    report = prof.report()                 # the hud-report/1 object (DESIGN.md §4)

A run: find the target, discover its threads, open a collector backend (eBPF, else
perf_event_open alone, else a recording to replay), then loop: poll events, resolve their
stacks (CFI unwinding + symbolization), feed the Analyzer, and tell the kernel side what
the analysis learned (which switch-out sites are Tokio parks, which threads to ignore).
Everything is released by `close()`, which every exit path reaches.
"""
from __future__ import annotations

import errno
import resource
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from hud.analysis import Analyzer, Hotspot, WorkerShare
from hud.analysis.window import RollingWindow
from hud.discovery import Discovery
from hud.errors import (
    HudError,
    PermissionDenied,
    ProgramRejected,
    TargetExited,
    TargetNotFound,
    Unsupported,
    UsageError,
)
from hud.linux import procfs
from hud.model import (
    CLASS_KERNEL,
    ROLE_BLOCKING,
    ROLE_OTHER,
    ROLE_WORKER,
    Episode,
    Finding,
    OffCpuEvent,
    Stack,
    StackCapture,
    Target,
    TargetExit,
    Thread,
    ThreadExit,
    ThreadSeen,
)
from hud.resolve import StackResolver
from hud.symbolize.diskcache import default_cache_dir

BACKENDS = ("auto", "ebpf", "perf")
DEFAULT_THRESHOLD_MS = 5.0
RESCAN_S = 0.5           # how often /proc/PID/task is re-read for new threads
SNAPSHOT_BUDGET_S = 3.0  # attach-time stack snapshots of blocked threads, at most
SNAPSHOT_MAX_THREADS = 512
IGNORE_AFTER = 3         # stacks of a thread showing no runtime before the kernel skips it


# Every CPU's cpu-clock event fires at the rate whatever runs there (0.8 us of BPF for
# another task's sample, ~12 us for a target thread's, docs/PERFORMANCE.md): 100 kHz
# livelocked this 2-vCPU VM (591 events in 36 s, the rest lost); 10 kHz costs a busy
# worker's CPU ~12% at most.
MAX_FREQ_HZ = 10_000


def check_freq(freq_hz: int) -> int:
    """`freq_hz` if it is a sampling rate hud accepts, else a UsageError."""
    if not 1 <= freq_hz <= MAX_FREQ_HZ:
        raise UsageError(f"--freq must be between 1 and {MAX_FREQ_HZ:,} Hz (got {freq_hz})",
                         "leave it out: the default resolves the threshold (401 Hz at 5 ms)")
    limit = procfs.perf_max_sample_rate()
    if limit is not None and freq_hz > limit:
        raise UsageError(f"--freq {freq_hz} is above this kernel's "
                         f"perf_event_max_sample_rate ({limit})", f"use --freq {limit} or less")
    return freq_hz


def default_freq(threshold_ms: float) -> int:
    """A sampling rate that resolves the threshold: at least two samples per threshold,
    at least 99 Hz, odd so that it does not beat with timers."""
    hz = max(99, int(2000 / max(threshold_ms, 0.5)) + 1)
    return min(hz | 1, 4999)


def resolve_target(pid: Optional[int] = None, process: Optional[str] = None) -> Target:
    """The Target for `--pid N` or a process name; a clear HudError when none or several
    match."""
    if pid is None and not process:
        raise UsageError("no target given", "name a process (hud my-app) or pass --pid N")
    if pid is None:
        assert process is not None
        if process.isdigit():
            pid = int(process)
        else:
            pids = procfs.find_pids_by_name(process)
            if not pids:
                raise TargetNotFound(f"no process named {process!r}",
                                     "check `pgrep -l` for the name, or pass --pid N")
            if len(pids) > 1:
                shown = ", ".join(str(p) for p in pids[:8]) + (" ..." if len(pids) > 8 else "")
                raise TargetNotFound(f"{len(pids)} processes are named {process!r}: {shown}",
                                     "pick one with --pid N")
            pid = pids[0]
    if not procfs.alive(pid):
        raise TargetNotFound(f"no process with pid {pid}", "check the pid with `ps -p`")
    exe = (procfs.exe(pid) or "").removesuffix(" (deleted)")
    return Target(pid=pid, exe=exe, comm=procfs.comm(pid) or "")


def check_readable(pid: int) -> None:
    """Refuse a target whose /proc/PID/maps this process cannot read (PermissionDenied,
    naming the likely cause as `hud doctor` does): without its memory map no stack can
    be unwound or named, and a run would end with nothing to show and no reason."""
    from hud.doctor.probes import open_errno
    err = open_errno(f"/proc/{pid}/maps")
    if err is None or err == errno.ENOENT:
        return          # readable, or gone: the start that follows says so
    from hud.doctor.explain import denied
    from hud.doctor.host import gather_facts
    why, hint = denied(err, gather_facts(), "ptrace")
    raise PermissionDenied(f"cannot read /proc/{pid}/maps: {why}", hint)


@dataclass(frozen=True)
class Status:
    """The status line: what runs, how fast, what it costs."""

    target: Target
    backend: str
    threshold_ms: float
    window_s: Optional[float]
    elapsed_s: float
    events: int
    events_per_s: float
    lost: int
    hud_cpu_pct: float
    workers_rule: str
    notice: str = ""
    ended: str = ""          # why the run ended ("" while it runs)


@dataclass(frozen=True)
class Snapshot:
    """Everything a live view shows, taken at one moment (cheap: aggregates are kept
    incrementally by the Analyzer)."""

    findings: tuple[Finding, ...]
    hotspots: tuple[Hotspot, ...]
    shares: tuple[WorkerShare, ...]
    timeline: tuple[Episode, ...]     # episodes of the window (or the last 60 s)
    threads: tuple[Thread, ...]
    status: Status
    now_ns: int = 0                   # event time of the latest event: the timeline's right edge


class Profiler:
    """A profiling run of one Tokio process; see the module docstring.

    `backend` is "auto" (eBPF, falling back to perf with a notice), "ebpf" or "perf";
    `replay` names a recording (hud-recording JSON lines) to analyze instead of a live
    process. `notice(text)` receives one-line notices (fallbacks, target exit).
    `symbol_cache` keeps resolved addresses on disk per build-id for the next run: True
    for the default directory (`hud.symbolize.diskcache.default_cache_dir`: honours
    HUD_CACHE_DIR and HUD_NO_CACHE), a path for that directory, False for none.
    `kernel_stacks` takes each blocked switch-out's kernel stack (eBPF) and keeps the
    kernel frames of samples, so findings say where in the kernel they waited or ran
    (+2-3 us per blocked capture under the demo's load, ~0.4% of one CPU:
    docs/PERFORMANCE.md); False takes none.
    `debuginfod` fetches missing debug files by build-id while attaching: a tuple of
    (server URLs, or () for DEBUGINFOD_URLS; optionally a progress callback taking one
    line of text; optionally a callable telling whether to give up); None fetches nothing.
    """

    def __init__(self, pid: Optional[int] = None, process: Optional[str] = None, *,
                 threshold_ms: float = DEFAULT_THRESHOLD_MS, window_s: Optional[float] = None,
                 workers: Optional[str] = None, freq_hz: Optional[int] = None,
                 backend: str = "auto", replay: Optional[str] = None,
                 record: Optional[str] = None, debug_dirs: tuple = (),
                 debug_files: tuple = (), stack_bytes: int = 32768,
                 notice: Optional[Callable[[str], None]] = None,
                 symbol_cache: Union[bool, str] = True, kernel_stacks: bool = True,
                 debuginfod: Optional[tuple] = None) -> None:
        if backend not in BACKENDS:
            raise UsageError(f"unknown backend {backend!r}", f"use one of {', '.join(BACKENDS)}")
        if threshold_ms <= 0:
            raise UsageError("the threshold must be positive", "e.g. --threshold 5")
        self.pid, self.process = pid, process
        self.threshold_ms = float(threshold_ms)
        self.window_s = window_s
        self.workers_prefix = workers
        self.freq_hz = (check_freq(freq_hz) if freq_hz is not None
                        else default_freq(self.threshold_ms))
        self.backend_choice = backend
        self.replay_path = replay
        self.record_path = record
        self.debug_dirs, self.debug_files = tuple(debug_dirs), tuple(debug_files)
        # (server URLs, progress callback, cancelled?): a debuginfod client for missing
        # debug files (DEBUGINFOD_URLS when no URL is given); None: no network at all.
        self.debuginfod = debuginfod
        self.stack_bytes = stack_bytes
        self.kernel_stacks = kernel_stacks
        if symbol_cache is True:
            self.symbol_cache_dir: Optional[str] = default_cache_dir()
        else:
            self.symbol_cache_dir = str(symbol_cache) if symbol_cache else None
        self._notice = notice or (lambda text: None)
        self.notices: list[str] = []
        self.backend_name = ""
        self.target: Optional[Target] = None
        self.analyzer: Optional[Analyzer] = None
        self.discovery: Optional[Discovery] = None
        self._collector: Any = None
        self._resolver: Any = None
        self._recorder: Any = None
        self._replay_events: Optional[Iterator] = None
        self._started = 0.0
        self._cpu0 = 0.0
        self._last_scan = 0.0
        self._other_verdicts: dict = {}
        self._ignored: set = set()
        self.snapshot_roles: dict = {}
        self._sites: dict = {}          # (tid, ip, sp) -> is a park
        self.ended = ""
        self._lock = threading.RLock()
        self._closed = False

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> Profiler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Find the target, open the backend, start collecting. Idempotent."""
        if self.analyzer is not None:
            return
        try:
            if self.replay_path:
                self._start_replay()
            else:
                self._start_live()
        except BaseException:
            self.close()
            raise
        self._started = time.monotonic()
        self._cpu0 = _own_cpu_s()

    def _start_replay(self) -> None:
        from hud.collect.replay import read_recording
        rec = read_recording(self.replay_path or "")
        self.target = rec.target
        self.backend_name = f"replay ({rec.meta.get('backend', '?')})"
        self.analyzer = Analyzer(rec.resolve, threshold_ms=self.threshold_ms,
                                 target=rec.target, window_s=self.window_s,
                                 poll_identity=rec.poll_identity)
        self._replay_events = iter(rec.events)
        if rec.bad_lines:
            self._say(f"{rec.bad_lines} unreadable line(s) in the recording skipped")

    def _start_live(self) -> None:
        self.target = resolve_target(self.pid, self.process)
        check_readable(self.target.pid)
        self.discovery = Discovery(self.target.pid, self.workers_prefix)
        threads, _ = self.discovery.scan()
        if not threads:
            raise TargetExited(f"process {self.target.pid} has no threads left",
                               "the target exited")
        self.target = Target(self.target.pid, self.target.exe, self.target.comm,
                             tuple(threads))
        fetcher = None
        if self.debuginfod is not None:
            from hud.symbolize.debuginfod import configured
            urls, *rest = self.debuginfod
            fetcher = configured(urls, rest[0] if rest else None,
                                 cancel=rest[1] if len(rest) > 1 else None)
        self._resolver = StackResolver(self.target.pid, self.debug_dirs, self.debug_files,
                                       debuginfod=fetcher,
                                       cache_dir=self.symbol_cache_dir,
                                       kernel_frames=self.kernel_stacks)
        self.analyzer = Analyzer(self._resolver, threshold_ms=self.threshold_ms,
                                 target=self.target, window_s=self.window_s)
        stripped = self._resolver.unnamed_executable(self.target.exe)
        if stripped:
            # Parks are told from blockers by Tokio's function names: without any, a
            # worker idle in its driver is one more wait. Said now, kept in the report.
            self._say(f"{stripped} is stripped: its frames have no names, so idle "
                      "workers may show as blocked; pass --target with the unstripped "
                      "build, or --debug-file")
        self._snapshot_roles(threads)
        if not any(t.role == ROLE_WORKER for t in self.target.threads):
            self._say(f"no thread of pid {self.target.pid} ({self.target.comm}) looks like a "
                      f"Tokio worker yet; watching its {len(threads)} thread(s) for one")
        self._collector = self._open_backend()
        if self.record_path:
            from hud.collect.replay import RecordingWriter
            self._recorder = RecordingWriter(self.record_path, self.target,
                                             meta=self._meta(), resolve=self._resolver,
                                             poll_of=self._poll_of)

    def _snapshot_roles(self, threads: list[Thread]) -> None:
        """Decide roles from each blocked thread's stack at attach time: idle workers may
        not leave the CPU again for a long time, and names cannot tell workers from the
        blocking pool (nor find a current_thread runtime's block_on thread)."""
        assert self.target is not None and self.analyzer is not None
        deadline = time.monotonic() + SNAPSHOT_BUDGET_S
        roles = {}
        for t in threads[:SNAPSHOT_MAX_THREADS]:
            if time.monotonic() > deadline:
                break
            got = self._resolver.blocked_stack(self.target.pid, t.tid)
            if got is None:
                continue
            stack, complete = got
            _, info = self.analyzer.classifier.classify(stack)
            if info.worker:
                role = ROLE_WORKER
            elif info.pool:
                role = ROLE_BLOCKING
            elif complete and t.role == ROLE_OTHER:
                role = "ignore"     # a whole stack without a runtime: not Tokio's
            else:
                continue
            roles[t.tid] = role
        updated = []
        for t in threads:
            role = roles.get(t.tid)
            if role is None:
                updated.append(t)
                continue
            nt = Thread(t.tid, t.name, ROLE_OTHER if role == "ignore" else role, t.runtime)
            if role == "ignore":
                self._ignored.add(t.tid)
            updated.append(nt)
            self.analyzer.set_thread(nt)
            assert self.discovery is not None
            self.discovery.threads[t.tid] = nt
        self.target = Target(self.target.pid, self.target.exe, self.target.comm,
                             tuple(updated))
        self.snapshot_roles = roles

    def _open_backend(self) -> Any:
        assert self.target is not None
        kw = dict(threshold_ns=int(self.threshold_ms * 1e6), freq=self.freq_hz,
                  stack_bytes=self.stack_bytes)
        if self.backend_choice in ("auto", "ebpf"):
            try:
                from hud.collect.ebpf import EbpfCollector
                # The collector's default depth, or none at all.
                more = {} if self.kernel_stacks else {"kernel_depth": 0}
                col = EbpfCollector(self.target.pid, **kw, **more)
                for t in self.target.threads:
                    col.set_role(t.tid, "ignore" if t.tid in self._ignored else t.role)
                col.open()
                self.backend_name = "ebpf"
                return col
            except (PermissionDenied, Unsupported, ProgramRejected) as exc:
                if self.backend_choice == "ebpf":
                    raise
                self._say(f"eBPF unavailable ({exc.message}); using the perf backend")
        from hud.collect.perf import PerfCollector
        col = PerfCollector(self.target.pid, **kw)
        for t in self.target.threads:
            col.set_role(t.tid, "ignore" if t.tid in self._ignored else t.role)
        (col.open if hasattr(col, "open") else col.start)()
        self.backend_name = "perf"
        return col

    def close(self) -> None:
        """Release every kernel object and file; safe to call more than once."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for obj in (self._collector, self._recorder, self._resolver):
                if obj is not None:
                    try:
                        obj.close()
                    except Exception:  # closing must reach every object
                        pass
            self._collector = None
            if self.analyzer is not None:
                self.analyzer.close()

    # -- the loop -----------------------------------------------------------------------------

    def step(self, timeout_s: float = 0.1) -> list[Episode]:
        """Poll the backend once and analyze what arrived; the episodes completed."""
        if self.analyzer is None:
            self.start()
        assert self.analyzer is not None
        if self.ended:
            return []
        if self._replay_events is not None:
            return self._step_replay()
        now = time.monotonic()
        if now - self._last_scan >= RESCAN_S:
            self._last_scan = now
            self._rescan()
            if self.ended:
                return self.analyzer.close()
        events = self._collector.poll(timeout_s)
        out: list[Episode] = []
        with self._lock:
            for ev in events:
                if self._recorder is not None:
                    self._recorder.write(ev)
                eps = self.analyzer.feed(ev)
                out.extend(eps)
                if isinstance(ev, OffCpuEvent):
                    self._learn(ev, eps)
                elif isinstance(ev, TargetExit):
                    self._end("the target exited")
        return out

    def _step_replay(self) -> list[Episode]:
        assert self.analyzer is not None and self._replay_events is not None
        out: list[Episode] = []
        with self._lock:
            for _ in range(2000):
                ev = next(self._replay_events, None)
                if ev is None:
                    self._end("end of the recording")
                    out.extend(self.analyzer.close())
                    break
                out.extend(self.analyzer.feed(ev))
                if isinstance(ev, TargetExit):
                    self._end("the target exited (in the recording)")
                    out.extend(self.analyzer.close())
                    break
        return out

    def _rescan(self) -> None:
        assert self.discovery is not None and self.analyzer is not None
        if not procfs.alive(self.discovery.pid):
            self._end("the target exited")
            return
        changed, gone = self.discovery.scan()
        now_ns = time.monotonic_ns()
        with self._lock:
            for t in changed:
                self.analyzer.feed(ThreadSeen(t.tid, t.name, now_ns))
                self.analyzer.set_thread(t)
                self._collector.set_role(t.tid, t.role)
                if self._recorder is not None:
                    self._recorder.write(t)
            for tid in gone:
                self.analyzer.feed(ThreadExit(tid, now_ns))

    def _learn(self, ev: OffCpuEvent, eps: list[Episode]) -> None:
        """Feed back to the kernel side what the analysis of one event taught: is this
        switch-out site (tid, user ip, sp) a Tokio park? Parks then cost one map lookup;
        other sites stop being probed below the threshold."""
        assert self.analyzer is not None
        regs = ev.stack.regs
        if regs is None or not ev.stack.stack:
            return
        key = (ev.tid, regs.ip, regs.sp)
        if key not in self._sites:
            # Resolution is cached per capture: this costs nothing for events the
            # analyzer has just resolved.
            stack, info = self.analyzer.builder.stack_of(ev.pid, ev.stack)
            if info.park or info.pool_idle:
                # An idle blocking-pool thread waits for work like a worker parks:
                # neither is ever a finding, so neither needs a stack copy.
                self._sites[key] = True
                self._collector.mark_park(*key)
            elif any(f.resolved and f.cls != CLASS_KERNEL for f in stack) and \
                    (info.worker or info.pool):
                self._sites[key] = False
                mark = getattr(self._collector, "mark_not_park", None)
                if mark is not None:
                    mark(*key)
        if ev.tid in self._ignored:
            return
        if self.analyzer.role_of(ev.tid) == ROLE_OTHER:
            n = self._other_verdicts.get(ev.tid, 0) + 1
            self._other_verdicts[ev.tid] = n
            if n >= IGNORE_AFTER:
                self._ignored.add(ev.tid)
                self._collector.set_role(ev.tid, "ignore")

    def _end(self, why: str) -> None:
        if not self.ended:
            self.ended = why
            self._say(why)

    def _say(self, text: str) -> None:
        self.notices.append(text)
        self._notice(text)

    def run(self, duration_s: Optional[float] = None,
            stop: Optional[threading.Event] = None,
            on_snapshot: Optional[Callable[[Snapshot], None]] = None,
            every_s: float = 0.5,
            on_status: Optional[Callable[[Status], None]] = None) -> dict:
        """Profile until `duration_s`, `stop` is set, or the target exits; the report.

        `on_snapshot` gets a full Snapshot every `every_s` (for live views); `on_status`
        only the cheap Status line (for progress output)."""
        self.start()
        deadline = None if duration_s is None else time.monotonic() + duration_s
        next_snap = time.monotonic() + every_s
        while not self.ended:
            if stop is not None and stop.is_set():
                break
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            self.step(min(0.1, max(0.0, (deadline - now) if deadline else 0.1)))
            if (on_snapshot or on_status) and time.monotonic() >= next_snap:
                next_snap = time.monotonic() + every_s
                if on_snapshot is not None:
                    on_snapshot(self.snapshot())
                if on_status is not None:
                    on_status(self.status())
        self.finish()
        return self.report()

    def episodes(self, duration_s: Optional[float] = None) -> Iterator[Episode]:
        """Live iteration: every episode (findings' and parks') as it completes."""
        self.start()
        deadline = None if duration_s is None else time.monotonic() + duration_s
        while not self.ended and (deadline is None or time.monotonic() < deadline):
            yield from self.step(0.1)
        yield from self.finish()

    def finish(self) -> list[Episode]:
        """Drain what the kernel side still holds and close open stretches."""
        out: list[Episode] = []
        if self._collector is not None and not self._closed:
            try:
                out.extend(self.step(0.0))
            except HudError:
                pass
        with self._lock:
            if self.analyzer is not None:
                out.extend(self.analyzer.close())
        if not self.ended:
            self.ended = "stopped"
        return out

    # -- live controls ------------------------------------------------------------------------

    def set_threshold(self, threshold_ms: float) -> None:
        """Change the threshold live: new episodes use it (kernel side and analysis)."""
        threshold_ms = max(0.5, float(threshold_ms))
        with self._lock:
            self.threshold_ms = threshold_ms
            if self.analyzer is not None:
                self.analyzer.threshold_ns = int(threshold_ms * 1e6)
                self.analyzer.builder.threshold_ns = int(threshold_ms * 1e6)
            if self._collector is not None and hasattr(self._collector, "set_threshold"):
                self._collector.set_threshold(int(threshold_ms * 1e6))

    def set_window(self, window_s: Optional[float]) -> None:
        """Change the rolling window live (None: the whole run). The new window is refilled
        from the kept episodes; its on-CPU hotspots fill up as new samples arrive."""
        if window_s is not None and window_s <= 0:
            raise UsageError("the window must be positive", "e.g. --window 10")
        with self._lock:
            self.window_s = window_s
            a = self.analyzer
            if a is None:
                return
            if window_s is None:
                a.window = None
                return
            win = RollingWindow(int(window_s * 1e9))
            edge = a.end_ns - win.span_ns
            recent = []
            for ep in reversed(a.episodes):   # completion order: the same cut as snapshot()
                if ep.end_ns < edge:
                    break
                recent.append(ep)
            for ep in reversed(recent):
                win.add_episode(ep)
            win.advance(a.end_ns)
            a.window = win

    # -- results ------------------------------------------------------------------------------

    def saw_runtime(self) -> bool:
        """Has any thread shown itself to be a Tokio worker (by name or by its stacks)?
        False after a run means its empty findings measured nothing."""
        with self._lock:
            a = self.analyzer
            return a is not None and bool(a.episodes or a.workers())

    def findings(self, window: bool = False) -> list[Finding]:
        """Findings ranked by total time (the rolling window's with window=True)."""
        assert self.analyzer is not None
        with self._lock:
            return self.analyzer.findings(window=window and self.window_s is not None)

    def snapshot(self, timeline_s: float = 60.0) -> Snapshot:
        """What a live view shows now."""
        assert self.analyzer is not None and self.target is not None
        a = self.analyzer
        with self._lock:
            win = self.window_s is not None
            span = self.window_s or timeline_s
            since = a.end_ns - int(span * 1e9)
            recent = []
            for ep in reversed(a.episodes):
                if ep.end_ns < since:
                    break
                recent.append(ep)
            recent.reverse()
            return Snapshot(findings=tuple(a.findings(window=win)),
                            hotspots=tuple(a.hotspots(20, window=win)),
                            shares=tuple(a.shares(window=win)),
                            timeline=tuple(recent), threads=tuple(a.threads()),
                            status=self.status(), now_ns=a.end_ns)

    def status(self) -> Status:
        assert self.analyzer is not None and self.target is not None
        elapsed = max(1e-9, time.monotonic() - self._started) if self._started else 0.0
        st = self.analyzer.stats()
        blost = self._backend_stats().get("lost", 0)
        blost = sum(blost.values()) if isinstance(blost, dict) else int(blost or 0)
        lost = max(st["lost"], blost)
        cpu = (_own_cpu_s() - self._cpu0) / elapsed * 100 if elapsed else 0.0
        return Status(target=self.target, backend=self.backend_name,
                      threshold_ms=self.threshold_ms, window_s=self.window_s,
                      elapsed_s=elapsed, events=st["events"],
                      events_per_s=st["events"] / elapsed if elapsed else 0.0, lost=lost,
                      hud_cpu_pct=cpu,
                      workers_rule=self.discovery.describe() if self.discovery else "",
                      notice=self.notices[-1] if self.notices else "", ended=self.ended)

    def _backend_stats(self) -> dict:
        if self._collector is None or not hasattr(self._collector, "stats"):
            return {}
        try:
            return dict(self._collector.stats())
        except HudError:
            return {}

    def _poll_of(self, pid: int, capture: StackCapture, frames: Stack) -> Optional[int]:
        """Which task poll a capture is in, from the frames the recorder just resolved
        (classified here, cached per stack): kept in the recording, since a replay has
        no stack bytes to tell it from."""
        if self.analyzer is None or self._resolver is None:
            return None
        try:
            stack, info = self.analyzer.classifier.classify(frames)
            return self._resolver.poll_identity(pid, capture, stack, info)
        except Exception:  # the recording loses a distinction, never an event
            return None

    def _meta(self) -> dict:
        return {"backend": self.backend_name, "threshold_ms": self.threshold_ms,
                "freq_hz": self.freq_hz}

    def report(self) -> dict:
        """The hud-report/1 object for the run so far."""
        from hud.export.report import report_from_analyzer
        assert self.analyzer is not None and self.target is not None
        with self._lock:
            stats = dict(self.analyzer.stats())
            backend = self._backend_stats()
            if backend:
                stats["backend"] = backend
                # The backend's Lost events already reached the analyzer; its own
                # total may also count losses it had not yet sent as events.
                blost = backend.get("lost", 0)
                blost = sum(blost.values()) if isinstance(blost, dict) else int(blost or 0)
                stats["lost"] = max(int(stats.get("lost", 0)), blost)
            if self._resolver is not None:
                stats["stacks"] = {**self._resolver.counts, "methods": self._resolver.methods}
                cache = self._resolver.symbolizer.cache
                if cache is not None:
                    # Loads so far; the run's new addresses are written at close.
                    stats["symbol_cache"] = {"dir": cache.directory, **cache.stats,
                                             "off": cache.reason if cache.disabled else ""}
            stats["hud_cpu_pct"] = round(self.status().hud_cpu_pct, 2)
            stats["notices"] = list(self.notices)
            if self.discovery is not None:
                stats["workers_rule"] = self.discovery.describe()
            duration = (time.monotonic() - self._started) if self._started and \
                not self.replay_path else self.analyzer.duration_s
            report = report_from_analyzer(self.analyzer, target=self.target,
                                          backend=self.backend_name or "none",
                                          duration_s=duration)
            report["stats"].update({k: v for k, v in stats.items()
                                    if k not in report["stats"] or k == "lost"})
            return report

    def export(self, path: str, fmt: str = "chrome") -> None:
        """Write the run so far: "chrome" (Perfetto), "report" (JSON) or "folded"."""
        assert self.analyzer is not None and self.target is not None
        from hud.export import export_run
        from hud.export.report import write_report
        with self._lock:
            if fmt == "report":
                write_report(path, self.report())
            else:
                export_run(path, fmt, self.analyzer, target=self.target,
                           backend=self.backend_name)


def _own_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime
