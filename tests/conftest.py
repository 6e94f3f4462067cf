"""Test-wide rules: root/e2e markers skip only when root or BPF is truly absent, and a CI
run (HUD_REQUIRE_ALL=1) fails when any test skipped: root/e2e ones, and unit tests that
skip for want of something set-up provides (built fixtures, a private directory)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Property tests check results, never speed: on the shared CI VM a stall of a second made
# input generation "too slow" (test_p99_is_nearest_rank, a list of 400 ints) and a run
# fail. Timing belongs in benchmarks/ (the project's rule), so no deadline either.
settings.register_profile("hud", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("hud")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
pytest_plugins = ["support.fixtures"]  # tokio_fixture, fixture_manifest (issue 3)
# The CLI and Profiler keep resolved symbols in /var/cache/hud/symbols by default: tests
# must not leave files there (tests of the cache pass their own directory).
os.environ.setdefault("HUD_NO_CACHE", "1")

_PRIVILEGED = ("root", "e2e")
_privileged_ids: set = set()
_skips: list = []


def _why_no_root() -> str:
    if os.geteuid() != 0:
        return "needs root (bpf() and system-wide perf_event_open)"
    return ""


def pytest_collection_modifyitems(config, items):
    reason = _why_no_root()
    for item in items:
        path = str(item.fspath)
        if f"{os.sep}tests{os.sep}e2e{os.sep}" in path:
            item.add_marker(pytest.mark.e2e)
        if f"{os.sep}tests{os.sep}root{os.sep}" in path:
            item.add_marker(pytest.mark.root)
        if any(item.get_closest_marker(m) for m in _PRIVILEGED):
            _privileged_ids.add(item.nodeid)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


def pytest_runtest_logreport(report):
    if report.skipped:
        _skips.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("HUD_REQUIRE_ALL") == "1" and _skips:
        tr = session.config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            n_priv = sum(1 for n in _skips if n in _privileged_ids)
            tr.write_line(f"HUD_REQUIRE_ALL: {len(_skips)} test(s) skipped ({n_priv} "
                          "root/e2e); CI must run them all:", red=True)
            for nodeid in _skips[:50]:
                tr.write_line(f"  {nodeid}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
