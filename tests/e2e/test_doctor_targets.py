"""hud doctor on real Tokio fixtures: Tokio and its version found, DWARF in the binary or a
separate debug file through .gnu_debuglink, frame pointers told apart from CFI-only
builds, workers by name, and a target in its own mount namespace whose binary was
deleted, then replaced by another build."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.fixtures import load_manifest

ROOT = Path(__file__).resolve().parents[2]


def doctor(*args: str) -> tuple[dict, int, str]:
    """(JSON report, exit code, text report) of `hud doctor ARGS`."""
    base = [sys.executable, "-m", "hud", "doctor", *args]
    js = subprocess.run([*base, "--json"], cwd=ROOT, capture_output=True, text=True,
                        timeout=120)
    text = subprocess.run(base, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert js.stdout.strip(), js.stderr
    assert js.returncode == text.returncode
    lines = text.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    return json.loads(js.stdout), js.returncode, text.stdout


def _target_ok(doc: dict) -> dict:
    checks = {k: v for k, v in doc["checks"].items() if v["scope"] == "target"}
    assert list(checks) == ["target", "access", "threads", "tokio", "debug_info", "unwind",
                            "files", "binary"]
    return checks


@pytest.mark.parametrize("variant, strategy", [("blockers-fp", "both"),
                                               ("blockers-nofp", "cfi")])
def test_tokio_dwarf_and_frame_pointers(tokio_fixture, variant, strategy):
    fx = tokio_fixture(variant, ["sleep"])
    doc, code, text = doctor("--pid", str(fx.pid))
    assert code == 0 and doc["can_profile"], text
    checks = _target_ok(doc)
    bad = {k: v for k, v in checks.items() if v["status"] != "ok"}
    assert not bad, json.dumps(bad, indent=1)
    tokio = checks["tokio"]["data"]
    assert tokio["symbols"] > 50 and "multi_thread" in tokio["flavors"]
    assert tokio["version"] and tokio["version"].startswith("1.")
    debug = checks["debug_info"]["data"]
    assert debug["in_binary"] == [".debug_info", ".debug_line"]
    binary = str(fx.manifest.binary)
    unwind = checks["unwind"]["data"][binary]
    assert unwind["strategy"] == strategy and unwind["eh_frame"]
    assert (unwind["fp_fraction"] >= 0.6) == fx.manifest.frame_pointers
    assert f"blockers: {strategy} (.eh_frame" in text
    threads = checks["threads"]["data"]
    assert threads["rule"] == "default-names"
    assert set(fx.worker_tids) <= set(threads["workers"])
    assert checks["files"]["data"]["map_files"] == checks["files"]["data"]["modules"]
    assert not checks["files"]["data"]["other_mount_ns"]
    # by name too: the fixture's comm is its binary's name
    assert doctor("--pid", str(fx.pid))[0]["target"]["comm"] == "blockers"


def test_stripped_binary_finds_its_debug_file_through_debuglink(tokio_fixture):
    fx = tokio_fixture("blockers-stripped", ["sleep"])
    assert fx.manifest.stripped and fx.manifest.debug_file is not None
    doc, code, text = doctor("--pid", str(fx.pid))
    assert code == 0, text
    checks = _target_ok(doc)
    debug = checks["debug_info"]
    assert debug["status"] == "ok", debug
    assert debug["data"]["in_binary"] == []
    assert debug["data"]["via"] == "debuglink"
    assert debug["data"]["debug_file"].endswith(str(fx.manifest.debug_file))
    assert debug["data"]["in_debug_file"] == [".debug_info", ".debug_line"]
    assert "via debuglink" in text
    # Tokio is found in the debug file's symbol table: the binary has none left
    assert checks["tokio"]["status"] == "ok" and checks["tokio"]["data"]["symbols"] > 50
    assert checks["unwind"]["data"][str(fx.manifest.binary)]["strategy"] == "cfi"


def test_without_its_debug_file_the_stripped_binary_warns(tmp_path):
    """The same stripped binary copied away from its debug file: functions only."""
    m = load_manifest("blockers-stripped")
    exe = tmp_path / "blockers"
    shutil.copy(m.binary, exe)
    with _started([str(exe), "--scenario", "sleep", "--work-dir", str(tmp_path),
                   "--exit-on-stdin-eof"]) as proc:
        doc, code, text = doctor("--pid", str(proc.pid))
        # the user's --debug-file is honoured, as `hud --debug-file` would use it
        given, _, _ = doctor("--pid", str(proc.pid), "--debug-file", str(m.debug_file))
    assert code == 0, text
    debug = doc["checks"]["debug_info"]
    assert debug["status"] == "warn" and "--debug-file" in debug["hint"]
    assert "no debug file was found" in debug["summary"]
    # no symbols left, but the panic locations in .rodata still name Tokio's sources
    tokio = doc["checks"]["tokio"]
    assert tokio["status"] == "ok" and tokio["data"]["version_from"] == "rodata", tokio
    assert tokio["data"]["symbols"] == 0
    debug = given["checks"]["debug_info"]
    assert debug["status"] == "ok" and debug["data"]["via"] == "--debug-file", debug
    assert given["checks"]["tokio"]["status"] == "ok"


def test_the_doctor_asks_debuginfod_for_the_missing_debug_file(tmp_path):
    """The stripped binary away from its debug file, and a debuginfod server: the doctor
    asks it (as a profile would) and says OK when it has the file, or that it has not
    and what to do; the same question through DEBUGINFOD_URLS."""
    from support.debuginfod import serve
    m = load_manifest("blockers-stripped")
    exe = tmp_path / "blockers"
    shutil.copy(m.binary, exe)
    bid = m.raw["build_id"]
    path = f"/buildid/{bid}/debuginfo"
    with serve({path: m.debug_file.read_bytes()}) as (has, asked), serve({}) as (lacks, _), \
            _started([str(exe), "--scenario", "sleep", "--work-dir", str(tmp_path),
                      "--exit-on-stdin-eof"]) as proc:
        found, code, text = doctor("--pid", str(proc.pid), "--debuginfod", has)
        missing, _, missing_text = doctor("--pid", str(proc.pid), "--debuginfod", lacks)
    assert code == 0, text
    debug = found["checks"]["debug_info"]
    size = m.debug_file.stat().st_size
    assert debug["status"] == "ok", debug
    assert debug["data"]["debuginfod"] == [{"url": has, "state": "has", "bytes": size}]
    assert f"({size / 1e6:.1f} MB): a profile fetches it" in " ".join(text.split())
    assert asked == [path, path]          # one question per doctor run (JSON and text)
    debug = missing["checks"]["debug_info"]
    assert debug["status"] == "warn" and debug["data"]["debuginfod"][0]["state"] == "missing"
    assert debug["hint"].startswith(f"no debuginfod server has build-id {bid[:12]}")
    assert "--debug-file" in debug["hint"] and "HTTP 404" in missing_text


def test_minidebuginfo_names_a_stripped_binarys_functions(tmp_path):
    """The stripped fixture as a Fedora-family package ships it: no debug file, but its
    function symbols xz-compressed in .gnu_debugdata. The doctor says so, finds Tokio
    there, and a profile names the blocker (no file:line: there is no DWARF)."""
    from unit.symbolize.binaries import mini_debuginfo
    m = load_manifest("blockers-stripped")
    exe = mini_debuginfo(m.debug_file, m.binary, tmp_path / "blockers")
    out = tmp_path / "r.json"
    with _started([str(exe), "--scenario", "sleep", "--work-dir", str(tmp_path),
                   "--exit-on-stdin-eof"]) as proc:
        doc, code, text = doctor("--pid", str(proc.pid))
        run = subprocess.run([sys.executable, "-m", "hud", "--pid", str(proc.pid),
                              "--headless", "--duration", "3", "-q", "--export", str(out),
                              "--format", "report"],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert code == 0, text
    debug = doc["checks"]["debug_info"]
    assert debug["status"] == "warn" and debug["data"]["via"] == "minidebuginfo", debug
    assert debug["data"]["symbols"] > 1000 and "MiniDebugInfo" in text
    tokio = doc["checks"]["tokio"]
    assert tokio["status"] == "ok" and tokio["data"]["symbols"] > 50, tokio
    assert run.returncode == 0, run.stderr
    found = [f for f in json.loads(out.read_text())["findings"] if f["kind"] == "blocking"]
    sleep = m.scenarios["sleep"].function
    assert any(f["function"] == sleep for f in found), [f["function"] for f in found]


def test_a_dwz_debug_file_without_its_common_file_warns(tmp_path):
    """A debug file compressed with `dwz -m` names a common file: found, all is well;
    missing, inlined functions lose their names and the doctor says which file."""
    m = load_manifest("blockers-stripped")
    if shutil.which("dwz") is None:
        pytest.fail("dwz missing: it is in .ci/apt-packages")
    exe = tmp_path / "blockers"
    shutil.copy(m.binary, exe)
    shutil.copy(m.debug_file, tmp_path / "blockers.debug")
    subprocess.run(["objcopy", "--only-keep-debug", str(load_manifest("demo").binary),
                    str(tmp_path / "demo.debug")], check=True)
    subprocess.run(["dwz", "-m", "common.debug", "-r", "blockers.debug", "demo.debug"],
                   cwd=tmp_path, check=True, capture_output=True)
    with _started([str(exe), "--scenario", "sleep", "--work-dir", str(tmp_path),
                   "--exit-on-stdin-eof"]) as proc:
        args = ("--pid", str(proc.pid), "--debug-file", str(tmp_path / "blockers.debug"))
        found, _, _ = doctor(*args)
        (tmp_path / "common.debug").rename(tmp_path / "elsewhere")
        missing, code, text = doctor(*args)
    debug = found["checks"]["debug_info"]
    assert debug["status"] == "ok", debug
    assert debug["data"]["dwz_file"] == str(tmp_path / "common.debug")
    debug = missing["checks"]["debug_info"]
    assert code == 0 and debug["status"] == "warn", debug
    assert "dwz file common.debug not found" in debug["summary"], debug
    assert ".dwz" in debug["hint"] and "dwz file" in text


def test_split_dwarf_says_where_the_dies_are(tmp_path):
    """A rustc -C split-debuginfo=unpacked build: its .dwo files are found; moved away,
    the doctor warns; packed into a .dwp beside the binary, found again."""
    from unit.symbolize.binaries import RUST_PROG
    rustc = shutil.which("rustc") or os.path.expanduser("~/.cargo/bin/rustc")
    (tmp_path / "rs.rs").write_text(RUST_PROG)
    subprocess.run([rustc, "-g", "-C", "opt-level=2", "-C", "split-debuginfo=unpacked",
                    "-o", "rs", "rs.rs"], cwd=tmp_path, check=True, capture_output=True)
    dwos = list(tmp_path.glob("*.dwo"))
    assert dwos

    def debug_info(pid: int) -> dict:
        doc, _code, _text = doctor("--pid", str(pid))
        return doc["checks"]["debug_info"]

    with _started([str(tmp_path / "rs"), "10", "wait"], wait_ready=False) as proc:
        proc.stdout.readline()
        found = debug_info(proc.pid)
        (tmp_path / "away").mkdir()
        for p in dwos:
            p.rename(tmp_path / "away" / p.name)
        lost = debug_info(proc.pid)
        subprocess.run(["llvm-dwp", "-o", str(tmp_path / "rs.dwp"),
                        *[str(tmp_path / "away" / p.name) for p in dwos]], check=True,
                       timeout=60)
        packed = debug_info(proc.pid)
    assert found["status"] == "ok" and ".dwo" in found["summary"], found
    assert found["data"]["split_units"] == len(dwos) and found["data"]["dwo_missing"] == 0
    assert lost["status"] == "warn", lost
    assert f"{len(dwos)} of {len(dwos)} .dwo files missing" in lost["summary"]
    assert "llvm-dwp" in lost["hint"]
    assert packed["status"] == "ok" and "rs.dwp" in packed["summary"], packed


def test_custom_thread_names_and_current_thread(tokio_fixture):
    named = tokio_fixture("blockers-named", ["sleep"])
    doc, code, _ = doctor("--pid", str(named.pid))
    threads = doc["checks"]["threads"]
    # Builder::thread_name gives every worker one name with no number: the doctor says
    # which --workers would name them
    assert code == 0 and threads["status"] == "warn", threads
    assert threads["data"]["rule"] == "stacks"
    assert "--workers hud-fx-worker" in threads["hint"]
    doc, _, text = doctor("--pid", str(named.pid), "--workers", "hud-fx")
    threads = doc["checks"]["threads"]
    assert threads["status"] == "ok" and threads["data"]["rule"] == "prefix:hud-fx"
    assert set(named.worker_tids) <= set(threads["data"]["workers"])
    assert "workers named hud-fx*" in text

    current = tokio_fixture("blockers-current", ["sleep"])
    doc, code, _ = doctor("--pid", str(current.pid))
    assert code == 0
    assert doc["checks"]["threads"]["data"]["rule"] == "stacks"
    assert "block_on" in doc["checks"]["threads"]["hint"]
    assert "current_thread" in doc["checks"]["tokio"]["data"]["flavors"]


# -- a container whose binary is deleted, then replaced ----------------------------------------

@contextlib.contextmanager
def _started(argv: list, wait_ready: bool = True):
    """A fixture binary started by hand (argv may wrap it, e.g. in unshare), killed on exit."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True, text=True)
    try:
        if wait_ready:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                line = proc.stdout.readline()
                if not line:
                    raise AssertionError(f"exited early: {proc.stderr.read()[-2000:]}")
                with contextlib.suppress(ValueError):
                    if json.loads(line).get("event") == "ready":
                        break
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def _program_pid(wrapper_pid: int, name: str) -> int:
    """The pid of `name` under `wrapper_pid` (unshare execs sh, sh execs the program)."""
    for _ in range(200):
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                with contextlib.suppress(OSError):
                    if Path(f"/proc/{pid}/comm").read_text().strip() == name and \
                            os.getsid(int(pid)) == wrapper_pid:
                        return int(pid)
        time.sleep(0.05)
    raise AssertionError(f"no {name} under {wrapper_pid}")


