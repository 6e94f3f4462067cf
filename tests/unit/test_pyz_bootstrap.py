"""hud.pyz's native-library loader: hash checked before dlopen, private dirs, nothing left behind."""
from __future__ import annotations

import hashlib
import importlib.util
import os
import stat
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


boot = _load("_hud_pyz_under_test", ROOT / "scripts" / "pyz" / "bootstrap.py")


@pytest.fixture(scope="module")
def lib() -> bytes:
    """A real shared library to load: capstone's, from the wheel installed in the venv."""
    spec = importlib.util.find_spec("capstone")
    path = Path(spec.origin).parent / "lib" / "libcapstone.so"
    if not path.is_file():
        pytest.fail(f"no {path}: the venv's capstone wheel should carry it")
    return path.read_bytes()


def _private_parent(tmp_path: Path) -> Path:
    parent = tmp_path / "parent"
    parent.mkdir(mode=0o755)
    os.chmod(parent, 0o755)
    return parent


def _maps() -> str:
    return Path("/proc/self/maps").read_text()


@pytest.mark.parametrize("how", ["memfd", "file"])
def test_loads_verified_library_and_leaves_nothing(tmp_path, lib, how):
    parent = _private_parent(tmp_path)
    name = f"libhudtest-{how}.so"
    load = boot.NativeLoad(lib, hashlib.sha256(lib).hexdigest(), name,
                           strategies=(how,), parents=(str(parent),))
    with load as loaded:
        st = os.lstat(loaded.directory)
        assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.geteuid()
        assert Path(loaded.directory).parent == parent
        entry = Path(loaded.directory) / name
        assert entry.exists()
        if how == "memfd":
            assert loaded.how == "memfd"
            assert os.readlink(entry).startswith("/proc/self/fd/")
        else:
            assert loaded.how == f"file in {parent}"
            assert stat.S_IMODE(os.lstat(entry).st_mode) == 0o500
        # A real dlopen happened: the library answers.
        assert loaded.handle.cs_version(None, None) >= 0x0500
    assert list(parent.iterdir()) == []
    if how == "memfd":
        assert f"/memfd:{name}" in _maps()


@pytest.mark.parametrize("how", ["memfd", "file"])
def test_wrong_hash_is_refused_before_anything_is_written(tmp_path, lib, how):
    parent = _private_parent(tmp_path)
    name = f"libhudbad-{how}.so"
    with pytest.raises(ImportError, match="does not match its SHA-256"):
        with boot.NativeLoad(lib, "0" * 64, name, strategies=(how,), parents=(str(parent),)):
            pass
    assert list(parent.iterdir()) == []
    assert name not in _maps()


def test_a_parent_others_can_write_is_never_used(tmp_path, lib):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)        # world-writable, no sticky bit: our dir could be swapped
    with pytest.raises(ImportError, match="unsafe"):
        with boot.NativeLoad(lib, hashlib.sha256(lib).hexdigest(), "libhudunsafe.so",
                             strategies=("file",), parents=(str(shared),)):
            pass
    assert list(shared.iterdir()) == []


def test_safe_parent_rules(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    euid = os.geteuid()
    for mode, safe in [(0o755, True), (0o700, True), (0o775, False), (0o777, False),
                       (0o1777, True), (0o1733, True)]:
        os.chmod(d, mode)
        assert boot._safe_parent(os.lstat(d), euid) is safe, oct(mode)
    os.chmod(d, 0o755)
    assert not boot._safe_parent(os.lstat(d), euid + 12345) or euid == 0
    link = tmp_path / "link"
    link.symlink_to(d)
    assert not boot._safe_parent(os.lstat(link), euid)    # a symlink is never a parent


def test_falls_through_to_the_next_strategy(tmp_path, lib):
    """A failing first strategy (no usable parent for it) does not stop the second."""
    parent = _private_parent(tmp_path)
    load = boot.NativeLoad(lib, hashlib.sha256(lib).hexdigest(), "libhudnext.so",
                           strategies=("file", "memfd"), parents=(str(parent),))
    load._via_file = lambda: (_ for _ in ()).throw(OSError("file: refused for the test"))
    with load as loaded:
        assert loaded.how == "memfd"
    assert list(parent.iterdir()) == []


def test_every_strategy_failing_says_why(tmp_path, lib):
    with pytest.raises(ImportError) as err:
        with boot.NativeLoad(lib, hashlib.sha256(lib).hexdigest(), "libhudnone.so",
                             parents=(str(tmp_path / "missing"),)):
            pass
    assert "memfd:" in str(err.value) and "file:" in str(err.value)
    assert "unavailable" in boot.status()["capstone"]


def test_site_dirs_leave_sys_path():
    assert boot._is_site_dir("/usr/lib/python3/dist-packages")
    assert boot._is_site_dir("/x/.venv/lib/python3.11/site-packages/")
    assert not boot._is_site_dir("/usr/lib/python3.11")
    assert not boot._is_site_dir("/usr/lib/python3.11/lib-dynload")
