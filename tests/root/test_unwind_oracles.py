"""x86_64 unwinding against oracles on real processes: gdb `bt` and eu-stack on stopped
snapshots, the program's own known call chain on perf samples, and FP vs CFI agreement
on a frame-pointer build."""
from __future__ import annotations

import bisect
import os
import random
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from unit.unwind.unwind_support import ROOT, eu_stack, gdb_snapshot, x86_capture

from hud.collect.perf_sampler import PerfSampler
from hud.linux import procfs
from hud.linux.libc import ARCH
from hud.model import CpuSample
from hud.symbolize.normalize import ProcessMaps
from hud.unwind.unwinder import Unwinder

SRC = ROOT / "tests" / "data" / "unwind" / "x86_64" / "deep.c"
DEPTH = 14
pytestmark = pytest.mark.skipif(ARCH != "x86_64", reason="x86_64 programs")


def _need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.fail(f"oracle tools missing: {missing} (tests/support/apt-packages)")


@pytest.fixture(scope="module")
def programs(tmp_path_factory) -> dict[str, Path]:
    _need("gcc")
    out = tmp_path_factory.mktemp("unwind-progs")
    builds = {
        "nofp": ["-fomit-frame-pointer"],
        # Frames everywhere in our code, leaves included: what an FP build of Rust gives.
        "fp": ["-fno-omit-frame-pointer", "-mno-omit-leaf-frame-pointer", "-fno-shrink-wrap"],
    }
    # Only .debug_frame for our code (no unwind tables), kept in the binary or split off
    # into a separate debug file found through .gnu_debuglink.
    builds["debug_frame"] = ["-fomit-frame-pointer", "-fno-asynchronous-unwind-tables",
                             "-fno-unwind-tables"]
    builds["split_debug"] = builds["debug_frame"]
    paths = {}
    for name, flags in builds.items():
        path = out / f"deep_{name}"
        subprocess.run(["gcc", "-O2", "-g", "-fno-optimize-sibling-calls", *flags, "-o",
                        str(path), str(SRC), "-lpthread"], check=True)
        paths[name] = path
    split = paths["split_debug"]
    debug = split.with_name(split.name + ".debug")
    subprocess.run(["objcopy", "--only-keep-debug", str(split), str(debug)], check=True)
    subprocess.run(["objcopy", "--strip-debug", f"--add-gnu-debuglink={debug}", str(split)],
                   check=True)
    paths["split_debug.debug"] = debug
    paths["signal"] = out / "signal_loop"
    subprocess.run(["gcc", "-O2", "-g", "-fomit-frame-pointer", "-fno-optimize-sibling-calls",
                    "-o", str(paths["signal"]), str(SRC.with_name("signal.c"))], check=True)
    # Static musl: its libc has no CFI and no frame pointers (musl builds without unwind
    # tables), the case of Rust's x86_64-unknown-linux-musl and Alpine images.
    # Dynamic musl (Alpine's way): the same libc as a shared object, called through
    # its PLT, with hidden functions that have no symbol in .dynsym.
    _need("musl-gcc")
    for name, link in (("musl", ["-static"]), ("musl_dynamic", [])):
        paths[name] = out / f"deep_{name}"
        subprocess.run(["musl-gcc", *link, "-O2", "-g", "-fomit-frame-pointer",
                        "-fno-optimize-sibling-calls", "-o", str(paths[name]), str(SRC)],
                       check=True)
    paths["vdso"] = out / "vdso_loop"
    subprocess.run(["gcc", "-O2", "-g", "-fomit-frame-pointer", "-fno-optimize-sibling-calls",
                    "-o", str(paths["vdso"]), str(SRC.with_name("vdso.c"))], check=True)
    return paths


