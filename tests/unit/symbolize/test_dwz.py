"""dwz-compressed debug files: DIEs and strings shared through a supplementary file
(.gnu_debugaltlink, or DWARF 5 .debug_sup), as distributions' debug packages ship them.
The answers must be those of the same debug file before dwz, and binutils' on that file
(binutils misnames the innermost level of a dwz'd file, llvm-symbolizer names none)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from unit.symbolize.oracle import addr2line, compare, function_symbols, ours

from hud.symbolize import Symbolizer, altfile

COMMON = r"""
static inline __attribute__((always_inline)) int leaf(int x) { return x * 3 + 1; }
static inline __attribute__((always_inline)) int middle(int x) { return leaf(x) ^ 5; }
static inline __attribute__((always_inline)) int top(int x) { return middle(x) * 7; }
struct point { int x, y; double w; };
"""
PROG = r"""
#include <stdio.h>
#include "common.h"
__attribute__((noinline)) int outer_NAME(struct point *p) { return top(p->x) + p->y; }
__attribute__((noinline)) int other_NAME(int v) { return middle(v) - leaf(v + 1); }
int main(int argc, char **argv) {
    struct point p = {argc, 2, 0.5};
    printf("%d %d\n", outer_NAME(&p), other_NAME(argc));
    return 0;
}
"""


def _run(cmd: list, cwd: Path) -> None:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    assert r.returncode == 0, f"{cmd}: {r.stderr}"


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> Path:
    """Two programs sharing common.h, their debug files split off (x.debug, kept as
    x.orig.debug too), ready for dwz."""
    if shutil.which("dwz") is None or shutil.which("gcc") is None:
        pytest.skip("dwz or gcc is not installed")
    d = tmp_path_factory.mktemp("dwz")
    (d / "common.h").write_text(COMMON)
    for n in ("a", "b"):
        (d / f"{n}.c").write_text(PROG.replace("NAME", n))
        _run(["gcc", "-O2", "-g", "-o", n, f"{n}.c"], d)
        _run(["objcopy", "--only-keep-debug", n, f"{n}.orig.debug"], d)
    return d


def _dwz(pair: Path, name: str, *flags: str) -> Path:
    """A fresh copy of the pair's debug files in pair/name, dwz'd with a common file."""
    d = pair / name
    d.mkdir()
    for n in ("a", "b"):
        shutil.copy(pair / f"{n}.orig.debug", d / f"{n}.debug")
    _run(["dwz", "-m", "common.debug", *flags, "a.debug", "b.debug"], d)
    return d


def _levels(path: Path, addrs: list[int], **kw) -> list:
    with Symbolizer(**kw) as sym:
        return [[(f.function, f.file, f.line, f.reason) for f in frames]
                for frames in sym.symbolize_file(str(path), addrs)]


def _addrs(pair: Path) -> list[int]:
    funcs = [f for f in function_symbols(pair / "a") if "_a" in f[2] or f[2] == "main"]
    return sorted({s + k for s, size, _ in funcs for k in range(0, size, 2)})


def _inlined(levels: list) -> int:
    return sum(1 for chain in levels for lv in chain[:-1] if lv[0])


def test_shared_dies_and_strings_come_from_the_common_file(pair):
    d = _dwz(pair, "absolute", "-M", str(pair / "absolute" / "common.debug"))
    addrs = _addrs(pair)
    before = _levels(pair / "a.orig.debug", addrs)
    after = _levels(d / "a.debug", addrs)
    assert _inlined(before) > 20          # leaf, middle and top inlined at many addresses
    assert after == before
    # The same file, its common file out of reach: inlined levels lose their names, and
    # say why (what the test would see if the link were not followed).
    os.rename(d / "common.debug", d / "gone.debug")
    lost = _levels(d / "a.debug", addrs)
    assert _inlined(lost) == 0
    assert any("dwz file" in (lv[3] or "") for chain in lost for lv in chain)


def test_a_relative_link_is_relative_to_the_debug_file(pair):
    d = _dwz(pair, "relative", "-r")
    assert altfile.alt_link(_elf(d / "a.debug"))[0] == "common.debug"
    addrs = _addrs(pair)
    # Opened from elsewhere: the link is resolved against the debug file's directory.
    cwd = os.getcwd()
    try:
        os.chdir("/")
        assert _levels(d / "a.debug", addrs) == _levels(pair / "a.orig.debug", addrs)
    finally:
        os.chdir(cwd)


def test_found_by_build_id_under_a_debug_dir_and_never_a_wrong_one(pair, tmp_path):
    d = _dwz(pair, "moved", "-M", "/nonexistent/.dwz/common.debug")
    addrs = _addrs(pair)
    expected = _levels(pair / "a.orig.debug", addrs)
    with _elf(d / "common.debug") as common:
        bid = common.build_id
    ids = tmp_path / "debug" / ".build-id" / bid[:2]
    ids.mkdir(parents=True)
    os.symlink(d / "common.debug", ids / f"{bid[2:]}.debug")
    assert _levels(d / "a.debug", addrs, debug_dirs=[str(tmp_path / "debug")]) == expected
    # Another build's common file where the link points: refused (its build-id differs).
    other = _dwz(pair, "other", "-M", "/nonexistent/.dwz/common.debug")
    (tmp_path / "wrong" / ".dwz").mkdir(parents=True)
    shutil.copy(other / "common.debug", tmp_path / "wrong" / ".dwz" / "common.debug")
    _run(["objcopy", "--remove-section=.note.gnu.build-id", "common.debug"],
         tmp_path / "wrong" / ".dwz")
    assert _inlined(_levels(d / "a.debug", addrs, debug_dirs=[str(tmp_path / "wrong")])) == 0


def test_dwarf5_debug_sup(pair):
    d = _dwz(pair, "sup", "-5", "-M", str(pair / "sup" / "common.debug"))
    link = altfile.alt_link(_elf(d / "a.debug"))
    assert link is not None and link[2] == "sup", link
    addrs = _addrs(pair)
    assert _levels(d / "a.debug", addrs) == _levels(pair / "a.orig.debug", addrs)


def test_agrees_with_binutils_on_the_file_before_dwz(pair):
    # binutils misnames the innermost level of a dwz'd file: its answer on the same
    # debug information before dwz is the oracle.
    d = _dwz(pair, "oracle", "-M", str(pair / "oracle" / "common.debug"))
    addrs = _addrs(pair)
    with Symbolizer() as sym:
        got = [ours(f) for f in sym.symbolize_file(str(d / "a.debug"), addrs)]
    c = compare(addrs, got, addr2line(pair / "a.orig.debug", addrs), pair / "a.orig.debug")
    assert c.ratio == 1.0, c.report()


def _elf(path: Path):
    from hud.symbolize.elf import ElfFile
    return ElfFile.open(str(path))


@pytest.mark.parametrize("seed", range(6))
def test_a_corrupt_common_file_costs_names_not_the_run(pair, seed):
    import random

    from hud.symbolize.elf import ElfFile
    d = _dwz(pair, f"corrupt{seed}", "-M", str(pair / f"corrupt{seed}" / "common.debug"))
    with ElfFile.open(str(d / "common.debug")) as elf:
        spans = [(s.offset, s.size) for s in elf.sections
                 if s.name in (".debug_info", ".debug_str", ".debug_abbrev") and s.size]
    data = bytearray((d / "common.debug").read_bytes())
    rng = random.Random(seed)
    for off, size in spans:
        for _ in range(max(1, size // 16)):
            data[off + rng.randrange(size)] = rng.randrange(256)
    (d / "common.debug").write_bytes(bytes(data))
    addrs = _addrs(pair)
    got = _levels(d / "a.debug", addrs)
    assert len(got) == len(addrs)
    # The program's own functions and lines are in a.debug: they stay right.
    before = _levels(pair / "a.orig.debug", addrs)
    assert [c[-1][:3] for c in got] == [c[-1][:3] for c in before]
