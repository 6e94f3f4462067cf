"""Benchmark: hud's symbolization beside binutils `addr2line -f -i -C` in the same run.

    .venv/bin/python benchmarks/symbolize.py [--binary PATH] [--rounds 5] [--sizes 1000,20000]

For each address count: `cold` runs a new Python process that imports hud, opens the file
and symbolizes the addresses, then exits (wall and CPU time of the whole process, like an
addr2line run); `first` is the time from opening the file to the first address's frames
inside that process; a second process then measures `warm` (the same addresses again,
after doing them once) and `warm-other` (a second, disjoint set after the first: caches of
the file are hot, the addresses are not). With the on-disk symbol cache (in a private
0700 directory under benchmarks/out/, through HUD_CACHE_DIR), `cache-write` is a cold
process that starts with an empty cache and writes it at close, and `cache-read` the next
new process on the same addresses, which finds them on disk; both must print the same
frames as the cold run. Peak RSS comes from wait4.
Rounds alternate hud and binutils and the table shows medians; the machine is shared, so
only ratios from the same run mean anything. Not a test: nothing here asserts a speed.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "build"

# Runs inside the cold child: imports, opens, symbolizes, reports its own view as JSON.
CHILD = r"""
import json, os, resource, sys, time
t0 = time.perf_counter()
sys.path.insert(0, sys.argv[1])
from hud.symbolize import Symbolizer
from hud.symbolize.text import format_frames
t_import = time.perf_counter()
addrs = [int(x, 16) for x in open(sys.argv[3]).read().split()]
jobs = None if sys.argv[4] == "auto" else int(sys.argv[4])   # as hud addr2line -j
with Symbolizer(cache_dir=os.environ.get("HUD_CACHE_DIR"), jobs=jobs) as sym:
    t_open = time.perf_counter()
    first = sym.symbolize_file(sys.argv[2], addrs[:1])
    t_first = time.perf_counter()
    out = sym.symbolize_file(sys.argv[2], addrs)
    t_all = time.perf_counter()
    t_warm = t_other = t_all
    if len(sys.argv) > 5:   # the warm run; the cold run ends here, as addr2line would
        again = sym.symbolize_file(sys.argv[2], addrs)
        t_warm = time.perf_counter()
        other = [int(x, 16) for x in open(sys.argv[5]).read().split()]
        sym.symbolize_file(sys.argv[2], other)
        t_other = time.perf_counter()
# The answers, as `hud addr2line -a` (and binutils `addr2line -a -f -i -C`) print them.
sys.stdout.write("\n".join(format_frames(f, a) for a, f in zip(addrs, out)) + "\n")
frames = sum(len(f) for f in out)
print(STATS + json.dumps({"import": t_import - t0, "first": t_first - t_open,
                  "all": t_all - t_open, "warm": t_warm - t_all, "other": t_other - t_warm,
                  "frames": frames, "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "helper_rss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
                  "resolved": sum(1 for f in out if f[-1].function)}))
# As `hud addr2line` ends (hud.cli.exit_without_teardown): without freeing the heap.
sys.stdout.flush()
os._exit(0)
""".replace("STATS", repr("#stats "))


def split_stats(text: str) -> tuple[dict, str]:
    """A child's (stats, answers): its last line holds the stats."""
    body, _, last = text.rstrip("\n").rpartition("\n")
    if not last.startswith("#stats "):
        raise RuntimeError("the hud child printed no stats")
    return json.loads(last[len("#stats "):]), body + "\n"


def blocks(text: str) -> dict[int, tuple[str, ...]]:
    """`addr2line -a` output split per address: address -> its lines."""
    out: dict[int, list[str]] = {}
    cur: list[str] = []
    for line in text.splitlines():
        if line.startswith("0x") and len(line) == 18:
            cur = out.setdefault(int(line, 16), [])
        else:
            # binutils adds GCC's discriminators ("file.c:12 (discriminator 3)"); hud
            # prints none: compared without, as in the differential test.
            cur.append(line.split(" (discriminator")[0])
    return {a: tuple(v) for a, v in out.items()}


