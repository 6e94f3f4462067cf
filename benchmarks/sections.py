"""Benchmark: memory of debug sections read whole against read a piece at a time.

    .venv/bin/python benchmarks/sections.py [--binary PATH] [--rounds 3]

hud reads a debug section bigger than `hud.symbolize.lazysection.LAZY_MIN` (8 MiB) a
piece at a time: the units, line programs, range lists and strings that lookups reach.
Each case runs twice in new processes: `whole` (LAZY_MIN raised past every section, as
the fixture's are read) and `pieces` (LAZY_MIN 0: every section that can be, as a big
binary's are). Cases: one
address; a profile-like set (every address of a few functions); the benchmark's 20,000
addresses spread over all functions. Reported: peak RSS, debug-section bytes held at the
end, CPU of the whole process, and binutils `addr2line` on the same addresses in the
same run (reference). Not a test: nothing here asserts a size or a speed.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import symbolize as bench  # the address picker and the timed runner

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from hud.symbolize import Symbolizer, lazysection
lazysection.LAZY_MIN = 0 if sys.argv[4] == "pieces" else 1 << 62
addrs = [int(x, 16) for x in open(sys.argv[3]).read().split()]
with Symbolizer() as sym:
    out = sym.symbolize_file(sys.argv[2], addrs)
    obj, _ = sym.object_for_path(sys.argv[2])
    held = obj.dwarf.sections.size() if obj.dwarf is not None else 0
frames = sum(len(f) for f in out)
print(json.dumps({"held": held, "frames": frames}))
"""


def profile_like(binary: Path, seed: int) -> list[int]:
    """Every 4th byte of 6 random functions of 200-4,000 bytes: what a profile of a few
    hot paths asks for."""
    funcs = [(s, n) for s, n in bench.function_symbols(binary) if 200 <= n <= 4000]
    rng = random.Random(seed)
    return [a for s, n in rng.sample(funcs, 6) for a in range(s, s + n, 4)]


def run_child(binary: Path, addr_file: str, mode: str) -> dict:
    _wall, cpu, rss_kib, text = bench.run_timed(
        [sys.executable, "-I", "-c", CHILD, str(ROOT), str(binary), addr_file, mode])
    got = json.loads(text.strip().splitlines()[-1])
    return {"held": got["held"], "frames": got["frames"], "cpu": cpu, "rss": rss_kib * 1024}


def run_addr2line(binary: Path, addr_file: str) -> dict:
    _wall, cpu, rss_kib, _text = bench.run_timed(
        ["addr2line", "-f", "-i", "-C", "-e", str(binary)], stdin_path=addr_file)
    return {"cpu": cpu, "rss": rss_kib * 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", type=Path, default=None)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    binary = args.binary or bench.largest_fixture()
    funcs = bench.function_symbols(binary)
    cases = {
        "1 address": bench.pick(funcs, 1, 1),
        "a profile (6 functions)": profile_like(binary, 1),
        "20,000 over all functions": bench.pick(funcs, 20000, 1),
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, addrs in cases.items():
            path = os.path.join(tmp, "addrs.txt")
            Path(path).write_text("\n".join(f"{a:#x}" for a in addrs) + "\n")
            got: dict[str, list] = {"whole": [], "pieces": [], "addr2line": []}
            for _ in range(args.rounds):
                for mode in ("whole", "pieces"):
                    got[mode].append(run_child(binary, path, mode))
                got["addr2line"].append(run_addr2line(binary, path))
            med = {m: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
                   for m, runs in got.items()}
            if med["whole"]["frames"] != med["pieces"]["frames"]:
                sys.exit(f"{name}: frames differ between whole and pieces")
            rows.append((name, len(addrs), med))
    mb = 1 << 20
    print(f"Binary: `{binary.relative_to(ROOT) if binary.is_relative_to(ROOT) else binary}` "
          f"({binary.stat().st_size / mb:.1f} MB), medians of {args.rounds} rounds.\n")
    print("| addresses | sections held, whole / pieces | peak RSS whole / pieces "
          "| addr2line RSS (ref) | pieces / addr2line | CPU whole / pieces (addr2line) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, n, med in rows:
        w, p, r = med["whole"], med["pieces"], med["addr2line"]
        print(f"| {name} ({n:,}) | {w['held'] / mb:.1f} / {p['held'] / mb:.1f} MB "
              f"| {w['rss'] / mb:.0f} / {p['rss'] / mb:.0f} MB | {r['rss'] / mb:.0f} MB "
              f"| {p['rss'] / r['rss']:.2f}x | {w['cpu']:.2f} / {p['cpu']:.2f} s ({r['cpu']:.2f}) |")


if __name__ == "__main__":
    main()
