"""The perf backend beyond the shared detection acceptance (tests/e2e/test_detection.py
runs that on both backends): the CLI path, a host refusing bpf() (seccomp) falling back by
itself, and losses reaching the report."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from support.findings import at, of_function, summary

from hud.session import Profiler

REPO = Path(__file__).resolve().parents[2]
NO_BPF = REPO / "scripts" / "no-bpf"
SECONDS = 10.0


def profile(pid: int, seconds: float = SECONDS, **kw) -> tuple[dict, list]:
    notices: list = []
    with Profiler(pid=pid, backend="perf", notice=notices.append, **kw) as prof:
        report = prof.run(duration_s=seconds)
    return report, notices


def _hud(args: list, prefix: tuple = ()) -> subprocess.CompletedProcess:
    cmd = [*prefix, sys.executable, "-m", "hud", *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)


def test_cli_headless_report_with_backend_perf(tokio_fixture, tmp_path):
    fx = tokio_fixture("blockers-nofp", ["sleep", "cpu"])
    out = tmp_path / "r.json"
    res = _hud(["--pid", str(fx.pid), "--headless", "--duration", str(int(SECONDS)),
                "--export", str(out), "--format", "report", "--backend", "perf"])
    assert res.returncode == 0, res.stderr
    report = json.loads(out.read_text())
    assert report["schema"] == "hud-report/1" and report["backend"] == "perf"
    assert "with perf" in res.stderr
    assert at(report, "blocking", fx.manifest.scenarios["sleep"]) is not None, summary(report)
    assert of_function(report, "cpu", fx.manifest.scenarios["cpu"].function), summary(report)


def test_no_bpf_wrapper_makes_bpf_fail_with_eperm():
    code = ("import ctypes, os; libc = ctypes.CDLL(None, use_errno=True)\n"
            "from hud.linux.libc import syscall_nr\n"
            "r = libc.syscall(syscall_nr('bpf'), 0, 0, 0)\n"
            "print(r, ctypes.get_errno(), libc.syscall(syscall_nr('gettid')) > 0)")
    res = subprocess.run([str(NO_BPF), sys.executable, "-c", code], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert res.stdout.split() == ["-1", "1", "True"], res.stderr
    plain = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                           text=True, timeout=60)
    assert plain.stdout.split()[1] != "1"          # EINVAL for a bad attr, not EPERM


def test_hud_under_a_bpf_denying_seccomp_filter_falls_back_to_perf(tokio_fixture, tmp_path):
    fx = tokio_fixture("blockers-nofp", ["sleep", "cpu"])
    out = tmp_path / "r.json"
    res = _hud(["--pid", str(fx.pid), "--headless", "--duration", str(int(SECONDS)),
                "--export", str(out), "--format", "report"], prefix=(str(NO_BPF),))
    assert res.returncode == 0, res.stderr
    notice = [line for line in res.stderr.splitlines() if "using the perf backend" in line]
    assert len(notice) == 1 and "eBPF unavailable" in notice[0], res.stderr
    report = json.loads(out.read_text())
    assert report["backend"] == "perf"
    assert any("using the perf backend" in n for n in report["stats"]["notices"])
    assert at(report, "blocking", fx.manifest.scenarios["sleep"]) is not None, summary(report)
    assert of_function(report, "cpu", fx.manifest.scenarios["cpu"].function), summary(report)


def test_lost_records_are_counted_in_the_report(tokio_fixture, monkeypatch):
    # Rings of two pages hold one 4 KiB stack copy each: most records are lost, and every
    # loss must show up, by ring, in the report.
    import hud.collect.perf as perf
    monkeypatch.setattr(perf, "ring_pages", lambda *a, **k: 2)
    fx = tokio_fixture("blockers-nofp", ["sleep", "cpu", "healthy"])
    report, _ = profile(fx.pid, seconds=3.0, stack_bytes=4096)
    backend = report["stats"]["backend"]
    assert backend["ring_pages"] == {"switch": 2, "sample": 2}
    by_source = report["stats"]["lost_by_source"]
    assert any(s.startswith("perf switch cpu") for s in by_source), by_source
    assert any(s.startswith("perf cpu") for s in by_source), by_source
    assert sum(by_source.values()) == backend["lost"] > 0
    assert report["stats"]["lost"] == backend["lost"]      # counted once, not twice