def agreement(hud_text: str, ref_text: str) -> tuple[int, int]:
    """(addresses whose whole answer, every inline level's function and file:line, is
    the same in both, addresses): the same oracle as the differential test."""
    mine, ref = blocks(hud_text), blocks(ref_text)
    return sum(1 for a, v in ref.items() if mine.get(a) == v), len(ref)


def largest_fixture() -> Path:
    found = sorted((p.stat().st_size, p) for p in FIXTURES.glob("*/*")
                   if p.is_file() and os.access(p, os.X_OK) and p.suffix == "")
    if not found:
        sys.exit(f"no fixture binaries under {FIXTURES}: run scripts/build-fixtures")
    return found[-1][1]


def function_symbols(path: Path) -> list[tuple[int, int]]:
    out = subprocess.run(["nm", "-S", "--defined-only", str(path)], capture_output=True,
                         text=True, check=True).stdout
    funcs = {}
    for line in out.splitlines():
        p = line.split()
        if len(p) == 4 and p[2] in "tTwW" and int(p[1], 16) > 0:
            funcs[int(p[0], 16)] = int(p[1], 16)
    return sorted(funcs.items())


def pick(funcs: list[tuple[int, int]], n: int, seed: int, avoid: frozenset = frozenset()
         ) -> list[int]:
    """n distinct addresses spread over all functions (round-robin, random offsets)."""
    rng = random.Random(seed)
    total = sum(size for _, size in funcs)
    n = min(n, total - len(avoid))
    picked: set = set()
    while len(picked) < n:
        order = list(funcs)
        rng.shuffle(order)
        for start, size in order:
            if len(picked) >= n:
                break
            a = start + rng.randrange(size)
            if a not in avoid:
                picked.add(a)
    return sorted(picked)


# Between the benchmark and each measured process: Linux starts a process's peak RSS at
# the peak of the memory it was exec'd from (execve keeps the larger), and the benchmark's
# own grows with the answers it holds (at 20,000 addresses both tools read ~180 MB that
# way). This launcher is small; it reports its child's wall, CPU and peak RSS.
LAUNCH = r"""
import json, os, subprocess, sys, time
t = time.perf_counter()
p = subprocess.Popen(sys.argv[1:], stderr=subprocess.DEVNULL)
_, status, ru = os.wait4(p.pid, 0)
wall = time.perf_counter() - t
sys.stderr.write(json.dumps({"wall": wall, "cpu": ru.ru_utime + ru.ru_stime,
                             "rss_kb": ru.ru_maxrss,
                             "code": os.waitstatus_to_exitcode(status)}))
"""


def run_timed(cmd: list, stdin_path: str = "", cache_dir: str = "",
              ) -> tuple[float, float, int, str]:
    """(wall s, cpu s, peak RSS KiB, stdout) of one child process."""
    stdin = open(stdin_path) if stdin_path else subprocess.DEVNULL
    out = tempfile.TemporaryFile()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUD_")}
    if cache_dir:
        env["HUD_CACHE_DIR"] = cache_dir
    p = subprocess.run([sys.executable, "-I", "-c", LAUNCH, *cmd], stdin=stdin, stdout=out,
                       stderr=subprocess.PIPE, env=env, check=False)
    if stdin_path:
        stdin.close()
    out.seek(0)
    text = out.read().decode()
    out.close()
    try:
        got = json.loads(p.stderr)
    except ValueError:
        raise RuntimeError(f"the launcher failed: {p.stderr[-300:]!r}") from None
    if got["code"] != 0:
        raise RuntimeError(f"{cmd[0]} failed ({got['code']})")
    return got["wall"], got["cpu"], got["rss_kb"], text


