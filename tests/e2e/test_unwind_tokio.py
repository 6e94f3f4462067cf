"""Unwinding real Tokio programs (the blockers fixtures, release builds with and without
frame pointers): ours against gdb and eu-stack on stopped snapshots, perf samples of a
CPU-bound task unwound to the runtime's thread start, and FP vs CFI on the FP build."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from unit.unwind.unwind_support import eu_stack, gdb_snapshot, x86_capture

from hud.collect.perf_sampler import PerfSampler
from hud.linux import procfs
from hud.linux.libc import ARCH
from hud.model import CpuSample
from hud.symbolize.normalize import ProcessMaps
from hud.unwind.unwinder import Unwinder

pytestmark = pytest.mark.skipif(ARCH != "x86_64", reason="x86_64 snapshots")


def _stop(pid: int) -> None:
    os.kill(pid, signal.SIGSTOP)
    for _ in range(500):
        if procfs.thread_state(pid, pid) == "T":
            return
        time.sleep(0.002)


@pytest.mark.parametrize("variant", ["blockers-nofp", "blockers-fp"])
def test_snapshots_match_gdb_and_eu_stack(tokio_fixture, tmp_path, variant):
    fx = tokio_fixture(variant, ["cpu", "sleep", "mutex"])
    time.sleep(0.3)
    total = agree_gdb = agree_eu = complete = sps_checked = 0
    mismatches = []
    bad_sps = []
    for _ in range(6):
        _stop(fx.pid)
        try:
            snaps = gdb_snapshot(fx.pid, tmp_path)
            eu = eu_stack(fx.pid)
            maps = ProcessMaps(fx.pid)
        finally:
            os.kill(fx.pid, signal.SIGCONT)
        uw = Unwinder(maps)
        for snap in snaps:
            res = uw.unwind(x86_capture(snap), mode="cfi")
            ours = list(res.ips)
            total += 1
            agree_gdb += ours == snap["pcs"]
            agree_eu += ours == eu.get(snap["tid"])
            complete += res.reason == "end"
            if ours != snap["pcs"]:
                mismatches.append((snap["tid"], res.reason, len(ours), len(snap["pcs"])))
            else:
                # Each frame's stack pointer (what task identities read frames by) too.
                sps_checked += 1
                if list(res.sps) != snap["sps"][:len(res.sps)] or len(res.sps) != len(ours):
                    bad_sps.append((snap["tid"], res.sps[:6], snap["sps"][:6]))
        time.sleep(0.1)
    assert total >= 20
    assert agree_gdb >= 0.95 * total, mismatches[:5]
    assert agree_eu >= 0.95 * total
    assert complete >= 0.95 * total
    assert sps_checked >= 0.95 * total and bad_sps == [], bad_sps[:3]


class _Addr2line:
    """binutils addr2line as the oracle symbolizer: inline chains, demangled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def names(self, vaddrs: list[int]) -> dict[int, list[str]]:
        if not vaddrs:
            return {}
        text = subprocess.run(["addr2line", "-a", "-f", "-C", "-i", "-e", str(self.path),
                               *[hex(a) for a in vaddrs]], capture_output=True, text=True,
                              check=True, timeout=120).stdout
        out: dict[int, list[str]] = {}
        cur = None
        lines = text.splitlines()
        i = 0
        while i < len(lines):
            line = lines[i]
            if line.startswith("0x"):
                cur = out.setdefault(int(line, 16), [])
                i += 1
                continue
            if cur is not None:
                cur.append(line)
            i += 2  # function line, then file:line
        return out


def _record(fx, seconds: float, want: int = 0, wanted=lambda s: True,
            max_seconds: float = 10.0) -> tuple[list[CpuSample], ProcessMaps]:
    """Samples for `seconds`, and on (up to `max_seconds`) until `want` of them satisfy
    `wanted`: on a loaded machine the target gets less CPU, hence fewer samples."""
    samples: list[CpuSample] = []
    with PerfSampler(fx.pid, freq=199, stack_bytes=32768) as sampler:
        sampler.start()
        start = time.monotonic()
        while True:
            time.sleep(0.05)
            samples += [s for s in sampler.read() if isinstance(s, CpuSample)]
            spent = time.monotonic() - start
            if spent >= max_seconds or (spent >= seconds and
                                        sum(1 for s in samples if wanted(s)) >= want):
                break
    return samples, ProcessMaps(fx.pid)


