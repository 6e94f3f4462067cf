"""Small recordings for the live view's empty and odd states, written on demand (same bytes
every time: fixed times, fixed stacks)."""
from __future__ import annotations

from pathlib import Path

from unit.analysis import tokio_shapes as shapes
from unit.analysis.helpers import MS, StackTable, off, sample

from hud.collect.replay import write_recording
from hud.model import ROLE_OTHER, ROLE_WORKER, Target, Thread, ThreadSeen, ThreadTimes

PID = 100
WORKERS = (101, 102)
T0 = 1_000 * MS


def _target(role: str = ROLE_WORKER, name: str = "tokio-runtime-w") -> Target:
    return Target(PID, "/usr/src/app/target/release/my-app", "my-app",
                  (Thread(PID, "my-app", ROLE_OTHER),
                   *(Thread(t, name, role) for t in WORKERS)))


def no_events(path: Path) -> Path:
    """Workers known from discovery, nothing happened yet."""
    write_recording(str(path), _target(), [], meta={"backend": "ebpf"})
    return path


def quiet(path: Path) -> Path:
    """Two workers that run short polls and park: no finding at all."""
    table = StackTable()
    events: list = [ThreadSeen(t, "tokio-runtime-w", T0) for t in WORKERS]
    for i in range(40):
        for tid in WORKERS:
            t = 1_000 + i * 50
            events.append(sample(table, tid, t, shapes.in_task([shapes.fr(
                "my_app::handlers::route::{{closure}}", f"{shapes.SRC}/handlers.rs", 20)]),
                seq=i))
            events.append(off(table, tid, t + 1, 45, shapes.park_epoll_124(), pid=PID))
    for tid in WORKERS:
        events.append(ThreadTimes(tid, 3_000 * MS, oncpu_ns=100 * MS, parked_ns=1_800 * MS,
                                  offcpu_ns=0, runq_ns=0))
    events.sort(key=lambda e: getattr(e, "end_ns", None) or getattr(e, "time_ns", 0))
    write_recording(str(path), _target(), events, resolve=table, meta={"backend": "ebpf"})
    return path


def no_workers(path: Path) -> Path:
    """A process whose threads neither carry Tokio's names nor show its scheduler."""
    table = StackTable()
    plain = (shapes.libc("clock_nanosleep"), shapes.fr("main", "/src/main.c", 10))
    events: list = [ThreadSeen(t, "app-thread", T0) for t in WORKERS]
    for i in range(10):
        for tid in WORKERS:
            events.append(off(table, tid, 1_000 + i * 100, 60, plain, pid=PID))
    events.sort(key=lambda e: getattr(e, "end_ns", None) or getattr(e, "time_ns", 0))
    write_recording(str(path), _target(ROLE_OTHER, "app-thread"), events, resolve=table,
                    meta={"backend": "perf"})
    return path


def one_function_two_lines(path: Path) -> Path:
    """my_app::handlers::load blocks at two different lines: two findings, one name."""
    table = StackTable()
    events: list = [ThreadSeen(t, "tokio-runtime-w", T0) for t in WORKERS]
    for i in range(6):
        line = 42 if i % 2 else 57
        events.append(off(table, WORKERS[0], 1_000 + i * 100, 20 + i,
                          shapes.sleep_blocker(line=line), pid=PID))
    write_recording(str(path), _target(), events, resolve=table, meta={"backend": "ebpf"})
    return path
