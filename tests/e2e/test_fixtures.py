"""Acceptance of the Tokio fixtures: every variant runs, names its threads as Tokio 1.24 does,
and its manifest's ground truth agrees with the sources and with binutils on the binary."""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from support import fixture_build
from support.fixtures import (
    BLOCKERS_VARIANTS,
    DEMO_VARIANTS,
    VARIANTS,
    FixtureError,
    FixtureProcess,
    Manifest,
    load_manifest,
    run_fixture,
    run_load,
    start,
    sweep_work_dirs,
)

REPO = Path(__file__).resolve().parents[2]

# The test's own oracle, written independently of the markers the manifest comes from: each
# scenario's kind and the expression its marked line must contain.
EXPECTED: dict[str, dict[str, tuple[str, str]]] = {
    "blockers": {
        "sleep": ("blocking", "std::thread::sleep("),
        "cpu": ("cpu", "wrapping_mul("),
        "kernel_cpu": ("cpu", "zero.read("),
        "page_fault": ("blocking", "read_volatile("),
        "fsync": ("blocking", ".sync_all()"),
        "mutex": ("blocking", "LOCK.lock()"),
        "dns": ("blocking", ".to_socket_addrs()"),
        "spawn_blocking": ("none", "std::thread::sleep("),
        "block_in_place": ("none", "std::thread::sleep("),
        "bursts": ("none", "wrapping_mul("),
        "healthy": ("none", ""),
    },
    "demo": {
        "fast": ("none", ""),
        "async-sleep": ("none", ""),
        "slow-sleep": ("blocking", "std::thread::sleep("),
        "hash": ("cpu", "wrapping_mul("),
        "file": ("blocking", ".sync_all()"),
    },
}

# What /proc/PID/task/*/comm must say for the workers, per variant (tokio 1.24 default name
# cut to 15 bytes; the custom name; the main thread of a current_thread runtime).
WORKER_COMM = {
    "blockers-fp": "tokio-runtime-w",
    "blockers-nofp": "tokio-runtime-w",
    "blockers-stripped": "tokio-runtime-w",
    "blockers-lto": "tokio-runtime-w",
    "blockers-lines": "tokio-runtime-w",
    "blockers-nodebug": "tokio-runtime-w",
    "blockers-named": "hud-fx-worker",
    "blockers-current": "blockers",
    "demo": "tokio-runtime-w",
    "demo-fp": "tokio-runtime-w",
}
POOL_COMM = dict(WORKER_COMM, **{"blockers-current": "tokio-runtime-w"})

MULTI_WORKER_RUN = re.compile(r"scheduler::multi_thread::worker::run(::h[0-9a-f]+)?\s*$")


