"""hud-report/1: schema, required keys and types, ranking, the validator itself."""
from __future__ import annotations

import copy
import json
import os

import pytest
from unit.analysis import tokio_shapes as shapes
from unit.analysis.helpers import StackTable, off, sample

from hud.analysis import Analyzer
from hud.errors import HudError
from hud.export.report import (
    SCHEMA,
    build_report,
    dumps_report,
    report_from_analyzer,
    validate_report,
    write_report,
)
from hud.model import ROLE_BLOCKING, ROLE_WORKER, Target, Thread

TARGET = Target(4321, "/usr/src/app/target/release/my-app", "my-app", (
    Thread(11, "tokio-runtime-w", ROLE_WORKER), Thread(12, "tokio-runtime-w", ROLE_WORKER),
    Thread(21, "tokio-runtime-w", ROLE_BLOCKING)))


def analyzer():
    t = StackTable()
    a = Analyzer(t, threshold_ms=5, target=TARGET, window_s=5)
    evs = [off(t, 11, 1000 + i * 100, 20 + i, shapes.sleep_blocker()) for i in range(5)]
    evs += [off(t, 12, 1000, 8, shapes.mutex_blocker())]
    evs += [sample(t, 12, 1100 + i, shapes.cpu_hog(), seq=2) for i in range(40)]
    evs += [off(t, 11, 2000, 50, shapes.park_epoll_124()), off(t, 21, 1000, 30, shapes.pool_busy())]
    evs += [off(t, 77, 1500, 9, shapes.park_epoll_143())]     # a worker discovery missed
    a.feed_all(evs)
    a.close()
    return a


@pytest.fixture
def report():
    return report_from_analyzer(analyzer(), target=TARGET, backend="ebpf", duration_s=10.0)


def test_required_shape(report):
    assert validate_report(report) == []
    assert report["schema"] == SCHEMA
    assert set(report) >= {"schema", "target", "backend", "threshold_ms", "duration_s",
                           "findings", "stats"}
    assert report["target"]["pid"] == 4321
    assert report["target"]["workers"] == [{"tid": 11, "name": "tokio-runtime-w"},
                                           {"tid": 12, "name": "tokio-runtime-w"},
                                           {"tid": 77, "name": ""}]
    assert report["backend"] == "ebpf" and report["threshold_ms"] == 5
    assert report["duration_s"] == 10.0
    assert {"events", "lost"} <= set(report["stats"])


def test_findings_content(report):
    fs = report["findings"]
    assert [f["total_ms"] for f in fs] == sorted((f["total_ms"] for f in fs), reverse=True)
    top = fs[0]
    assert (top["kind"], top["function"], top["line"], top["count"]) == \
        ("blocking", "my_app::handlers::load", 42, 5)
    assert top["total_ms"] == 110.0 and top["max_ms"] == 24.0 and top["p99_ms"] == 24.0
    assert top["workers"] == [11]
    user = [fr for fr in top["stack"] if fr["class"] == "user"]
    assert user[0]["function"] == "my_app::handlers::load::{{closure}}"
    assert {fr["class"] for fr in top["stack"]} >= {"user", "std", "runtime"}
    kinds = [f["kind"] for f in fs]
    assert "park" not in kinds and "pool" not in kinds
    assert json.loads(dumps_report(report)) == report


def test_extras_are_there(report):
    assert {w["tid"] for w in report["workers"]} == {11, 12, 77}
    pool = report["blocking_pool"]
    assert pool["threads"] == [21] and pool["top"][0]["function"] == \
        "my_app::handlers::save_blocking"


def test_findings_are_ranked_whatever_order_they_come_in():
    a = analyzer()
    r = build_report(target=TARGET, findings=list(reversed(a.findings())), backend="perf",
                     threshold_ms=5, duration_s=1, stats={})
    assert validate_report(r) == []
    assert r["findings"][0]["function"] == "my_app::handlers::load"


@pytest.mark.parametrize("mutate, needle", [
    (lambda r: r.pop("schema"), "schema"),
    (lambda r: r.__setitem__("schema", "hud-report/2"), "schema"),
    (lambda r: r["target"].pop("pid"), "target.pid"),
    (lambda r: r["target"].__setitem__("pid", "4321"), "target.pid"),
    (lambda r: r["target"]["workers"].append({"tid": True, "name": "x"}), "workers[3]"),
    (lambda r: r.__setitem__("threshold_ms", None), "threshold_ms"),
    (lambda r: r.__setitem__("duration_s", -1), "duration_s"),
    (lambda r: r["findings"][0].pop("p99_ms"), "missing p99_ms"),
    (lambda r: r["findings"][0].__setitem__("kind", "park"), "kind"),
    (lambda r: r["findings"][0].__setitem__("count", 0), "count"),
    (lambda r: r["findings"][0].__setitem__("line", 4.2), "line"),
    (lambda r: r["findings"][0].__setitem__("p99_ms", 1e9), "p99_ms <= max_ms"),
    (lambda r: r["findings"][0]["stack"][0].__setitem__("class", "lib"), "class"),
    (lambda r: r["findings"][0]["stack"][0].pop("inlined"), "inlined"),
    (lambda r: r["findings"].reverse(), "ranked"),
    (lambda r: r["stats"].pop("lost"), "stats.lost"),
    (lambda r: r.__setitem__("findings", {}), "findings"),
])
def test_validator_catches(report, mutate, needle):
    bad = copy.deepcopy(report)
    mutate(bad)
    errs = validate_report(bad)
    assert any(needle in e for e in errs), errs


def test_validator_rejects_non_objects():
    assert validate_report([]) == ["report: not an object"]


def test_write_report_is_atomic_and_replaces_symlinks(tmp_path, report):
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    link = tmp_path / "out.json"
    link.symlink_to(victim)
    write_report(str(link), report)
    assert victim.read_text() == "keep me"          # not written through the link
    assert not link.is_symlink()
    assert json.loads(link.read_text()) == report
    assert oct(os.stat(link).st_mode & 0o777) == oct(0o644)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".hud-")] == []


def test_write_errors_are_hud_errors(tmp_path, report):
    with pytest.raises(HudError) as e:
        write_report(str(tmp_path / "missing-dir" / "r.json"), report)
    assert "cannot write" in e.value.message
    with pytest.raises(HudError):
        write_report(str(tmp_path), report)


def test_failed_serialization_leaves_no_file(tmp_path):
    path = tmp_path / "r.json"
    with pytest.raises(TypeError):
        write_report(str(path), {"schema": SCHEMA, "x": object()})
    assert list(tmp_path.iterdir()) == []
