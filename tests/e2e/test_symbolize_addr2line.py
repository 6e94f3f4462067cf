"""Differential test: hud's symbolization against binutils `addr2line -f -i -C` on every
fixture variant and on the fixtures' libc, >= 2,000 addresses spread over all functions.
Function, file and line of every inline level must agree on >= 99% of addresses;
disagreements are printed (elfutils' line lookup settles innermost-line differences)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from support.fixtures import VARIANTS, load_manifest
from unit.symbolize import oracle

from hud.symbolize import Symbolizer

N_ADDRESSES = 2000
AGREEMENT = 0.99
LIBC = Path("/lib/x86_64-linux-gnu/libc.so.6")

pytestmark = pytest.mark.timeout(600)


def _run(binary: Path, symbol_file: Path, seed: int = 1) -> oracle.Comparison:
    addrs = oracle.pick_addresses(symbol_file, N_ADDRESSES, seed)
    assert len(addrs) >= N_ADDRESSES, f"only {len(addrs)} addresses in {symbol_file}"
    with Symbolizer() as sym:
        frames = sym.symbolize_file(str(binary), addrs)
    got = [oracle.ours(f) for f in frames]
    exp = oracle.addr2line(binary, addrs)
    assert len(exp) == len(addrs)
    cmp = oracle.compare(addrs, got, exp, binary)
    print(f"{binary}: {cmp.report()}")
    # The comparison must be about something: most addresses resolve to file:line and
    # some carry inline chains (guards against two tools agreeing on "??").
    with_lines = sum(1 for g in got if g[0][2] not in ("?", "0"))
    inlined = sum(1 for g in got if len(g) > 1)
    assert with_lines > N_ADDRESSES // 2, f"only {with_lines} addresses have a line"
    assert inlined > N_ADDRESSES // 20, f"only {inlined} addresses have inline frames"
    return cmp


@pytest.mark.parametrize("variant", VARIANTS)
def test_fixture_variant_agrees_with_addr2line(variant):
    m = load_manifest(variant)
    cmp = _run(m.binary, m.symbol_file)
    assert cmp.ratio >= AGREEMENT, cmp.report()


def _libc_debug_file() -> Path:
    out = subprocess.run(["readelf", "-n", str(LIBC)], capture_output=True, text=True,
                         check=True).stdout
    bid = out.split("Build ID:")[1].split()[0]
    return Path("/usr/lib/debug/.build-id") / bid[:2] / (bid[2:] + ".debug")


def test_libc_agrees_with_addr2line():
    debug = _libc_debug_file()
    # libc6-dbg gives libc DWARF 5 (compressed sections, inline chains); without it the
    # test would compare dynamic symbols only, which proves little: so it is required.
    assert debug.exists(), f"{debug} missing: install libc6-dbg"
    cmp = _run(LIBC, debug)
    assert cmp.ratio >= AGREEMENT, cmp.report()


def test_stripped_variant_uses_its_debug_file():
    m = load_manifest("blockers-stripped")
    assert m.debug_file is not None and os.path.exists(m.debug_file)
    with Symbolizer() as sym:
        obj, why = sym.object_for_path(str(m.binary))
        assert obj is not None, why
        assert obj.debug is not None and os.path.samefile(obj.debug.name, m.debug_file)
        assert obj.dwarf is not None


def test_manifest_ground_truth_lines():
    """Each marked scenario line of the blockers fixture is reached inside its function:
    some address of the function resolves to the manifest's function, file and line at
    some inline level (ground truth independent of binutils)."""
    m = load_manifest("blockers-nofp")
    symbols = {name: (start, size) for start, size, name in _demangled_functions(m.binary)}
    checked = 0
    with Symbolizer() as sym:
        for sc in m.scenarios.values():
            start, size = symbols[sc.function]
            addrs = list(range(start, start + size))
            levels = {(f.function, f.file, f.line)
                      for frames in sym.symbolize_file(str(m.binary), addrs) for f in frames}
            assert (sc.function, sc.file, sc.line) in levels, (
                f"{sc.name}: {sc.function} at {sc.file}:{sc.line} not found; got "
                f"{sorted(x for x in levels if x[1] == sc.file)[:10]}")
            checked += 1
    assert checked >= 5


def _demangled_functions(binary: Path) -> list[tuple[int, int, str]]:
    out = subprocess.run(["nm", "-S", "-C", "--defined-only", str(binary)],
                         capture_output=True, text=True, check=True).stdout
    funcs = []
    for line in out.splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4 and parts[2] in "tT":
            funcs.append((int(parts[0], 16), int(parts[1], 16), parts[3]))
    return funcs
