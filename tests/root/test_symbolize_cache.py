"""The symbol cache as root: files and directories owned by anyone else are refused,
and the default directory is the system one whatever HOME and XDG_CACHE_HOME say."""
from __future__ import annotations

import os
import shutil
import stat

import pytest
from unit.symbolize.conftest import _private_parent
from unit.symbolize.test_diskcache import BID, KEY, _levels, _only_file

from hud.symbolize.diskcache import ROOT_DEFAULT, SymbolCache, default_cache_dir

NOBODY = 65534


@pytest.fixture
def private(request):
    d = _private_parent()
    request.addfinalizer(lambda: shutil.rmtree(d, ignore_errors=True))
    return d


def test_file_owned_by_another_uid_is_refused(private):
    c = SymbolCache(str(private / "c"))
    assert c.store(BID, KEY, _levels(2))
    path = _only_file(private / "c")
    os.chown(path, NOBODY, NOBODY)
    assert c.load(BID, KEY) == {}
    assert f"uid {NOBODY}" in c.reason
    # Replaced by our own on the next write (the rename never writes through it).
    assert c.store(BID, KEY, _levels(1))
    assert path.stat().st_uid == 0 and c.load(BID, KEY) == _levels(1)


def test_directory_owned_by_another_uid_is_refused(private):
    leaf = private / "c"
    leaf.mkdir(mode=0o700)
    os.chown(leaf, NOBODY, NOBODY)
    c = SymbolCache(str(leaf))
    assert not c.store(BID, KEY, _levels(1)) and c.disabled
    assert list(leaf.iterdir()) == []


def test_parent_owned_by_another_uid_is_refused_even_read_only(private):
    parent = private / "theirs"
    parent.mkdir(mode=0o755)
    os.chown(parent, NOBODY, NOBODY)      # they could chmod it and swap our directory
    c = SymbolCache(str(parent / "c"))
    assert not c.store(BID, KEY, _levels(1)) and c.disabled
    assert "theirs" in c.reason and not (parent / "c").exists()


def test_root_uses_the_system_directory():
    assert os.geteuid() == 0
    env = {"HOME": "/home/someone", "XDG_CACHE_HOME": "/home/someone/.cache"}
    assert default_cache_dir(env) == ROOT_DEFAULT == "/var/cache/hud/symbols"
    # Its parents are the distribution's: root-owned and not writable by others.
    st = os.stat("/var/cache")
    assert st.st_uid == 0 and not st.st_mode & 0o022 and stat.S_ISDIR(st.st_mode)
