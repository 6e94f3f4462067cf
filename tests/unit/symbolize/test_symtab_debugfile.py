"""Symbol tables against nm, and separate debug files: build-id trees, .gnu_debuglink
(same dir, .debug/, debug dirs), user overrides, and refusal of files that do not match."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from unit.symbolize import oracle

from hud.symbolize import ElfFile, Symbolizer
from hud.symbolize.debugfile import find_debug_file
from hud.symbolize.symtab import SymbolTable


def test_symtab_matches_nm(build):
    exe = build.rust()
    funcs = oracle.function_symbols(exe)
    with ElfFile.open(str(exe)) as elf:
        table = SymbolTable([elf])
    names: dict = {}   # folded functions share an address: any of their names will do
    nm = subprocess.run(["nm", "--defined-only", str(exe)], capture_output=True, text=True,
                        check=True).stdout
    for line in nm.splitlines():
        parts = line.split()
        if len(parts) == 3:
            names.setdefault(int(parts[0], 16), set()).add(parts[2])
    for start, size, _ in funcs:
        for addr in (start, start + size - 1):
            got = table.lookup(addr)
            assert got is not None and got[0] in names[start] and got[1] == addr - start
    last_start, last_size, _ = max(funcs)
    assert table.lookup(last_start + last_size + 0x100000) is None
    assert table.lookup(0) is None


def test_dynsym_only_library(build, tmp_path):
    lib = build.c("libsym.so", ("-O2",), src=_lib_src(), lib=True)
    stripped = tmp_path / "libstripped.so"
    subprocess.run(["strip", "--strip-all", "-o", str(stripped), str(lib)], check=True)
    with ElfFile.open(str(stripped)) as elf:
        assert elf.section(".symtab") is None
        table = SymbolTable([elf])
    start = next(s for s, _size, n in oracle.function_symbols(lib) if n == "lib_func")
    assert table.lookup(start)[0] == "lib_func"


def _lib_src() -> str:
    from unit.symbolize.binaries import LIB_PROG
    return LIB_PROG


def _outer(exe: Path) -> int:
    return next(s for s, _size, n in oracle.function_symbols(exe) if n == "outer")


def test_debuglink_in_same_dir_and_dot_debug(build, tmp_path):
    exe = build.c("dbg_src", ("-g", "-O2"))
    stripped, dbg = build.split_debug(exe, "dbg_split")
    want = oracle.addr2line(exe, [_outer(exe)])[0]
    with Symbolizer() as sym:
        assert oracle.ours(sym.symbolize_file(str(stripped), [_outer(exe)])[0]) == want
    # The same in a .debug subdirectory.
    d = tmp_path / "bin"
    (d / ".debug").mkdir(parents=True)
    shutil.copy(stripped, d / "prog")
    shutil.copy(dbg, d / ".debug" / dbg.name)
    with Symbolizer() as sym:
        obj, _ = sym.object_for_path(str(d / "prog"))
        assert obj.debug is not None and obj.debug.name.endswith(f".debug/{dbg.name}")
        assert oracle.ours(sym.symbolize_file(str(d / "prog"), [_outer(exe)])[0]) == want


def test_build_id_tree_in_user_debug_dir(build, tmp_path):
    exe = build.c("dbg_src", ("-g", "-O2"))
    stripped, dbg = build.split_debug(exe, "dbg_bid", debuglink=False)
    with ElfFile.open(str(stripped)) as elf:
        bid = elf.build_id
        assert elf.debuglink is None
    tree = tmp_path / "dbgdir" / ".build-id" / bid[:2]
    tree.mkdir(parents=True)
    shutil.copy(dbg, tree / (bid[2:] + ".debug"))
    want = oracle.addr2line(exe, [_outer(exe)])[0]
    with Symbolizer() as plain:
        assert plain.symbolize_file(str(stripped), [_outer(exe)])[0][-1].line is None
    with Symbolizer(debug_dirs=[str(tmp_path / "dbgdir")]) as sym:
        assert oracle.ours(sym.symbolize_file(str(stripped), [_outer(exe)])[0]) == want


def test_user_debug_file_matched_by_build_id(build, tmp_path):
    exe = build.c("dbg_src", ("-g", "-O2"))
    stripped, dbg = build.split_debug(exe, "dbg_user", debuglink=False)
    elsewhere = tmp_path / "any-name"
    shutil.copy(dbg, elsewhere)
    with Symbolizer(debug_files=[str(elsewhere)]) as sym:
        frames = sym.symbolize_file(str(stripped), [_outer(exe)])[0]
    assert frames[-1].function == "outer" and frames[-1].line


def test_mismatched_debug_files_are_refused(build, tmp_path):
    exe = build.c("dbg_src", ("-g", "-O2"))
    other = build.c("dbg_other", ("-g", "-O0"))        # another build: another build-id
    stripped, dbg = build.split_debug(exe, "dbg_mismatch")
    # A debuglink file of the right name but the wrong content (CRC) is ignored...
    d = tmp_path / "d"
    d.mkdir()
    shutil.copy(stripped, d / "prog")
    shutil.copy(other, d / dbg.name)
    with ElfFile.open(str(d / "prog")) as elf:
        found, why = find_debug_file(elf, str(d / "prog"))
        assert found is None and why
    # ...and so is a user-named file of another build.
    with ElfFile.open(str(stripped)) as elf:
        found, _ = find_debug_file(elf, str(stripped), debug_files=[str(other)])
        assert found is None or os.path.samefile(found.name, dbg)


def test_compressed_separate_debug_file(build, tmp_path):
    exe = build.c("dbg_src", ("-g", "-O2"))
    stripped, dbg = build.split_debug(exe, "dbg_gz")
    packed = tmp_path / dbg.name
    subprocess.run(["objcopy", "--compress-debug-sections=zlib", str(dbg), str(packed)],
                   check=True)
    shutil.copy(stripped, tmp_path / "prog")
    want = oracle.addr2line(exe, [_outer(exe)])[0]
    with Symbolizer() as sym:
        assert oracle.ours(sym.symbolize_file(str(tmp_path / "prog"), [_outer(exe)])[0]) == want


# Assembly as OpenSSL's and BLAKE3's perlasm leave it in Rust binaries: a routine with a
# .size but no .type (STT_NOTYPE), a label inside a typed function, and, as at the end of
# musl's libc.so, a function without a size followed by a label without one.
_ASM = r"""
    .text
    .globl notype_sized
