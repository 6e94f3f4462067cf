"""Folded stacks: outermost first, microseconds, parse back to the same totals."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from unit.analysis import tokio_shapes as shapes
from unit.analysis.helpers import MS, StackTable, off, sample

from hud.analysis import Analyzer
from hud.classify import classify_stack
from hud.export.folded import (
    ONCPU_ROOT,
    fold,
    fold_key,
    folded_items,
    folded_text,
    frame_name,
    parse_folded,
    write_folded,
)
from hud.model import KIND_BLOCKING, KIND_PARK, ROLE_WORKER, Episode, Frame, Target, Thread

TARGET = Target(1, shapes.APP, threads=(Thread(11, "w", ROLE_WORKER), Thread(12, "w",
                                                                              ROLE_WORKER)))


def run():
    t = StackTable()
    a = Analyzer(t, threshold_ms=5, target=TARGET)
    evs = [off(t, 11, 1000 + i * 100, 20 + i, shapes.sleep_blocker()) for i in range(5)]
    evs += [off(t, 11, 1050, 40, shapes.park_epoll_124())]
    evs += [sample(t, 12, 1000 + i, shapes.cpu_hog(line=120 + i % 3), seq=1, period_ms=1.01)
            for i in range(30)]
    a.feed_all(evs)
    a.close()
    return a


def test_lines_are_outermost_first_with_a_kind_root():
    a = run()
    lines = fold(folded_items(a.episodes, a.oncpu_stacks()))
    blocking = [k for k in lines if k.startswith("[blocking];")]
    assert len(blocking) == 1
    frames = blocking[0].split(";")
    assert frames[1] == "clone3" and frames[-1] == "clock_nanosleep"
    assert lines[blocking[0]] == sum(20 + i for i in range(5)) * 1000
    assert not any(k.startswith("[park]") for k in lines)
    assert not any(k.startswith("[cpu]") for k in lines)       # counted as on-cpu samples
    oncpu = sum(v for k, v in lines.items() if k.startswith(ONCPU_ROOT + ";"))
    assert oncpu == 30 * 1010


def test_parse_back_gives_the_same_lines_and_totals(tmp_path):
    a = run()
    lines = fold(folded_items(a.episodes, a.oncpu_stacks(), kinds=(KIND_BLOCKING, KIND_PARK)))
    path = tmp_path / "out.folded"
    write_folded(str(path), lines)
    back = parse_folded(path.read_text())
    assert back == lines
    per_root = {}
    for k, v in back.items():
        per_root[k.split(";", 1)[0]] = per_root.get(k.split(";", 1)[0], 0) + v
    assert per_root == {"[blocking]": 110_000, "[park]": 40_000, "[on-cpu]": 30_300}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5_000_000)), max_size=50))
def test_rounding_happens_once_per_line(items):
    stacks = [classify_stack(s, shapes.APP) for s in (
        shapes.sleep_blocker(), shapes.mutex_blocker(), shapes.cpu_hog(), shapes.pool_busy())]
    lines = fold(("[x]", stacks[i], ns) for i, ns in items)
    want = {}
    for i, ns in items:
        key = fold_key("[x]", stacks[i])
        want[key] = want.get(key, 0) + ns
    assert lines == {k: (v + 500) // 1000 for k, v in want.items() if (v + 500) // 1000}
    assert parse_folded(folded_text(lines)) == lines


def test_frame_names_stay_parseable():
    assert frame_name(Frame(1, "<[u8; 4] as core::fmt::Debug>::fmt")) == \
        "<[u8: 4] as core::fmt::Debug>::fmt"
    assert frame_name(Frame(1, "a\nb")) == "a b"
    assert frame_name(Frame(1, None, module="/lib/libfoo.so.1")) == "[libfoo.so.1]"
    assert frame_name(Frame(1, None)) == "[unknown]"
    assert frame_name(Frame(0xFFFFFFFF81000000, "schedule", cls="kernel")) == "schedule_[k]"
    weird = Episode(KIND_BLOCKING, 1, 0, 5 * MS, (Frame(1, "x y;z"), Frame(2, "main")))
    text = folded_text(fold(folded_items([weird])))
    assert parse_folded(text) == {"[blocking];main;x y:z": 5000}


def test_parse_rejects_garbage():
    for bad in ("a;b", "a;b x", "a;b -3", " 12"):
        with pytest.raises(ValueError):
            parse_folded(bad + "\n")
