"""Helper processes for big cold batches: the same answers as one process, and a helper
that fails, stalls or cannot start costs nothing but time."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from unit.symbolize import oracle

from hud.symbolize import Symbolizer, fanout
from hud.symbolize.symbolizer import ObjectSymbols

ROOT = Path(__file__).resolve().parents[3]
NOFP = ROOT / "tests" / "fixtures" / "build" / "blockers-nofp" / "blockers"
BATCH = 3200   # enough for three processes (fanout.jobs_for), spread over every function


@pytest.fixture(scope="module")
def addrs() -> list[int]:
    if not NOFP.exists():
        pytest.skip("fixture binaries not built (scripts/build-fixtures)")
    return oracle.pick_addresses(NOFP, BATCH, seed=11)


@pytest.fixture(scope="module")
def alone(addrs) -> list:
    """The batch's frames resolved in this process only."""
    with Symbolizer(jobs=1) as sym:
        return sym.symbolize_file(str(NOFP), addrs)


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _children() -> list[str]:
    """Our child processes, zombies included."""
    me = str(os.getpid())
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            if stat.rpartition(")")[2].split()[1] == me:
                out.append(pid)
    return out


def _resolve(addrs: list[int], jobs: int) -> tuple[list, int]:
    with Symbolizer(jobs=jobs) as sym:
        got = sym.symbolize_file(str(NOFP), addrs)
        obj, _ = sym.object_for_path(str(NOFP))
        return got, obj.helped


def test_this_process_is_single_threaded():
    # Helpers are forked only from a one-thread process; the tests below need pytest's.
    assert fanout.single_threaded(), os.listdir("/proc/self/task")


@pytest.mark.parametrize("jobs", [2, 3])
def test_helpers_give_the_same_frames_as_one_process(addrs, alone, jobs):
    fds = _fds()
    got, helped = _resolve(addrs, jobs)
    # Most of the batch came from helpers: the first slice (a third or half) is ours.
    assert helped >= len(addrs) * (jobs - 1) // jobs - jobs, helped
    assert got == alone
    assert _fds() == fds
    assert _children() == []


def test_a_helper_that_dies_leaves_its_slice_to_this_process(addrs, alone, monkeypatch):
    monkeypatch.setattr(ObjectSymbols, "_resolve_slice", lambda self, vaddrs: os._exit(3))
    got, helped = _resolve(addrs, 2)
    assert helped == 0
    assert got == alone
    assert _children() == []


def test_an_answer_that_cannot_be_sent_is_resolved_here(addrs, alone, monkeypatch):
    # marshal refuses the object: the helper exits without a word.
    monkeypatch.setattr(ObjectSymbols, "_resolve_slice",
                        lambda self, vaddrs: {vaddrs[0]: object()})
    got, helped = _resolve(addrs, 2)
    assert helped == 0
    assert got == alone


def test_no_fork_no_helper(addrs, alone, monkeypatch):
    def refuse() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")
    monkeypatch.setattr(os, "fork", refuse)
    got, helped = _resolve(addrs, 2)
    assert helped == 0
    assert got == alone


def test_a_stalled_helper_is_killed_and_reaped(monkeypatch):
    monkeypatch.setattr(fanout, "STALL_LIMIT", 0.3)
    helper = fanout.start(lambda vaddrs: time.sleep(60) or {}, [1, 2, 3])
    assert helper is not None
    t = time.monotonic()
    assert helper.collect() == {}
    assert time.monotonic() - t < 30   # not the helper's 60 s (a bound, not a timing)
    with pytest.raises(ChildProcessError):
        os.waitpid(helper.pid, os.WNOHANG)


def test_an_answer_is_the_helpers_dict():
    helper = fanout.start(lambda vaddrs: {v: (str(v), None, v, None, (), "") for v in vaddrs},
                          [5, 6])
    assert helper is not None and helper.covers(5) and helper.covers(6)
    assert not helper.covers(7)
    assert helper.collect() == {5: ("5", None, 5, None, (), ""),
                                6: ("6", None, 6, None, (), "")}


def test_an_abandoned_helper_is_killed_and_reaped():
    helper = fanout.start(lambda vaddrs: time.sleep(60) or {}, [1])
    assert helper is not None
    helper.abandon()
    with pytest.raises(ChildProcessError):
        os.waitpid(helper.pid, os.WNOHANG)


def test_a_helper_reaped_by_someone_else_is_not_signalled():
    helper = fanout.start(lambda vaddrs: {}, [1])
    assert helper is not None
    os.waitpid(helper.pid, 0)    # the caller's own os.wait() got there first
    assert helper.collect() == {}