def _wait_until(predicate, timeout: float = 15.0, step: float = 0.05):
    """Poll until predicate() is truthy (returned) or the bound runs out (None)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(step)
    return None


# ---- build --------------------------------------------------------------------------------

def test_every_variant_is_built_and_fresh():
    for v in VARIANTS:
        m = load_manifest(v)  # raises (fails the test) when missing or stale
        assert m.variant == v and m.binary.exists()
    index = fixture_build.INDEX.read_text()
    for v in VARIANTS:
        assert f'"{v}"' in index


def test_rebuild_is_cached():
    out = subprocess.run([str(REPO / "scripts" / "build-fixtures")], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "up to date" in out.stdout
    assert "cargo build" not in out.stdout


def test_build_settings_per_variant():
    fp = load_manifest("blockers-fp")
    nofp = load_manifest("blockers-nofp")
    stripped = load_manifest("blockers-stripped")
    assert fp.frame_pointers and "force-frame-pointers=yes" in fp.raw["rustflags"]
    assert not nofp.frame_pointers and "frame-pointers" not in nofp.raw["rustflags"]
    assert fp.raw["tokio_version"].startswith("1.24.")
    assert load_manifest("blockers-named").args == ["--thread-name", "hud-fx-worker"]
    assert load_manifest("blockers-current").flavor == "current_thread"
    assert stripped.stripped and stripped.debug_file is not None


def _sections(path: Path) -> list[str]:
    out = subprocess.run(["readelf", "-SW", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return re.findall(r"\]\s+(\.\S+)", out)


def test_stripped_variant_has_only_a_debuglink(tmp_path):
    m = load_manifest("blockers-stripped")
    assert m.debug_file is not None
    sections = _sections(m.binary)
    assert ".symtab" not in sections and ".debug_info" not in sections
    assert ".gnu_debuglink" in sections and ".eh_frame" in sections
    # .gnu_debuglink: the debug file's base name, NUL, padding to 4, then its CRC-32.
    link = tmp_path / "debuglink"
    subprocess.run(["objcopy", f"--dump-section=.gnu_debuglink={link}", str(m.binary),
                    str(tmp_path / "scratch")], check=True)
    raw = link.read_bytes()
    name = raw.split(b"\0", 1)[0].decode()
    crc_at = (len(name) + 1 + 3) // 4 * 4
    assert name == m.debug_file.name == m.raw["debuglink"]
    assert struct.unpack_from("<I", raw, crc_at)[0] == zlib.crc32(m.debug_file.read_bytes())
    debug_sections = _sections(m.debug_file)
    assert ".symtab" in debug_sections and ".debug_info" in debug_sections
    ids = {fixture_build._build_id(p) for p in (m.binary, m.debug_file)}
    assert len(ids) == 1 and None not in ids


def test_frame_pointer_builds_differ_in_prologues():
    """The fp build keeps rbp chains in the scenario functions; the nofp build does not (in
    most of them): what the two variants exist to compare."""
    counts = {}
    for v in ("blockers-fp", "blockers-nofp"):
        m = load_manifest(v)
        with_fp = 0
        for s in m.scenarios.values():
            addr, size = _symbol(m, s.function)
            asm = _disassemble(m.binary, addr, min(size, 16))
            with_fp += ("push   %rbp" in asm and "mov    %rsp,%rbp" in asm)
        counts[v] = with_fp
    assert counts["blockers-fp"] == len(load_manifest("blockers-fp").scenarios)
    assert counts["blockers-nofp"] < counts["blockers-fp"]


def test_the_lto_build_is_one_module():
    """Fat LTO with one codegen unit merges every crate's code before code generation:
    the DWARF keeps about one unit per crate instead of one per codegen unit (readelf
    counts them), so units are big and their functions out of address order."""
    units = {}
    for v in ("blockers-nofp", "blockers-lto"):
        out = subprocess.run(["readelf", "--debug-dump=info", str(load_manifest(v).binary)],
                             capture_output=True, text=True, check=True).stdout
        units[v] = out.count("(DW_TAG_compile_unit)")
    assert 0 < 4 * units["blockers-lto"] < units["blockers-nofp"], units


# ---- manifests against the sources --------------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_manifest_lines_point_at_the_calls(variant):
    m = load_manifest(variant)
    expected = EXPECTED[m.program]
    assert set(m.scenarios) == set(expected)
    for name, s in m.scenarios.items():
        kind, call = expected[name]
        assert s.kind == kind, name
        path = Path(s.file)
        assert path.is_absolute() and path == (REPO / s.file_rel).resolve()
        assert path == Path(m.raw["dwarf_comp_dir"]) / s.dwarf_file
        lines = path.read_text().splitlines()
        text = lines[s.line - 1]
        assert text.strip() == s.line_text
        assert f"hud:{kind} {name}" in text
        assert call in text.split("//")[0], (name, text)
        fn = s.function.rsplit("::", 1)[1]
        assert re.search(rf"\bfn {fn}\b", lines[s.fn_line - 1])
        assert s.fn_line < s.line <= s.fn_end_line
        assert lines[s.fn_end_line - 1].strip() == "}"
        assert s.runs_on == {"spawn_blocking": "blocking_pool",
                             "block_in_place": "block_in_place"}.get(name, "worker")


# ---- binutils resolves the manifest's functions and lines ----------------------------------

_nm_cache: dict[str, dict[str, tuple[int, int]]] = {}


def _symbol(m: Manifest, function: str) -> tuple[int, int]:
    """(address, size) of a function from the symbol table (the debug file's if stripped)."""
    key = str(m.symbol_file)
    if key not in _nm_cache:
        out = subprocess.run(["nm", "-S", "-C", "--defined-only", key], capture_output=True,
                             text=True, check=True).stdout
        table: dict[str, tuple[int, int]] = {}
        for line in out.splitlines():
            parts = line.split(" ", 3)
            if len(parts) == 4 and len(parts[2]) == 1 and parts[2] in "tTwW":
                table.setdefault(parts[3], (int(parts[0], 16), int(parts[1], 16)))
        _nm_cache[key] = table
    assert function in _nm_cache[key], f"{function} not in the symbol table of {key}"
    return _nm_cache[key][function]


def _disassemble(binary: Path, addr: int, size: int) -> str:
    return subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", f"--start-address={addr:#x}",
         f"--stop-address={addr + size:#x}", str(binary)],
        capture_output=True, text=True, check=True).stdout


