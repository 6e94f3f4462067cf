"""Benchmark (not a test): DWARF/CFI unwinding speed of recorded samples, on one core.

    .venv/bin/python benchmarks/unwind.py [--seconds 2] [--rounds 5]

Four sample sets: the committed aarch64 qemu snapshots (anywhere, no root), x86_64 perf
samples recorded live from tests/data/unwind/x86_64/deep.c built without frame pointers
against glibc (root + gcc) and statically against musl, whose libc has no CFI (musl-gcc;
unwound in "auto" mode, which scans the stack there), and from the blockers-nofp Tokio
fixture (root, fixture built). Each row gives frames/s of CPU time (time.process_time)
for a cold unwinder (first pass: ELF sections read, CFI indexed, rows computed) and a
warm one (medians of --rounds passes), and the ratio against a reference run in the same
invocation: the frame-pointer walk over the same captures. Goal: >= 50,000 frames/s warm.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "unit" / "unwind"))

from hud.model import CpuSample, StackCapture  # noqa: E402
from hud.unwind.unwinder import Unwinder  # noqa: E402


def _rate(uw: Unwinder, caps: list[StackCapture], mode: str) -> tuple[float, int]:
    t0 = time.process_time()
    frames = 0
    for cap in caps:
        frames += len(uw.unwind(cap, mode=mode).ips)
    dt = time.process_time() - t0
    return frames / dt if dt > 0 else float("inf"), frames


def _measure(name: str, make, caps: list[StackCapture], rounds: int,
             mode: str = "cfi") -> dict:
    uw = make()
    cold, frames = _rate(uw, caps, mode)
    warm = statistics.median(_rate(uw, caps, mode)[0] for _ in range(rounds))
    ref = statistics.median(_rate(uw, caps, "fp")[0] for _ in range(rounds))
    return {"set": name, "samples": len(caps), "frames": frames,
            "per_sample": frames / max(1, len(caps)), "cold": cold, "warm": warm,
            "fp": ref}


def aarch64_set(rounds: int) -> dict:
    from unwind_support import A64, StaticMaps, a64_capture, a64_vectors
    vecs = a64_vectors()
    # Every vector's own binary: unwind them grouped by binary, 20 copies for stable timing.
    rows = []
    for binary in sorted({v["binary"] for v in vecs}):
        group = [v for v in vecs if v["binary"] == binary]
        caps = [a64_capture(v) for v in group] * 20
        bias = group[0]["bias"]
        rows.append(_measure(f"aarch64 {binary}", lambda b=binary, bi=bias: Unwinder(
            StaticMaps([(str(A64 / b), bi)])), caps, rounds))
    return rows


def x86_set(seconds: float, rounds: int) -> list[dict]:
    """deep.c built with gcc against glibc (CFI everywhere), and with musl-gcc -static
    (musl's libc has no CFI: the unwinder's "auto" mode crosses it by stack scans)."""
    if os.geteuid() != 0 or shutil.which("gcc") is None:
        print("x86_64 live set skipped: needs root and gcc", file=sys.stderr)
        return []
    src = ROOT / "tests" / "data" / "unwind" / "x86_64" / "deep.c"
    flags = ["-O2", "-fomit-frame-pointer", "-fno-optimize-sibling-calls"]
    builds = [("x86_64 perf samples, no-FP C + glibc", ["gcc", *flags], ["-lpthread"], "cfi")]
    if shutil.which("musl-gcc"):
        builds.append(("x86_64 perf samples, no-FP C + static musl (scans)",
                       ["musl-gcc", "-static", *flags], [], "auto"))
    else:
        print("static musl row skipped: no musl-gcc (musl-tools)", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory(prefix="hud-bench-") as tmp:
        for k, (name, cc, libs, mode) in enumerate(builds):
            exe = Path(tmp) / f"deep_{k}"
            subprocess.run([*cc, "-o", str(exe), str(src), *libs], check=True)
            rows.append(_record_and_measure(name, exe, seconds, rounds, mode))
    return rows


def _record(pid: int, seconds: float, stack_bytes: int) -> list[StackCapture]:
    """The stacks of `seconds` of 499 Hz perf samples of `pid`."""
    from hud.collect.perf_sampler import PerfSampler
    caps = []
    with PerfSampler(pid, freq=499, stack_bytes=stack_bytes) as sampler:
        sampler.start()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(0.05)
            caps += [s.stack for s in sampler.read() if isinstance(s, CpuSample)]
    return caps


def _record_and_measure(name: str, exe: Path, seconds: float, rounds: int,
                        mode: str) -> dict:
    from hud.symbolize.normalize import ProcessMaps
    proc = subprocess.Popen([str(exe), "14"])
    try:
        time.sleep(0.2)
        caps = _record(proc.pid, seconds, 16384)
        # Unwound while the program runs: modules are read through /proc/PID/map_files.
        return _measure(name, lambda: Unwinder(ProcessMaps(proc.pid)), caps, rounds, mode)
    finally:
        proc.kill()
        proc.wait()


def tokio_set(seconds: float, rounds: int) -> list[dict]:
    """perf samples of the blockers-nofp Tokio fixture (release Rust, no frame pointers)."""
    if os.geteuid() != 0:
        return []
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from support.fixtures import FixtureError, run_fixture
    except ImportError as e:
        print(f"Tokio set skipped: {e}", file=sys.stderr)
        return []
    from hud.symbolize.normalize import ProcessMaps
    try:
        with run_fixture("blockers-nofp", ["cpu:40/60", "sleep", "mutex"]) as fx:
            time.sleep(0.3)
            caps = _record(fx.pid, seconds, 32768)
            return [_measure("x86_64 perf samples, Tokio blockers-nofp",
                             lambda: Unwinder(ProcessMaps(fx.pid)), caps, rounds)]
    except FixtureError as e:
        print(f"Tokio set skipped: {e}", file=sys.stderr)
        return []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="x86_64 recording length")
    ap.add_argument("--rounds", type=int, default=5, help="warm passes (median)")
    args = ap.parse_args()
    rows = (aarch64_set(args.rounds) + x86_set(args.seconds, args.rounds)
            + tokio_set(args.seconds, args.rounds))
    print(f"python {sys.version.split()[0]}, one core (process CPU time)\n")
    print("| sample set | samples | frames/sample | cold frames/s | warm frames/s "
          "| FP walk frames/s (ref) | warm / ref |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['set']} | {r['samples']} | {r['per_sample']:.1f} | {r['cold']:,.0f} "
              f"| {r['warm']:,.0f} | {r['fp']:,.0f} | {r['warm'] / r['fp']:.2f} |")


if __name__ == "__main__":
    main()