def private_cache_parent() -> str:
    """A fresh 0700 directory the symbol cache accepts: not under /tmp or /var/tmp
    (sticky, world-writable: refused by design) but under benchmarks/out/, whose parents
    only root (or we) can write. Checked with the cache's own rules."""
    sys.path.insert(0, str(ROOT))
    from hud.symbolize.diskcache import Refused, SymbolCache
    out = ROOT / "benchmarks" / "out"
    out.mkdir(parents=True, exist_ok=True)
    parent = tempfile.mkdtemp(prefix="symcache-", dir=out)
    try:
        os.close(SymbolCache(parent)._open_dir(create=False))
    except (OSError, Refused) as e:
        sys.exit(f"the symbol cache refuses {parent}: {e}")
    return parent


def bench(binary: Path, sizes: list[int], rounds: int, jobs: str) -> list[dict]:
    funcs = function_symbols(binary)
    rows = []
    parent = private_cache_parent()
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            addrs = pick(funcs, n, seed=n)
            other = pick(funcs, n, seed=n + 1, avoid=frozenset(addrs))
            a_file = os.path.join(tmp, f"a{n}")
            o_file = os.path.join(tmp, f"o{n}")
            Path(a_file).write_text("\n".join(hex(a) for a in addrs) + "\n")
            Path(o_file).write_text("\n".join(hex(a) for a in other) + "\n")
            hud, solo, ref, warm, write, read = [], [], [], [], [], []
            child = [sys.executable, "-I", "-c", CHILD, str(ROOT), str(binary), a_file, jobs]
            for r in range(rounds):
                wall, cpu, rss, text = run_timed(child)
                stats, cold_text = split_stats(text)
                hud.append((wall, cpu, rss, stats))
                # The same in one process (-j 1): what the batch costs without helpers.
                wall, cpu, rss, text = run_timed([*child[:-1], "1"])
                stats, solo_text = split_stats(text)
                solo.append((wall, cpu, rss, stats))
                if solo_text != cold_text:
                    raise RuntimeError("helper processes changed the frames")
                cache_dir = os.path.join(parent, f"{n}-{r}")   # empty: created by the child
                wall, cpu, rss, text = run_timed(child, cache_dir=cache_dir)
                stats, write_text = split_stats(text)
                write.append((wall, cpu, rss, stats))
                wall, cpu, rss, text = run_timed(child, cache_dir=cache_dir)
                stats, read_text = split_stats(text)
                read.append((wall, cpu, rss, stats))
                cached = os.path.isdir(cache_dir)   # no build-id: no disk cache
                if cached:
                    shutil.rmtree(cache_dir)
                if not cold_text == write_text == read_text:
                    raise RuntimeError("the disk cache changed the frames")
                _, _, rss, text = run_timed(
                    [sys.executable, "-I", "-c", CHILD, str(ROOT), str(binary), a_file,
                     jobs, o_file])
                warm.append((rss, split_stats(text)[0]))
                wall, cpu, rss, ref_text = run_timed(
                    ["addr2line", "-a", "-f", "-i", "-C", "-e", str(binary)], a_file)
                ref.append((wall, cpu, rss))
                agree = agreement(cold_text, ref_text)
            med = statistics.median
            rows.append({
                "n": len(addrs),
                "hud_cold": med(h[0] for h in hud), "hud_cold_cpu": med(h[1] for h in hud),
                "hud_rss_mb": max(h[3]["rss_kb"] for h in hud) / 1024,
                "helper_rss_mb": max(h[3]["helper_rss_kb"] for h in hud) / 1024,
                "solo": med(h[0] for h in solo), "solo_cpu": med(h[1] for h in solo),
                "solo_rss_mb": max(h[2] for h in solo) / 1024,
                "hud_rss_warm_mb": max(w[0] for w in warm) / 1024,
                "hud_first": med(h[3]["first"] for h in hud),
                "hud_import": med(h[3]["import"] for h in hud),
                "hud_warm": med(w[1]["warm"] for w in warm),
                "hud_other": med(w[1]["other"] for w in warm),
                "frames": hud[0][3]["frames"], "resolved": hud[0][3]["resolved"],
                "agree": agree,
                "a2l": med(r[0] for r in ref), "a2l_cpu": med(r[1] for r in ref),
                "a2l_rss_mb": max(r[2] for r in ref) / 1024,
                "write": med(w[0] for w in write), "write_cpu": med(w[1] for w in write),
                "read": med(x[0] for x in read), "read_cpu": med(x[1] for x in read),
                "read_first": med(x[3]["first"] for x in read),
                "read_rss_mb": max(x[2] for x in read) / 1024,
                "cached": cached,
            })
    shutil.rmtree(parent)
    return rows


