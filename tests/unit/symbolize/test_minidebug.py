"""MiniDebugInfo (.gnu_debugdata): function names .dynsym lacks, as Fedora-family hosts
ship them, checked against the unstripped binary's own symbols and against elfutils."""
from __future__ import annotations

import lzma
import shutil
import subprocess
from pathlib import Path

import pytest
from unit.symbolize.binaries import mini_debuginfo
from unit.symbolize.oracle import function_symbols

from hud.symbolize import Symbolizer, debugfile, minidebug
from hud.symbolize.elf import ElfFile

# Static functions are local symbols: never in .dynsym, only in .symtab.
PROG = "#include <stdio.h>\n" + "".join(
    f"static __attribute__((noinline)) int hidden_{i}(int x) "
    f"{{ for (int k = 0; k < {i + 2}; k++) x = x * {i + 3} + k; return x; }}\n"
    for i in range(40)) + (
    "__attribute__((noinline)) int exported(int x) { return "
    + " + ".join(f"hidden_{i}(x)" for i in range(40)) + "; }\n"
    "int main(int argc, char **argv) { printf(\"%d\\n\", exported(argc)); return 0; }\n")


@pytest.fixture(scope="module")
def prog(build) -> tuple[Path, Path, Path]:
    """(unstripped, stripped with MiniDebugInfo, stripped without it)."""
    full = build.c("minidebug", ("-O1", "-g", "-rdynamic"), src=PROG)
    with_mini = mini_debuginfo(full, full, full.parent / "minidebug.mini")
    bare = full.parent / "minidebug.bare"
    subprocess.run(["strip", "--strip-all", "-o", str(bare), str(full)], check=True)
    return full, with_mini, bare


def _names(binary: Path, addrs: list[int], **kw) -> list:
    with Symbolizer(**kw) as sym:
        return [f[-1].function for f in sym.symbolize_file(str(binary), addrs)]