def test_no_helpers_with_another_thread_running():
    assert fanout.jobs_for(100_000, 4) == 4
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        assert fanout.jobs_for(100_000, 4) == 1
    finally:
        stop.set()
        t.join()
    # join() returns before the kernel's task is gone.
    for _ in range(100):
        if fanout.single_threaded():
            break
        time.sleep(0.01)
    assert fanout.jobs_for(100_000, 4) == 4


def test_small_batches_and_one_job_stay_in_this_process():
    assert fanout.jobs_for(fanout.FANOUT_MIN - 1, 4) == 1
    assert fanout.jobs_for(100_000, 1) == 1
    assert fanout.jobs_for(100_000, 99) == fanout.MAX_JOBS
    # Each process gets at least half the minimum batch.
    assert fanout.jobs_for(fanout.FANOUT_MIN, 4) == 2


def test_split_covers_every_address_once():
    todo = list(range(0, 30_001, 3))
    for parts in (1, 2, 3, 4):
        pieces = fanout.split(todo, parts)
        assert len(pieces) == parts
        assert [a for p in pieces for a in p] == todo
        assert max(map(len, pieces)) - min(map(len, pieces)) <= 1


def test_a_batch_in_units_already_decoded_stays_here(addrs, alone):
    with Symbolizer(jobs=2) as sym:
        obj, _ = sym.object_for_path(str(NOFP))
        obj.jobs = 1
        sym.symbolize_file(str(NOFP), addrs[::2])   # decodes the units, in this process
        obj.jobs = 2
        assert sym.symbolize_file(str(NOFP), addrs) == alone
        assert obj.helped == 0


def test_addr2line_cli_with_helpers_prints_what_one_process_prints(addrs):
    text = "\n".join(hex(a) for a in addrs)
    out = {}
    for jobs in ("1", "2"):
        p = subprocess.run([sys.executable, "-m", "hud", "addr2line", "-a", "-j", jobs,
                            "--no-symbol-cache", "-e", str(NOFP)], input=text,
                           capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert p.returncode == 0, p.stderr
        out[jobs] = p.stdout
    assert out["1"] == out["2"]
    assert out["1"].count("\n0x") == len(addrs) - 1


def _cgroup(tmp_path: Path, lines: list[str], files: dict[str, str]) -> tuple[str, str]:
    proc = tmp_path / "cgroup"
    proc.write_text("\n".join(lines) + "\n")
    root = tmp_path / "fs"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return str(proc), str(root)


def test_a_v2_quota_on_the_cgroup_or_an_ancestor_bounds_the_cpus(tmp_path):
    proc, root = _cgroup(tmp_path, ["0::/kubepods/pod1/c1"], {
        "kubepods/cpu.max": "max 100000\n",
        "kubepods/pod1/cpu.max": "150000 100000\n",
        "kubepods/pod1/c1/cpu.max": "max 100000\n"})
    assert fanout.cgroup_cpu_quota(proc, root) == 1.5


def test_a_v1_quota_is_read_from_the_cpu_hierarchy(tmp_path):
    proc, root = _cgroup(tmp_path, ["4:memory:/x", "3:cpu,cpuacct:/docker/abc", "0::/"], {
        "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "50000\n",
        "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
        "cpu,cpuacct/docker/cpu.cfs_quota_us": "-1\n",
        "cpu,cpuacct/docker/cpu.cfs_period_us": "100000\n"})
    assert fanout.cgroup_cpu_quota(proc, root) == 0.5


@pytest.mark.parametrize("files", [
    {},                                                  # no controller files at all
    {"a/cpu.max": "max 100000\n"},                       # unlimited
    {"a/cpu.max": "garbage\n"},
    {"a/cpu.max": "0 100000\n"},
    {"a/cpu.max": "100000 0\n"},
])
def test_no_readable_quota_is_no_bound(tmp_path, files):
    proc, root = _cgroup(tmp_path, ["0::/a", "garbage line", "1:cpu:relative"], files)
    assert fanout.cgroup_cpu_quota(proc, root) is None


def test_a_path_cannot_climb_out_of_the_cgroup_tree(tmp_path):
    proc, root = _cgroup(tmp_path, ["0::/../../etc"], {"cpu.max": "200000 100000\n"})
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "cpu.max").write_text("10000 100000\n")
    assert fanout.cgroup_cpu_quota(proc, root) == 2.0


@pytest.mark.parametrize(("quota", "expect"), [
    (None, lambda mask: mask),              # no quota: the affinity mask
    (1.5, lambda mask: min(mask, 2)),       # a quota rounds up
    (0.2, lambda mask: 1),                  # never below one
    (1000.0, lambda mask: mask),            # a quota over the mask: the mask
])
def test_usable_cpus_is_the_affinity_bounded_by_the_quota(monkeypatch, quota, expect):
    monkeypatch.setattr(fanout, "cgroup_cpu_quota", lambda: quota)
    assert fanout.usable_cpus() == expect(len(os.sched_getaffinity(0)))
