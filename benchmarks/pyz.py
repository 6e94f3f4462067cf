"""hud.pyz figures: size, and start-up times beside `python3 -I -c pass` in the same run.

    .venv/bin/python benchmarks/pyz.py [--runs 21] [--pyz dist/hud.pyz] [--build]

Goals (issue 9): size <= 6 MB; `--help` <= 250 ms. Each time is the median of --runs runs
of a fresh interpreter (page cache warm: the first run is reported apart), wall clock and
the child's CPU time (user + sys: steadier when other work shares the 2 cores), for
Debian's python3 and, when scripts/setup-python39 has run, bullseye's python3.9. The
reference row `python3 -I -c pass` is measured interleaved with the others, so a busy
machine shows in it too; compare the differences, not the absolute values.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_MB = 6.0
GOAL_HELP_MS = 250.0

_CAPSTONE = ("import sys; sys.path.insert(0, sys.argv[1]); import _hud_pyz; "
             "_hud_pyz.install(sys.argv[1]); import capstone")
_TEXTUAL = "import sys; sys.path.insert(0, sys.argv[1]); import textual.app, textual.widgets"


def _pythons() -> list[tuple[str, str]]:
    out = []
    for label, exe in (("python3 (Debian)", "/usr/bin/python3"),
                       ("python3.9 (bullseye)", str(ROOT / "build/python3.9/bin/python3.9"))):
        if os.access(exe, os.X_OK):
            out.append((label, exe))
    if not out:
        out.append(("python3", sys.executable))
    return out


def _time(cmd: list[str]) -> tuple[float, float]:
    """(wall ms, CPU ms of the child: user + sys, steadier on a shared machine)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with {proc.returncode}")
    return wall * 1000, (usage.ru_utime + usage.ru_stime) * 1000


def _cases(exe: str, pyz: str) -> list[tuple[str, list[str]]]:
    return [
        ("python3 -I -c pass (reference)", [exe, "-I", "-c", "pass"]),
        ("hud.pyz --help", [exe, "-I", pyz, "--help"]),
        ("hud.pyz --version", [exe, "-I", pyz, "--version"]),
        ("hud.pyz --help without -I (re-exec)", [exe, pyz, "--help"]),
        ("import capstone (memfd load)", [exe, "-I", "-c", _CAPSTONE, pyz]),
        ("import textual.app (TUI start)", [exe, "-I", "-c", _TEXTUAL, pyz]),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--pyz", type=Path, default=ROOT / "dist" / "hud.pyz")
    ap.add_argument("--build", action="store_true", help="run scripts/build-pyz first")
    args = ap.parse_args()
    if args.build or not args.pyz.exists():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "build-pyz"), "--out",
                        str(args.pyz)], check=True, stderr=subprocess.DEVNULL)
    pyz = str(args.pyz.resolve())

    size = args.pyz.stat().st_size / 1e6
    with zipfile.ZipFile(pyz) as zf:
        by_top: dict[str, int] = {}
        for info in zf.infolist():
            top = info.filename.split("/")[0]
            by_top[top] = by_top.get(top, 0) + info.compress_size
    print(f"## hud.pyz size: {size:.2f} MB (goal <= {GOAL_MB:.0f} MB: "
          f"{'met' if size <= GOAL_MB else 'MISSED'})\n")
    print("| part | compressed MB |\n|---|---:|")
    for top, n in sorted(by_top.items(), key=lambda kv: -kv[1])[:8]:
        print(f"| {top} | {n / 1e6:.2f} |")

    for label, exe in _pythons():
        cases = _cases(exe, pyz)
        first = {name: _time(cmd)[0] for name, cmd in cases}
        wall: dict[str, list[float]] = {name: [] for name, _ in cases}
        cpu: dict[str, list[float]] = {name: [] for name, _ in cases}
        for _ in range(args.runs):          # interleaved: load drifts hit every row alike
            for name, cmd in cases:
                w, c = _time(cmd)
                wall[name].append(w)
                cpu[name].append(c)
        ref = statistics.median(wall[cases[0][0]])
        ref_cpu = statistics.median(cpu[cases[0][0]])
        print(f"\n## {label}: ms, median of {args.runs} (first run apart)\n")
        print("| command | wall, first | wall | wall min | wall - ref | CPU | CPU - ref |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name, _ in cases:
            med, med_cpu = statistics.median(wall[name]), statistics.median(cpu[name])
            print(f"| {name} | {first[name]:.0f} | {med:.0f} | {min(wall[name]):.0f} | "
                  f"{med - ref:+.0f} | {med_cpu:.0f} | {med_cpu - ref_cpu:+.0f} |")
        help_med = statistics.median(wall["hud.pyz --help"])
        print(f"\n--help: {help_med:.0f} ms (goal <= {GOAL_HELP_MS:.0f} ms: "
              f"{'met' if help_med <= GOAL_HELP_MS else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
