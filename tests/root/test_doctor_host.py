"""hud doctor on this host, for real: as root every host check passes and nothing is left
behind; as uid 65534 bpf and perf FAIL with the root hint and exit 5; a host without
tracefs mounted is told it is mountable (and stays unmounted); missing and ambiguous
targets exit 4."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hud.linux import bpf

ROOT = Path(__file__).resolve().parents[2]
HOST_CHECKS = ("privileges", "kernel", "bpf", "ringbuf", "btf", "tracefs", "bpf_attach",
               "programs", "perf", "max_stack", "capstone", "kallsyms", "sym_cache",
               "backend")


def doctor(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hud", "doctor", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def doctor_json(*args: str) -> tuple[dict, int]:
    proc = doctor("--json", *args)
    assert proc.stdout.strip(), proc.stderr
    return json.loads(proc.stdout), proc.returncode


def test_as_root_every_host_check_passes():
    doc, code = doctor_json()
    bad = {k: v for k, v in doc["checks"].items() if v["status"] != "ok"}
    assert not bad, json.dumps(bad, indent=1)
    assert code == 0 and doc["exit_code"] == 0 and doc["can_profile"]
    assert doc["backend"] == "ebpf"
    assert list(doc["checks"]) == list(HOST_CHECKS)
    # what the probes saw, not what they assumed
    assert doc["checks"]["tracefs"]["data"]["fields"]["next_pid"] > 8
    assert doc["checks"]["programs"]["data"]["programs"] == [
        "hud_switch", "hud_sample", "hud_timer_in", "hud_timer_out", "hud_waking"]
    assert doc["checks"]["max_stack"]["data"]["perf_event_max_stack"] == int(
        Path("/proc/sys/kernel/perf_event_max_stack").read_text())


def test_text_report_fits_80_columns():
    proc = doctor()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    for name in HOST_CHECKS:
        assert any(line.startswith(f"  ok    {name} ") for line in lines), name
    assert lines[-1] == "verdict: hud can profile here (backend ebpf)."


# -- nothing left behind -------------------------------------------------------------------

def _ids() -> dict:
    return {"progs": set(bpf.prog_ids()), "maps": set(bpf.map_ids()),
            "links": set(bpf.link_ids())}


def _held_by_others() -> dict:
    """BPF object ids some live process other than us holds an fd of (fdinfo)."""
    keys = {"prog_id": "progs", "map_id": "maps", "link_id": "links"}
    held: dict = {"progs": set(), "maps": set(), "links": set()}
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            names = os.listdir(f"/proc/{pid}/fdinfo")
        except OSError:
            continue
        for fd in names:
            try:
                text = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
            except OSError:
                continue
            for line in text.splitlines():
                key, _, value = line.partition(":")
                if key in keys and value.strip().isdigit():
                    held[keys[key]].add(int(value))
    return held


def _bpf_fds() -> list[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(("anon_inode:bpf", "anon_inode:[perf_event]")):
            out.append(f"{fd} -> {target}")
    return out


def test_probes_leave_nothing_behind():
    """In-process: every fd the probes opened is closed. Subprocess: no BPF object created
    during the run outlives it (new ids that remain belong to other live processes; the
    checkout is shared with other test runs)."""
    from hud.doctor.host import host_checks
    fds = _bpf_fds()
    checks, backend, _ = host_checks()
    assert backend == "ebpf", [(c.name, c.summary) for c in checks if c.status != "ok"]
    assert _bpf_fds() == fds

    before = _ids()
    proc = doctor()
    assert proc.returncode == 0, proc.stdout
    time.sleep(0.2)   # objects are freed by RCU after the last fd closes
    after = _ids()
    others = _held_by_others()
    for kind in after:
        left = after[kind] - before[kind] - others[kind]
        assert not left, f"{kind} left behind by hud doctor: {sorted(left)}"


def test_the_leak_check_can_fail():
    """A map held open by a child shows up as new and held, and vanishes with it."""
    before = _ids()
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys
        from hud.linux import bpf
        from kernel import uapi
        bpf.map_create(uapi.BPF_MAP_TYPE_ARRAY, 4, 8, 1, name="hud_dr_leak")
        print("ready", flush=True)
        sys.stdin.read()
    """)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        new = _ids()["maps"] - before["maps"]
        assert new and new <= _held_by_others()["maps"]
    finally:
        child.stdin.close()
        child.wait(timeout=30)


# -- as uid 65534 --------------------------------------------------------------------------

