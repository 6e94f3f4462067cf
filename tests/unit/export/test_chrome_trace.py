"""Chrome trace: X slices with ts/dur/pid/tid, per-track order, no overlap, names."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from unit.analysis import tokio_shapes as shapes
from unit.analysis.helpers import MS, StackTable, off, sample

from hud.analysis import Analyzer
from hud.classify import classify_stack
from hud.export.chrome_trace import build_trace, validate_trace, write_chrome_trace
from hud.model import (
    KIND_BLOCKING,
    KIND_CPU,
    KIND_PARK,
    ROLE_BLOCKING,
    ROLE_WORKER,
    Episode,
    Frame,
    Target,
    Thread,
)

TARGET = Target(4321, "/srv/my-app", "my-app", (
    Thread(11, "tokio-runtime-w", ROLE_WORKER), Thread(12, "tokio-runtime-w", ROLE_WORKER),
    Thread(21, "tokio-runtime-w", ROLE_BLOCKING)))
SLEEP = classify_stack(shapes.sleep_blocker(), shapes.APP)
HOG = classify_stack(shapes.cpu_hog(), shapes.APP)
PARK = classify_stack(shapes.park_epoll_124(), shapes.APP)


def run_episodes():
    t = StackTable()
    a = Analyzer(t, threshold_ms=5, target=TARGET)
    evs = []
    for i in range(4):
        evs.append(off(t, 11, 1000 + i * 100, 30, shapes.sleep_blocker()))
        evs.append(off(t, 11, 1000 + i * 100 + 30, 60, shapes.park_epoll_124()))
    evs += [sample(t, 12, 1000 + i, shapes.cpu_hog(), seq=1) for i in range(20)]
    evs.append(off(t, 12, 1019.5, 40, shapes.park_condvar_124()))   # cuts the last period
    evs.append(off(t, 21, 1000, 50, shapes.pool_busy()))
    evs.append(off(t, 21, 1050, 500, shapes.pool_idle()))
    a.feed_all(evs)
    a.close()
    return a


def xs(trace):
    return [e for e in trace["traceEvents"] if e["ph"] == "X"]


def test_structure_of_a_run():
    a = run_episodes()
    trace = build_trace(a.episodes, target=TARGET, threads=a.threads(), backend="ebpf",
                        threshold_ms=5)
    assert validate_trace(trace) == []
    slices = xs(trace)
    assert len(slices) == len(a.episodes)
    for e in slices:
        assert {"name", "ph", "ts", "dur", "pid", "tid", "cat", "args"} <= set(e)
        assert isinstance(e["ts"], int) and isinstance(e["dur"], int) and e["dur"] > 0
        assert e["pid"] == 4321
    names = {e["tid"]: e["args"]["name"] for e in trace["traceEvents"]
             if e["ph"] == "M" and e["name"] == "thread_name"}
    assert names == {11: "tokio-runtime-w (worker)", 12: "tokio-runtime-w (worker)",
                     21: "tokio-runtime-w (blocking pool)"}
    procs = [e for e in trace["traceEvents"] if e["ph"] == "M" and e["name"] == "process_name"]
    assert procs[0]["args"]["name"] == "my-app (pid 4321)"
    first = min(e["ts"] for e in slices)
    assert first == 0


def test_slice_args():
    a = run_episodes()
    trace = build_trace(a.episodes, target=TARGET)
    blocking = [e for e in xs(trace) if e["cat"] == KIND_BLOCKING]
    assert len(blocking) == 4
    b = blocking[0]
    assert b["name"] == "blocking: my_app::handlers::load"
    assert b["args"]["location"] == "/usr/src/app/src/handlers.rs:42"
    assert b["args"]["duration_ms"] == 30.0 and b["dur"] == 30_000
    assert b["args"]["stack"][0] == "clock_nanosleep"
    assert any(s.startswith("my_app::handlers::load::{{closure}} (/usr/src/app/src/handlers.rs:42")
               for s in b["args"]["stack"])
    parks = [e for e in xs(trace) if e["cat"] == KIND_PARK]
    assert parks and all(p["name"] == "park" and "stack" not in p["args"] for p in parks)
    (cpu,) = [e for e in xs(trace) if e["cat"] == KIND_CPU]
    assert cpu["dur"] == 19_500          # clamped at the switch-out, not +1 period


def test_a_waker_has_args_of_its_own():
    mutex = classify_stack(shapes.mutex_blocker(), shapes.APP)
    at = "my_app::cache::refresh (cache.rs:88)"
    eps = [Episode(KIND_BLOCKING, 11, 0, 30 * MS, mutex, f"woken by k (tid 7) at {at}",
                   ("k (tid 7)", at)),
           Episode(KIND_BLOCKING, 11, 40 * MS, 70 * MS, mutex, "woken by j (tid 8)",
                   ("j (tid 8)", "")),
           Episode(KIND_BLOCKING, 11, 80 * MS, 110 * MS, SLEEP)]
    a, b, c = [e["args"] for e in xs(build_trace(eps, target=TARGET))]
    assert (a["waker"], a["woken_at"]) == ("k (tid 7)", at)
    assert b["waker"] == "j (tid 8)" and "woken_at" not in b
    assert "waker" not in c and "detail" not in c and "kernel" not in c


def test_a_slice_says_where_in_the_kernel_it_waited_or_ran():
    kernel = tuple(Frame(0xFFFF_FFFF_8100_0000 + 16 * i, n, module="[kernel]")
                   for i, n in enumerate(("__schedule", "schedule", "folio_wait_bit",
                                          "file_write_and_wait_range", "do_fsync")))
    waits = classify_stack(kernel + shapes.sleep_blocker(), shapes.APP)
    eps = [Episode(KIND_BLOCKING, 11, 0, 30 * MS, waits),
           Episode(KIND_CPU, 11, 40 * MS, 70 * MS, HOG, "30 samples, 20 in the kernel",
                   kernel_ns=20 * MS, kernel_sites=(("read_iter_zero", 15 * MS),
                                                    ("_copy_to_iter", 5 * MS)))]
    a, b = [e["args"] for e in xs(build_trace(eps, target=TARGET))]
    assert a["kernel"] == "folio_wait_bit" and a["stack"][0] == "__schedule"
    assert b["kernel"] == "read_iter_zero"


def test_overlaps_are_clamped_and_empty_slices_dropped():
    eps = [Episode(KIND_CPU, 11, 100 * MS, 130 * MS, HOG),
           Episode(KIND_BLOCKING, 11, 125 * MS, 160 * MS, SLEEP),   # starts inside the cpu one
           Episode(KIND_PARK, 11, 140 * MS, 150 * MS, PARK)]        # wholly inside: dropped
    trace = build_trace(eps, target=TARGET)
    assert validate_trace(trace) == []
    got = [(e["cat"], e["ts"], e["dur"]) for e in xs(trace)]
    assert got == [(KIND_CPU, 0, 30_000), (KIND_BLOCKING, 30_000, 30_000)]
    assert trace["otherData"]["clamped"] == 2 and trace["otherData"]["dropped"] == 1


episode_lists = st.lists(st.tuples(st.sampled_from([11, 12, 21, 99]), st.integers(0, 10_000),
                                   st.integers(0, 3_000)), max_size=60)


@settings(max_examples=80, deadline=None)
@given(episode_lists)
def test_any_episode_soup_gives_a_valid_trace(items):
    eps = [Episode(KIND_BLOCKING, tid, start * 1000, (start + dur) * 1000 + 7, SLEEP)
           for tid, start, dur in items]
    trace = build_trace(eps, target=TARGET)
    assert validate_trace(trace) == []
    assert len(xs(trace)) + trace["otherData"]["dropped"] == len(eps)


def test_validator_can_fail():
    eps = [Episode(KIND_BLOCKING, 11, 0, 10 * MS, SLEEP),
           Episode(KIND_BLOCKING, 11, 20 * MS, 30 * MS, SLEEP)]
    good = build_trace(eps, target=TARGET)
    bad = json.loads(json.dumps(good))
    x = xs(bad)
    x[1]["ts"] = x[0]["ts"] + 5            # overlap
    assert any("overlaps" in e for e in validate_trace(bad))
    bad = json.loads(json.dumps(good))
    del xs(bad)[0]["dur"]
    assert any("missing dur" in e for e in validate_trace(bad))
    bad = json.loads(json.dumps(good))
    bad["traceEvents"] = [e for e in bad["traceEvents"] if e.get("name") != "thread_name"]
    assert any("thread_name" in e for e in validate_trace(bad))
    bad = json.loads(json.dumps(good))
    xs(bad)[0]["ts"], xs(bad)[1]["ts"] = xs(bad)[1]["ts"], xs(bad)[0]["ts"]
    assert any("backwards" in e for e in validate_trace(bad))
    assert validate_trace({"events": []})


def test_workers_without_episodes_still_get_a_named_track():
    trace = build_trace([], target=TARGET)
    names = [e for e in trace["traceEvents"] if e.get("name") == "thread_name"]
    assert {e["tid"] for e in names} == {11, 12}
    assert validate_trace(trace) == []


def test_write_round_trip_and_failure_leaves_nothing(tmp_path):
    a = run_episodes()
    path = tmp_path / "trace.json"
    trace = build_trace(a.episodes, target=TARGET)
    write_chrome_trace(str(path), trace)
    assert json.loads(path.read_text()) == trace
    bad = dict(trace, otherData={"x": object()})
    with pytest.raises(TypeError):
        write_chrome_trace(str(tmp_path / "t2.json"), bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trace.json"]
