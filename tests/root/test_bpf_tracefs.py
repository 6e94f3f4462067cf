"""tracefs: ids and formats from the real kernel, and mounting it where it is absent (done
in a private mount namespace so the host's mounts are untouched)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hud.errors import Unsupported
from hud.linux import tracefs

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import os
from hud.linux import tracefs
assert not os.path.isdir("/sys/kernel/tracing/events"), "still mounted"
print(tracefs.tracefs_root(), tracefs.tracepoint_id("sched", "sched_switch"))
"""


def test_sched_switch_id_and_format():
    fmt = tracefs.tracepoint_format("sched", "sched_switch")
    assert fmt.id == tracefs.tracepoint_id("sched", "sched_switch") > 0
    assert fmt.name == "sched_switch"
    # The program side reads these; common_* are below 8 and unreadable from BPF.
    assert fmt.offset("prev_pid") >= 8 and fmt.offset("next_pid") > fmt.offset("prev_pid")
    assert fmt.field("prev_comm").size == 16
    assert all(f.common == (f.offset < 8) for f in fmt.fields)


def test_missing_tracepoint_is_unsupported():
    with pytest.raises(Unsupported):
        tracefs.tracepoint_id("sched", "no_such_event")
    with pytest.raises(Unsupported):
        tracefs.tracepoint_id("..", "sched")


def test_tracefs_is_mounted_when_absent():
    expected = tracefs.tracepoint_id("sched", "sched_switch")
    script = (f"umount /sys/kernel/tracing 2>/dev/null; umount /sys/kernel/debug/tracing "
              f"2>/dev/null; exec {sys.executable} -c '{CHILD}'")
    out = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                         cwd=str(ROOT), env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin:"
                                             "/usr/sbin:/sbin"},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["/sys/kernel/tracing", str(expected)]
