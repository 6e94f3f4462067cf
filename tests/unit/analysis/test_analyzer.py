"""The Analyzer end to end on a realistic synthetic event stream."""
from __future__ import annotations

import math

import pytest
from unit.analysis import tokio_shapes as shapes
from unit.analysis.helpers import MS, StackTable, off, sample

from hud.analysis import BY_SELF, Analyzer
from hud.model import (
    KIND_BLOCKING,
    KIND_CPU,
    KIND_PARK,
    KIND_POOL,
    KIND_SCHED_DELAY,
    ROLE_BLOCKING,
    ROLE_WORKER,
    Lost,
    Target,
    TargetExit,
    Thread,
    ThreadSeen,
    ThreadTimes,
)

W1, W2, P1 = 101, 102, 201
TARGET = Target(100, shapes.APP, "my-app", (
    Thread(W1, "tokio-runtime-w", ROLE_WORKER), Thread(W2, "tokio-runtime-w", ROLE_WORKER),
    Thread(P1, "tokio-runtime-w", ROLE_BLOCKING)))


T0 = 5000   # ms: monotonic clocks never start at 0


def stream(t):
    """1 s of a small app: W1 sleeps in load() 5x 50 ms, parks; W2 runs a 30 ms hog,
    is preempted once; P1 does spawn_blocking fsyncs and idles."""
    evs = []
    for i in range(5):
        evs.append(off(t, W1, T0 + i * 200, 50, shapes.sleep_blocker()))
        evs.append(off(t, W1, T0 + i * 200 + 60, 130, shapes.park_epoll_124()))
    evs += [sample(t, W2, T0 + 100 + i, shapes.cpu_hog(line=120 + i % 2), seq=4)
            for i in range(30)]
    evs.append(off(t, W2, T0 + 130, 200, shapes.park_condvar_124()))
    evs.append(off(t, W2, T0 + 400, 12, shapes.mutex_blocker(), runnable=True,
                   holder=("stress-ng", 4242)))
    evs.append(off(t, P1, T0, 80, shapes.pool_busy()))
    evs.append(off(t, P1, T0 + 100, 800, shapes.pool_idle()))
    # in the order a collector delivers them: off-CPU events at switch-in
    return sorted(evs, key=lambda e: getattr(e, "end_ns", getattr(e, "time_ns", 0)))


@pytest.fixture
def run():
    t = StackTable()
    a = Analyzer(t, threshold_ms=5, target=TARGET, window_s=0.5)
    a.feed_all(stream(t))
    a.close()
    return a


def test_findings_of_the_run(run):
    fs = run.findings()
    assert [(f.kind, f.function) for f in fs] == [
        (KIND_BLOCKING, "my_app::handlers::load"),
        (KIND_CPU, "my_app::handlers::hog"),
        (KIND_SCHED_DELAY, "my_app::state::Cache::get")]
    b, c, s = fs
    assert (b.count, b.total_ms, b.max_ms, b.workers, b.line) == (5, 250.0, 50.0, (W1,), 42)
    assert (c.count, c.total_ms, c.workers) == (1, 30.0, (W2,))
    assert s.detail.startswith("CPU held by stress-ng (tid 4242)")


def test_parks_and_pool_work_never_become_findings(run):
    kinds = {f.kind for f in run.findings()}
    assert KIND_PARK not in kinds and KIND_POOL not in kinds
    assert all("save_blocking" not in f.function for f in run.findings())
    st = run.stats()
    assert st["episodes"][KIND_PARK] == 6 and st["episodes"][KIND_POOL] == 2


def test_pool_summary(run):
    p = run.pool_summary()
    assert p.threads == (P1,) and p.episodes == 2
    assert (p.busy_ms, p.idle_ms) == (80.0, 800.0)
    assert p.top[0].function == "my_app::handlers::save_blocking"
    d = p.to_dict()
    assert "stack" not in d["top"][0] and d["top"][0]["kind"] == KIND_POOL


def test_window_findings_are_the_recent_ones(run):
    # event time ends at 990 ms (W1's last park); window 0.5 s: episodes ending >= 490 ms
    fs = run.findings(window=True)
    (b,) = [f for f in fs if f.kind == KIND_BLOCKING]
    assert b.count == 2                       # the sleeps ending at 650 and 850 ms
    assert KIND_CPU not in {f.kind for f in fs}


