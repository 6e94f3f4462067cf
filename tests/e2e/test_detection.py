"""The detection acceptance (issues 6 and 7), on both backends: 10 s runs against the
Tokio fixtures, asserted against their manifests (function, line +-1, kind), on the
frame-pointer, no-frame-pointer, stripped+debuglink, fat-LTO and line-tables-only builds
(and by function alone on the build without debug info); healthy and spawn_blocking programs give no
blocking/cpu finding; custom thread names and current_thread runtimes are discovered (eBPF).
"""
from __future__ import annotations

import os
import re
import subprocess
import threading
import time

import pytest
from support.findings import at, of_function, of_scenario, summary
from support.fixtures import load_manifest, run_load

from hud.session import Profiler

SECONDS = 10.0
BLOCKERS = ("sleep", "fsync", "mutex", "dns")
VARIANTS = ("blockers-fp", "blockers-nofp", "blockers-stripped", "blockers-lto",
            "blockers-lines", "blockers-nodebug")


BACKENDS = ("ebpf", "perf")


def profile(pid: int, seconds: float = SECONDS, backend: str = "ebpf", **kw) -> dict:
    with Profiler(pid=pid, backend=backend, **kw) as prof:
        report = prof.run(duration_s=seconds)
    assert report["backend"] == backend
    return report


def _workers(report: dict) -> set:
    return {w["tid"] for w in report["target"]["workers"]}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_blocker_and_the_cpu_burner_are_found(variant, backend, tokio_fixture):
    fx = tokio_fixture(variant, [*BLOCKERS, "cpu"])
    report = profile(fx.pid, backend=backend)
    workers = set(fx.worker_tids)
    lines = fx.manifest.has_lines
    for name in BLOCKERS:
        sc = fx.manifest.scenarios[name]
        f = of_scenario(report, "blocking", sc, lines)
        assert f is not None, f"{name}: no blocking finding at {sc.function}:{sc.line}\n" \
                              f"{summary(report)}"
        assert set(f["workers"]) <= workers, (f["workers"], workers)
        if lines:
            assert f["file"].endswith(sc.file_rel.split("/", 2)[-1]), f["file"]
        else:
            assert f["line"] is None, f
        # The blocker's own stack, with the user frame at the manifest line.
        assert any(fr["class"] == "user" and fr["function"] == sc.function
                   for fr in f["stack"]), f["stack"]
    cpu = fx.manifest.scenarios["cpu"]
    f = of_function(report, "cpu", cpu.function)
    assert f is not None, summary(report)
    assert f["max_ms"] >= 0.5 * cpu.block_ms, f
    assert _workers(report) == workers
    # Blocking is not misfiled as cpu, nor the other way round.
    assert of_function(report, "blocking", cpu.function) is None, summary(report)
    # Nothing may be reported at the spawn_blocking work or the healthy payload.
    assert not any(f["function"].endswith(("pool_work", "healthy_payload"))
                   for f in report["findings"] if f["kind"] in ("blocking", "cpu"))
    _check_wakers(fx, report, backend)


