"""hud.pyz end to end: built from this checkout, run isolated on Debian's Python 3.11 and on 3.9.

What a user does on a bare host (`sudo python3 hud.pyz ...`), with nothing of the venv:
--help without textual, --version with the build commit, doctor, capstone's library from a
memfd (also when every parent directory is noexec), the re-exec that keeps PYTHONPATH out, a
reproducible build, and a headless profile of the blockers fixture.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD_PYZ = ROOT / "scripts" / "build-pyz"
SETUP_PY39 = ROOT / "scripts" / "setup-python39"
PY39 = ROOT / "build" / "python3.9" / "bin" / "python3.9"
TMP_PARENTS = ("/run", "/dev/shm", "/tmp", "/var/tmp")

# The profiler (issue 6) lands in parts: until hud.session and a live backend exist, the
# headless profile cannot find anything (and the source-tree control is not even tried).
PROFILER_LANDED = (importlib.util.find_spec("hud.session") is not None
                   and any(importlib.util.find_spec(f"hud.collect.{b}") is not None
                           for b in ("ebpf", "perf")))


def _machine_python() -> str:
    """Debian's own python3 (what `sudo python3` runs on a bare bookworm host)."""
    for cand in ("/usr/bin/python3", getattr(sys, "_base_executable", ""), sys.executable):
        if cand and os.access(cand, os.X_OK):
            return cand
    raise AssertionError("no python3")


def _python39() -> str:
    env = os.environ.get("HUD_PYTHON39")
    if env:
        return env
    # Idempotent (scripts/setup runs it too): checks the interpreter, fetches it if missing.
    proc = subprocess.run([str(SETUP_PY39)], capture_output=True, text=True)
    assert proc.returncode == 0, f"scripts/setup-python39 failed:\n{proc.stderr[-2000:]}"
    return str(PY39)


@pytest.fixture(scope="session", params=["3.11", "3.9"])
def python(request) -> str:
    exe = _machine_python() if request.param == "3.11" else _python39()
    out = subprocess.run([exe, "-I", "-c", "import sys; print(sys.version_info[:2])"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(tuple(int(x) for x in request.param.split("."))), out
    return exe


def _build(out: Path) -> Path:
    proc = subprocess.run([sys.executable, str(BUILD_PYZ), "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def pyz(tmp_path_factory) -> Path:
    return _build(tmp_path_factory.mktemp("pyz") / "hud.pyz")


def _run(python: str, *args: str, env=None, cwd=None, timeout=120) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "LIBCAPSTONE"))}
    return subprocess.run([python, *args], capture_output=True, text=True, timeout=timeout,
                          env={**base, **(env or {})}, cwd=cwd or "/")


def _imported(importtime_stderr: str) -> set:
    names = set()
    for line in importtime_stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


# ---------------------------------------------------------------------------- the CLI

def test_help_runs_isolated_without_textual(python, pyz):
    proc = _run(python, "-I", "-X", "importtime", str(pyz), "--help")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Usage: hud" in proc.stdout and "doctor" in proc.stdout
    imported = _imported(proc.stderr)
    assert "hud.cli" in imported and "click" in imported      # the parse saw hud's imports
    heavy = sorted(n for n in imported if n.split(".")[0] in ("textual", "rich", "pygments",
                                                              "capstone", "elftools"))
    assert heavy == [], f"--help imported {heavy[:10]}"


def test_version_names_the_build_commit(python, pyz):
    proc = _run(python, "-I", str(pyz), "--version")
    assert proc.returncode == 0, proc.stderr
    from hud import __version__
    m = re.fullmatch(r"hud (\S+) \(([0-9a-f]{12})(-dirty)?\)\n", proc.stdout)
    assert m, proc.stdout
    assert m.group(1) == __version__
    # The commit the pyz was built from: HEAD in CI's clone; in a shared checkout others may
    # have committed since, so: a commit of this history.
    ancestor = subprocess.run(["git", "-C", str(ROOT), "merge-base", "--is-ancestor",
                               m.group(2), "HEAD"], capture_output=True, text=True)
    assert ancestor.returncode == 0, f"{m.group(2)} is not in HEAD's history"
    assert not (ROOT / "hud" / "_build.py").exists()


def test_doctor_runs(python, pyz):
    proc = _run(python, "-I", str(pyz), "doctor")
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_run_without_isolation_reexecs_isolated(python, pyz, tmp_path):
    """PYTHONPATH (kept by `sudo -E`-like set-ups) must not put a module ahead of stdlib."""
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "gettext.py").write_text("print('PLANTED gettext ran')\n"
                                     "raise ImportError('planted')\n")
    env = {"PYTHONPATH": str(evil)}
    # Control: without the re-exec, click (imported by hud) would pick up the planted module.
    control = _run(python, "-c", f"import sys; sys.path.insert(0, {str(pyz)!r}); import click",
                   env=env)
    assert "PLANTED" in control.stdout, control.stdout + control.stderr
    proc = _run(python, str(pyz), "--version", env=env)
    assert "PLANTED" not in proc.stdout + proc.stderr
    assert proc.returncode == 0 and proc.stdout.startswith("hud "), proc.stderr


