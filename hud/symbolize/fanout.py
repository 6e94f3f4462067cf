"""Resolve a big cold batch on more than one CPU: slices of it in forked helper processes.

A cold batch of hundreds or thousands of addresses decodes much of a binary's DWARF, and
each unit's decoding is independent of the others: a helper forked after the file is
opened (symbol table and unit index shared copy-on-write) resolves a slice of the sorted
addresses and sends back the resolved levels, plain tuples of str/int/None, as one
marshal blob over a pipe. Nothing here is needed for correctness: a helper that cannot
start, dies or sends anything unreadable leaves its addresses to the parent, which
resolves them itself.

Forking is safe only in a process with one thread (another thread may hold a lock the
child would wait on forever), so a profiling session, whose readers run in threads,
never fans out; `hud addr2line` and scripts' big batches do.
"""
from __future__ import annotations

import marshal
import math
import os
import select
import signal
from collections.abc import Sequence
from typing import Callable, Optional

# Below this many addresses to decode, a helper saves too little to be worth a process
# (measured on the fixture, 2 CPUs: 100 addresses 0.135 -> 0.12 s, 250 0.165 -> 0.13 s,
# 1,000 0.27 -> 0.19 s, whole runs); each process gets at least half of it.
FANOUT_MIN = 256
# Each helper decodes the unit its slice starts in again and copies the pages it writes:
# past a few, that should outgrow what another CPU gives (a bound, not measured: the
# machines here have two).
MAX_JOBS = 4
# A helper's answer larger than this is not read (a sanity bound, ~20x a 20,000-address
# answer): its addresses are resolved by the parent instead.
MAX_ANSWER = 256 << 20
# How long a helper may go without sending anything before its slice is taken back
# (one stopped by a debugger or the scheduler would otherwise block the batch for ever).
STALL_LIMIT = 300.0