notype_sized:
    .fill 32, 1, 0x90
    ret
    .size notype_sized, .-notype_sized
    .globl func_with_label
    .type func_with_label, @function
func_with_label:
    .fill 16, 1, 0x90
inner_label:
    .fill 16, 1, 0x90
    ret
    .size func_with_label, .-func_with_label
    .globl zero_func
    .type zero_func, @function
zero_func:
    .fill 16, 1, 0x90
    .globl bare_label
bare_label:
    .fill 32, 1, 0x90
    ret
    .section .rodata
    .globl data_sized
data_sized:
    .quad 1
    .size data_sized, 8
"""


def test_assembly_routines_without_a_type_name_their_code(tmp_path):
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    (tmp_path / "main.c").write_text("int main(void) { return 0; }\n")
    (tmp_path / "labels.s").write_text(_ASM)
    exe = tmp_path / "labels"
    subprocess.run(["gcc", "-o", str(exe), "main.c", "labels.s"], cwd=tmp_path, check=True)
    sym = {p[2]: int(p[0], 16) for p in (line.split() for line in subprocess.run(
        ["nm", str(exe)], capture_output=True, text=True, check=True).stdout.splitlines())
        if len(p) == 3}
    probes = {"notype_sized": sym["notype_sized"] + 20,
              "func_with_label": sym["inner_label"] + 4}
    with ElfFile.open(str(exe)) as elf:
        table = SymbolTable([elf])
    binutils = oracle.addr2line(exe, list(probes.values()))
    eu = subprocess.run(["eu-addr2line", "-f", "-e", str(exe), *map(hex, probes.values())],
                        capture_output=True, text=True, check=True).stdout.splitlines()[::2]
    for (want, addr), b, e in zip(probes.items(), binutils, eu):
        assert table.lookup(addr) == (want, addr - sym[want])
        # A label inside a typed, sized function is no function of its own: elfutils and
        # gdb agree; binutils names the nearest label before the address.
        assert e == want
        assert b[0][0] == (want if want != "func_with_label" else "inner_label")
    # A label without a size names nothing and ends nothing: the code after it is the
    # sizeless function's before it, as far as that reaches without the label.
    assert table.lookup(sym["zero_func"]) == ("zero_func", 0)
    got = table.lookup(sym["bare_label"] + 20)
    assert got is None or got == ("zero_func", sym["bare_label"] + 20 - sym["zero_func"])
    assert table.lookup(sym["data_sized"]) is None   # not code