def _addr2line(elf: Path, addrs: list[int]) -> list[list[tuple[str, str, int]]]:
    """binutils addr2line -f -i -C: per address, its frames innermost first (function, file,
    line); -a prints each address first, which splits the inline chains."""
    query = "".join(f"{a:#x}\n" for a in addrs)
    out = subprocess.run(["addr2line", "-f", "-i", "-C", "-a", "-e", str(elf)], input=query,
                         capture_output=True, text=True, check=True).stdout.splitlines()
    chains: list[list[tuple[str, str, int]]] = []
    for line in out:
        if line.startswith("0x"):
            chains.append([])
            pending: list[str] = []
            continue
        pending.append(line)
        if len(pending) == 2:
            fn, loc = pending
            file, _, num = loc.partition(" ")[0].rpartition(":")
            chains[-1].append((fn, file, int(num) if num.isdigit() else 0))
            pending = []
    assert len(chains) == len(addrs)
    return chains


def _instructions(asm: str) -> list[tuple[int, str]]:
    out = []
    for line in asm.splitlines():
        m = re.match(r"\s*([0-9a-f]+):\s+(.*)$", line)
        if m:
            out.append((int(m.group(1), 16), m.group(2)))
    return out


@pytest.mark.parametrize("variant", VARIANTS)
def test_addr2line_resolves_manifest_functions(variant):
    m = load_manifest(variant)
    elves = [m.binary] if m.debug_file is None else [m.debug_file, m.binary]
    for name, s in m.scenarios.items():
        addr, size = _symbol(m, s.function)
        assert size > 0
        insns = _instructions(_disassemble(m.binary, addr, size))
        assert insns and insns[0][0] == addr
        # Return addresses minus one, as a profiler symbolizes the caller frames of a stack.
        returns = [insns[k + 1][0] - 1 for k in range(len(insns) - 1)
                   if insns[k][1].startswith("call")]
        # A blocker waits in a call (its return address is on the stack), except a page
        # fault: the thread waits at the faulting load itself.
        candidates = returns if s.kind == "blocking" and name != "page_fault" \
            else [a for a, _ in insns]
        # Line tables only: DWARF names each function by its last path segment, and
        # binutils names the innermost level after the symbol (the whole path).
        short = s.function.rsplit("::", 1)[-1] if m.raw["profile"] == "lines" else None
        for elf in elves:  # the stripped binary resolves through its .gnu_debuglink
            entry = _addr2line(elf, [addr])[0]
            assert entry[-1][0] in (s.function, short), (elf, entry)
            chains = _addr2line(elf, candidates)
            outer = {(fn if fn != short else s.function, file, line)
                     for fn, file, line in (c[-1] for c in chains)}
            assert all(fn == s.function for fn, _, _ in outer), (name, outer)
            if not m.has_lines:
                continue   # the symbol table names it; nothing says where in it
            assert (s.function, s.file, s.line) in outer, (
                f"{variant}/{name}: no {'call' if s.kind == 'blocking' else 'instruction'} "
                f"of {s.function} maps to {s.file}:{s.line}; saw {sorted(outer)}")


# ---- running ------------------------------------------------------------------------------

def _stacks(pid: int, inlines: bool = False) -> dict[int, str]:
    """tid -> eu-stack text (elfutils: CFI unwinding, debuglink-aware), a function a line.
    With `inlines`, gdb's backtraces instead: after fat LTO the functions checked here
    (tokio's pool loop) live only as inline frames, which eu-stack does not show."""
    if inlines:
        return _gdb_stacks(pid)
    out = subprocess.run(["eu-stack", "-p", str(pid)], capture_output=True, text=True,
                         timeout=60).stdout
    stacks: dict[int, str] = {}
    for block in re.split(r"^TID ", out, flags=re.M)[1:]:
        tid, _, rest = block.partition(":")
        stacks[int(tid)] = rest
    return stacks


_GDB_THREAD = re.compile(r"^Thread \d+ \(Thread 0x[0-9a-f]+ \(LWP (\d+)\)", re.M)
# `#4  0x... in NAME (ARGS) at FILE:LINE` (a call) or `#3  NAME (ARGS) at ...` (inlined).
_GDB_FRAME = re.compile(r"^#\d+\s+(?:0x[0-9a-f]+ in )?(\S.*?) \(", re.M)


