"""Symbolizing live Tokio stacks (the blockers fixture): every frame of every thread, from
eu-stack's raw pcs, against addr2line with the return-address rule; the workers show the
runtime's frames and the sleep scenario's blocking function at its manifest line."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from unit.symbolize import oracle

from hud.symbolize import Symbolizer

pytestmark = pytest.mark.timeout(300)


def _stacks(pid: int) -> dict[int, list[int]]:
    import subprocess
    out = subprocess.run(["eu-stack", "-p", str(pid), "-a", "-q"], capture_output=True,
                         text=True).stdout
    stacks: dict[int, list[int]] = {}
    tid = None
    for line in out.splitlines():
        if line.startswith("TID"):
            tid = int(line.split()[1].rstrip(":"))
            stacks[tid] = []
        elif line.startswith("#") and tid is not None:
            stacks[tid].append(int(line.split()[1], 16))
    return {t: s for t, s in stacks.items() if s}


def test_live_tokio_stacks(tokio_fixture):
    # Asleep 3/4 of the time: 30 snapshots all missing it would take luck (0.25**30),
    # where the default 50/200 ms missed it in all 10 snapshots of a CI run.
    fx = tokio_fixture("blockers-nofp", ["sleep:150/200"])
    sleep = fx.manifest.scenarios["sleep"]
    time.sleep(0.5)
    seen_blocker = False
    checked = 0
    with Symbolizer() as sym:
        proc = sym.for_process(fx.pid)
        for _ in range(30):
            stacks = _stacks(fx.pid)
            assert len(stacks) >= 3
            for tid, ips in stacks.items():
                frames = proc.symbolize(ips, first_is_exact=True)
                for k, (ip, fr) in enumerate(zip(ips, frames)):
                    mod = proc.maps.find(ip)
                    if mod is None or mod.kind != "elf":
                        continue
                    vaddr = mod.to_vaddr(ip) - (0 if k == 0 else 1)
                    exp = oracle.addr2line(Path(mod.open_path), [vaddr])
                    cmp = oracle.compare([vaddr], [oracle.ours(fr)], exp, Path(mod.open_path))
                    assert cmp.ratio == 1.0, (tid, k, cmp.report())
                    checked += 1
                levels = [f for fr in frames for f in fr]
                if any(f.function == sleep.function and f.file == sleep.file
                       and f.line == sleep.line for f in levels):
                    seen_blocker = True
                    names = [f.function or "" for f in levels]
                    assert any(n.startswith("std::thread") and "sleep" in n for n in names)
                    assert any("tokio::runtime" in n for n in names), names
            if seen_blocker and checked > 200:
                break
            time.sleep(0.2)
    assert checked > 200
    assert seen_blocker, f"{sleep.function} at line {sleep.line} never on a stack"
