"""Attachments through BPF links: one fd owns each attachment; closing it (or dying) detaches.

- tracepoint (TRACEPOINT prog): a PERF_TYPE_TRACEPOINT event + BPF_LINK_CREATE(BPF_PERF_EVENT).
  The link holds the perf event, so the perf fd is closed at once. The program runs for
  every task on every CPU as soon as it is attached, whatever the event's pid/cpu and
  enable state: filtering happens in BPF.
- raw tracepoint (RAW_TRACEPOINT prog): BPF_RAW_TRACEPOINT_OPEN(name). LINK_CREATE gives
  EINVAL for this prog type.
- tp_btf (TRACING prog with expected_attach_type BPF_TRACE_RAW_TP and an attach BTF id):
  BPF_RAW_TRACEPOINT_OPEN(NULL).
- perf_event (PERF_EVENT prog on cpu-clock): LINK_CREATE(BPF_PERF_EVENT) on each CPU's
  event; unlike tracepoints these obey IOC_ENABLE/IOC_DISABLE, so the link keeps the perf
  fd for that.
"""
from __future__ import annotations

import os
from typing import Optional, Protocol, Union

from hud.linux import bpf, perf_event, procfs, tracefs
from hud.linux.closing import Closing, close_fd
from kernel import uapi


class _HasFd(Protocol):
    fd: int


ProgRef = Union[int, _HasFd]


def _fd(prog: ProgRef) -> int:
    return prog if isinstance(prog, int) else prog.fd


class Link(Closing):
    """A BPF link fd, optionally with the perf event fd it is bound to (a context manager)."""

    def __init__(self, fd: int, kind: str, perf_fd: int = -1, cpu: int = -1) -> None:
        self.fd = fd
        self.kind = kind
        self.perf_fd = perf_fd
        self.cpu = cpu

    @property
    def info(self) -> bpf.LinkInfo:
        return bpf.link_info(self.fd)

    def enable(self) -> None:
        """Start a perf_event program's sampling (no-op without a perf fd)."""
        if self.perf_fd >= 0:
            perf_event.enable(self.perf_fd)

    def disable(self) -> None:
        if self.perf_fd >= 0:
            perf_event.disable(self.perf_fd)

    def close(self) -> None:
        """Detach: close the link, then the perf event it was bound to."""
        close_fd(self)
        close_fd(self, "perf_fd")

    def __repr__(self) -> str:
        return f"Link({self.kind}, fd={self.fd})"


def attach_tracepoint(prog: ProgRef, category: str, name: str) -> Link:
    """Attach a TRACEPOINT program to `category:name` (e.g. "sched", "sched_switch")."""
    tp_id = tracefs.tracepoint_id(category, name)
    attr = perf_event.PerfEventAttr(type=perf_event.PERF_TYPE_TRACEPOINT, config=tp_id,
                                    period_or_freq=1, sample_type=perf_event.PERF_SAMPLE_RAW)
    # A per-CPU event opened on one CPU is enough: the BPF program is attached to the
    # tracepoint itself and fires on every CPU.
    cpu = procfs.online_cpus()[0]
    pfd = perf_event.perf_event_open(attr, pid=-1, cpu=cpu,
                                     what=f"perf_event_open(tracepoint {category}:{name})")
    try:
        lfd = bpf.link_create(_fd(prog), pfd, uapi.BPF_PERF_EVENT)
    finally:
        os.close(pfd)  # the link holds the event now
    return Link(lfd, f"tracepoint {category}:{name}")


def attach_raw_tracepoint(prog: ProgRef, name: str) -> Link:
    """Attach a RAW_TRACEPOINT program to tracepoint `name` (e.g. "sched_switch")."""
    return Link(bpf.raw_tracepoint_open(name, _fd(prog)), f"raw_tp {name}")


def attach_tp_btf(prog: ProgRef) -> Link:
    """Attach a tp_btf TRACING program where its attach BTF id says."""
    return Link(bpf.raw_tracepoint_open(None, _fd(prog)), "tp_btf")


def attach_perf_event(prog: ProgRef, perf_fd: int, own_perf_fd: bool = True,
                      cookie: int = 0, cpu: int = -1) -> Link:
    """Attach a PERF_EVENT program to an open perf event (left disabled: call enable())."""
    try:
        lfd = bpf.link_create(_fd(prog), perf_fd, uapi.BPF_PERF_EVENT, cookie=cookie)
    except BaseException:
        if own_perf_fd:
            os.close(perf_fd)
        raise
    return Link(lfd, "perf_event", perf_fd if own_perf_fd else -1, cpu)


def attach_cpu_clock(prog: ProgRef, freq: int = 99, pid: int = -1,
                     cpus: Optional[list[int]] = None, enable: bool = True) -> list[Link]:
    """One cpu-clock event per CPU sampling at `freq` Hz, each linked to `prog`."""
    links: list[Link] = []
    try:
        for cpu in cpus if cpus is not None else procfs.online_cpus():
            attr = perf_event.PerfEventAttr(type=perf_event.PERF_TYPE_SOFTWARE,
                                            config=perf_event.PERF_COUNT_SW_CPU_CLOCK,
                                            period_or_freq=freq, freq=True, disabled=True)
            pfd = perf_event.perf_event_open(attr, pid=pid, cpu=cpu)
            links.append(attach_perf_event(prog, pfd, cpu=cpu))
        if enable:
            for link in links:
                link.enable()
    except BaseException:
        for link in links:
            link.close()
        raise
    return links
