"""Fixtures for symbolization unit tests: a session builder of small C and Rust programs."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from unit.symbolize.binaries import Builder

from hud.symbolize import diskcache

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def build(tmp_path_factory) -> Builder:
    return Builder(tmp_path_factory.mktemp("symbolize-bins"))


def _private_parent() -> Path:
    """A directory whose whole chain hud's private directories accept (not /tmp: sticky
    and world-writable, so refused by design)."""
    for base in (ROOT / ".pytest_cache", Path.home() / ".cache"):
        try:
            base.mkdir(parents=True, exist_ok=True)
            d = Path(tempfile.mkdtemp(prefix="hud-private-", dir=base))
        except OSError:
            continue
        try:
            os.close(diskcache.open_private_dir(str(d), create=False))
            return d
        except (OSError, diskcache.Refused):
            shutil.rmtree(d, ignore_errors=True)
    pytest.skip("no directory here whose parents only root or we can write")


@pytest.fixture
def private(request) -> Path:
    """A fresh 0700 directory of ours that the symbol and debuginfod caches accept."""
    d = _private_parent()
    request.addfinalizer(lambda: shutil.rmtree(d, ignore_errors=True))
    return d