def test_tracebacks_show_the_zips_source_lines(python, pyz):
    """click/types.py shares its name with the stdlib's types.py: the line shown must be
    click's (the interpreter's own printer would show the stdlib's)."""
    code = (f"import sys; sys.path.insert(0, {str(pyz)!r}); import _hud_pyz; "
            "sys.excepthook = _hud_pyz.excepthook; import click; "
            "click.Choice(['a']).convert('b', None, None)")
    proc = _run(python, "-I", "-c", code)
    assert proc.returncode == 1
    frames = re.findall(r'File "([^"]+)", line \d+, in \w+\n    (.*)\n', proc.stderr)
    last_file, last_line = frames[-1]
    assert last_file == f"{pyz}/click/types.py", proc.stderr
    assert "raise BadParameter" in last_line, proc.stderr


def test_too_old_python_is_told_so(pyz):
    old = sorted(Path(os.environ.get("PYENV_ROOT", "/root/.pyenv")).glob(
        "versions/3.[5-8].*/bin/python3"))
    if old:   # a real old interpreter (the image's pyenv has 3.6-3.8): the stub must parse
        proc = _run(str(old[0]), str(pyz), "--version")
    else:     # else the stub's check alone, on a python that claims to be 3.8
        stub = zipfile.ZipFile(pyz).read("__main__.py").decode()
        proc = _run(sys.executable, "-I", "-c",
                    f"import sys; sys.version_info = (3, 8, 0); exec({stub!r})")
    assert proc.returncode == 5, proc.stdout + proc.stderr
    assert "needs Python >= 3.9" in proc.stderr


# ---------------------------------------------------------------------------- capstone

_CAPSTONE_PROBE = textwrap.dedent("""
    import json, os, sys
    archive = sys.argv[1]
    sys.path.insert(0, archive)
    import tempfile
    made, mkdtemp = [], tempfile.mkdtemp
    tempfile.mkdtemp = lambda *a, **k: made.append(mkdtemp(*a, **k)) or made[-1]
    import _hud_pyz
    kw = {}
    if len(sys.argv) > 2 and sys.argv[2] != "-":
        kw["strategies"] = tuple(sys.argv[2].split(","))
    if len(sys.argv) > 3:
        kw["parents"] = tuple(sys.argv[3].split(","))
    _hud_pyz.install(archive, **kw)
    out = {"path": sys.path}
    try:
        import capstone
        md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
        out["insns"] = [f"{i.mnemonic} {i.op_str}" for i in md.disasm(b"UH\\x89\\xe5", 0)]
        out["file"] = capstone.__file__
    except ImportError as e:
        out["error"] = str(e)
    out["status"] = _hud_pyz.status()
    out["env"] = os.environ.get("LIBCAPSTONE_PATH")
    out["dirs_made"] = made
    out["dirs_left"] = [d for d in made if os.path.lexists(d)]
    out["maps"] = sorted({l.split(None, 5)[-1].strip() for l in open("/proc/self/maps")
                          if "capstone" in l})
    print(json.dumps(out))
""")


