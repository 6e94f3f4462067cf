"""Split DWARF: skeleton units in the binary, their DIEs in .dwo files or a .dwp package
(rustc -C split-debuginfo=unpacked|packed, DWARF 4 GNU and DWARF 5; gcc -gsplit-dwarf
packed with llvm-dwp). Splitting changes no code, so the same program built without it is
the oracle, frame for frame; llvm-symbolizer (which reads split DWARF; binutils does
not) checks files and lines."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from unit.symbolize.binaries import C_PROG, RUST_PROG
from unit.symbolize.oracle import function_symbols, pick_addresses

from hud.symbolize import Symbolizer


def _text(binary: Path) -> bytes:
    return subprocess.run(["objcopy", "-O", "binary", "--only-section=.text", str(binary),
                           "/dev/stdout"], capture_output=True, check=True).stdout


def _rustc() -> str:
    rustc = shutil.which("rustc") or os.path.expanduser("~/.cargo/bin/rustc")
    if not os.path.exists(rustc):
        pytest.skip("rustc is not installed")
    return rustc


@pytest.fixture(scope="module")
def rust(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("split-rs")
    (d / "rs.rs").write_text(RUST_PROG)
    rustc = _rustc()
    for name, flags in (("off", ()), ("unpacked", ("-C", "split-debuginfo=unpacked")),
                        ("packed", ("-C", "split-debuginfo=packed")),
                        ("v5", ("-C", "split-debuginfo=unpacked", "-C", "dwarf-version=5")),
                        ("v5packed", ("-C", "split-debuginfo=packed", "-C",
                                      "dwarf-version=5")),
                        ("v5off", ("-C", "dwarf-version=5"))):
        (d / name).mkdir()
        r = subprocess.run([rustc, "-g", "-C", "opt-level=2", *flags, "-o", "rs",
                            "../rs.rs"], cwd=d / name, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    return d


def _frames(binary: Path, addrs: list[int]) -> list:
    # Each build ran in its own directory: the unit's directory is shown as "<build>".
    where = str(binary.parent)
    with Symbolizer() as sym:
        return [[(f.function, (f.file or "").replace(where, "<build>"), f.line)
                 for f in frames] for frames in sym.symbolize_file(str(binary), addrs)]


def _llvm(binary: Path, addrs: list[int]) -> list:
    """llvm-symbolizer's (file, line) per level (its names are not binutils')."""
    text = subprocess.run(["llvm-symbolizer", f"--obj={binary}"],
                          input="\n".join(hex(a) for a in addrs) + "\n",
                          capture_output=True, text=True, check=True, cwd=binary.parent).stdout
    out = []
    for block in text.strip("\n").split("\n\n"):
        lines = block.splitlines()
        out.append([(loc.rsplit(":", 2)[0], int(loc.rsplit(":", 2)[1]) or None)
                    for loc in lines[1::2]])
    return out


@pytest.mark.parametrize("split,plain", [("unpacked", "off"), ("packed", "off"),
                                         ("v5", "v5off"), ("v5packed", "v5off")])
def test_rust_split_dwarf_answers_as_the_same_build_unsplit(rust, split, plain):
    assert _text(rust / split / "rs") == _text(rust / plain / "rs")
    if split.endswith("packed") and split != "unpacked":
        assert (rust / split / "rs.dwp").exists()
    else:
        assert list((rust / split).glob("*.dwo"))
    addrs = pick_addresses(rust / plain / "rs", 1500)
    want = _frames(rust / plain / "rs", addrs)
    got = _frames(rust / split / "rs", addrs)
    # The comparison is about inline chains: many addresses have some.
    assert sum(1 for w in want if len(w) > 1) > 300
    bad = [(hex(a), g, w) for a, g, w in zip(addrs, got, want) if g != w]
    assert not bad, bad[:5]


def test_split_units_with_the_binarys_sections_read_in_pieces(rust, monkeypatch):
    # The skeleton's .debug_addr and .debug_ranges then come from lazily read sections.
    from hud.symbolize import lazysection
    monkeypatch.setattr(lazysection, "LAZY_MIN", 0)
    addrs = pick_addresses(rust / "off" / "rs", 800, seed=9)
    assert _frames(rust / "unpacked" / "rs", addrs) == _frames(rust / "off" / "rs", addrs)


def test_rust_split_dwarf_agrees_with_llvm_symbolizer(rust):
    binary = rust / "packed" / "rs"
    addrs = pick_addresses(binary, 500, seed=4)
    where = str(binary.parent)
    ours = [[(f.replace("<build>", where) if f else "??", ln) for _n, f, ln in chain]
            for chain in _frames(binary, addrs)]
    theirs = _llvm(binary, addrs)
    agree = sum(1 for o, t in zip(ours, theirs) if o == t)
    assert agree >= 0.99 * len(addrs), [(hex(a), o, t) for a, o, t in
                                        zip(addrs, ours, theirs) if o != t][:5]


def test_without_its_dwo_files_a_skeleton_says_why(rust, tmp_path):
    shutil.copy(rust / "unpacked" / "rs", tmp_path / "rs")   # the .dwo files stay behind
    src = rust / "unpacked"
    hidden = [p for p in src.glob("*.dwo")]
    for p in hidden:
        p.rename(p.with_suffix(".gone"))
    try:
        # The program's own functions: their units are the split ones (std's are not).
        addrs = sorted(a for st, size, name in function_symbols(rust / "off" / "rs")
                       if name.startswith("_ZN2rs") for a in range(st, st + size, 2))
        with Symbolizer() as sym:
            frames = sym.symbolize_file(str(tmp_path / "rs"), addrs)
    finally:
        for p in hidden:
            p.with_suffix(".gone").rename(p)
    # Units of the program itself lose their inline levels but keep names (symbol
    # table) and lines (the skeleton's line table); std's units were never split.
    want = _frames(rust / "off" / "rs", addrs)
    got = [[(f.function, (f.file or "").replace(str(src), "<build>"), f.line) for f in c]
           for c in frames]
    lost = [(g, w) for g, w in zip(got, want) if g != w]
    assert len(lost) > 20, len(lost)
    assert all(len(g) == 1 and g[0][0] and g[0][2] == w[0][2] for g, w in lost), lost[:3]


@pytest.mark.parametrize("dwarf,pack", [("-gdwarf-4", True), ("-gdwarf-5", False)])
def test_gcc_split_dwarf(tmp_path, dwarf, pack):
    if shutil.which("llvm-dwp") is None or shutil.which("gcc") is None:
        pytest.skip("gcc or llvm-dwp is not installed")
    (tmp_path / "p.c").write_text(C_PROG)
    for name, flags in (("off", ()), ("split", ("-gsplit-dwarf",))):
        (tmp_path / name).mkdir()
        subprocess.run(["gcc", "-O2", "-g", dwarf, *flags, "-o", "p", "../p.c", "-ldl"],
                       cwd=tmp_path / name, check=True)
    split = tmp_path / "split"
    dwos = sorted(str(p) for p in split.glob("*.dwo"))
    assert dwos
    if pack:
        # (LLVM 14's llvm-dwp hangs on GCC 12's DWARF 5 .dwo files and binutils' dwp
        # crashes on them: the DWARF 5 package is covered by rustc's above.)
        subprocess.run(["llvm-dwp", "-e", "p", "-o", "p.dwp"], cwd=split, check=True,
                       timeout=60)
        for p in dwos:
            os.unlink(p)                # only the package is left
    addrs = pick_addresses(tmp_path / "off" / "p", 200)
    want = _frames(tmp_path / "off" / "p", addrs)
    assert sum(1 for w in want if len(w) > 1) > 5
    assert _frames(split / "p", addrs) == want


@pytest.mark.parametrize("seed", range(4))
def test_corrupt_dwo_and_dwp_cost_inlines_not_the_run(rust, tmp_path, seed):
    import random

    from hud.symbolize.elf import ElfFile
    rng = random.Random(seed)
    for kind in ("unpacked", "packed"):
        d = tmp_path / kind
        shutil.copytree(rust / kind, d)
        for f in [*d.glob("*.dwo"), *d.glob("*.dwp")]:
            with ElfFile.open(str(f)) as elf:
                spans = [(s.offset, s.size) for s in elf.sections
                         if s.name.endswith(".dwo") or s.name == ".debug_cu_index"]
            data = bytearray(f.read_bytes())
            for off, size in spans:
                for _ in range(max(1, size // 32)):
                    data[off + rng.randrange(size)] = rng.randrange(256)
            f.write_bytes(bytes(data))
        addrs = pick_addresses(rust / "off" / "rs", 300, seed=seed)
        with Symbolizer() as sym:
            frames = sym.symbolize_file(str(d / "rs"), addrs)
        assert len(frames) == len(addrs)
        assert all(f[-1].function for f in frames)   # the symbol table still names them