def usable_cpus() -> int:
    """CPUs this process may use: its affinity mask, bounded by a CPU quota of its
    cgroup (a container limited to 1.5 CPUs of 64 gets 2)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return cpus


def cgroup_cpu_quota(proc: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup"
                     ) -> Optional[float]:
    """The tightest CPU quota (in CPUs) on this process's cgroup or its ancestors, v2
    (cpu.max) or v1 (cpu.cfs_quota_us); None when there is none or it cannot be read."""
    try:
        with open(proc) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    best: Optional[float] = None
    for line in lines:
        fields = line.split(":", 2)
        if len(fields) != 3 or not fields[2].startswith("/"):
            continue
        _, controllers, path = fields
        if controllers == "":
            dirs = [root, root + "/unified"]
        elif "cpu" in controllers.split(","):
            dirs = [f"{root}/{controllers}", f"{root}/cpu"]
        else:
            continue
        parts = [p for p in path.split("/") if p and p not in (".", "..")]
        for depth in range(len(parts) + 1):
            sub = "/".join(parts[:depth])
            for base in dirs:
                got = _quota_at(f"{base}/{sub}" if sub else base, controllers == "")
                if got is not None and (best is None or got < best):
                    best = got
    return best


def _quota_at(directory: str, v2: bool) -> Optional[float]:
    try:
        if v2:
            with open(directory + "/cpu.max") as f:
                return parse_cpu_max(f.read())
        with open(directory + "/cpu.cfs_quota_us") as f:
            quota = f.read()
        with open(directory + "/cpu.cfs_period_us") as f:
            period = f.read()
    except OSError:
        return None
    return parse_cfs(quota, period)


def parse_cpu_max(text: str) -> Optional[float]:
    """cgroup v2 cpu.max ("QUOTA PERIOD", QUOTA "max" when unlimited) in CPUs."""
    fields = text.split()
    if len(fields) != 2 or fields[0] == "max":
        return None
    return parse_cfs(fields[0], fields[1])


def parse_cfs(quota: str, period: str) -> Optional[float]:
    """cgroup v1 cpu.cfs_quota_us / cpu.cfs_period_us (quota -1: unlimited) in CPUs."""
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def single_threaded() -> bool:
    """True when this process has exactly one thread (native ones included)."""
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def jobs_for(count: int, jobs: Optional[int]) -> int:
    """How many processes (the caller included) should share `count` addresses:
    1 unless the batch is big, helpers can be forked safely and CPUs are free."""
    if count < FANOUT_MIN or not hasattr(os, "fork"):
        return 1
    limit = usable_cpus() if jobs is None else jobs
    want = min(limit, MAX_JOBS, count // (FANOUT_MIN // 2))
    if want < 2 or not single_threaded():
        return 1
    return want


def split(todo: Sequence[int], parts: int) -> list[list[int]]:
    """`parts` contiguous slices of sorted distinct addresses, nearly equal in size."""
    n = len(todo)
    return [list(todo[n * k // parts:n * (k + 1) // parts]) for k in range(parts)]


class Helper:
    """A forked helper resolving the addresses from `lo` to `hi` (inclusive)."""

    def __init__(self, pid: int, fd: int, lo: int, hi: int) -> None:
        self.pid = pid
        self.fd = fd
        self.lo = lo
        self.hi = hi

    def covers(self, vaddr: int) -> bool:
        return self.lo <= vaddr <= self.hi

    def collect(self) -> dict[int, tuple]:
        """Wait for the helper's answer: {vaddr: levels}, empty if it failed."""
        chunks = []
        size = 0
        whole = False
        try:
            while True:
                ready, _, _ = select.select([self.fd], [], [], STALL_LIMIT)
                if not ready:
                    break
                chunk = os.read(self.fd, 1 << 20)
                if not chunk:
                    whole = True
                    break
                size += len(chunk)
                if size > MAX_ANSWER:
                    break
                chunks.append(chunk)
        except OSError:
            whole = False
        finally:
            os.close(self.fd)
        # End of file: the helper has closed its end by exiting, and is reaped at once.
        status = self._reap(kill=not whole)
        if not whole or status != 0:
            return {}
        try:
            got = marshal.loads(b"".join(chunks))
        except (EOFError, ValueError, TypeError):
            return {}
        return got if isinstance(got, dict) else {}

    def abandon(self) -> None:
        """Stop waiting for the helper (it is killed and reaped)."""
        try:
            os.close(self.fd)
        except OSError:
            pass
        self._reap(kill=True)

    def _reap(self, kill: bool) -> int:
        """The helper's exit status once it is gone (-1 if someone else reaped it)."""
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == 0:
                # Not reaped, so the pid is still our child's (a zombie keeps it): safe to
                # signal. Without `kill`, end of file came with its exit: it is going.
                if kill:
                    os.kill(self.pid, signal.SIGKILL)
                _, status = os.waitpid(self.pid, 0)
        except ChildProcessError:   # reaped by the caller's own os.wait()
            return -1
        return os.waitstatus_to_exitcode(status)


def start(work: Callable[[list[int]], dict], vaddrs: list[int]) -> Optional[Helper]:
    """Fork a helper that runs `work(vaddrs)` and sends back its dict; None when no
    process can be forked (the caller resolves the slice itself)."""
    if not vaddrs:
        return None
    try:
        r, w = os.pipe()
    except OSError:
        return None
    try:
        pid = os.fork()
    except OSError:
        os.close(r)
        os.close(w)
        return None
    if pid == 0:   # the helper: never returns into the caller's code
        status = 1
        try:
            os.close(r)
            data = marshal.dumps(work(vaddrs))
            view = memoryview(data)
            while view:
                view = view[os.write(w, view):]
            status = 0
        except BaseException:   # even Ctrl-C: the parent resolves what we could not
            pass
        finally:
            # No atexit handlers, no flush of stdio buffers inherited from the parent
            # (they would be written twice), no finalizers of the parent's objects.
            os._exit(status)
    os.close(w)
    return Helper(pid, r, vaddrs[0], vaddrs[-1])