def _probe(python: str, pyz: Path, tmp_path: Path, strategies: str = "-", env=None,
           wrap=None, parents=()) -> dict:
    script = tmp_path / "probe.py"
    script.write_text(_CAPSTONE_PROBE)
    cmd = [python, "-I", str(script), str(pyz), strategies,
           *([",".join(map(str, parents))] if parents else [])]
    if wrap:   # wrap ends with a shell script prefix: append the quoted command to it
        cmd = [*wrap[:-1], wrap[-1] + " ".join(shlex.quote(c) for c in cmd)]
    proc = _run(cmd[0], *cmd[1:], env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


def _planted_lib(tmp_path: Path) -> Path:
    planted = tmp_path / "planted"
    planted.mkdir()
    (planted / "libcapstone.so").write_bytes(b"not a library: loading it would fail\n")
    return planted


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the probe disassembles x86_64")
def test_capstone_loads_from_a_memfd_and_ignores_an_inherited_path(python, pyz, tmp_path):
    planted = _planted_lib(tmp_path)
    out = _probe(python, pyz, tmp_path, env={"LIBCAPSTONE_PATH": str(planted)})
    assert out.get("insns") == ["push rbp", "mov rbp, rsp"], out
    assert out["status"] == {"capstone": "memfd"}
    assert out["file"].startswith(str(pyz) + "/capstone/")
    assert out["env"] == str(planted)              # restored after capstone's import
    assert out["maps"] == ["/memfd:libcapstone.so (deleted)"], out["maps"]
    assert not any(p.endswith(("site-packages", "dist-packages")) for p in out["path"])
    assert len(out["dirs_made"]) == 1 and out["dirs_made"][0].startswith(TMP_PARENTS)
    assert out["dirs_left"] == []


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the probe disassembles x86_64")
def test_capstone_file_fallback_uses_a_private_dir_and_cleans_up(python, pyz, tmp_path):
    out = _probe(python, pyz, tmp_path, "file")
    assert out.get("insns") == ["push rbp", "mov rbp, rsp"], out
    assert out["status"]["capstone"].startswith("file in /"), out["status"]
    assert len(out["maps"]) == 1 and out["maps"][0].endswith("/libcapstone.so (deleted)")
    assert out["maps"][0].startswith(out["dirs_made"][0] + "/")
    assert out["dirs_left"] == []


def _noexec_mounts(tmp_path: Path) -> tuple:
    """(wrap, parents): a private mount namespace with two fresh noexec tmpfs, a root-only
    one and a sticky one (like /run and /tmp), offered as the only parents. (Remounting the
    real /tmp noexec would also stop the interpreter when the checkout lives there.)"""
    if not shutil.which("unshare"):
        pytest.fail("unshare (util-linux) is needed to mount noexec tmpfs privately")
    parents = (tmp_path / "run-noexec", tmp_path / "tmp-noexec")
    for p in parents:
        p.mkdir()
    mounts = (f"mount -t tmpfs -o noexec,mode=0755 tmpfs {parents[0]} && "
              f"mount -t tmpfs -o noexec,mode=1777 tmpfs {parents[1]} && ")
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", f"{mounts}exec "], parents


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the probe disassembles x86_64")
def test_capstone_loads_when_every_parent_is_noexec(python, pyz, tmp_path):
    wrap, parents = _noexec_mounts(tmp_path)
    out = _probe(python, pyz, tmp_path, wrap=wrap, parents=parents)
    assert out.get("insns") == ["push rbp", "mov rbp, rsp"], out
    assert out["status"] == {"capstone": "memfd"}
    assert out["dirs_made"][0].startswith(str(parents[0])), out["dirs_made"]
    # The file way must refuse rather than try to map from a noexec mount.
    out = _probe(python, pyz, tmp_path, "file", wrap=wrap, parents=parents)
    assert "noexec" in out.get("error", ""), out
    assert out["status"]["capstone"].startswith("unavailable")


# ---------------------------------------------------------------------------- the build

def test_zip_layout(pyz):
    data = pyz.read_bytes()
    assert data.startswith(b"#!/usr/bin/env python3\n")
    with zipfile.ZipFile(pyz) as zf:
        names = zf.namelist()
        native = zf.read("_hud_pyz_native.py").decode()
        libs = {n: hashlib.sha256(zf.read(n)).hexdigest() for n in names
                if n.startswith("_hud_native/")}
        build_mod = zf.read("hud/_build.py").decode()
        infos = zf.infolist()
    assert names == sorted(names)
    assert {"__main__.py", "_hud_pyz.py", "hud/cli/__init__.py", "kernel/__init__.py",
            "click/__init__.py", "textual/app.py", "elftools/__init__.py",
            "capstone/__init__.py"} <= set(names)
    assert sorted(libs) == ["_hud_native/aarch64/libcapstone.so",
                            "_hud_native/x86_64/libcapstone.so"]
    for member, digest in libs.items():
        assert f"({member!r}, {digest!r})" in native
    assert "COMMIT = " in build_mod
    assert not [n for n in names if n.endswith((".pyc", ".pyi")) or "__pycache__" in n
                or "/tests/" in n or n.startswith("capstone/lib/")]
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {i.external_attr >> 16 for i in infos} == {0o100644}


def _sources_digest() -> str:
    h = hashlib.sha256(subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"],
                                      capture_output=True, check=True).stdout)
    for rel in sorted(subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "--cached", "--others", "--exclude-standard",
             "hud", "kernel"], capture_output=True, text=True, check=True).stdout.split()):
        path = ROOT / rel
        h.update(rel.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"-"))
    return h.hexdigest()


