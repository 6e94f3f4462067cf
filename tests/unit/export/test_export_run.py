"""export_run: each format from one Analyzer, via the file it writes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from hud.analysis import Analyzer
from hud.collect.replay import read_recording
from hud.errors import HudError, UsageError
from hud.export import FORMATS, check_writable, export_run
from hud.export.chrome_trace import validate_trace
from hud.export.folded import parse_folded
from hud.export.report import validate_report

DEMO = Path(__file__).resolve().parents[2] / "data" / "recordings" / "demo.jsonl"


@pytest.fixture(scope="module")
def run():
    rec = read_recording(str(DEMO))
    a = Analyzer(rec.resolve, threshold_ms=5, target=rec.target)
    a.feed_all(rec.events)
    a.close()
    return a, rec.target


def test_all_formats(tmp_path, run):
    a, target = run
    paths = {}
    for fmt in FORMATS:
        paths[fmt] = tmp_path / f"out.{fmt}"
        export_run(str(paths[fmt]), fmt, a, target=target, backend="replay")
    report = json.loads(paths["report"].read_text())
    assert validate_report(report) == []
    assert report["findings"][0]["function"] == "my_app::handlers::load"
    trace = json.loads(paths["chrome"].read_text())
    assert validate_trace(trace) == []
    xs = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert len(xs) + trace["otherData"]["dropped"] == len(a.episodes)
    folded = parse_folded(paths["folded"].read_text())
    blocked = sum(v for k, v in folded.items() if k.startswith("[blocking];"))
    want = sum(e.duration_ns for e in a.episodes if e.kind == "blocking")
    assert abs(blocked * 1000 - want) <= 500 * len(folded)


def test_unknown_format(tmp_path, run):
    a, target = run
    with pytest.raises(UsageError):
        export_run(str(tmp_path / "x"), "svg", a, target=target, backend="x")
    assert list(tmp_path.iterdir()) == []


def test_check_writable_refuses_what_a_write_would_and_leaves_nothing(tmp_path):
    check_writable(str(tmp_path / "fine.json"))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(HudError, match="No such file or directory"):
        check_writable(str(tmp_path / "missing" / "t.json"))
    with pytest.raises(HudError, match="it is a directory"):
        check_writable(str(tmp_path))