def test_cpu_task_samples_unwind_to_the_thread_start(tokio_fixture):
    """Samples inside the CPU-bound task of the no-FP build reach the worker loop and the
    thread's start (reason "end"), through tokio and std, which the kernel's FP chain cannot."""
    fx = tokio_fixture("blockers-nofp", ["cpu:40/60"])
    scenario = fx.manifest.scenarios["cpu"]
    time.sleep(0.3)
    workers = set(fx.worker_tids)
    samples, maps = _record(fx, 2.0, want=60, wanted=lambda s: s.tid in workers)
    uw = Unwinder(maps)
    binary = Path(fx.manifest.binary).name
    results = []
    for s in samples:
        if s.tid not in workers or s.stack.regs is None:
            continue
        results.append((s, uw.unwind(s.stack)))
    # Symbolize every return address in our binary with addr2line (ip-1 for callers).
    vaddrs = set()
    for _, res in results:
        for k, ip in enumerate(res.ips):
            mod = maps.find(ip if k == 0 else ip - 1)
            if mod is not None and Path(mod.file_path).name == binary:
                vaddrs.add(mod.to_vaddr(ip if k == 0 else ip - 1))
    names = _Addr2line(fx.manifest.symbol_file).names(sorted(vaddrs))

    def stack_names(ips) -> list[str]:
        out = []
        for k, ip in enumerate(ips):
            mod = maps.find(ip if k == 0 else ip - 1)
            if mod is not None and Path(mod.file_path).name == binary:
                out += names.get(mod.to_vaddr(ip if k == 0 else ip - 1), ["?"])
            else:
                out.append(Path(mod.file_path).name if mod else "?")
        return out

    burning = [(s, res, stack_names(res.ips)) for s, res in results]
    burning = [b for b in burning if any(scenario.function in n for n in b[2])]
    assert len(burning) >= 20, f"only {len(burning)} samples in {scenario.function}"
    ok = [b for b in burning
          if b[1].reason == "end"
          and any("scheduler::multi_thread::worker" in n for n in b[2])
          and any("std::sys" in n and "thread" in n for n in b[2])]
    assert len(ok) >= 0.95 * len(burning), [(b[1].reason, b[2][-6:]) for b in burning[:3]]
    kernel_fp = [b for b in burning
                 if any("scheduler::multi_thread::worker" in n
                        for n in stack_names(b[0].stack.fp_ips))]
    assert len(kernel_fp) < 0.5 * len(burning), "the FP chain should not reach the worker"


def test_fp_build_cfi_and_fp_walks_agree(tokio_fixture):
    """On the frame-pointer build, the CFI walk and both FP walks (ours over the copy, the
    kernel's) give the same frames through the binary, up to the first frame in glibc."""
    fx = tokio_fixture("blockers-fp", ["cpu:40/60"])
    time.sleep(0.3)
    binary = Path(fx.manifest.binary).name
    maps0 = ProcessMaps(fx.pid)

    def in_binary(s: CpuSample) -> bool:
        mod = maps0.find(s.stack.regs.ip) if s.stack.regs else None
        return mod is not None and Path(mod.file_path).name == binary
    samples, maps = _record(fx, 1.5, want=40, wanted=in_binary)
    uw = Unwinder(maps)
    compared = agree = agree_kernel = exact = 0
    for s in samples:
        regs = s.stack.regs
        first = maps.find(regs.ip) if regs else None
        if first is None or Path(first.file_path).name != binary:
            continue
        cfi = []
        for k, ip in enumerate(uw.unwind(s.stack, mode="cfi").ips):
            cfi.append(ip)
            mod = maps.find(ip if k == 0 else ip - 1)
            if k > 0 and (mod is None or Path(mod.file_path).name != binary):
                break
        row = uw.cfi_row(regs.ip)
        established = row is not None and row.row[0] == 6  # CFA = rbp + N
        allowed = [cfi] if established else [cfi, cfi[:1] + cfi[2:]]
        fp = list(uw.unwind(s.stack, mode="fp").ips)
        compared += 1
        agree += any(fp[:len(c)] == c for c in allowed)
        agree_kernel += any(list(s.stack.fp_ips[:len(c)]) == c for c in allowed)
        exact += established and fp[:len(cfi)] == cfi
    assert compared >= 30
    assert agree >= 0.95 * compared
    assert agree_kernel >= 0.95 * compared
    assert exact > 0
