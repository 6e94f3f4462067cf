"""Fixtures for symbolization unit tests: a session builder of small C and Rust programs."""
from __future__ import annotations

import pytest
from unit.symbolize.binaries import Builder


@pytest.fixture(scope="session")
def build(tmp_path_factory) -> Builder:
    return Builder(tmp_path_factory.mktemp("symbolize-bins"))