class Running:
    """A started test program, killed at exit."""

    def __init__(self, path: Path, threads: int = 2) -> None:
        self.proc = subprocess.Popen([str(path), str(DEPTH)])
        self.pid = self.proc.pid
        deadline = time.monotonic() + 5
        while len(procfs.list_tids(self.pid)) < threads and time.monotonic() < deadline:
            time.sleep(0.01)

    def stop(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)
        for _ in range(500):
            if procfs.thread_state(self.pid, self.pid) == "T":
                return
            time.sleep(0.002)

    def cont(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


class Symbols:
    """nm's function symbols of one binary: the test's own symbolizer (an oracle tool)."""

    def __init__(self, path: Path) -> None:
        text = subprocess.run(["nm", "-C", str(path)], capture_output=True, text=True,
                              check=True).stdout
        syms = []
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] in "tT":
                syms.append((int(parts[0], 16), parts[2]))
        syms.sort()
        self.addrs = [s[0] for s in syms]
        self.names = [s[1] for s in syms]

    def name(self, vaddr: int) -> str:
        i = bisect.bisect_right(self.addrs, vaddr) - 1
        return self.names[i] if i >= 0 else "?"


def _names(ips, maps: ProcessMaps, exe: Path, syms: Symbols) -> list[str]:
    out = []
    for k, ip in enumerate(ips):
        look = ip if k == 0 else ip - 1
        mod = maps.find(look)
        if mod is None:
            out.append("?")
        elif Path(mod.file_path).name == exe.name:
            out.append(syms.name(mod.to_vaddr(look)))
        elif "libc" in Path(mod.file_path).name:
            out.append("libc")
        else:
            out.append(Path(mod.file_path).name)
    return out


@pytest.mark.parametrize("build", ["nofp", "debug_frame", "split_debug"])
def test_cfi_matches_gdb_and_eu_stack_on_snapshots(programs, tmp_path, build):
    """Stop the no-FP program at random moments; gdb dumps regs + stack and its `bt`,
    eu-stack unwinds the same stopped threads; ours runs on gdb's regs + bytes.
    debug_frame: our code's CFI is only in .debug_frame; split_debug: only in a separate
    debug file, which the unwinder is told about."""
    _need("gdb", "eu-stack")
    prog = Running(programs[build])
    exe, debug = programs[build], programs.get(f"{build}.debug")

    def debug_file_for(module):
        same = debug is not None and Path(module.file_path).name == exe.name
        return str(debug) if same else None
    agree_eu = agree_gdb = total = through_libc = 0
    mismatches = []
    try:
        time.sleep(0.2)
        for _ in range(12):
            prog.stop()
            snaps = gdb_snapshot(prog.pid, tmp_path)
            eu = eu_stack(prog.pid)
            maps = ProcessMaps(prog.pid)
            prog.cont()
            uw = Unwinder(maps, debug_file_for=debug_file_for)
            for snap in snaps:
                res = uw.unwind(x86_capture(snap), mode="cfi")
                total += 1
                ours = list(res.ips)
                agree_gdb += ours == snap["pcs"]
                agree_eu += ours == eu.get(snap["tid"])
                if ours != snap["pcs"]:
                    mismatches.append((res.reason, [hex(i) for i in ours],
                                       [hex(i) for i in snap["pcs"]]))
                libc = [i for i, ip in enumerate(ours[1:], 1)
                        if "libc" in (getattr(maps.find(ip - 1), "path", "") or "")]
                if libc and 0 < min(libc) < len(ours) - 4:
                    through_libc += 1
            time.sleep(0.05)
    finally:
        prog.close()
    assert total >= 20
    assert agree_gdb >= 0.95 * total, mismatches[:3]
    assert agree_eu >= 0.95 * total
    assert through_libc > 0, "no snapshot unwound through libc into our code again"


def _grammar() -> re.Pattern:
    # What a stack of deep.c may look like, innermost first ("libc" = any glibc frame).
    return re.compile(r"^(libc )*((leaf_spin|leaf_sleep|cmp) )?(libc )*(recurse )+"
                      r"((cmp )(libc )+(recurse )+)?"
                      r"(main libc libc _start|worker libc libc)$")