def _gdb_stacks(pid: int) -> dict[int, str]:
    out = subprocess.run(["gdb", "-batch", "-nx", "-p", str(pid), "-ex", "set pagination off",
                          "-ex", "thread apply all bt"], capture_output=True, text=True,
                         timeout=120).stdout
    stacks: dict[int, str] = {}
    heads = list(_GDB_THREAD.finditer(out))
    for k, head in enumerate(heads):
        body = out[head.end():heads[k + 1].start() if k + 1 < len(heads) else len(out)]
        stacks[int(head.group(1))] = "\n".join(_GDB_FRAME.findall(body)) + "\n"
    return stacks


def _check_threads(fx: FixtureProcess, expect_pool: bool, handed_off: bool = False
                   ) -> None:
    v = fx.variant
    m = fx.manifest
    current = m.flavor == "current_thread"
    want_workers = 1 if current else int(fx.ready["worker_threads"])
    assert fx.ready["workers_complete"] is True
    assert len(fx.worker_tids) == want_workers
    if current:
        assert fx.worker_tids == [fx.pid]
    elif m.raw["runtime"]["worker_threads"] is not None:
        assert want_workers == m.raw["runtime"]["worker_threads"]
    if expect_pool:
        # spawn_blocking starts pool threads on first use; wait (bounded) until they exist.
        assert _wait_until(fx.blocking_pool_tids), f"{v}: no blocking-pool thread appeared"
    # One snapshot of stacks, then names: threads come and go (the pool grows on demand).
    stacks = _stacks(fx.pid, inlines=m.raw["profile"] == "lto")
    threads = {t: c for t, c in fx.threads().items() if t in stacks}
    for tid in fx.worker_tids:
        assert threads[tid] == WORKER_COMM[v] and WORKER_COMM[v] in m.worker_names
    assert m.blocking_pool_names == [POOL_COMM[v]]
    pool = [t for t, c in threads.items() if c == POOL_COMM[v] and t not in fx.worker_tids]
    if expect_pool:
        assert pool
        assert any("blocking::pool::Inner::run" in stacks[t] for t in pool)
    # Only workers run multi_thread::worker::run; pool threads share their name, not the loop.
    # Except where block_in_place ran (handed_off): it gives the worker's core to a pool
    # thread (whose loop runs inside block_in_place's closure, inlined where eu-stack
    # does not show it), and the old worker thread goes back to the pool when its task's
    # poll ends; then only the number of loops is known.
    loops = 0
    for tid in set(fx.worker_tids) | set(pool):
        runs_worker = any(MULTI_WORKER_RUN.search(line) for line in stacks[tid].splitlines())
        loops += runs_worker
        if not (handed_off and not current):
            assert runs_worker == (tid in fx.worker_tids and not current), \
                (v, tid, stacks[tid])
    # One more while a thread that gave its core away finishes its task's poll.
    assert loops <= (0 if current else want_workers + 1), (v, stacks)
    if current:
        assert "current_thread" in stacks[fx.pid] and "block_on" in stacks[fx.pid]


@pytest.mark.parametrize("variant", BLOCKERS_VARIANTS)
def test_blockers_variant_runs(variant, tokio_fixture):
    fx = tokio_fixture(variant, ["all"])
    m = fx.manifest
    assert fx.ready["flavor"] == m.flavor
    assert {s["name"] for s in fx.ready["scenarios"]} == set(m.scenarios)
    _check_threads(fx, expect_pool=True, handed_off=True)   # "all" has block_in_place
    names = set(fx.threads().values())
    assert {"fx-mutex-holder", "fx-dns-server", "fx-stdin-watch"} <= names
    assert names <= set(m.raw["other_threads"]) | {m.program} | set(m.worker_names) | set(
        m.blocking_pool_names)
    fx.wait_episodes()  # every scenario has run one whole episode
    summary = fx.stop()
    assert summary is not None and summary["reason"] == "stdin-eof"
    for name in m.scenarios:
        assert summary["scenarios"][name]["episodes"] >= 1, (name, summary)
    # A sleep lasts at least what it asked for; a lookup cannot return before the answer,
    # which the fixture's DNS server sends block_ms late: glibc really asked it, and waited.
    assert summary["scenarios"]["sleep"]["min_ms"] >= 50
    assert summary["dns"]["resolved"] == fx.ready["dns"]["answer"]
    assert summary["dns"]["answered"] >= 1
    assert summary["scenarios"]["dns"]["min_ms"] >= fx.scenarios["dns"]["block_ms"]
    assert not fx.alive()


