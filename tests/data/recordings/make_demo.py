"""Generate demo.jsonl: a small, realistic, deterministic hud recording of a Tokio app.

    .venv/bin/python tests/data/recordings/make_demo.py [OUT]

8 s of `my-app` (Tokio 1.24 shapes): 4 workers that wake, run a short poll of
`my_app::serve` (sampled at 499 Hz) and mostly park again (epoll / condvar; parks are
emitted with stacks until 0.5 s, then counted by the kernel side as known parks, as
DESIGN.md §1 describes), and now and then block: `std::thread::sleep` 50 ms in `my_app::handlers::load` (the headline
finding), a contended `std::sync::Mutex` in `my_app::state::Cache::get`, a CPU-bound poll
in `my_app::handlers::hog`, and run-queue waits behind `stress-ng`. Two blocking-pool
threads (same thread name as workers) do `spawn_blocking` fsyncs and idle; a third pool
thread appears at 4 s. One `Lost` record at 6 s. Stacks are stored as frames (no binary
needed to replay). Same seed, same bytes: tests regenerate and compare.
"""
from __future__ import annotations

import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
for p in (ROOT, ROOT / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from unit.analysis import tokio_shapes as shapes  # noqa: E402

from hud.collect.replay import write_recording  # noqa: E402
from hud.model import (  # noqa: E402
    ROLE_BLOCKING,
    ROLE_OTHER,
    ROLE_WORKER,
    CpuSample,
    Lost,
    OffCpuEvent,
    StackCapture,
    Target,
    Thread,
    ThreadSeen,
    ThreadTimes,
)

PID = 4242
T0 = 1_000_000_000_000          # monotonic ns at the start of the recording
MS = 1_000_000
DURATION = 8_000 * MS
PERIOD = 2_004_008              # 499 Hz
LEARNED_AT = 500 * MS           # parks known to the kernel side from here on
WORKERS = (4243, 4244, 4245, 4246)
POOL = (4247, 4248)
LATE_POOL = 4249
S_SLEEPING, S_RUNNABLE = 1, 0

TARGET = Target(PID, "/usr/src/app/target/release/my-app", "my-app", (
    Thread(PID, "my-app", ROLE_OTHER),
    *(Thread(t, "tokio-runtime-w", ROLE_WORKER) for t in WORKERS),
    *(Thread(t, "tokio-runtime-w", ROLE_BLOCKING) for t in POOL)))


class Stacks:
    """Captures for stacks, and the resolver a live session would have been."""

    def __init__(self) -> None:
        self.frames: dict = {}
        self.caps: dict = {}

    def cap(self, stack) -> StackCapture:
        c = self.caps.get(stack)
        if c is None:
            ips = tuple(f.address for f in stack if not f.inlined)
            c = self.caps[stack] = StackCapture(fp_ips=ips)
            self.frames[c] = stack
        return c

    def __call__(self, pid, capture):
        return self.frames[capture]


def route_stack(line: int):
    return shapes.in_task([shapes.fr("my_app::handlers::route::{{closure}}",
                                     f"{shapes.SRC}/handlers.rs", line)])


def worker(tid: int, rng: random.Random, st: Stacks) -> list:
    evs: list = []
    t = rng.randrange(0, 3 * MS)
    seq = 0
    acc = {"oncpu": 0, "parked": 0, "offcpu": 0, "runq": 0}
    next_times = 1_000 * MS

    def run(dur: int, stack_fn) -> None:
        nonlocal t
        k = 0
        first = t + rng.randrange(0, PERIOD)
        while first + k * PERIOD < t + dur:
            evs.append(CpuSample(PID, tid, tid % 2, T0 + first + k * PERIOD, PERIOD,
                                 st.cap(stack_fn(k)), seq))
            k += 1
        acc["oncpu"] += dur
        t += dur

    def off(dur: int, stack, runnable=False, holder=("", 0), learned_park=False) -> None:
        nonlocal t, seq
        if not runnable:
            seq += 1
        if learned_park:
            acc["parked"] += dur
        else:
            acc["runq" if runnable else "offcpu"] += dur
            evs.append(OffCpuEvent(PID, tid, tid % 2, T0 + t, T0 + t + dur,
                                   S_RUNNABLE if runnable else S_SLEEPING, runnable,
                                   st.cap(stack), holder[1], holder[0]))
        t += dur

    while t < DURATION:
        # one wake-up: a poll of the server task, maybe preempted, maybe a CPU-bound
        # poll after it, then a switch-out (park, or a blocking call)
        run(rng.randrange(200_000, 2 * MS), lambda k: route_stack(20 + k % 3))
        if rng.random() < 0.05:
            holder = ("stress-ng", 9001) if rng.random() < 0.7 else ("kworker/1:2", 88)
            off(rng.randrange(6 * MS, 20 * MS), route_stack(21), runnable=True, holder=holder)
            run(rng.randrange(200_000, 1 * MS), lambda k: route_stack(22))
        if rng.random() < 0.03:
            run(rng.randrange(40 * MS, 80 * MS),
                lambda k: shapes.cpu_hog(line=120 + k % 3,
                                         helper="my_app::cpu::mix" if k % 4 == 0 else None))
        r = rng.random()
        if r < 0.10:
            off(50 * MS + rng.randrange(0, 300_000), shapes.sleep_blocker())
        elif r < 0.16:
            off(rng.randrange(6 * MS, 15 * MS), shapes.mutex_blocker())
        else:
            park = shapes.park_epoll_124() if rng.random() < 0.6 else shapes.park_condvar_124()
            off(rng.randrange(5 * MS, 120 * MS), park, learned_park=t >= LEARNED_AT)
        while t >= next_times and next_times <= DURATION:
            evs.append(ThreadTimes(tid, T0 + next_times, acc["oncpu"], acc["parked"],
                                   acc["offcpu"], acc["runq"]))
            next_times += 1_000 * MS
    return evs


def pool_thread(tid: int, start: int, rng: random.Random, st: Stacks) -> list:
    evs: list = []
    t = start
    while t < DURATION:
        busy = rng.randrange(10 * MS, 40 * MS)
        evs.append(OffCpuEvent(PID, tid, 1, T0 + t, T0 + t + busy, S_SLEEPING, False,
                               st.cap(shapes.pool_busy(line=77 + rng.randrange(0, 2)))))
        t += busy + rng.randrange(100_000, 500_000)
        idle = rng.randrange(100 * MS, 900 * MS)
        evs.append(OffCpuEvent(PID, tid, 1, T0 + t, T0 + t + idle, S_SLEEPING, False,
                               st.cap(shapes.pool_idle())))
        t += idle + rng.randrange(100_000, 500_000)
    return evs


def _time(ev) -> int:
    return getattr(ev, "end_ns", None) or getattr(ev, "time_ns", 0)


def events(st: Stacks) -> list:
    """The whole stream, in the order a collector delivers it."""
    rng = random.Random(6)
    evs: list = [ThreadSeen(t.tid, t.name, T0) for t in TARGET.threads]
    for tid in WORKERS:
        evs += worker(tid, rng, st)
    for tid in POOL:
        evs += pool_thread(tid, 0, rng, st)
    evs.append(ThreadSeen(LATE_POOL, "tokio-runtime-w", T0 + 4_000 * MS))
    evs.append(Thread(LATE_POOL, "tokio-runtime-w", ROLE_BLOCKING))
    late = pool_thread(LATE_POOL, 4_000 * MS + 1, rng, st)
    evs += late
    evs.append(Lost("ringbuf", 3, T0 + 6_000 * MS))
    order = {id(e): i for i, e in enumerate(evs)}
    # Thread updates carry no time: they go right before the late thread's first event.
    def key(e):
        if isinstance(e, Thread):
            return (T0 + 4_000 * MS, 0, order[id(e)])
        return (_time(e), 1, order[id(e)])
    return sorted(evs, key=key)


def main(out: str) -> None:
    st = Stacks()
    n = write_recording(out, TARGET, events(st), resolve=st,
                        meta={"backend": "synthetic", "threshold_ms": 5, "freq_hz": 499,
                              "generator": "tests/data/recordings/make_demo.py"})
    print(f"{out}: {n} events")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(HERE / "demo.jsonl"))