def _check_wakers(fx, report: dict, backend: str) -> None:
    """The mutex waits are ended by the thread that holds the lock: the eBPF backend
    names it (tid and name) and where it released the lock. Sleeps, fsync and DNS end
    from interrupts: nobody is named. The perf backend names no waker."""
    holder = _thread_named(fx.pid, "fx-mutex-holder")
    lines = fx.manifest.has_lines
    for name in BLOCKERS:
        f = of_scenario(report, "blocking", fx.manifest.scenarios[name], lines)
        wakers = f.get("wakers", [])
        if name != "mutex" or backend == "perf":
            assert not wakers, (name, wakers)
            # Nobody to name: the eBPF backend's kernel stacks tell where the wait sits
            # (the perf backend takes none at switch-outs).
            detail = f.get("detail", "")
            if backend == "perf":
                assert not detail, (name, detail)
            elif name == "sleep":
                assert detail.startswith("in the kernel at do_nanosleep "), detail
                assert f["kernel_sites"][0]["function"] == "do_nanosleep", f
            else:
                assert not detail or detail.startswith("in the kernel at "), (name, detail)
            continue
        # One waker can have several rows: one per place it woke from, and one without
        # a place for a wake whose stack did not resolve (seen once in CI: 7 of 466 ms).
        mine = [w for w in wakers if w["waker"] == f"fx-mutex-holder (tid {holder})"]
        assert sum(w["ms"] for w in mine) >= 0.8 * f["total_ms"], wakers
        top = max(mine, key=lambda w: w["ms"])
        assert f["detail"].startswith(f"woken by fx-mutex-holder (tid {holder}) ")
        # Where the holder released the lock: its own stack, taken at the wake, ends
        # in the holder thread's closure at `drop(guard)` (with line tables only, its
        # DWARF name is a bare `{closure#0}`: the path comes from its caller's name).
        # Without debug info that closure is inlined into std's thread start, where
        # no frame shows it.
        if lines:
            assert top.get("at", "").startswith("blockers::scenarios::start_mutex_holder ("
                                                "scenarios.rs:"), top