NOBODY = textwrap.dedent("""
    import contextlib, io, json, os, sys
    from hud.cli import main

    def run(argv):
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                main(argv)
        except SystemExit as e:
            return out.getvalue(), e.code or 0
        return out.getvalue(), 0

    # Warm-up as root: every module the doctor imports lazily is loaded now, while the
    # interpreter's own files (under /root) are still readable.
    run(["doctor", "--json"] + sys.argv[1:])
    run(["doctor"] + sys.argv[1:])
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
    assert os.geteuid() == 65534
    text, code = run(["doctor"] + sys.argv[1:])
    js, jcode = run(["doctor", "--json"] + sys.argv[1:])
    print(json.dumps({"text": text, "code": code, "json": js, "jcode": jcode}))
""")


def _as_nobody(*args: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", NOBODY, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_as_nobody_bpf_and_perf_fail_with_the_root_hint():
    got = _as_nobody()
    assert got["code"] == 5 and got["jcode"] == 5
    doc = json.loads(got["json"])
    checks = doc["checks"]
    for name in ("bpf", "perf", "privileges", "backend"):
        assert checks[name]["status"] == "fail", (name, checks[name])
        assert "root" in checks[name]["hint"], checks[name]
    assert "EPERM" in checks["bpf"]["summary"] and "not root" in checks["bpf"]["summary"]
    assert "EACCES" in checks["perf"]["summary"]
    assert checks["ringbuf"]["status"] == "skip"
    assert doc["backend"] is None and not doc["can_profile"]
    lines = got["text"].splitlines()
    assert any(line.startswith("  FAIL  bpf ") for line in lines), got["text"]
    assert any(line.startswith("  FAIL  perf ") for line in lines), got["text"]
    assert lines[-2].startswith("verdict: hud cannot profile on this host")
    assert lines[-1].startswith("fix: run hud as root")
    assert all(len(line) <= 80 for line in lines)


def test_as_nobody_a_root_target_is_unreadable():
    target = subprocess.Popen(["sleep", "120"])
    try:
        got = _as_nobody("--pid", str(target.pid))
    finally:
        target.kill()
        target.wait()
    doc = json.loads(got["json"])
    access = doc["checks"]["access"]
    assert access["status"] == "fail" and "CAP_SYS_PTRACE" in access["summary"]
    assert got["code"] == 5


# -- tracefs not mounted -------------------------------------------------------------------

def _tracefs_mounts() -> list[str]:
    return [line for line in Path("/proc/self/mounts").read_text().splitlines()
            if line.split()[2:3] == ["tracefs"]]


def test_unmounted_tracefs_is_mountable_and_stays_unmounted():
    """In a private mount namespace without tracefs (as on a freshly booted VM), the doctor
    finds it mountable, still runs hud's programs, and mounts nothing where it runs."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.fail("util-linux unshare is needed (apt-get install util-linux)")
    host_before = _tracefs_mounts()
    script = (f"for m in $(awk '$3==\"tracefs\" {{print $2}}' /proc/self/mounts); do "
              f"umount $m; done; {sys.executable} -m hud doctor --json; echo; "
              "awk '$3==\"tracefs\"' /proc/self/mounts | wc -l")
    proc = subprocess.run([unshare, "-m", "--propagation", "private", "sh", "-c", script],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    out = proc.stdout.strip()
    doc_text, _, count = out.rpartition("\n")
    doc = json.loads(doc_text)
    tracefs = doc["checks"]["tracefs"]
    assert tracefs["status"] == "ok", tracefs
    assert tracefs["data"]["mounted"] is None and "mountable" in tracefs["summary"]
    assert doc["checks"]["programs"]["status"] == "ok", doc["checks"]["programs"]
    assert doc["checks"]["bpf_attach"]["status"] == "ok"
    assert doc["backend"] == "ebpf"
    assert count.strip() == "0", "the doctor left tracefs mounted in its namespace"
    assert _tracefs_mounts() == host_before


# -- targets -------------------------------------------------------------------------------

def test_missing_target_exits_4():
    doc, code = doctor_json("no-such-process-hud-doctor")
    assert code == 4 and doc["exit_code"] == 4
    assert doc["checks"]["target"]["status"] == "fail"
    assert "pgrep" in doc["checks"]["target"]["hint"]
    proc = doctor("--pid", "999999999")
    assert proc.returncode == 4 and "no process with pid 999999999" in proc.stdout


def test_ambiguous_target_lists_the_candidates(tmp_path):
    exe = tmp_path / "hud-dr-sleepy"
    shutil.copy("/bin/sleep", exe)
    procs = [subprocess.Popen([str(exe), "60"]) for _ in range(2)]
    try:
        doc, code = doctor_json("hud-dr-sleepy")
        text = doctor("hud-dr-sleepy").stdout
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert code == 4
    target = doc["checks"]["target"]
    assert sorted(target["data"]["pids"]) == sorted(p.pid for p in procs)
    for p in procs:
        assert f"pid {p.pid}: hud-dr-sleepy 60" in text
    assert "--pid N" in text