def test_hotspots(run):
    (top,) = run.hotspots(1)
    assert top.function == "my_app::handlers::hog" and top.samples == 30
    assert math.isclose(top.share, 1.0)
    selfs = run.hotspots(5, by=BY_SELF)
    assert {h.function for h in selfs} == {"my_app::handlers::hog"}
    assert sum(h.samples for h in selfs) == 30


def test_stats_and_workers(run):
    st = run.stats()
    assert st["events"] == len(stream(StackTable()))
    assert st["samples"] == 30 and st["lost"] == 0
    assert [w.tid for w in run.workers()] == [W1, W2]
    assert math.isclose(run.duration_s, 0.99)


def test_shares_from_episodes(run):
    s = {x.tid: x for x in run.shares()}
    w1 = s[W1]
    assert w1.source == "episodes"
    assert math.isclose(w1.blocked * w1.total_ns, 250 * MS, rel_tol=1e-9)
    assert math.isclose(w1.parked * w1.total_ns, 650 * MS, rel_tol=1e-9)
    total = w1.running + w1.parked + w1.blocked + w1.waiting + w1.other
    assert math.isclose(total, 1.0)


def test_shares_from_thread_times_count_unlearned_parks_as_parked():
    t = StackTable()
    a = Analyzer(t, threshold_ms=5, target=TARGET)
    a.feed(ThreadTimes(W1, 0, oncpu_ns=0, parked_ns=0, offcpu_ns=0, runq_ns=0))
    a.feed(off(t, W1, 10, 100, shapes.park_epoll_124()))      # not yet learned by the kernel
    a.feed(ThreadTimes(W1, 1000 * MS, oncpu_ns=300 * MS, parked_ns=400 * MS,
                       offcpu_ns=250 * MS, runq_ns=50 * MS))
    (s,) = [x for x in a.shares() if x.tid == W1]
    assert s.source == "times"
    assert math.isclose(s.running, 0.3) and math.isclose(s.waiting, 0.05)
    assert math.isclose(s.parked, 0.5) and math.isclose(s.blocked, 0.15)


def test_learned_worker_and_role_updates():
    t = StackTable()
    a = Analyzer(t, threshold_ms=5)
    a.feed(ThreadSeen(7, "my-worker-0", 1))
    a.feed(off(t, 7, 0, 20, shapes.park_epoll_143()))
    assert [(w.tid, w.name) for w in a.workers()] == [(7, "my-worker-0")]
    a.feed(Thread(8, "custom-1", ROLE_WORKER))
    assert {w.tid for w in a.workers()} == {7, 8}
    a.feed(off(t, 8, 0, 20, shapes.truncated(shapes.sleep_blocker(), 5)))
    assert a.findings()[0].workers == (8,)


def test_findings_cache_is_invalidated_by_new_episodes():
    t = StackTable()
    a = Analyzer(t, threshold_ms=5, target=TARGET)
    a.feed(off(t, W1, 0, 20, shapes.sleep_blocker()))
    first = a.findings()
    assert first[0].count == 1
    a.feed(off(t, W1, 30, 20, shapes.park_epoll_124()))
    assert a.findings() == first
    a.feed(off(t, W1, 60, 20, shapes.sleep_blocker()))
    assert a.findings()[0].count == 2


def test_lost_and_target_exit():
    t = StackTable()
    a = Analyzer(t, threshold_ms=5, target=TARGET)
    a.feed_all([sample(t, W2, i, shapes.cpu_hog(), seq=1) for i in range(10)])
    a.feed(Lost("ringbuf", 7, 11 * MS))
    a.feed(Lost("stack copy", 2, 12 * MS))
    eps = a.feed(TargetExit(100, 13 * MS))
    assert [e.kind for e in eps] == [KIND_CPU]
    st = a.stats()
    assert st["lost"] == 9 and st["lost_by_source"] == {"ringbuf": 7, "stack copy": 2}
    assert st["target_exited"]


def test_episode_retention_is_bounded():
    t = StackTable()
    a = Analyzer(t, threshold_ms=5, target=TARGET, max_episodes=3)
    a.feed_all(off(t, W1, i * 100, 20, shapes.park_epoll_124()) for i in range(5))
    assert len(a.episodes) == 3 and a.stats()["episodes_dropped"] == 2


def test_oncpu_stacks_weigh_samples_by_period(run):
    total = sum(ns for _, ns in run.oncpu_stacks())
    assert total == 30 * MS
    assert len(run.oncpu_stacks()) == 2     # two distinct sampled lines


def test_window_query_needs_a_window():
    a = Analyzer(StackTable())
    with pytest.raises(ValueError):
        a.findings(window=True)