def _switch_outs(pid: int, out_dir: Path, seconds: float) -> list[tuple[int, str, list[str]]]:
    """perf's own view of the program leaving the CPU: (tid, prev_state, function names
    innermost first) per sched_switch, unwound with DWARF from a user stack copy."""
    data = out_dir / "perf.data"
    subprocess.run(["perf", "record", "-q", "-o", str(data), "-e", "sched:sched_switch",
                    "--call-graph", "dwarf,16384", "-p", str(pid), "--", "sleep", str(seconds)],
                   check=True, capture_output=True, timeout=120)
    text = subprocess.run(["perf", "script", "-i", str(data), "-F", "tid,trace,ip,sym"],
                          check=True, capture_output=True, text=True, timeout=300).stdout
    switches = []
    for block in text.strip().split("\n\n"):
        lines = block.strip().splitlines()
        if not lines:
            continue
        head = lines[0].split()
        state = re.search(r"prev_state=(\S+)", lines[0])
        frames = [ln.strip().split(None, 1)[1] for ln in lines[1:] if len(ln.split(None, 1)) == 2]
        switches.append((int(head[0]), state.group(1) if state else "?", frames))
    return switches


@pytest.mark.parametrize("variant", ["blockers-fp", "blockers-nofp", "blockers-current"])
def test_perf_sees_each_blocker_block_a_worker_in_its_function(variant, tokio_fixture, tmp_path):
    """Oracle for the ground truth itself: perf's sched_switch stacks show each blocking
    scenario's manifest function on a worker thread that goes to sleep, and the
    spawn_blocking function only ever on other threads."""
    scenarios = ["sleep", "mutex", "dns", "fsync", "spawn_blocking", "healthy"]
    fx = tokio_fixture(variant, [f"{n}:40/100" if n != "healthy" else n for n in scenarios])
    fx.wait_episodes()
    m = fx.manifest
    blocking = {s.function for s in m.scenarios.values()
                if s.kind == "blocking" and s.name in scenarios}
    seen: set = set()
    on_workers_pool: list[str] = []
    for _ in range(3):  # each recording sees ~15 episodes of each; retry only under heavy load
        for tid, state, frames in _switch_outs(fx.pid, tmp_path, 1.5):
            mine = [f for f in frames if f.startswith(f"{m.program}::scenarios::")]
            if tid in fx.worker_tids and state != "R":
                seen.update(f for f in mine if f in blocking)
                on_workers_pool += [f for f in mine
                                    if f == m.scenarios["spawn_blocking"].function]
        if seen == blocking:
            break
    assert seen == blocking, f"never saw {sorted(blocking - seen)} block a worker"
    assert not on_workers_pool


@pytest.mark.parametrize("variant", DEMO_VARIANTS)
def test_demo_variant_serves_every_endpoint(variant, tokio_fixture):
    fx = tokio_fixture(variant, threads=2)
    assert fx.ready["addr"].startswith("127.0.0.1:")
    _check_threads(fx, expect_pool=False)
    paths = [s.path for s in fx.manifest.scenarios.values()]
    mix = ",".join(f"{p.lstrip('/')}=1" for p in paths)
    result = run_load(fx, duration=1.0, connections=4, mix=mix)
    assert result["errors"] == 0 and result["requests"] > 0 and result["rps"] > 0
    assert set(result["by_path"]) == set(paths)
    assert all(n > 0 for n in result["by_path"].values()), result
    summary = fx.stop()
    assert summary is not None
    for path, n in result["by_path"].items():
        assert summary["endpoints"][path]["requests"] >= n


def test_demo_default_mix_and_throughput_line():
    with run_fixture("demo", threads=2) as fx:
        result = run_load(fx, duration=1.0, connections=8)
    assert result["mix"] == fx.manifest.raw["default_mix"]
    assert result["requests"] > 0 and result["errors"] == 0
    assert result["latency_ms"]["p50"] is not None