def _thread_named(pid: int, comm: str) -> int:
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            if f.read().strip() == comm:
                return int(tid)
    raise AssertionError(f"no thread {comm} in {pid}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_cpu_in_the_kernel_is_told_from_cpu_in_user_code(backend, tokio_fixture):
    """Two polls that never yield: one spins in its own code, one reads /dev/zero (a
    system call after another). Both are `cpu` findings at their own lines; the second
    says its time was the kernel's (the samples interrupted kernel code, which the
    user frames alone cannot show: they stop where the thread entered the kernel)."""
    fx = tokio_fixture("blockers-nofp", ["cpu", "kernel_cpu"])
    report = profile(fx.pid, backend=backend)
    user, kernel = fx.manifest.scenarios["cpu"], fx.manifest.scenarios["kernel_cpu"]
    f = at(report, "cpu", kernel)
    assert f is not None and f["max_ms"] >= 0.5 * kernel.block_ms, summary(report)
    assert f["kernel_ms"] >= 0.8 * f["total_ms"], f
    # ... and where in the kernel: the function the samples ran in, from their kernel
    # stacks (both backends take those with samples).
    assert re.fullmatch(r"in the kernel \d+%, at \S+", f["detail"]), f
    assert f["kernel_sites"] and f["kernel_sites"][0]["function"] in f["detail"], f
    f = of_function(report, "cpu", user.function)
    assert f is not None and f["max_ms"] >= 0.5 * user.block_ms, summary(report)
    assert f["kernel_ms"] <= 0.2 * f["total_ms"] and not f.get("detail"), f


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_worker_asleep_in_a_page_fault_is_a_blocker_that_says_so(backend, tokio_fixture):
    """A read of a page that is not there yet (userfaultfd answers it after block_ms):
    the worker sleeps in a page fault, its stack ends at a plain memory load, and no
    system call explains the wait. It is a blocking finding at that line that says it
    was a page fault (the saved user ip follows no `syscall`: checked in the kernel by
    the eBPF backend, in /proc/PID/mem by the perf one). A sleep beside it is not one."""
    fx = tokio_fixture("blockers-nofp", ["page_fault", "sleep"])
    report = profile(fx.pid, backend=backend)
    sc, sleep = fx.manifest.scenarios["page_fault"], fx.manifest.scenarios["sleep"]
    f = at(report, "blocking", sc)
    assert f is not None and f["count"] >= 0.6 * SECONDS * 1000 / sc.period_ms, \
        summary(report)
    assert f["max_ms"] >= 0.9 * sc.block_ms and set(f["workers"]) <= set(fx.worker_tids)
    s = at(report, "blocking", sleep)
    assert s is not None and s["fault_ms"] == 0, s
    assert not s.get("detail", "").startswith("in a page fault"), s
    assert f["fault_ms"] >= 0.9 * f["total_ms"], f
    assert f["detail"].startswith("in a page fault "), f
    if backend == "ebpf":
        # The kernel stack says whose fault it is: userfaultfd's, waiting for its handler.
        assert f["detail"].endswith(", at handle_userfault"), f
        assert "handle_userfault" in [fr["function"] for fr in f["stack"]], f


@pytest.mark.parametrize("backend", BACKENDS)
def test_sleep_duration_and_count_match_the_ground_truth(backend, tokio_fixture):
    # Every sleep must come out once (the perf backend pairs switch records across
    # per-CPU rings in userspace), and no longer than the program measured it.
    fx = tokio_fixture("blockers-nofp", ["sleep:40/100"])
    report = profile(fx.pid, backend=backend)
    measured = fx.stop()["scenarios"]["sleep"]     # what the program timed itself
    f = at(report, "blocking", fx.manifest.scenarios["sleep"])
    assert f is not None, summary(report)
    # 40 ms every 100 ms for ~10 s: ~100 episodes, all of which the program also timed.
    assert 70 <= f["count"] <= min(110, measured["episodes"]), (f, measured)
    # hud's off-CPU time lies inside the program's own measurement of each sleep call
    # (both end when the worker runs again), and a sleep lasts at least 40 ms.
    assert f["p99_ms"] >= 40 and f["max_ms"] <= measured["max_ms"] + 1.0, (f, measured)
    assert 40 * f["count"] <= f["total_ms"] <= measured["total_ms"] + 1.0, (f, measured)


@pytest.mark.parametrize("backend", BACKENDS)
def test_healthy_and_spawn_blocking_give_no_finding(backend, tokio_fixture):
    fx = tokio_fixture("blockers-nofp", ["healthy", "spawn_blocking"])
    report = profile(fx.pid, backend=backend)
    bad = [f for f in report["findings"] if f["kind"] in ("blocking", "cpu")]
    assert bad == [], summary(report)
    pool = fx.manifest.scenarios["spawn_blocking"]
    tops = [t["function"] for t in report["blocking_pool"]["top"]]
    assert pool.function in tops, tops
    assert not set(report["blocking_pool"]["threads"]) & set(fx.worker_tids)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_release_build_without_debug_info_still_names_each_blocker(backend, tokio_fixture,
                                                                     tmp_path):
    """What most services run: cargo's release profile keeps no DWARF (debug = 0), only
    the symbol table. The blockers come out by function name (no file:line), the cpu
    burner too, and parks are still parks: Tokio's park and scheduler functions that
    survive inlining are named by the symbol table."""
    m = load_manifest("blockers-nofp")
    exe = tmp_path / "blockers"
    subprocess.run(["objcopy", "--strip-debug", str(m.binary), str(exe)], check=True)
    sections = subprocess.run(["readelf", "-S", "-W", str(exe)], capture_output=True,
                              text=True, check=True).stdout
    assert ".debug_info" not in sections and ".symtab" in sections
    fx = tokio_fixture("blockers-nofp", [*BLOCKERS, "cpu", "healthy"], binary=exe)
    report = profile(fx.pid, backend=backend)
    for name in BLOCKERS:
        sc = m.scenarios[name]
        f = of_function(report, "blocking", sc.function)
        assert f is not None and f["line"] is None, f"{name}\n{summary(report)}"
        assert set(f["workers"]) <= set(fx.worker_tids)
    assert of_function(report, "cpu", m.scenarios["cpu"].function) is not None, \
        summary(report)
    # Nothing in Tokio (a park taken for a blocker) and nothing at the healthy payload;
    # the fsync scenario's loop also fills its buffer on CPU (tens of MiB), a real cpu
    # finding attributed to fsync_loop itself when no DWARF names its inlined callees.
    assert all(f["function"].startswith("blockers::scenarios::")
               and not f["function"].endswith("healthy_payload")
               for f in report["findings"] if f["kind"] != "sched_delay"), summary(report)


@pytest.mark.parametrize("variant, backend", [
    ("blockers-nofp", "ebpf"), ("blockers-nofp", "perf"), ("blockers-current", "ebpf")])
def test_block_in_place_is_pool_work_and_the_workers_it_starts_still_count(
        variant, backend, tokio_fixture):
    """Work inside block_in_place is not the runtime's (the worker handed its core to a
    new thread first). That new thread runs the worker loop inside a block_in_place
    closure, and its blockers are the runtime's: before hud looked at where the
    block_in_place frame sits, every sleep after the first block_in_place was filed as
    pool work and the sleep scenario gave no finding at all. (On a current_thread
    runtime the fixture runs the same work with spawn_blocking.)"""
    fx = tokio_fixture(variant, ["block_in_place", "sleep"])
    report = profile(fx.pid, backend=backend)
    bip, sleep = fx.manifest.scenarios["block_in_place"], fx.manifest.scenarios["sleep"]
    assert not any(f["function"] == bip.function for f in report["findings"]
                   if f["kind"] in ("blocking", "cpu")), summary(report)
    assert bip.function in [t["function"] for t in report["blocking_pool"]["top"]]
    f = at(report, "blocking", sleep)
    expected = SECONDS * 1000 / sleep.period_ms    # one sleep per period
    assert f is not None and f["count"] >= 0.6 * expected, summary(report)


@pytest.mark.parametrize("variant, backend", [
    ("blockers-nofp", "ebpf"), ("blockers-nofp", "perf"), ("blockers-fp", "ebpf"),
    ("blockers-stripped", "ebpf"), ("blockers-current", "ebpf")])
def test_back_to_back_short_polls_of_one_async_fn_are_no_cpu_finding(variant, backend,
                                                                     tokio_fixture):
    """32 tasks of one async fn each poll 1 ms, back to back on each worker (on the
    frame-pointer build, whose harness frame also holds a stale Waker from another
    task's poll, and on a current_thread runtime too): every
    sample shows the same functions, but they are 32 polls, not one long one. Before
    hud told task polls apart (hud.task_identity) this gave a `cpu` finding of nearly
    every burst: 49-66 episodes of 16-21 ms in a 10 s run. Now no run of polls merges.
    One poll stalled by the hypervisor (the guest counts a stopped vCPU as time on CPU)
    gave a stray 5-9 ms episode in one run of six until such unsampled gaps were left out
    of cpu stretches; since then none in 16 runs. A stray one is still possible where the
    on-CPU time is unknown (before a thread's first switch-out): allowed, bounded well
    below a merged run."""
    fx = tokio_fixture(variant, ["bursts", "cpu"])
    report = profile(fx.pid, backend=backend)
    bursts, cpu = fx.manifest.scenarios["bursts"], fx.manifest.scenarios["cpu"]
    f = of_function(report, "cpu", bursts.function)
    assert f is None or (f["count"] <= 5 and f["max_ms"] < 2 * report["threshold_ms"]), \
        summary(report)
    f = of_function(report, "cpu", cpu.function)
    assert f is not None and f["max_ms"] >= 0.8 * cpu.block_ms, summary(report)
    polls = report["stats"]["task_polls"]
    assert polls["told_apart"] > 0 and polls["errors"] == 0, polls


def test_polls_of_an_http_connection_task_are_told_apart(tokio_fixture):
    """A connection task's future is big, and so is Tokio's harness frame around it
    (11 KiB in the demo: room for the future's output), where the polled task's Waker
    lives. While hud hashed harness frames up to 8 KiB only, no poll of the demo was
    identified: back-to-back /hash requests (5 ms polls) on a worker merged into `cpu`
    findings of up to 17 ms, and stray ones appeared at fast_body or slow_sleep. Polls
    are told apart now, and /hash polls are about as long as they are."""
    fx = tokio_fixture("demo", threads=2)
    hash_ms = fx.manifest.scenarios["hash"].block_ms or 5
    load = threading.Thread(target=run_load, args=(fx,), daemon=True,
                            kwargs={"duration": 11.0, "connections": 8,
                                    "mix": "fast=90,hash=10"})
    load.start()
    try:
        time.sleep(1.0)
        report = profile(fx.pid, seconds=8.0)
    finally:
        load.join(timeout=70)
    polls = report["stats"]["task_polls"]
    assert polls["identified"] >= 0.8 * (polls["identified"] + polls["unidentified"]), polls
    assert polls["told_apart"] > 0 and polls["errors"] == 0, polls
    f = of_function(report, "cpu", fx.manifest.scenarios["hash"].function)
    # A poll is at most hash_ms on CPU, plus up to a sampling period of rounding. Polls
    # of one connection back to back (the same task, so the same Waker) merge: with 10%
    # /hash requests, a run of three or four on one connection happens now and then
    # (CI saw one 20.8 ms episode among 141), so the bound is on p99, and the max only
    # caps such a run. Told apart, p99 was 7.5 ms here; with the old 8 KiB cap (nothing
    # identified) 671 ms.
    assert f is None or (f["p99_ms"] <= 3 * hash_ms and f["max_ms"] <= 8 * hash_ms), \
        summary(report)


def test_a_recording_replays_to_the_same_cpu_findings(tokio_fixture, tmp_path):
    """A replay has frames, not stack bytes: the recording keeps which task poll each
    worker sample was in, so the replay tells the bursts' polls apart as the live run
    did, and finds the same cpu findings."""
    fx = tokio_fixture("blockers-nofp", ["bursts", "cpu"])
    path = tmp_path / "run.jsonl"
    live = profile(fx.pid, record=str(path))
    with Profiler(replay=str(path)) as prof:
        replay = prof.run()

    def cpu(report: dict) -> list:
        return sorted((f["function"], f["count"], f["max_ms"])
                      for f in report["findings"] if f["kind"] == "cpu")

    assert cpu(replay) == cpu(live), (summary(live), summary(replay))
    told = live["stats"]["task_polls"]["told_apart"]
    assert told > 0 and replay["stats"]["task_polls"]["told_apart"] == told


def test_custom_worker_thread_names_are_discovered(tokio_fixture):
    fx = tokio_fixture("blockers-named", ["sleep"])
    report = profile(fx.pid, seconds=5.0)
    assert _workers(report) == set(fx.worker_tids), (report["target"]["workers"], fx.threads())
    assert at(report, "blocking", fx.manifest.scenarios["sleep"]) is not None, summary(report)


def test_workers_prefix_option(tokio_fixture):
    fx = tokio_fixture("blockers-named", ["sleep"])
    prefix = fx.manifest.worker_names[0][:6]
    report = profile(fx.pid, seconds=5.0, workers=prefix)
    assert _workers(report) == set(fx.worker_tids)
    assert report["stats"]["workers_rule"].startswith(f"workers named {prefix}")


def test_current_thread_runtime_worker_is_the_block_on_thread(tokio_fixture):
    fx = tokio_fixture("blockers-current", ["sleep", "cpu"])
    report = profile(fx.pid)
    assert _workers(report) == {fx.pid} == set(fx.worker_tids), report["target"]["workers"]
    assert at(report, "blocking", fx.manifest.scenarios["sleep"]) is not None, summary(report)
    assert of_function(report, "cpu", fx.manifest.scenarios["cpu"].function) is not None, \
        summary(report)


def test_no_kernel_stacks_leaves_kernel_frames_out(tokio_fixture):
    """--no-kernel-stacks (Profiler(kernel_stacks=False)): the programs take none and
    samples' kernel frames are dropped, so no finding names a kernel function, and the
    sleep is still found at its line."""
    fx = tokio_fixture("blockers-nofp", ["sleep", "kernel_cpu"])
    report = profile(fx.pid, backend="ebpf", kernel_stacks=False)
    f = at(report, "blocking", fx.manifest.scenarios["sleep"])
    assert f is not None, summary(report)
    assert not f.get("detail") and "kernel_sites" not in f, f
    k = at(report, "cpu", fx.manifest.scenarios["kernel_cpu"])
    assert k is not None and k["detail"].startswith("in the kernel ") and ", at" not in \
        k["detail"], k
    for g in report["findings"]:
        assert all(fr["class"] != "kernel" for fr in g["stack"]), g
