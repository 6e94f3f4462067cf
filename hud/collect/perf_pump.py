"""A background thread that empties perf rings on a short timer into an inbox.

Every switch-out of a target thread arrives with its stack copy (perf has no in-kernel
threshold), so rings fill at megabytes per second under load, while the thread that polls
the collector also resolves stacks: the first symbolization of a new stack can take a
few hundred milliseconds. Reading the rings from this thread every `interval_s` (sooner
when a ring signals a quarter full) keeps the kernel from dropping records during such
stalls; the records wait, copied, in the inbox until the next poll. The inbox is bounded:
past `max_backlog` records the pump stops reading, the rings fill, and the kernel counts
what it drops (PERF_RECORD_LOST), so nothing is lost silently and memory stays bounded.
"""
from __future__ import annotations

import select
import threading
import time
from collections.abc import Sequence
from typing import Callable, Optional


class RingPump:
    """Calls `drain(inbox)` every `interval_s` (or when one of `fds` is readable) on its own
    thread; `take()` hands the records gathered so far to the caller.

    `drain` appends to the list it is given and returns nothing; it runs with no lock
    held, on the pump's thread only. An exception in it stops the pump; `take()` re-raises
    it in the caller's thread. `watch_fd` (a pidfd) readable means the target is gone:
    one last drain, then the pump stops and `gone` is set.
    """

    def __init__(self, drain: Callable[[list], None], fds: Sequence[int] = (),
                 watch_fd: int = -1, interval_s: float = 0.01,
                 max_backlog: int = 200_000, wake_backlog: int = 4_000) -> None:
        self._drain = drain
        self._fds = list(fds)
        self._watch_fd = watch_fd
        self.interval_s = interval_s
        self.max_backlog = max_backlog
        self.wake_backlog = wake_backlog
        self._lock = threading.Lock()
        self._inbox: list = []
        self._stop = threading.Event()
        self.wake = threading.Event()       # set when a poller should not wait any longer
        self.gone = False
        self.drained_at = 0                 # CLOCK_MONOTONIC ns at the start of the last pass
        self.passes = 0
        self.paused = 0                     # passes skipped because the inbox was full
        self.error: Optional[BaseException] = None
        self._hup: set = set()
        self._thread = threading.Thread(target=self._run, name="hud-perf-pump", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                gone = self._sleep()
                self.read_once()
                if gone:
                    self.gone = True
                    self.wake.set()
                    return
        except BaseException as e:  # handed to the poller by take()
            self.error = e
            self.wake.set()

    def _sleep(self) -> bool:
        """Wait one interval, less when a ring asks; True when the watched fd fired."""
        p = select.poll()
        for fd in self._fds:
            if fd not in self._hup:
                p.register(fd, select.POLLIN)
        if self._watch_fd >= 0:
            p.register(self._watch_fd, select.POLLIN)
        gone = False
        for fd, ev in p.poll(int(self.interval_s * 1000)):
            if fd == self._watch_fd:
                gone = True
            elif ev & (select.POLLHUP | select.POLLERR):
                # The thread a ring was opened on exited; the ring lives on for the others.
                self._hup.add(fd)
        return gone

    def read_once(self) -> None:
        """One pass: drain every ring into the inbox (unless the inbox is full)."""
        with self._lock:
            backlog = len(self._inbox)
        if backlog >= self.max_backlog:
            self.paused += 1
            self.wake.set()
            return
        start = time.monotonic_ns()
        batch: list = []
        self._drain(batch)
        with self._lock:
            self._inbox.extend(batch)
            self.drained_at = start
            self.passes += 1
            if len(self._inbox) >= self.wake_backlog:
                self.wake.set()

    def take(self) -> tuple[list, int]:
        """(records gathered since the last call, drained_at of the pass that gathered
        the last of them); re-raises an error of the pump."""
        if self.error is not None:
            err, self.error = self.error, None
            raise err
        with self._lock:
            batch, self._inbox = self._inbox, []
            self.wake.clear()
            return batch, self.drained_at

    def stop(self) -> None:
        """Stop the thread and wait for it (idempotent); the inbox stays readable."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