def table(binary: Path, rows: list[dict], rounds: int, jobs: str) -> str:
    sys.path.insert(0, str(ROOT))
    from hud.symbolize.fanout import usable_cpus
    size_mb = binary.stat().st_size / 1e6
    out = [f"Binary: `{binary.relative_to(ROOT) if binary.is_relative_to(ROOT) else binary}`"
           f" ({size_mb:.1f} MB), medians of {rounds} alternating rounds; hud with "
           f"-j {jobs} ({usable_cpus()} usable CPUs) unless it says one process.", "",
           "| addresses | addr2line wall (cpu) | hud cold wall (cpu) | ratio | goal "
           "| hud cold, one process | ratio "
           "| hud first address | hud warm (same) | ratio | goal | hud warm (other set) "
           "| peak RSS hud (+ largest helper) / addr2line "
           "| hud cold, writing the disk cache | hud cold, disk cache populated | ratio "
           "| its first address | its peak RSS |",
           "|---:" * 18 + "|"]
    for r in rows:
        out.append(
            f"| {r['n']:,} | {r['a2l']:.2f} s ({r['a2l_cpu']:.2f}) "
            f"| {r['hud_cold']:.2f} s ({r['hud_cold_cpu']:.2f}) "
            f"| {r['hud_cold'] / r['a2l']:.2f}x | <= 2x "
            f"| {r['solo']:.2f} s ({r['solo_cpu']:.2f}) | {r['solo'] / r['a2l']:.2f}x "
            f"| {r['hud_first'] * 1000:.0f} ms | {r['hud_warm'] * 1000:.0f} ms "
            f"| {r['hud_warm'] / r['a2l']:.3f}x | <= 0.25x "
            f"| {r['hud_other']:.2f} s "
            f"| {r['hud_rss_mb']:.0f}"
            + (f" + {r['helper_rss_mb']:.0f}" if r["helper_rss_mb"] else "")
            + f" ({r['hud_rss_warm_mb']:.0f} after both sets) / {r['a2l_rss_mb']:.0f} MB "
            + (f"| {r['write']:.2f} s ({r['write_cpu']:.2f}) "
               f"| {r['read']:.2f} s ({r['read_cpu']:.2f}) | {r['read'] / r['a2l']:.2f}x "
               f"| {r['read_first'] * 1000:.0f} ms | {r['read_rss_mb']:.0f} MB |"
               if r["cached"] else "| no build-id: no disk cache | | | | |"))
    out.append("")
    out.append("hud cold includes interpreter start and imports "
               f"({rows[0]['hud_import'] * 1000:.0f} ms); "
               f"{rows[-1]['frames']:,} frames for {rows[-1]['n']:,} addresses, "
               f"{rows[-1]['resolved']:,} with a function name.")
    for r in rows:
        same, total = r["agree"]
        out.append(f"{r['n']:,} addresses: hud and addr2line print the same function and "
                   f"file:line on every level for {same:,} of {total:,} "
                   f"({100 * same / max(total, 1):.1f}%).")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", type=Path, help="ELF file (default: the largest fixture)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--sizes", default="1000,20000")
    ap.add_argument("--jobs", default="auto",
                    help="hud's processes per batch, as `hud addr2line -j` (default: auto)")
    args = ap.parse_args()
    binary = (args.binary or largest_fixture()).resolve()
    rows = bench(binary, [int(s) for s in args.sizes.split(",")], args.rounds, args.jobs)
    print(table(binary, rows, args.rounds, args.jobs))


if __name__ == "__main__":
    main()
