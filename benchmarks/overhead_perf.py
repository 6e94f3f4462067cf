"""Benchmark (not a test): what the perf backend costs, beside no hud and the eBPF backend.

    .venv/bin/python benchmarks/overhead_perf.py [--rounds 5] [--seconds 8] [--backends perf,ebpf]
        (a backend may carry a sampling rate: --backends perf,perf@199,ebpf)
    .venv/bin/python benchmarks/overhead_perf.py --switch-cost [--rounds 11]
    .venv/bin/python benchmarks/overhead_perf.py --target-cost [--rounds 7]

Demo mode (root, demo fixture built): one demo server; each round runs `demo load`
(8 connections, default mix) for --seconds with no hud, then with `hud --backend B
--headless` attached to the server, modes interleaved so that load from other work hits
every mode alike. hud is started 3 s before the load (its start-up, symbol loading
included, is not in the window) and measured over the load window only: its CPU time
(utime + stime from /proc/PID/stat) per second of wall clock, and the demo's requests
per second, and the server's own CPU time per request (what hud's kernel side costs the
target, steadier than throughput on a shared host). Medians over the rounds; losses and
ratios are against the no-hud medians of the same invocation.

Switch-cost mode (root, linux-perf's `perf bench`): CPU time per op of `perf bench sched
pipe` (two tasks ping-ponging on one CPU: 2 context switches per op) with no events,
with the design the perf backend does not use (a pid=-1 sched_switch tracepoint per CPU,
filtered to some tids in the kernel) and with the one it uses (per-thread events of an
unrelated process), to show what each costs the rest of the host.

Target-cost mode (root, gcc): a two-thread pipe ping-pong in C pinned to CPU 1 (2 context
switches of target threads per op) measures its own CPU time per op with no collector,
with the perf backend's collector (full; without the cpu-clock sampler; without the
preemption tracepoint) and with the eBPF backend's, each drained by a poll loop: what
one switch of a profiled thread costs it.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    fields = data[data.rfind(b")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def demo_round(server, backend: str, seconds: float) -> dict:
    from support.fixtures import run_load
    hud = None
    if backend != "none":
        name, _, freq = backend.partition("@")
        hud = subprocess.Popen([sys.executable, "-m", "hud", "--pid", str(server.pid),
                                "--headless", "--quiet", "--backend", name,
                                *(["--freq", freq] if freq else []),
                                "--duration", str(seconds + 6)], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(3.0)
        if hud.poll() is not None:
            raise SystemExit(f"hud --backend {backend} exited: {hud.stderr.read()}")
    result: dict = {}
    cpu0 = _cpu_s(hud.pid) if hud else 0.0
    srv0 = _cpu_s(server.pid)
    t0 = time.monotonic()
    th = threading.Thread(target=lambda: result.update(
        run_load(server, duration=seconds, connections=8)))
    th.start()
    th.join()
    wall = time.monotonic() - t0
    cpu = (_cpu_s(hud.pid) - cpu0) if hud else 0.0
    srv = _cpu_s(server.pid) - srv0
    if hud is not None:
        hud.terminate()
        hud.wait(timeout=30)
        if hud.stderr is not None:
            hud.stderr.close()
    requests = max(1, int(result.get("requests", 0)))
    return {"rps": float(result.get("rps", 0.0)), "hud_cpu_pct": 100 * cpu / wall,
            "server_us_per_req": 1e6 * srv / requests}


def demo(rounds: int, seconds: float, backends: list[str]) -> None:
    from support.fixtures import run_fixture
    modes = ["none", *backends]
    rows: dict = {m: [] for m in modes}
    with run_fixture("demo") as server:
        for r in range(rounds):
            for m in modes:
                rows[m].append(demo_round(server, m, seconds))
                print(f"round {r + 1} {m}: {rows[m][-1]}", file=sys.stderr)
    base = statistics.median(x["rps"] for x in rows["none"])
    print(f"\ndemo under `demo load` (8 connections), {rounds} rounds of {seconds:g} s, "
          f"medians; {os.cpu_count()} CPUs\n")
    base_us = statistics.median(x["server_us_per_req"] for x in rows["none"])
    print("| mode | requests/s | throughput loss | hud CPU (% of one core) "
          "| server CPU per request | rps per round |")
    print("|---|---:|---:|---:|---:|---|")
    for m in modes:
        rps = statistics.median(x["rps"] for x in rows[m])
        cpu = statistics.median(x["hud_cpu_pct"] for x in rows[m])
        us = statistics.median(x["server_us_per_req"] for x in rows[m])
        loss = "ref" if m == "none" else f"{100 * (1 - rps / base):.1f}%"
        each = ", ".join(f"{x['rps']:.0f}" for x in rows[m])
        print(f"| {m} | {rps:,.0f} | {loss} | {cpu:.1f} | {us:.0f} us"
              f"{'' if m == 'none' else f' ({us / base_us:.2f}x)'} | {each} |")


def _pipe_cpu_us(ops: int) -> float:
    """CPU microseconds per op of `perf bench sched pipe` pinned to CPU 1."""
    r0 = os.times()
    subprocess.run(["taskset", "-c", "1", "perf", "bench", "sched", "pipe", "-l", str(ops)],
                   capture_output=True, check=True)
    r1 = os.times()
    used = (r1.children_user + r1.children_system) - (r0.children_user + r0.children_system)
    return used / ops * 1e6


def _system_wide_filtered() -> list:
    """The rejected design: per CPU (pid=-1), a sched_switch tracepoint for switch-outs
    (stack-copying sample type) and one for switch-ins, each with a kernel filter on 20
    tids that do not exist, sharing one ring."""
    from hud.bpf.perfbuf import PerfRing
    from hud.linux import perf_event as pe
    from hud.linux import procfs, tracefs
    tp = tracefs.tracepoint_id("sched", "sched_switch")
    objs: list = []
    for cpu in procfs.online_cpus():
        ring = None
        for field, stack in (("prev_pid", True), ("next_pid", False)):
            st = pe.PERF_SAMPLE_RAW | pe.PERF_SAMPLE_TIME | pe.PERF_SAMPLE_TID
            if stack:
                st |= pe.PERF_SAMPLE_REGS_USER | pe.PERF_SAMPLE_STACK_USER
            attr = pe.PerfEventAttr(type=pe.PERF_TYPE_TRACEPOINT, config=tp, period_or_freq=1,
                                    sample_type=st, sample_regs_user=0x1C0 if stack else 0,
                                    sample_stack_user=16384 if stack else 0)
            fd = pe.perf_event_open(attr, -1, cpu)
            objs.append(fd)
            pe.set_filter(fd, " || ".join(f"{field} == {4_000_000 + i}" for i in range(20)))
            if ring is None:
                ring = PerfRing(fd, 16)
                objs.append(ring)
            else:
                pe.set_output(fd, ring.fd)
    return objs


def _tracepoint_samples_arrive() -> bool:
    """False when something (a TRACEPOINT BPF program on sched_switch returning 0) swallows
    the tracepoint's perf samples: then the filtered design costs nothing measurable and
    the comparison is meaningless."""
    from hud.bpf.perfbuf import PerfRing
    from hud.linux import perf_event as pe
    from hud.linux import tracefs
    attr = pe.PerfEventAttr(type=pe.PERF_TYPE_TRACEPOINT,
                            config=tracefs.tracepoint_id("sched", "sched_switch"),
                            period_or_freq=1, sample_type=pe.PERF_SAMPLE_RAW)
    fd = pe.perf_event_open(attr, -1, 1)
    with PerfRing(fd, 16, own_fd=True) as ring:
        _pipe_cpu_us(1000)
        return any(True for _ in ring.read())


def switch_cost(rounds: int, ops: int) -> None:
    from hud.collect.perf import PerfCollector
    if not shutil.which("perf"):
        raise SystemExit("needs linux-perf (`perf bench`)")
    idle = subprocess.Popen([sys.executable, "-c", "import time\nwhile True: time.sleep(1)"])
    rows: dict = {"no events": [], "pid=-1 filtered tracepoint": [],
                  "per-thread events (perf backend)": []}
    skipped = 0
    try:
        for _ in range(rounds):
            if not _tracepoint_samples_arrive():
                skipped += 1        # another tracer swallows the tracepoint now: no figure
                continue
            objs = _system_wide_filtered()
            try:
                rows["pid=-1 filtered tracepoint"].append(_pipe_cpu_us(ops))
            finally:
                for o in reversed(objs):          # rings before the fds they map
                    if isinstance(o, int):
                        os.close(o)
                    else:
                        o.close()
            rows["no events"].append(_pipe_cpu_us(ops))
            with PerfCollector(idle.pid, sample=False):
                rows["per-thread events (perf backend)"].append(_pipe_cpu_us(ops))
    finally:
        idle.kill()
        idle.wait()
    if not rows["no events"]:
        raise SystemExit("every round found the tracepoint swallowed: no figures")
    base = statistics.median(rows["no events"])
    print(f"\n`perf bench sched pipe -l {ops}` on CPU 1 (2 switches per op), CPU time per op, "
          f"medians of {len(rows['no events'])} interleaved rounds ({skipped} skipped: "
          f"tracepoint swallowed)\n")
    print("| events on the host | us per op | extra per context switch | per round |")
    print("|---|---:|---:|---|")
    for name, vals in rows.items():
        med = statistics.median(vals)
        extra = "ref" if name == "no events" else f"{(med - base) / 2 * 1000:+.0f} ns"
        print(f"| {name} | {med:.2f} | {extra} | {', '.join(f'{v:.2f}' for v in vals)} |")


PINGPONG_C = r"""
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
static int p1[2], p2[2];
static void *echo(void *x) {
    char c;
    while (read(p1[0], &c, 1) == 1 && write(p2[1], &c, 1) == 1) {}
    return x;
}
static double secs(struct timeval t) { return t.tv_sec + t.tv_usec / 1e6; }
int main(int argc, char **argv) {
    double run = argc > 1 ? atof(argv[1]) : 2, el = 0;
    char line[16], c = 'x';
    pthread_t t;
    struct rusage r0, r1;
    struct timespec s, n;
    long ops = 0;
    if (pipe(p1) || pipe(p2) || pthread_create(&t, 0, echo, 0)) return 1;
    if (!fgets(line, sizeof line, stdin)) return 1;          /* go */
    getrusage(RUSAGE_SELF, &r0);
    clock_gettime(CLOCK_MONOTONIC, &s);
    while (el < run) {
        for (int i = 0; i < 1000; i++)
            if (write(p1[1], &c, 1) != 1 || read(p2[0], &c, 1) != 1) return 1;
        ops += 1000;
        clock_gettime(CLOCK_MONOTONIC, &n);
        el = (n.tv_sec - s.tv_sec) + (n.tv_nsec - s.tv_nsec) / 1e9;
    }
    getrusage(RUSAGE_SELF, &r1);
    printf("%ld %.6f\n", ops, (secs(r1.ru_utime) - secs(r0.ru_utime) + secs(r1.ru_stime)
                               - secs(r0.ru_stime)) * 1e6 / ops);
    return 0;
}
"""

TARGET_MODES = ("no collector", "perf", "perf, no sampler", "perf, no preemptions", "ebpf")


def _collector(mode: str, pid: int):
    from hud.collect import perf_switch
    from hud.collect.perf import PerfCollector
    if mode == "ebpf":
        from hud.collect.ebpf import EbpfCollector
        return EbpfCollector(pid, freq=401).open()
    if mode == "perf, no preemptions":
        real = perf_switch.SwitchEvents.__init__

        def init(self, *a, **k):
            real(self, *a, **{**k, "preemptions": False})
        perf_switch.SwitchEvents.__init__ = init
        try:
            return PerfCollector(pid, freq=401).start()
        finally:
            perf_switch.SwitchEvents.__init__ = real
    return PerfCollector(pid, freq=401, sample=mode != "perf, no sampler").start()


def _pingpong_round(exe: str, mode: str, seconds: float) -> float:
    p = subprocess.Popen(["taskset", "-c", "1", exe, str(seconds)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    col, stop, th = None, threading.Event(), None
    try:
        time.sleep(0.2)   # both threads exist: events are opened on each
        if mode != "no collector":
            col = _collector(mode, p.pid)

            def drain(c=col) -> None:
                while not stop.is_set():
                    c.poll(0.1)
            th = threading.Thread(target=drain)
            th.start()
        assert p.stdin is not None and p.stdout is not None
        p.stdin.write("go\n")
        p.stdin.flush()
        return float(p.stdout.readline().split()[1])
    finally:
        stop.set()
        if th is not None:
            th.join()
        if col is not None:
            col.close()
        p.kill()
        p.wait()
        for f in (p.stdin, p.stdout):
            if f is not None:
                f.close()


def target_cost(rounds: int, seconds: float) -> None:
    import tempfile
    if not shutil.which("gcc"):
        raise SystemExit("needs gcc")
    with tempfile.TemporaryDirectory(prefix="hud-pingpong-") as tmp:
        src, exe = os.path.join(tmp, "pingpong.c"), os.path.join(tmp, "pingpong")
        with open(src, "w") as f:
            f.write(PINGPONG_C)
        subprocess.run(["gcc", "-O2", "-pthread", "-o", exe, src], check=True)
        rows: dict = {m: [] for m in TARGET_MODES}
        for _ in range(rounds):
            for m in TARGET_MODES:
                rows[m].append(_pingpong_round(exe, m, seconds))
    base = statistics.median(rows["no collector"])
    print(f"\npipe ping-pong between two threads of the target on CPU 1 (2 switches per op), "
          f"its CPU time per op, medians of {rounds} interleaved rounds of {seconds:g} s; "
          f"samplers at 401 Hz\n")
    print("| collector | us per op | extra per switch of a target thread | per round |")
    print("|---|---:|---:|---|")
    for m, vals in rows.items():
        med = statistics.median(vals)
        extra = "ref" if m == "no collector" else f"{(med - base) / 2:+.1f} us"
        print(f"| {m} | {med:.2f} | {extra} | {', '.join(f'{v:.1f}' for v in vals)} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--backends", default="perf,ebpf")
    ap.add_argument("--switch-cost", action="store_true")
    ap.add_argument("--target-cost", action="store_true")
    ap.add_argument("--ops", type=int, default=200_000)
    a = ap.parse_args()
    if a.switch_cost:
        switch_cost(a.rounds, a.ops)
    elif a.target_cost:
        target_cost(a.rounds, min(a.seconds, 2.0))
    else:
        demo(a.rounds, a.seconds, [b for b in a.backends.split(",") if b])


if __name__ == "__main__":
    main()
