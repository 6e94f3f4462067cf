"""Symbols and lines of a real Rust release binary hud did not build: the toolchain's own
`cargo` (set-up installs the toolchain to build the fixtures). Line tables for std only,
symbols for everything else, OpenSSL's and BLAKE3's assembly linked in: what a service
built with the usual release profile looks like, and what the fixtures do not cover."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from unit.symbolize import oracle

from hud.symbolize import ElfFile, Symbolizer
from hud.symbolize.symtab import SymbolTable

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def cargo() -> Path:
    """The real `cargo` ELF of the active toolchain (the one on PATH is rustup's proxy)."""
    try:
        sysroot = subprocess.run(["rustc", "--print", "sysroot"], capture_output=True,
                                 text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("no Rust toolchain here (set-up installs one: CI fails on this skip)")
    path = Path(sysroot) / "bin" / "cargo"
    with ElfFile.open(str(path)) as elf:
        assert elf.section(".symtab") is not None, "the toolchain's cargo is not stripped"
    return path


def _code_symbols(path: Path) -> dict[int, tuple[int, set]]:
    """Start -> (largest size, every name) of the sized code symbols nm lists there
    (typed or not)."""
    out = subprocess.run(["nm", "-S", "--defined-only", str(path)], capture_output=True,
                         text=True, check=True).stdout
    starts: dict[int, tuple[int, set]] = {}
    for line in out.splitlines():
        p = line.split()
        if len(p) == 4 and p[2] in "tTwWiI" and int(p[1], 16) > 0 and int(p[0], 16):
            size, names = starts.get(int(p[0], 16), (0, set()))
            names.add(p[3])
            starts[int(p[0], 16)] = (max(size, int(p[1], 16)), names)
    return starts


def test_every_sized_code_symbol_names_its_code(cargo):
    """Every sized symbol in .text, assembly routines without a .type included (nm
    lists them too), names the code at its start and at its last byte."""
    starts = _code_symbols(cargo)
    assert len(starts) > 20_000
    with ElfFile.open(str(cargo)) as elf:
        table = SymbolTable([elf])
    missing = []
    for start, (size, names) in starts.items():
        for addr in (start, start + size - 1):
            got = table.lookup(addr)
            found = addr - got[1] if got is not None else -1
            # A symbol nested in this one, starting later, names its own range.
            if found < start or (found == start and got[0] not in names):
                missing.append((hex(addr), sorted(names)[0], got))
    assert not missing, missing[:10]


def test_cargo_agrees_with_addr2line(cargo):
    addrs = oracle.pick_addresses(cargo, 2000, seed=3)
    with Symbolizer() as sym:
        got = [oracle.ours(f) for f in sym.symbolize_file(str(cargo), addrs)]
    exp = oracle.addr2line(cargo, addrs)
    cmp = oracle.compare(addrs, got, exp, cargo)
    print(cmp.report())
    assert cmp.ratio >= 0.99, cmp.report()
    # Names where binutils has one (on folded functions either may pick another alias).
    unnamed = [a for a, g, e in zip(addrs, got, exp) if g[0][0] == "??" != e[0][0]]
    assert not unnamed, [hex(a) for a in unnamed[:10]]
    assert sum(1 for g in got if g[0][2] not in ("?", "0")) > 20   # std has lines