def _sample(prog: Running, seconds: float = 2.0, stack_bytes: int = 32768,
            want: int = 0, wanted=lambda s: True, max_seconds: float = 10.0):
    """CpuSamples of a running program, and its maps (the program stays alive: modules are
    read through /proc/PID/map_files when the unwinder first needs them). Records for
    `seconds`, and on (up to `max_seconds`) until `want` samples satisfy `wanted`: a loaded
    machine gives the program less CPU, hence fewer samples."""
    samples = []
    time.sleep(0.1)
    with PerfSampler(prog.pid, freq=299, stack_bytes=stack_bytes) as sampler:
        sampler.start()
        start = time.monotonic()
        while True:
            time.sleep(0.05)
            samples += [s for s in sampler.read() if isinstance(s, CpuSample)]
            spent = time.monotonic() - start
            if spent >= max_seconds or (spent >= seconds and
                                        sum(1 for s in samples if wanted(s)) >= want):
                break
    return samples, ProcessMaps(prog.pid)


def _starts_in(maps: ProcessMaps, name: str):
    """A sample predicate: the sampled pc lies in the module called `name`."""
    def wanted(s: CpuSample) -> bool:
        mod = maps.find(s.stack.regs.ip) if s.stack.regs else None
        return mod is not None and Path(mod.file_path).name == name
    return wanted


@pytest.fixture
def running(programs):
    started = []

    def start(name: str) -> Running:
        started.append(Running(programs[name]))
        return started[-1]
    yield start
    for prog in started:
        prog.close()


def test_perf_samples_of_nofp_build_unwind_to_the_known_chain(programs, running):
    samples, maps = _sample(running("nofp"), want=50)
    syms = Symbols(programs["nofp"])
    uw = Unwinder(maps)
    grammar = _grammar()
    good = 0
    full_depth = []
    bad = []
    for s in samples:
        res = uw.unwind(s.stack)
        names = _names(res.ips, maps, programs["nofp"], syms)
        text = " ".join(names)
        if res.reason == "end" and grammar.match(text):
            good += 1
        else:
            bad.append((res.reason, text))
        if names and names[0] == "leaf_spin":
            full_depth.append(names.count("recurse"))
    assert len(samples) >= 50
    assert good >= 0.95 * len(samples), bad[:5]
    # In the leaf, every recursion level is on the stack: DEPTH+1 recurse frames.
    assert full_depth and all(n == DEPTH + 1 for n in full_depth), full_depth[:10]
    # The kernel's FP chain alone cannot see this: glibc and our code have no frame pointers.
    fp_good = sum(bool(grammar.match(" ".join(_names(s.stack.fp_ips, maps, programs["nofp"],
                                                      syms)))) for s in samples)
    assert fp_good < 0.5 * len(samples)


_OURS = {"leaf_spin", "leaf_sleep", "cmp", "recurse", "worker", "main"}
# deep.c's chain with musl's functions (any name not ours) where glibc's frames were: the
# walk must come back into our code through every libc frame, up to main or worker.
_MUSL_GRAMMAR = re.compile(r"^(musl )*((leaf_spin|leaf_sleep|cmp) )?(musl )*(recurse )+"
                           r"((cmp )(musl )+(recurse )+)?(main|worker)( musl)*$")


def _musl_names(ips, maps: ProcessMaps, exe: Path, syms: Symbols) -> str:
    return " ".join(n if n in _OURS else "musl" for n in _names(ips, maps, exe, syms))


def _complete(res, build: str) -> bool:
    # The walk ends at musl's entry points (scan.ENTRY_POINTS); the shared libc's
    # libc_start_main_stage2 is hidden (no name), so there the stack ends without one.
    return res.reason == "end" or (build == "musl_dynamic" and res.reason == "no_cfi")