def test_build_is_reproducible(tmp_path):
    # Two builds back to back. In a checkout shared with people editing hud/, the sources can
    # change between them: then build again (CI's clone never changes).
    for _ in range(3):
        before = _sources_digest()
        one, two = _build(tmp_path / "one.pyz"), _build(tmp_path / "two.pyz")
        if _sources_digest() == before:
            break
    if one.read_bytes() != two.read_bytes():
        with zipfile.ZipFile(one) as a, zipfile.ZipFile(two) as b:
            differ = [i.filename for i in a.infolist() if i.filename not in b.namelist()
                      or a.read(i) != b.read(i.filename)
                      or a.getinfo(i.filename).external_attr != b.getinfo(i.filename).external_attr]
        pytest.fail(f"two builds differ; members: {differ[:20]}")


# ---------------------------------------------------------------------------- profiling

def test_headless_replay_report_from_the_zip(python, pyz, tmp_path):
    """Analysis and export inside the zip, on both interpreters, without a live backend: the
    committed demo recording's headline finding (its generator's ground truth)."""
    recording = ROOT / "tests" / "data" / "recordings" / "demo.jsonl"
    report = tmp_path / "report.json"
    proc = _run(python, "-I", "-X", "importtime", str(pyz), "--replay", str(recording),
                "--headless", "--export", str(report), "--format", "report")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not [n for n in _imported(proc.stderr) if n.split(".")[0] == "textual"]
    doc = json.loads(report.read_text())
    assert doc["schema"] == "hud-report/1"
    top = doc["findings"][0]
    assert (top["kind"], top["function"], top["line"]) == (
        "blocking", "my_app::handlers::load", 42), top


def _blockers(scenarios: list):
    """The blockers fixture running these scenarios (tests/support/fixtures.py, issue 3)."""
    from support.fixtures import run_fixture
    return run_fixture("blockers-fp", scenarios)


def _headless_finds_sleep(hud: list, out: Path, cwd=None) -> str:
    """Profile the sleep scenario for 10 s with `hud` (argv prefix): '' when the report has
    the manifest's blocking finding, else what went wrong."""
    report = out / "report.json"
    with _blockers(["sleep"]) as fx:
        proc = _run(hud[0], *hud[1:], "--pid", str(fx.pid), "--headless", "--duration", "10",
                    "--export", str(report), "--format", "report", cwd=cwd, timeout=180)
        want = fx.manifest.scenarios["sleep"]
    if proc.returncode != 0:
        return f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    doc = json.loads(report.read_text())
    if doc.get("schema") != "hud-report/1":
        return f"schema {doc.get('schema')!r}"
    hits = [f for f in doc["findings"] if f["kind"] == "blocking"
            and f["function"] == want.function and abs(f["line"] - want.line) <= 1]
    if not hits:
        return (f"no blocking finding at {want.function}:{want.line}; found "
                f"{[(f['kind'], f['function'], f.get('line')) for f in doc['findings']]}")
    return ""


@pytest.fixture(scope="session")
def source_profiler(tmp_path_factory) -> str:
    """Does the profiler find the sleep blocker when run from the source tree? ('' = yes)

    The pyz test checks the zip behaves like the source; while the profiler itself (issue
    6) cannot do it yet, the pyz test is an expected failure, not a pyz bug.
    """
    if not PROFILER_LANDED:
        return "hud.session or a live backend (hud.collect.ebpf/perf) is missing"
    return _headless_finds_sleep([sys.executable, "-m", "hud"],
                                 tmp_path_factory.mktemp("source-profile"), cwd=str(ROOT))


def test_headless_profile_finds_the_sleep_blocker(python, pyz, tmp_path, source_profiler):
    if source_profiler:
        pytest.xfail("the profiler does not find the sleep blocker from the source tree "
                     f"either (issue 6): {source_profiler[-400:]}")
    problem = _headless_finds_sleep([python, "-I", str(pyz)], tmp_path)
    assert not problem, problem
