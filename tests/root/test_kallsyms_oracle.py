"""KernelSymbols on the real /proc/kallsyms against perf: kernel callchains recorded
system-wide while a child makes system calls, each kernel ip named by perf and by hud;
and a BPF program loaded after the table was read, named once it is read again."""
from __future__ import annotations

import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

import pytest

from hud.bpf.loader import Program
from hud.symbolize.kallsyms import (
    CHECK_EVERY,
    KEEP_FOR,
    KernelSymbols,
    SharedKernelSymbols,
    kernel_symbols,
)
from kernel import uapi
from kernel.asm import Assembler, r0

pytestmark = pytest.mark.timeout(120)

KERNEL_BASE = 0xFFFF000000000000
# Reads of /dev/zero (the brief's workload) plus a spread of other system calls, so the
# callchains cover more than one path through the kernel.
WORKLOAD = r"""
import os, time
end = time.monotonic() + 3
zero = os.open("/dev/zero", os.O_RDONLY)
r, w = os.pipe()
while time.monotonic() < end:
    os.read(zero, 65536)
    os.stat("/proc/self/status")
    os.listdir("/proc/self/fd")
    with open("/proc/self/status", "rb") as f:
        f.read()
    os.write(w, b"x" * 512)
    os.read(r, 512)
    # SYSCALL_DEFINE0 calls: their __x64_sys_* entry points have aliases at the same
    # address, where which name wins matters.
    os.getppid()
    os.getuid()
    os.getpgrp()
    os.sched_yield()
"""


def _perf_pairs(data: Path) -> dict[int, str]:
    """ip -> symbol for each kernel address in the callchains of perf.data."""
    out = subprocess.run(["perf", "script", "-i", str(data), "-F", "ip,sym"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    pairs: dict[int, str] = {}
    for line in out.stdout.splitlines():
        # Callchain lines are "\tffffffff81d33df2 read_zero" (no offset without symoff).
        fields = line.split(None, 1)
        if len(fields) != 2:
            continue
        try:
            ip = int(fields[0], 16)
        except ValueError:
            continue
        if ip >= KERNEL_BASE:
            pairs[ip] = fields[1].strip()
    return pairs


def test_kernel_frames_match_perf():
    if shutil.which("perf") is None:
        # Set-up installs it (.ci/apt-packages: linux-perf): missing is a broken set-up,
        # not a reason to pass without the oracle (as in test_unwind_oracles).
        pytest.fail("oracle tool missing: perf (the linux-perf package, .ci/apt-packages)")
    symbols = kernel_symbols()
    assert symbols.reason == "", symbols.reason
    tmp = Path(tempfile.mkdtemp(prefix="hud-kallsyms-"))
    children: list[subprocess.Popen] = []
    try:
        children.append(subprocess.Popen(
            ["dd", "if=/dev/zero", "of=/dev/null", "bs=64k"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        children.append(subprocess.Popen([sys.executable, "-c", WORKLOAD]))
        data = tmp / "perf.data"
        rec = subprocess.run(
            ["perf", "record", "-q", "-a", "-g", "-e", "cpu-clock", "-F", "499",
             "-o", str(data), "--", "sleep", "1"],
            capture_output=True, text=True, timeout=60)
        assert rec.returncode == 0, rec.stderr
        pairs = _perf_pairs(data)
    finally:
        for p in children:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)

    # perf says [unknown] where it has no symbol (a BPF program loaded before the
    # recording, the ftrace trampoline): nothing to compare with.
    named = {ip: sym for ip, sym in pairs.items() if sym != "[unknown]"}
    assert len(named) >= 50, f"only {len(named)} distinct named kernel ips recorded"
    # perf names each ip as given (not ip - 1), so compare at the ip itself.
    wrong = {ip: (sym, symbols.frame(ip).function) for ip, sym in named.items()
             if symbols.frame(ip).function != sym}
    for ip, (theirs, ours) in sorted(wrong.items()):
        print(f"{ip:#x}: perf {theirs!r}, hud {ours!r}")
    agree = 1 - len(wrong) / len(named)
    print(f"{len(named) - len(wrong)}/{len(named)} distinct kernel ips agree ({agree:.1%}); "
          f"{len(pairs) - len(named)} [unknown] to perf")
    assert agree >= 0.99, f"{len(wrong)} of {len(named)} kernel ips disagree with perf"


def _kallsyms_entry(suffix: str) -> Optional[tuple[int, str]]:
    """(address, name) of the symbol whose name ends with `suffix`, from /proc/kallsyms."""
    with open("/proc/kallsyms") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[2].endswith(suffix):
                return int(parts[0], 16), parts[2]
    return None


def test_a_bpf_program_loaded_later_is_named_after_the_next_look():
    """The real fingerprint (BPF program ids) sees a program come and go, and the table
    read after names its JIT image as /proc/kallsyms does."""
    now = [0.0]
    shared = SharedKernelSymbols(clock=lambda: now[0])
    before = shared.table()
    assert before.reason == "", before.reason
    a = Assembler()
    a.mov(r0, 0).exit()
    with Program(a.image("hud_t_late", uapi.BPF_PROG_TYPE_RAW_TRACEPOINT)) as prog:
        assert prog.id > 0
        entry = _kallsyms_entry("_hud_t_late")     # bpf_prog_<tag>_hud_t_late
        assert entry is not None, "not in /proc/kallsyms (net.core.bpf_jit_kallsyms=0?)"
        addr, name = entry
        assert before.frame(addr).function != name
        now[0] += CHECK_EVERY
        assert not shared.refresh()        # seen, but a table is kept KEEP_FOR seconds
        now[0] += KEEP_FOR
        assert shared.refresh() and shared.generation == 2
        frame = shared.table().frame(addr)
        assert (frame.function, frame.module) == (name, "[bpf]")
        now[0] += KEEP_FOR
        assert not shared.refresh()        # nothing came or went since
    now[0] += KEEP_FOR
    assert shared.refresh() and shared.generation == 3      # gone
    assert shared.table().frame(addr).function != name


def test_in_place_lookup_of_the_real_table_answers_as_parsing_each_line():
    """This kernel's /proc/kallsyms has the shape the in-place lookup needs, and it names
    every text symbol's address (and the bytes around it) as the line-by-line parse."""
    with open("/proc/kallsyms") as f:
        text = f.read()
    fast = KernelSymbols.parse(text)
    slow = KernelSymbols.parse(text, in_place=False)
    assert fast._core is not None, "vmlinux's lines were not taken in place"
    assert fast.reason == slow.reason == "" and len(fast) == len(slow) > 10_000
    rng = random.Random(7)
    pcs = [a + d for a in slow._addrs for d in (0, -1, 1)]
    pcs += [rng.randrange(slow._addrs[0] - (1 << 20), slow._addrs[-1] + (2 << 20))
            for _ in range(20_000)]
    wrong = [hex(pc) for pc in pcs
             if (fast.frame(pc).function, fast.frame(pc).module)
             != (slow.frame(pc).function, slow.frame(pc).module)]
    assert not wrong, f"{len(wrong)} of {len(pcs)} differ, e.g. {wrong[:5]}"