def test_container_with_a_deleted_then_replaced_binary(tmp_path):
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.fail("util-linux unshare is needed")
    fp, nofp = load_manifest("blockers-fp"), load_manifest("blockers-nofp")
    bindir, mnt, work = tmp_path / "bin", tmp_path / "mnt", tmp_path / "work"
    for d in (bindir, mnt, work):
        d.mkdir()
    shutil.copy(fp.binary, bindir / "app")
    # Inside its own mount namespace the program runs as <mnt>/app, a path that on the
    # host is an empty directory: only /proc/PID/map_files and /proc/PID/root reach it.
    script = (f"mount --bind {bindir} {mnt} && exec {mnt}/app --scenario sleep "
              f"--work-dir {work} --exit-on-stdin-eof")
    with _started([unshare, "-m", "--propagation", "private", "sh", "-c", script]) as w:
        pid = _program_pid(w.pid, "app")
        assert not (mnt / "app").exists()
        doc, code, text = doctor("--pid", str(pid))
        assert code == 0, text
        files = doc["checks"]["files"]
        assert files["status"] == "ok" and files["data"]["other_mount_ns"], files
        assert "another mount namespace" in files["summary"]
        assert files["data"]["map_files"] == files["data"]["modules"]
        assert doc["checks"]["tokio"]["status"] == "ok"
        assert doc["checks"]["binary"]["data"]["deleted"] is False

        (bindir / "app").unlink()
        doc, code, text = doctor("--pid", str(pid))
        binary = doc["checks"]["binary"]
        assert code == 0 and binary["status"] == "ok", binary
        assert binary["data"]["deleted"] and not binary["data"]["replaced"]
        assert "deleted since start" in binary["summary"] and "map_files" in text
        assert doc["checks"]["debug_info"]["status"] == "ok"   # read from the mapped copy

        shutil.copy(nofp.binary, bindir / "app")
        doc, code, text = doctor("--pid", str(pid))
        binary = doc["checks"]["binary"]
        assert binary["status"] == "warn" and binary["data"]["replaced"], binary
        assert binary["data"]["same_build"] is False
        assert "different build" in binary["summary"]
        # the running copy is still what is analysed: the FP build
        assert doc["checks"]["unwind"]["data"][f"{mnt}/app"]["strategy"] == "both"