def test_load_generator_stops_on_sigterm_with_its_result():
    """scripts/demo ends the load with SIGTERM when hud is done and still wants the numbers."""
    with run_fixture("demo", threads=2) as fx:
        load = subprocess.Popen([str(fx.manifest.binary), "load", "--addr", fx.ready["addr"],
                                 "--duration", "300", "--connections", "2"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        try:
            def signal_thread_up():
                with contextlib.suppress(OSError):
                    return any((t / "comm").read_text().strip() == "load-signals"
                               for t in Path(f"/proc/{load.pid}/task").iterdir())
            assert _wait_until(signal_thread_up)
            load.send_signal(signal.SIGTERM)
            out, _ = load.communicate(timeout=60)
        finally:
            if load.poll() is None:
                load.kill()
                load.wait()
    assert load.returncode == 0
    result = json.loads(out.strip().splitlines()[-1])
    assert result["event"] == "load" and result["stopped_by_signal"] is True
    assert result["errors"] == 0


def test_load_generator_refuses_non_loopback():
    m = load_manifest("demo")
    out = subprocess.run([str(m.binary), "load", "--addr", "192.0.2.1:80", "--duration", "1"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and "loopback" in out.stderr


def test_dns_isolation_leaves_host_resolv_conf_alone():
    before = Path("/etc/resolv.conf").read_bytes()
    with run_fixture("blockers-fp", ["dns:20/100"]) as fx:
        mine = Path(f"/proc/{fx.pid}/root/etc/resolv.conf").read_text()
        assert f"nameserver {fx.ready['dns']['server']}" in mine
        assert Path("/etc/resolv.conf").read_bytes() == before
        own_ns = os.readlink(f"/proc/{fx.pid}/ns/mnt")
        assert own_ns != os.readlink("/proc/self/ns/mnt")
    assert Path("/etc/resolv.conf").read_bytes() == before


def test_scenario_timing_overrides_reach_the_program():
    with run_fixture("blockers-nofp", ["sleep:7/30", "cpu"], threads=3) as fx:
        assert fx.scenarios["sleep"] == {"name": "sleep", "block_ms": 7, "period_ms": 30}
        assert fx.scenarios["cpu"]["block_ms"] == fx.manifest.scenarios["cpu"].block_ms
        assert len(fx.worker_tids) == 3


# ---- the harness never leaves a process behind --------------------------------------------

def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_bad_arguments_fail_with_the_programs_message():
    with pytest.raises(FixtureError, match="unknown scenario"):
        start("blockers-fp", ["no-such-scenario"])


def test_stop_kills_a_program_that_ignores_stdin():
    fx = start("blockers-fp", ["sleep"])
    fx.proc.stdin.close()  # as if stop() had been asked and the program hung instead:
    os.kill(fx.pid, signal.SIGSTOP)
    fx.stop(timeout=1.0)
    assert _gone(fx.pid)


def test_program_dies_with_its_harness():
    code = ("import sys, time; sys.path.insert(0, sys.argv[1]);"
            "from support.fixtures import start;"
            "fx = start('blockers-fp', ['sleep']); print(fx.pid, flush=True); time.sleep(120)")
    harness = subprocess.Popen([sys.executable, "-c", code, str(REPO / "tests")],
                               stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        line = harness.stdout.readline()
        assert line.strip().isdigit(), line
        pid = int(line)
        assert not _gone(pid)
        harness.kill()  # SIGKILL: no finalizer, no atexit runs in the harness
        harness.wait()
        assert _wait_until(lambda: _gone(pid)), f"fixture {pid} outlived its harness"
        # Its work dir outlives it (no cleanup code ran); the next harness sweeps it.
        left = [d for d in (fixture_build.BUILD / "work").iterdir()
                if d.name.startswith(f"blockers-fp-{harness.pid}-")]
        assert len(left) == 1
        assert left[0] in sweep_work_dirs() and not left[0].exists()
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait()


def test_missing_fixture_fails_clearly(monkeypatch, tmp_path):
    monkeypatch.setattr(fixture_build, "manifest_path", lambda v: tmp_path / v / "m.json")
    with pytest.raises(FixtureError, match=r"not built .*scripts/build-fixtures"):
        load_manifest("blockers-fp")


# ---- the marker scanner -------------------------------------------------------------------

def test_brace_matching_ignores_braces_in_literals():
    lines = [
        "fn f() {",
        '    let s = format!("{}{{", 1); // }',
        "    let c = '}'; let l: &'static str = \"x\";",
        "}",
        "fn g() {}",
    ]
    assert fixture_build._fn_span(lines, 1) == 4
    assert fixture_build._fn_span(lines, 5) == 5
