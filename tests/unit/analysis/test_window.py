"""Rolling window: eviction by event time, equal to a fresh table of what is inside."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from unit.analysis import tokio_shapes as shapes
from unit.analysis.helpers import MS

from hud.analysis.findings import FindingsTable
from hud.analysis.hotspots import sample_keys
from hud.analysis.window import RollingWindow
from hud.classify import classify_stack
from hud.model import FINDING_KINDS, KIND_BLOCKING, KIND_CPU, KIND_PARK, Episode

STACKS = [classify_stack(s, shapes.APP) for s in (
    shapes.sleep_blocker(), shapes.sleep_blocker(line=43), shapes.mutex_blocker(),
    shapes.cpu_hog(), shapes.park_epoll_124())]
KINDS = [KIND_BLOCKING, KIND_BLOCKING, KIND_BLOCKING, KIND_CPU, KIND_PARK]


def test_eviction_by_event_time():
    w = RollingWindow(10_000 * MS)
    a = Episode(KIND_BLOCKING, 1, 0, 20 * MS, STACKS[0])
    b = Episode(KIND_BLOCKING, 1, 5000 * MS, 5050 * MS, STACKS[0])
    w.add_episode(a)
    w.add_episode(b)
    w.advance(10_019 * MS)
    assert w.findings.findings()[0].count == 2
    w.advance(10_021 * MS)                    # a ended 10.021 s ago: out
    (f,) = w.findings.findings()
    assert f.count == 1 and f.max_ms == 50
    w.advance(15_051 * MS)
    assert w.findings.findings() == [] and len(w) == 0


def test_hotspots_and_episode_sums_are_evicted_too():
    w = RollingWindow(1000 * MS)
    keys = sample_keys(STACKS[3])
    w.add_episode(Episode(KIND_PARK, 7, 0, 300 * MS, STACKS[4]))
    for i in range(10):
        w.add_sample(i * 100 * MS, keys, STACKS[3])
    assert w.hotspots.top(1)[0].samples == 10
    w.advance(1450 * MS)                      # samples at 0..400 ms and the park (300) leave
    assert w.hotspots.top(1)[0].samples == 5
    assert w.episode_ns[7][KIND_PARK] == 0


def test_late_items_never_break_the_order():
    w = RollingWindow(100 * MS)
    w.add_episode(Episode(KIND_BLOCKING, 1, 0, 500 * MS, STACKS[0]))
    w.add_episode(Episode(KIND_CPU, 1, 100 * MS, 200 * MS, STACKS[3]))   # closed late
    w.advance(550 * MS)
    assert len(w.findings.findings()) == 2    # stamped at 500 ms: still inside
    w.advance(601 * MS)
    assert w.findings.findings() == []


events = st.lists(
    st.tuples(st.integers(0, 4), st.integers(1, 3), st.integers(0, 400),
              st.integers(1, 60)),
    min_size=1, max_size=60)


@settings(max_examples=60, deadline=None)
@given(events, st.integers(20, 300))
def test_window_equals_a_fresh_table_of_its_contents(evs, span_ms):
    """Incremental add/evict gives what a recomputation over the window gives."""
    w = RollingWindow(span_ms * MS)
    seen = []
    end = 0
    for stack_i, tid, gap, dur in evs:
        end += gap * MS
        e = Episode(KINDS[stack_i], tid, end - dur * MS, end, STACKS[stack_i])
        w.add_episode(e)
        seen.append(e)
        w.advance(end)
        fresh = FindingsTable(FINDING_KINDS)
        for x in seen:
            if x.end_ns >= end - span_ms * MS:
                fresh.add(x)
        got = [(f.kind, f.function, f.line, f.count, f.total_ms, f.max_ms, f.p99_ms,
                f.workers, id(f.stack)) for f in w.findings.findings()]
        want = [(f.kind, f.function, f.line, f.count, f.total_ms, f.max_ms, f.p99_ms,
                 f.workers, id(f.stack)) for f in fresh.findings()]
        assert got == want
