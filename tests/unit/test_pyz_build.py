"""scripts/build-pyz's rules that need no network: the lock matches the pins, what is pruned."""
from __future__ import annotations

import importlib.util
import io
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load("hud_build_pyz_under_test", ROOT / "scripts" / "pyz" / "build.py")


def test_lock_vendors_exactly_the_runtime_pins():
    assert build.check_lock(build.read_lock(), build.read_pins()) == []


def test_check_lock_can_fail():
    lock = build.read_lock()
    pins = dict(build.read_pins(), click="9.9.9")
    assert any("click" in p for p in build.check_lock(lock, pins))
    one_arch = {f: h for f, h in lock.items() if "aarch64" not in f}
    assert any("capstone" in p for p in build.check_lock(one_arch, build.read_pins()))


def test_every_pin_is_exact():
    for line in (ROOT / "requirements" / "runtime.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            assert "==" in line, line


@pytest.mark.parametrize("member, pruned", [
    ("textual/app.py", False),
    ("pygments/lexers/testing.py", False),       # a module named like a test dir stays
    ("textual/widgets/__init__.pyi", True),
    ("click/py.typed", True),
    ("rich/__pycache__/x.cpython-311.pyc", True),
    ("elftools/tests/test_x.py", True),
    ("textual/demo/app.py", True),
    ("textual/tree-sitter/highlights/rust.scm", True),
    ("capstone/include/capstone/x86.h", True),
    ("capstone/lib/libcapstone.so", True),
    ("capstone/x86_const.py", False),
])
def test_pruning(member, pruned):
    assert build._pruned(member) is pruned


def test_wheel_arch():
    assert build.wheel_arch("click-8.1.8-py3-none-any.whl") is None
    assert build.wheel_arch(
        "capstone-5.0.9-py3-none-manylinux_2_17_aarch64.manylinux2014_aarch64.whl") == "aarch64"
    with pytest.raises(build.BuildError):
        build.wheel_arch("capstone-5.0.9-py3-none-win_amd64.whl")


def test_sources_exclude_bytecode_and_the_generated_build_module():
    files = build.source_files()
    assert "hud/cli/__init__.py" in files and "kernel/__init__.py" in files
    assert not any("__pycache__" in f or f.endswith(".pyc") for f in files)
    assert "hud/_build.py" not in files
    assert not (ROOT / "hud" / "_build.py").exists(), "hud/_build.py belongs in the zip only"


def test_zip_writer_is_deterministic(tmp_path):
    files = {"b/x.py": b"x = 1\n", "a.py": b"", "__main__.py": b"print(1)\n"}
    one, two = tmp_path / "1.pyz", tmp_path / "2.pyz"
    build.write_pyz(files, one)
    build.write_pyz(dict(reversed(list(files.items()))), two)
    assert one.read_bytes() == two.read_bytes()
    data = one.read_bytes()
    assert data.startswith(b"#!/usr/bin/env python3\n")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        infos = zf.infolist()
    assert [i.filename for i in infos] == sorted(files)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {i.external_attr >> 16 for i in infos} == {0o100644}
    assert one.stat().st_mode & 0o777 == 0o755
