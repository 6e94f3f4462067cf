"""The detection acceptance with the perf backend (no bpf()): the Tokio fixtures' blockers are
found at their manifest function and line, cpu burners at their function, healthy and
spawn_blocking programs give no finding; the CLI path, a host refusing bpf() (seccomp),
and losses reaching the report.

10-second runs through hud.session.Profiler(backend="perf"), as the acceptance asks.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.findings import at, of_function, summary
from support.fixtures import FixtureProcess

from hud.session import Profiler

REPO = Path(__file__).resolve().parents[2]
NO_BPF = REPO / "scripts" / "no-bpf"
SECONDS = 10.0
BLOCKERS = ("sleep", "fsync", "mutex", "dns")
VARIANTS = ("blockers-fp", "blockers-nofp", "blockers-stripped")


def profile(pid: int, seconds: float = SECONDS, **kw) -> tuple[dict, list]:
    notices: list = []
    with Profiler(pid=pid, backend="perf", notice=notices.append, **kw) as prof:
        report = prof.run(duration_s=seconds)
    return report, notices


@pytest.mark.parametrize("variant", VARIANTS)
def test_blockers_and_the_cpu_burner_are_found(variant, tokio_fixture):
    fx: FixtureProcess = tokio_fixture(variant, [*BLOCKERS, "cpu"])
    report, _ = profile(fx.pid)
    assert report["backend"] == "perf"
    workers = set(fx.worker_tids)
    for name in BLOCKERS:
        sc = fx.manifest.scenarios[name]
        f = at(report, "blocking", sc)
        assert f is not None, f"{name}: no blocking finding at {sc.function}:{sc.line}\n" \
                              f"{summary(report)}"
        assert set(f["workers"]) <= workers and f["count"] >= 1
        assert f["file"].endswith(sc.file_rel.split("/", 2)[-1]), f["file"]
        # The blocker's own stack (captured at its switch-out), through the user frame.
        assert any(fr["class"] == "user" and fr["function"] == sc.function
                   for fr in f["stack"]), f["stack"]
    cpu = fx.manifest.scenarios["cpu"]
    f = of_function(report, "cpu", cpu.function)
    assert f is not None, summary(report)
    assert f["max_ms"] >= 0.5 * cpu.block_ms, f
    assert {w["tid"] for w in report["target"]["workers"]} == workers
    assert of_function(report, "blocking", cpu.function) is None, summary(report)
    # Nothing may be reported at the spawn_blocking work or the healthy payload.
    assert not any(f["function"].endswith(("pool_work", "healthy_payload"))
                   for f in report["findings"] if f["kind"] in ("blocking", "cpu"))


def test_sleep_episodes_match_what_the_program_timed(tokio_fixture):
    # Switch-outs and switch-ins are paired in userspace, across per-CPU rings: every
    # sleep must come out once, and no longer than the program measured it.
    fx = tokio_fixture("blockers-nofp", ["sleep:40/100"])
    report, _ = profile(fx.pid)
    measured = fx.stop()["scenarios"]["sleep"]
    f = at(report, "blocking", fx.manifest.scenarios["sleep"])
    assert f is not None, summary(report)
    assert 70 <= f["count"] <= min(110, measured["episodes"]), (f, measured)
    assert f["p99_ms"] >= 40 and f["max_ms"] <= measured["max_ms"] + 1.0, (f, measured)
    assert 40 * f["count"] <= f["total_ms"] <= measured["total_ms"] + 1.0, (f, measured)


def test_healthy_and_spawn_blocking_work_are_no_findings(tokio_fixture):
    fx = tokio_fixture("blockers-nofp", ["healthy", "spawn_blocking"])
    report, _ = profile(fx.pid)
    assert report["backend"] == "perf"
    bad = [f for f in report["findings"] if f["kind"] in ("blocking", "cpu")]
    assert bad == [], summary(report)
    # The pool's work was seen (and shown as pool work), not missed.
    pool = fx.manifest.scenarios["spawn_blocking"]
    tops = [t["function"] for t in report["blocking_pool"]["top"]]
    assert pool.function in tops, tops
    assert not set(report["blocking_pool"]["threads"]) & set(fx.worker_tids)


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
