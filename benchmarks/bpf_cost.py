"""Benchmark (not a test): the kernel-side cost of the eBPF collector, per program and path.

    sudo .venv/bin/python benchmarks/bpf_cost.py [--variant blockers-nofp|demo]
        [--scenarios sleep,cpu] [--seconds 3] [--rounds 3] [--connections 8]
        [--no-runq-stacks] [--kernel-depth 48]

Runs a fixture (blockers with its scenarios, or the demo HTTP server kept under
`demo load` for the whole run: the park-heavy case) and attaches the collector twice
per round:

- the production programs with BPF_ENABLE_STATS: run_time_ns / run_cnt per program, first
  while Tokio's parks are not known ("unlearned": every worker switch-out copies a stack),
  then after marking the sites found by unwinding and symbolizing the off-CPU stacks and
  probes, as the session does ("learned": a park costs one more map lookup, a site known
  to be no park is no longer probed);
- a timing build (kernel.programs.common PATHS: each path times itself with
  bpf_ktime_get_ns; figures include one such call): ns per event on each path, so the
  switch-out of a target thread with and without the park hit, and a sample, are told
  apart from the switches of every other task on the host, which the program-wide
  averages mix in. The reference row is the cheapest path: another task's switch-out.

Prints markdown tables (medians over rounds) for docs/PERFORMANCE.md.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from hud.collect.ebpf import EbpfCollector  # noqa: E402
from hud.model import OffCpuEvent  # noqa: E402
from hud.symbolize import Symbolizer  # noqa: E402
from hud.unwind import Unwinder  # noqa: E402
from kernel.programs import sampler, sched_switch, sched_waking, timer_flag  # noqa: E402
from kernel.programs.common import Params  # noqa: E402

PATH_LABELS = {
    "out_other": "another task's switch-out (reference)",
    "in_other": "another task's switch-in",
    "out_park": "target switch-out, park hit",
    "out_capture": "target switch-out, capture (regs + FP walk + stack copy)",
    "out_times": "target switch-out, ignored role (times only)",
    "in_account": "target switch-in, time accounted, no record",
    "in_record": "target switch-in, record sent (episode or probe)",
    "smp_other": "sample of another task",
    "smp_record": "sample of a target thread, record sent",
}


class ParkLearner:
    """Finds Tokio park sites in off-CPU events, as the session will (by symbolized stack)."""

    def __init__(self, pid: int, workers: set[int]) -> None:
        self.sym = Symbolizer().for_process(pid)
        self.uw = Unwinder(self.sym.maps)
        self.workers = workers
        self.verdict: dict[tuple[int, int, int], bool] = {}

    def feed(self, events: list) -> None:
        for ev in events:
            if not isinstance(ev, OffCpuEvent) or ev.tid not in self.workers \
                    or ev.stack.regs is None:
                continue
            site = (ev.tid, ev.stack.regs.ip, ev.stack.regs.sp)
            if site not in self.verdict:
                ips = self.uw.unwind(ev.stack).ips
                names = [f.function or "" for g in self.sym.symbolize(ips) for f in g]
                self.verdict[site] = any(n.startswith("tokio::") and "park" in n
                                         for n in names)

    def sites(self, park: bool) -> list[tuple[int, int, int]]:
        return [s for s, is_park in self.verdict.items() if is_park == park]


def _drain(col: EbpfCollector, seconds: float, learner: ParkLearner) -> int:
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        events = col.poll(0.05)
        learner.feed(events)
        n += len(events)
    return n


def _program_phase(col: EbpfCollector, seconds: float, learner: ParkLearner) -> dict:
    a, ca = col.program_stats(), col.counters()
    t0 = time.monotonic()
    _drain(col, seconds, learner)
    wall = time.monotonic() - t0
    b, cb = col.program_stats(), col.counters()
    out = {"wall": wall}
    for k in ("captures", "offcpu_records", "sample_records", "probes"):
        out[k] = cb[k] - ca[k]
    for name in b:
        runs = b[name]["run_cnt"] - a[name]["run_cnt"]
        ns = b[name]["run_time_ns"] - a[name]["run_time_ns"]
        out[name] = (runs, ns)
    return out


def _path_phase(col: EbpfCollector, seconds: float, learner: ParkLearner) -> dict:
    a = col.path_times()
    _drain(col, seconds, learner)
    b = col.path_times()
    return {k: (b[k][0] - a[k][0], b[k][1] - a[k][1]) for k in b}


def one_round(fx, seconds: float, runq_stacks: bool = True,
              kernel_depth: int = Params.kernel_depth) -> dict:
    workers = set(fx.worker_tids)
    out: dict = {}
    for timing in (False, True):
        learner = ParkLearner(fx.pid, workers)
        with EbpfCollector(fx.pid, bpf_stats=not timing, timing=timing,
                           runq_stacks=runq_stacks, kernel_depth=kernel_depth) as col:
            for tid in workers:
                col.set_role(tid, "worker")
            _drain(col, 0.5, learner)
            phase = _path_phase if timing else _program_phase
            before = phase(col, seconds, learner)
            for site in learner.sites(park=True):
                col.mark_park(*site)
            for site in learner.sites(park=False):
                col.mark_not_park(*site)
            after = phase(col, seconds, learner)
        out["paths" if timing else "programs"] = (before, after, len(learner.sites(True)))
    return out


def _med(values) -> float:
    return statistics.median(list(values))


def _ns(pair: tuple[int, int]) -> float:
    runs, ns = pair
    return ns / runs if runs else float("nan")


def report(rounds: list[dict], args: argparse.Namespace) -> str:
    lines = [f"{args.variant}, scenarios {args.scenarios}, {args.seconds:g} s per phase, "
             f"{len(rounds)} rounds (medians)"
             + (", runq_stacks=False" if args.no_runq_stacks else "")
             + f", kernel_depth={args.kernel_depth}", ""]
    lines += ["| program | phase | runs/s | ns/run | BPF time, % of one CPU | "
              "captures/s | records/s (probes) |", "|---|---|---:|---:|---:|---:|---:|"]
    for name in (sched_switch.NAME, sampler.NAME, sched_waking.NAME, timer_flag.ENTRY,
                 timer_flag.EXIT):
        for k, phase in enumerate(("parks unlearned", "parks learned")):
            rows = [r["programs"][k] for r in rounds]
            if not all(name in x for x in rows):
                continue     # no sched_waking on this kernel
            runs = _med(x[name][0] / x["wall"] for x in rows)
            ns = _med(_ns(x[name]) for x in rows)
            cpu = _med(x[name][1] / x["wall"] / 1e9 * 100 for x in rows)
            if name == sched_switch.NAME:
                caps = _med(x["captures"] / x["wall"] for x in rows)
                recs = f"{_med(x['offcpu_records'] / x['wall'] for x in rows):,.0f} " \
                       f"({_med(x['probes'] / x['wall'] for x in rows):,.0f})"
            elif name == sampler.NAME:
                caps = _med(x["sample_records"] / x["wall"] for x in rows)
                recs = f"{caps:,.0f}"
            elif name == sched_waking.NAME:
                caps, recs = 0, "(writes into captures)"
            else:
                caps, recs = 0, "(a per-CPU flag)"
            lines.append(f"| {name} | {phase} | {runs:,.0f} | {ns:,.0f} | {cpu:.3f} | "
                         f"{caps:,.0f} | {recs} |")
    parks = statistics.median(r["programs"][2] for r in rounds)
    lines += ["", f"park sites learned per round: {parks:g}", ""]
    lines += ["| path (timing build) | events/s unlearned | events/s learned | ns/event | "
              "x reference |", "|---|---:|---:|---:|---:|"]
    ref = statistics.median(_ns(r["paths"][1]["out_other"]) for r in rounds)
    wall = args.seconds
    for key, label in PATH_LABELS.items():
        before = [r["paths"][0][key] for r in rounds]
        after = [r["paths"][1][key] for r in rounds]
        both = [(b[0] + a[0], b[1] + a[1]) for b, a in zip(before, after)]
        if not any(n for n, _ in both):
            continue
        ns = statistics.median(_ns(x) for x in both if x[0])
        lines.append(f"| {label} | {statistics.median(n for n, _ in before) / wall:,.0f} | "
                     f"{statistics.median(n for n, _ in after) / wall:,.0f} | {ns:,.0f} | "
                     f"{ns / ref:.1f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="blockers-nofp")
    ap.add_argument("--scenarios", default="sleep,cpu")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=8, help="demo load connections")
    ap.add_argument("--no-runq-stacks", action="store_true",
                    help="registers only for preempted switch-outs (runq_stacks=False)")
    ap.add_argument("--kernel-depth", type=int, default=Params.kernel_depth,
                    help="kernel frames per capture (0: no kernel stacks)")
    args = ap.parse_args()
    from support.fixtures import run_fixture, run_load
    demo = args.variant.startswith("demo")
    if demo:
        args.scenarios = f"demo load, {args.connections} connections"
    rounds = []
    with run_fixture(args.variant, None if demo else args.scenarios.split(",")) as fx:
        load = None
        if demo:
            # 4 phases of --seconds per round plus start-up: keep the load on throughout.
            seconds = args.rounds * (4 * args.seconds + 3) + 5
            load = threading.Thread(target=run_load, args=(fx,), daemon=True,
                                    kwargs={"duration": seconds,
                                            "connections": args.connections})
            load.start()
        time.sleep(1.0)
        for _ in range(args.rounds):
            rounds.append(one_round(fx, args.seconds, not args.no_runq_stacks,
                                    args.kernel_depth))
    print(report(rounds, args))


if __name__ == "__main__":
    main()