@pytest.mark.parametrize("build", ["musl", "musl_dynamic"])
def test_musl_builds_unwind_through_libc_code_without_cfi(programs, running, build):
    """memset, qsort and nanosleep of musl have no CFI, linked in statically or called
    in the shared libc through the PLT (where qsort's helpers and the system-call stubs
    are hidden: no symbol, only their frame sizes confirm a caller): samples in them
    (and in cmp, called back from qsort) come back into our code by stack scanning. Above
    qsort, recurse finds its CFA through rbp (its buffer is a variable-length array),
    which qsort's helpers use as a general register: it is restored from their pushes.
    A CFI-only walk stops in the first musl frame."""
    exe = programs[build]
    prog = running(build)
    samples, maps = _sample(prog, want=60, wanted=lambda s: True)
    syms = Symbols(exe)
    uw = Unwinder(maps)
    good, bad, scanned, cfi_only_stuck = 0, [], 0, 0
    for s in samples:
        res = uw.unwind(s.stack)
        text = _musl_names(res.ips, maps, exe, syms)
        if _MUSL_GRAMMAR.match(text) and _complete(res, build):
            good += 1
        else:
            bad.append((res.reason, res.method, text))
        if res.method.endswith("scan"):
            scanned += 1
            cfi = uw.unwind(s.stack, mode="cfi")
            cfi_only_stuck += cfi.reason == "no_cfi" and not _MUSL_GRAMMAR.match(
                _musl_names(cfi.ips, maps, exe, syms))
    assert len(samples) >= 60
    assert good >= 0.95 * len(samples), bad[:5]
    assert scanned >= 10 and cfi_only_stuck == scanned, (scanned, cfi_only_stuck)
    assert uw.scans >= scanned


@pytest.mark.parametrize("build", ["musl", "musl_dynamic"])
def test_musl_builds_offcpu_captures_unwind_from_the_syscall(programs, running, build):
    """A switch-out in musl's nanosleep (no CFI from the system call up to our code) is
    unwound to leaf_sleep and every recursion level above it."""
    from hud.collect.ebpf import EbpfCollector
    from hud.model import OffCpuEvent
    exe = programs[build]
    prog = running(build)
    time.sleep(0.1)
    events = []
    with EbpfCollector(prog.pid, threshold_ns=100_000, sample=False) as col:
        end = time.monotonic() + 8
        while time.monotonic() < end and len(events) < 40:
            events += [e for e in col.poll(0.05) if isinstance(e, OffCpuEvent)
                       and not e.runnable]
    maps = ProcessMaps(prog.pid)
    syms = Symbols(exe)
    uw = Unwinder(maps)
    full, bad = 0, []
    for e in events:
        res = uw.unwind(e.stack)
        names = _musl_names(res.ips, maps, exe, syms).split()
        if (_MUSL_GRAMMAR.match(" ".join(names)) and _complete(res, build) and "leaf_sleep" in names
                and names.count("recurse") >= DEPTH + 1 and names[0] == "musl"):
            full += 1
        else:
            bad.append((res.reason, res.method, " ".join(names)))
    assert len(events) >= 20
    assert full >= 0.9 * len(events), bad[:5]


def _prefix_in_binary(ips, maps: ProcessMaps, exe: Path) -> list[int]:
    """ips up to and including the first return address that leaves the FP-built binary."""
    out = []
    for k, ip in enumerate(ips):
        out.append(ip)
        mod = maps.find(ip if k == 0 else ip - 1)
        if k > 0 and (mod is None or Path(mod.file_path).name != exe.name):
            break
    return out


def test_fp_build_cfi_and_frame_pointer_walks_agree(programs, running):
    """On the FP build, our CFI walk, our FP walk and the kernel's FP chain give the same
    frames through our code (up to the first frame in glibc, which has no frame pointers)."""
    exe = programs["fp"]
    prog = running("fp")
    # Only ~1 in 20 samples in the binary falls where CFI says the frame is set up (CFA =
    # rbp + N); 150 of them make "none at all" (a vacuous run) a 1-in-2,000 event.
    samples, maps = _sample(prog, seconds=1.5, want=150,
                            wanted=_starts_in(ProcessMaps(prog.pid), exe.name))
    uw = Unwinder(maps)
    compared = agree = agree_kernel = exact = 0
    for s in samples:
        first = maps.find(s.stack.regs.ip) if s.stack.regs else None
        if first is None or Path(first.file_path).name != exe.name:
            continue  # a sample inside glibc: its callers are not reachable by FP
        cfi = _prefix_in_binary(uw.unwind(s.stack, mode="cfi").ips, maps, exe)
        fp = uw.unwind(s.stack, mode="fp").ips
        # A function that has not set up its frame at the sampled pc (a leaf compiled
        # without one, or a prologue) hides its caller from any FP walk: CFI tells which.
        row = uw.cfi_row(s.stack.regs.ip)
        established = row is not None and row.row[0] == 6  # CFA = rbp + N
        allowed = [cfi] if established else [cfi, cfi[:1] + cfi[2:]]
        compared += 1
        agree += any(list(fp[:len(c)]) == c for c in allowed)
        agree_kernel += any(list(s.stack.fp_ips[:len(c)]) == c for c in allowed)
        exact += established and list(fp[:len(cfi)]) == cfi
    assert compared >= 30
    assert agree >= 0.95 * compared
    assert agree_kernel >= 0.95 * compared
    assert exact > 0, "no sample with an established frame: the comparison was vacuous"


