"""hud's own CPU in its first seconds on a busy target, A/B between checkouts (not a test).

    sudo .venv/bin/python benchmarks/first_seconds.py [--seconds 4] [--rounds 5] \\
        [--checkout old=/path/to/other/worktree] [--checkout new=.]

Each round runs, per checkout, a new Python process that imports hud from that checkout,
attaches `hud.Profiler(pid, symbol_cache=False)` to the blockers fixture (every scenario,
two workers) and runs it for --seconds: its whole CPU (user + system, all threads; the
interpreter start, imports, program loading and close included) comes from wait4. The
order alternates between rounds and the table gives medians: the machine is shared, so
only figures from the same run compare. `git worktree add /tmp/hud-old REV` makes the
other checkout.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "build" / "blockers-nofp" / "blockers"
SCENARIOS = "sleep,cpu,fsync,mutex,dns,spawn_blocking,block_in_place,bursts,healthy"

CHILD = """
import sys
sys.path.insert(0, sys.argv[1])
import hud
with hud.Profiler(pid=int(sys.argv[2]), symbol_cache=False) as p:
    report = p.run(duration_s=float(sys.argv[3]))
print(len(report["findings"]))
"""


def _run(checkout: str, pid: int, seconds: float) -> tuple[float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([sys.executable, "-c", CHILD, checkout, str(pid), str(seconds)],
                         capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise SystemExit(f"{checkout}: {out.stderr.strip().splitlines()[-1:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, out.stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--checkout", action="append", default=[],
                    help="NAME=PATH of a checkout to import hud from (repeat)")
    args = ap.parse_args()
    checkouts = dict(c.split("=", 1) for c in args.checkout) or {"this": str(REPO)}
    if not FIXTURE.exists():
        raise SystemExit("build the fixtures first: scripts/build-fixtures")
    work = tempfile.mkdtemp(prefix="hud-first-seconds-")
    budget = int(args.rounds * len(checkouts) * (args.seconds + 8) + 30)
    fx = subprocess.Popen([str(FIXTURE), "--scenario", SCENARIOS, "--threads", "2",
                           "--duration", str(budget), "--work-dir", work],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cpu: dict[str, list[float]] = {name: [] for name in checkouts}
    try:
        time.sleep(2)    # the scenarios running before hud attaches
        for r in range(args.rounds):
            names = list(checkouts) if r % 2 == 0 else list(checkouts)[::-1]
            for name in names:
                got, findings = _run(checkouts[name], fx.pid, args.seconds)
                cpu[name].append(got)
                print(f"round {r + 1} {name}: {got:.2f} s CPU, {findings} findings",
                      file=sys.stderr)
    finally:
        fx.kill()
        fx.wait()
    print(f"| checkout | hud CPU for a {args.seconds:g} s run, median | range |")
    print("|---|---:|---:|")
    for name, values in cpu.items():
        print(f"| {name} ({checkouts[name]}) | {statistics.median(values):.2f} s | "
              f"{min(values):.2f}-{max(values):.2f} s |")


if __name__ == "__main__":
    main()
