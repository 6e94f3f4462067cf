"""Resolve a big cold batch on more than one CPU: slices of it in forked helper processes.

A cold batch of thousands of addresses decodes most of a binary's DWARF, and each unit's
decoding is independent of the others: a helper forked after the file is opened (symbol
table and unit index shared copy-on-write) resolves a slice of the sorted addresses and
sends back the resolved levels, plain tuples of str/int/None, as one marshal blob over a
pipe. Nothing here is needed for correctness: a helper that cannot start, dies or sends
anything unreadable leaves its addresses to the parent, which resolves them itself.

Forking is safe only in a process with one thread (another thread may hold a lock the
child would wait on forever), so a profiling session, whose readers run in threads,
never fans out; `hud addr2line` and scripts' big batches do.
"""
from __future__ import annotations

import marshal
import os
import select
import signal
from collections.abc import Sequence
from typing import Callable, Optional

# Below this many addresses to decode, a helper saves too little to be worth a process
# (measured on the fixture, 2 CPUs: 100 addresses 0.135 -> 0.12 s, 250 0.165 -> 0.13 s,
# 1,000 0.27 -> 0.19 s, whole runs); each process gets at least half of it.
FANOUT_MIN = 256
# Each helper decodes the unit its slice starts in again: past a few, that and the
# page-table copies outgrow what another CPU gives.
MAX_JOBS = 4
# A helper's answer larger than this is not read (a sanity bound, ~20x a 20,000-address
# answer): its addresses are resolved by the parent instead.
MAX_ANSWER = 256 << 20
# How long a helper may go without sending anything before its slice is taken back
# (one stopped by a debugger or the scheduler would otherwise block the batch for ever).
STALL_LIMIT = 300.0


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


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