def test_strategy_report_tells_fp_and_nofp_builds_apart(programs):
    from hud.unwind.report import module_strategy
    fp = module_strategy(str(programs["fp"]))
    nofp = module_strategy(str(programs["nofp"]))
    assert fp.fp_fraction is not None and nofp.fp_fraction is not None
    assert fp.fp_fraction > nofp.fp_fraction
    assert fp.strategy == "both" and nofp.strategy == "cfi"


def test_split_debug_needs_its_debug_file(programs, running, tmp_path):
    """Guard: without the separate debug file, our code has no CFI and the walk stops."""
    prog = running("split_debug")
    time.sleep(0.2)
    prog.stop()
    try:
        snaps = gdb_snapshot(prog.pid, tmp_path)
        maps = ProcessMaps(prog.pid)
    finally:
        prog.cont()
    uw = Unwinder(maps)
    results = [uw.unwind(x86_capture(s), mode="cfi") for s in snaps]
    assert results and all(r.reason != "end" or len(r.ips) < 4 for r in results)
    assert any(r.reason == "no_cfi" for r in results)


def test_samples_in_the_vdso_unwind_through_it(programs):
    """The vdso's CFI comes from its ELF image in the target's memory."""
    prog = Running(programs["vdso"], threads=1)
    try:
        samples, maps = _sample(prog, seconds=1.0, want=30,
                                wanted=_starts_in(ProcessMaps(prog.pid), "[vdso]"))
        syms = Symbols(programs["vdso"])
        uw = Unwinder(maps)
        in_vdso = [s for s in samples
                   if getattr(maps.find(s.stack.regs.ip), "path", "") == "[vdso]"]
        assert len(in_vdso) >= 20
        good = 0
        for s in in_vdso:
            res = uw.unwind(s.stack)
            names = _names(res.ips, maps, programs["vdso"], syms)
            good += (res.reason == "end" and "tick" in names
                     and names.count("mid") == 6 and names[-1] == "_start")
        assert good >= 0.95 * len(in_vdso)
    finally:
        prog.close()


def test_stacks_through_a_signal_frame_match_gdb_and_eu_stack(programs, tmp_path):
    """A handler on top of a known chain: the walk crosses __restore_rt (an 'S' CIE whose
    rules are DW_CFA_expression over the ucontext on the stack) back into the chain."""
    _need("gdb", "eu-stack")
    prog = Running(programs["signal"], threads=1)
    syms = Symbols(programs["signal"])
    total = agree_gdb = agree_eu = crossed = 0
    try:
        time.sleep(0.2)
        jitter = random.Random(1)
        for rounds in range(120):
            if rounds >= 15 and crossed >= 3:
                break
            prog.stop()
            snaps = gdb_snapshot(prog.pid, tmp_path)
            eu = eu_stack(prog.pid)
            maps = ProcessMaps(prog.pid)
            prog.cont()
            uw = Unwinder(maps)
            for snap in snaps:
                res = uw.unwind(x86_capture(snap), mode="cfi")
                total += 1
                agree_gdb += list(res.ips) == snap["pcs"]
                agree_eu += list(res.ips) == eu.get(snap["tid"])
                names = _names(res.ips, maps, programs["signal"], syms)
                if "in_handler" in names and "chain" in names and res.reason == "end":
                    crossed += 1
            # Jittered: a fixed pause can lock the stops to the timer's phase and keep
            # missing the handler (CI once caught it in 2 of 60 rounds).
            time.sleep(jitter.uniform(0.005, 0.05))
    finally:
        prog.close()
    assert agree_gdb >= 0.95 * total and agree_eu >= 0.95 * total
    assert crossed >= 3, "no snapshot caught the handler on top of the chain"