def _middles(symbol_file: Path) -> tuple[list[int], list[str]]:
    funcs = function_symbols(symbol_file)
    return [s + size // 2 for s, size, _ in funcs], [n for _, _, n in funcs]


def test_static_functions_are_named_from_gnu_debugdata(prog):
    full, with_mini, bare = prog
    addrs, expected = _middles(full)
    hidden = [i for i, n in enumerate(expected) if n.startswith("hidden_")]
    assert len(hidden) == 40
    got = _names(with_mini, addrs)
    bad = [(hex(a), g, e) for a, g, e in zip(addrs, got, expected) if g != e]
    assert not bad, bad[:10]
    # Without the section the same addresses are nameless (.dynsym has none of them):
    # what the test would see if .gnu_debugdata were ignored.
    without = _names(bare, addrs)
    assert all(without[i] is None for i in hidden), [without[i] for i in hidden][:5]


def test_names_agree_with_elfutils(prog):
    # eu-addr2line reads .gnu_debugdata too (binutils' addr2line does not).
    _full, with_mini, _bare = prog
    addrs, _ = _middles(_full)
    text = subprocess.run(["eu-addr2line", "-f", "-e", str(with_mini)],
                          input="\n".join(hex(a) for a in addrs) + "\n",
                          capture_output=True, text=True, check=True).stdout
    theirs = text.splitlines()[0::2]
    assert len(theirs) == len(addrs)
    ours = _names(with_mini, addrs)
    bad = [(hex(a), o, t) for a, o, t in zip(addrs, ours, theirs) if o != t]
    assert not bad, bad[:10]


def test_a_separate_debug_file_wins(prog, build):
    full, with_mini, _bare = prog
    _stripped, dbg = build.split_debug(full, "minidebug-split", debuglink=False)
    addrs, expected = _middles(full)
    with Symbolizer(debug_files=[str(dbg)]) as sym:
        frames = sym.symbolize_file(str(with_mini), addrs)
        obj, _ = sym.object_for_path(str(with_mini))
        assert obj.debug is not None and obj.mini_note == ""
    assert [f[-1].function for f in frames] == expected
    # file:line came from the debug file's DWARF (the C start-up code has none).
    ours = [f for f, n in zip(frames, expected) if n.startswith("hidden_")]
    assert len(ours) == 40 and all(f[-1].file.endswith("minidebug.c") for f in ours)


def _with_section(src: Path, dst: Path, payload: bytes) -> Path:
    blob = dst.parent / (dst.name + ".payload")
    blob.write_bytes(payload)
    subprocess.run(["objcopy", "--remove-section=.gnu_debugdata",
                    f"--add-section=.gnu_debugdata={blob}", str(src), str(dst)], check=True)
    return dst


@pytest.mark.parametrize("case", ["truncated", "garbage", "not_elf", "too_big", "huge_dict"])
def test_a_bad_section_costs_its_names_only(prog, tmp_path, monkeypatch, case):
    full, with_mini, _bare = prog
    with ElfFile.open(str(with_mini)) as elf:
        packed = elf.section(".gnu_debugdata")[1]
    payload = {"truncated": packed[:len(packed) // 2],
               "garbage": bytes(range(256)) * 8,
               "not_elf": lzma.compress(b"not an ELF at all" * 100),
               "too_big": packed,
               # A gigabyte dictionary: the decoder would allocate it before any output.
               "huge_dict": lzma.compress(lzma.decompress(packed), format=lzma.FORMAT_XZ,
                                          filters=[{"id": lzma.FILTER_LZMA2,
                                                    "dict_size": 1 << 30}])}[case]
    if case == "too_big":
        monkeypatch.setattr(minidebug, "MAX_INFLATED", 1024)
    bad = _with_section(with_mini, tmp_path / "bad", payload)
    addrs, expected = _middles(full)
    with Symbolizer() as sym:
        frames = sym.symbolize_file(str(bad), addrs)
        obj, _ = sym.object_for_path(str(bad))
        assert obj.mini_note, "the reason it was not used is kept"
    for f, name in zip(frames, expected):
        # Exported functions still come from .dynsym; the rest are unknown, with a reason.
        assert f[-1].function in (name, None)
        assert f[-1].function is not None or f[-1].reason
    assert frames[expected.index("exported")][-1].function == "exported"


def _libc() -> Path:
    out = subprocess.run(["ldd", "/bin/true"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if "libc.so.6 =>" in line:
            return Path(line.split("=>")[1].split()[0]).resolve()
    pytest.skip("no glibc libc.so.6 here")


def test_libc_internals_named_as_on_fedora(tmp_path, monkeypatch):
    """This host's libc given the MiniDebugInfo a Fedora-family build would carry (made
    from Debian's libc6-dbg): getaddrinfo's internals and the like get their names."""
    libc = _libc()
    with ElfFile.open(str(libc)) as elf:
        dbg, _where = debugfile.find_debug_file(elf, str(libc))
        if dbg is None:
            pytest.skip("libc6-dbg is not installed: no libc symbols to build from")
        dbg_path = Path(_where)
        dbg.close()
    if shutil.which("objcopy") is None:
        pytest.skip("binutils is not installed")
    with_mini = mini_debuginfo(dbg_path, libc, tmp_path / "libc.so.6")
    # The copy keeps libc's build-id: hide the debug file, as on a host without it.
    monkeypatch.setattr(debugfile, "DEFAULT_DEBUG_DIRS", ())
    dyn = subprocess.run(["nm", "-D", "--defined-only", str(libc)], capture_output=True,
                         text=True, check=True).stdout
    exported = {int(p[0], 16) for p in (ln.split() for ln in dyn.splitlines()) if len(p) == 3}
    funcs = [(s, size, n) for s, size, n in function_symbols(dbg_path) if s not in exported]
    assert len(funcs) > 1000, len(funcs)
    at: dict[int, set] = {}
    for s, _size, n in function_symbols(dbg_path):
        at.setdefault(s, set()).add(n)
    every = subprocess.run(["nm", "--defined-only", str(dbg_path)], capture_output=True,
                           text=True, check=True).stdout
    for p in (ln.split() for ln in every.splitlines()):
        if len(p) == 3:
            at.setdefault(int(p[0], 16), set()).add(p[2])
    addrs = [s + size // 2 for s, size, _ in funcs]
    got = _names(with_mini, addrs)
    agree = sum(1 for (s, _z, _n), g in zip(funcs, got) if g in at[s])
    assert agree >= 0.99 * len(funcs), [(n, g) for (_s, _z, n), g in zip(funcs, got)
                                        if g not in at[_s]][:10]
    names = set(got)
    assert {"gaih_inet", "__libc_send"} & names or "send_dg" in names
