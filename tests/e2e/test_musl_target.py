"""hud end to end on a musl program, static and dynamic (x86_64): musl's libc has no CFI,
so the blocker under nanosleep is only found through the unwinder's stack scans, and
musl's own frames must not pass for the program's."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hud.export.report import validate_report
from hud.linux.libc import ARCH

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "tests" / "data" / "unwind" / "x86_64" / "deep.c"
pytestmark = pytest.mark.skipif(ARCH != "x86_64", reason="an x86_64 program")


@pytest.mark.parametrize("link", ["static", "dynamic"])
def test_the_blocker_under_musl_is_the_programs_function(tmp_path, link):
    if shutil.which("musl-gcc") is None:
        pytest.fail("musl-gcc missing: musl-tools is in .ci/apt-packages")
    exe = tmp_path / f"deep_{link}"          # its comm is the workers' name prefix
    subprocess.run(["musl-gcc", *(["-static"] if link == "static" else []), "-O2", "-g",
                    "-fomit-frame-pointer", "-fno-optimize-sibling-calls", "-o", str(exe),
                    str(SRC)], check=True)
    prog = subprocess.Popen([str(exe), "14"])
    out = tmp_path / "r.json"
    # leaf_sleep sleeps 200 us: 0.6 ms catches ~70 of its sleeps a second here (timer
    # slack, the VM), few enough for hud to keep up.
    try:
        time.sleep(0.3)
        run = subprocess.run([sys.executable, "-m", "hud", "--pid", str(prog.pid),
                              "--workers", "deep_", "--headless", "--duration", "4",
                              "--threshold", "0.6", "-q", "--export", str(out),
                              "--format", "report"],
                             cwd=REPO, capture_output=True, text=True, timeout=120)
    finally:
        prog.kill()
        prog.wait()
    assert run.returncode == 0, run.stderr
    report = json.loads(out.read_text())
    assert validate_report(report) == []
    sleeps = [f for f in report["findings"]
              if f["kind"] == "blocking" and f["function"] == "leaf_sleep"]
    assert sleeps, [(f["kind"], f["function"]) for f in report["findings"]]
    stack = [(fr.get("function"), fr.get("class")) for fr in sleeps[0]["stack"]
             if fr.get("class") != "kernel"]
    names = [n for n, _ in stack]
    at = names.index("leaf_sleep")
    # musl's frames from the system call up, none of them the program's; then the
    # program's chain all the way up (through qsort's callback when it came that way).
    assert "nanosleep" in names[:at] and at >= 2, names
    assert all(cls != "user" for _, cls in stack[:at]), stack[:at]
    assert names[at + 1] == "recurse" and names.count("recurse") >= 15, names
    assert {"main", "worker"} & set(names[at:]), names
    assert "leaf_sleep" in run.stdout and "deep.c:19" in run.stdout, run.stdout
