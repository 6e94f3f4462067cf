"""`hud --pid N --headless` end to end: every exit path (duration, Ctrl-C, SIGTERM, target
exit) writes its export and releases every BPF object; SIGKILL of hud leaves nothing
either; the Chrome trace is structurally valid and the folded output parses."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.bpf_objects import held_by, still_alive, wait_held
from support.findings import at, summary
from support.fixtures import load_manifest

from hud.export.chrome_trace import validate_trace
from hud.export.folded import parse_folded
from hud.export.report import validate_report

REPO = Path(__file__).resolve().parents[2]


def hud(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hud", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def test_duration_run_writes_a_valid_report_and_prints_the_blocker(tokio_fixture, tmp_path):
    fx = tokio_fixture("blockers-nofp", ["sleep", "cpu"])
    out = tmp_path / "r.json"
    code, stdout, stderr = finish(hud("--pid", str(fx.pid), "--headless", "--duration", "6",
                                      "--export", str(out), "--format", "report"))
    assert code == 0, stderr
    report = json.loads(out.read_text())
    assert validate_report(report) == []
    sleep = fx.manifest.scenarios["sleep"]
    assert at(report, "blocking", sleep) is not None, summary(report)
    assert sleep.function in stdout and f":{sleep.line}" in stdout, stdout
    assert all(len(line) <= 80 for line in stdout.splitlines()), stdout
    assert "with ebpf" in stderr
    assert "no file:line" not in stderr, stderr


def test_a_release_build_without_debug_info_names_its_blocker_and_says_why_no_line(
        tokio_fixture):
    """`cargo build --release` as it comes keeps no DWARF: the finding still names the
    blocker (symbol table) and the run ends by saying which file has no lines and how to
    get them."""
    fx = tokio_fixture("blockers-nodebug", ["sleep"])
    code, stdout, stderr = finish(hud("--pid", str(fx.pid), "--headless", "--duration", "4"))
    assert code == 0, stderr
    sleep = fx.manifest.scenarios["sleep"]
    assert sleep.function in stdout and "at blockers (no line info)" in stdout, stdout
    notes = [line for line in stderr.splitlines() if "no file:line" in line]
    assert notes == ["hud: no file:line in blockers: no DWARF line tables"], stderr
    assert 'hint: debug = "line-tables-only" in [profile.release]' in stderr, stderr


def test_a_stripped_target_is_said_to_hide_its_parks(tokio_fixture, tmp_path):
    """A binary stripped of every symbol, with no debug file to be found: Tokio's parks
    cannot be recognised by name, so the run says so at once (and in the report);
    given the debug file, it does not."""
    m = load_manifest("blockers-stripped")
    exe = tmp_path / "svc"
    shutil.copy(m.binary, exe)          # away from blockers.debug beside the original
    fx = tokio_fixture("blockers-stripped", ["sleep"], binary=exe)
    out = tmp_path / "r.json"
    code, _, stderr = finish(hud("--pid", str(fx.pid), "--headless", "--duration", "2",
                                 "--export", f"report:{out}"))
    assert code == 0, stderr
    said = "svc is stripped: its frames have no names, so idle workers may show as blocked"
    assert stderr.count(said) == 1 and "--target" in stderr, stderr
    assert any(said in n for n in json.loads(out.read_text())["stats"]["notices"])
    code, _, stderr = finish(hud("--pid", str(fx.pid), "--headless", "--duration", "1",
                                 "--debug-file", str(m.debug_file)))
    assert code == 0 and "is stripped" not in stderr, stderr


def _chrome_checks(trace: dict, worker_tids: set) -> None:
    assert validate_trace(trace) == []
    events = trace["traceEvents"]
    named = {e["tid"] for e in events if e.get("ph") == "M" and e["name"] == "thread_name"}
    slices = [e for e in events if e.get("ph") == "X"]
    assert slices and worker_tids <= named
    by_tid: dict = {}
    for e in slices:
        by_tid.setdefault(e["tid"], []).append(e)
    for tid, evs in by_tid.items():
        assert tid in named
        ends = [(e["ts"], e["ts"] + e["dur"]) for e in evs]
        assert all(d >= 0 for _, d in ((s, e - s) for s, e in ends))
        for (s1, e1), (s2, _) in zip(ends, ends[1:]):
            assert s1 <= s2 and e1 <= s2, (tid, s1, e1, s2)   # monotonic, no overlap


@pytest.mark.parametrize("stop", ["sigint", "sigterm"])
def test_signals_stop_cleanly_with_the_export_written(stop, tokio_fixture, tmp_path):
    """All three exports of one run are written, each in its own format."""
    fx = tokio_fixture("blockers-nofp", ["sleep", "cpu"])
    out, report, folded = tmp_path / "trace.json", tmp_path / "r.json", tmp_path / "s.txt"
    proc = hud("--pid", str(fx.pid), "--headless", "--export", str(out),
               "--export", f"report:{report}", "--export", str(folded))
    ids = wait_held(proc.pid)
    time.sleep(3)
    proc.send_signal(signal.SIGINT if stop == "sigint" else signal.SIGTERM)
    code, stdout, stderr = finish(proc)
    assert code == 0, stderr
    _chrome_checks(json.loads(out.read_text()), set(fx.worker_tids))
    sleep = fx.manifest.scenarios["sleep"]
    assert sleep.function in stdout
    got = json.loads(report.read_text())
    assert validate_report(got) == [] and at(got, "blocking", sleep) is not None, summary(got)
    stacks = parse_folded(folded.read_text())
    assert any(k.startswith("[blocking];") and sleep.function in k for k in stacks)
    assert all(f"hud: wrote {p}" in stderr for p in (out, report, folded)), stderr
    assert still_alive(ids) == {}


def test_target_exit_ends_the_run_and_keeps_what_was_recorded(tokio_fixture, tmp_path):
    fx = tokio_fixture("blockers-nofp", ["sleep"])
    out = tmp_path / "stacks.folded"
    proc = hud("--pid", str(fx.pid), "--headless", "--export", str(out))
    ids = wait_held(proc.pid)
    time.sleep(3)
    fx.kill()
    code, _, stderr = finish(proc, timeout=30)
    assert code == 0, stderr
    assert "target exited" in stderr
    folded = parse_folded(out.read_text())
    sleep = fx.manifest.scenarios["sleep"]
    hits = [k for k in folded if k.startswith("[blocking];") and sleep.function in k]
    assert hits and all(folded[k] > 0 for k in hits), list(folded)[:5]
    assert still_alive(ids) == {}


def test_sigkill_of_hud_leaves_no_bpf_object(tokio_fixture):
    fx = tokio_fixture("blockers-nofp", ["sleep"])
    proc = hud("--pid", str(fx.pid), "--headless")
    ids = wait_held(proc.pid)
    assert ids["maps"]
    proc.kill()
    proc.communicate(timeout=30)
    assert held_by(proc.pid) == {"progs": set(), "maps": set(), "links": set()}
    assert still_alive(ids) == {}


def test_unknown_process_name_is_one_clear_line(tmp_path):
    code, _, stderr = finish(hud("no-such-process-hud-test", "--headless"))
    assert code == 4
    lines = stderr.strip().splitlines()
    assert lines[0].startswith("hud: no process named") and lines[1].startswith("hint:")
    assert "Traceback" not in stderr


def test_a_process_without_a_tokio_runtime_is_no_clean_bill_of_health(tmp_path):
    """Profiling the wrong process (a wrapper, a sidecar) must not read as "no findings":
    exit code 11 and one line saying nothing was measured; the export is still written."""
    target = subprocess.Popen(["sleep", "60"])
    try:
        out = tmp_path / "r.json"
        code, stdout, stderr = finish(hud("--pid", str(target.pid), "--headless",
                                          "--duration", "2", "--export", str(out),
                                          "--format", "report"))
    finally:
        target.kill()
        target.wait()
    assert code == 11, stderr
    assert f"no Tokio worker thread seen in pid {target.pid} (sleep)" in stderr, stderr
    assert stdout == ""     # not "no finding above the threshold"
    assert "looks like a Tokio worker yet" in stderr and "Traceback" not in stderr
    report = json.loads(out.read_text())
    assert validate_report(report) == [] and report["target"]["workers"] == []
    assert report["findings"] == []
