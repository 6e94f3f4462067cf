"""DWARF reader checks against independent oracles: line rows against pyelftools'
decoder (DWARF 4 and 5, GCC and rustc), unit lookup with and without .debug_aranges,
inline chains and call sites against addr2line, split-DWARF degrading gracefully."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from unit.symbolize import oracle

from hud.symbolize import ElfFile, Symbolizer
from hud.symbolize.dwarf import DwarfInfo
from hud.symbolize.dwarf_units import DwarfSections


def _info(path) -> DwarfInfo:
    elf = ElfFile.open(str(path))
    return DwarfInfo(DwarfSections(lambda n: (elf.section(n) or (0, None))[1]))


def _reference_rows(path, max_units: int = 40) -> list:
    """(unit offset, sequence start, address, file, line, column) of the last row per
    address of every sequence, decoded by pyelftools."""
    out = []
    with open(path, "rb") as f:
        dw = ELFFile(f).get_dwarf_info()
        for k, cu in enumerate(dw.iter_CUs()):
            if k >= max_units:
                break
            lp = dw.line_program_for_CU(cu)
            if lp is None:
                continue
            seq = []
            for entry in lp.get_entries():
                st = entry.state
                if st is None:
                    continue
                if st.end_sequence:
                    if seq and seq[0][0] > 0:
                        last = {}
                        for row in seq:
                            last[row[0]] = row
                        out.extend((cu.cu_offset, seq[0][0], *r) for r in last.values())
                    seq = []
                else:
                    seq.append((st.address, st.file, st.line, st.column))
    return out


@pytest.mark.parametrize("hinted", [False, True])
@pytest.mark.parametrize("variant", ["dwarf5", "dwarf4", "rust"])
def test_line_rows_match_pyelftools(build, variant, hinted):
    """Both lookups: by skimming the whole program, and hinted (the sequence found by its
    opening DW_LNE_set_address)."""
    path = (build.rust() if variant == "rust" else
            build.c("dw_" + variant, ("-gdwarf-5" if variant == "dwarf5" else "-gdwarf-4",
                                      "-O2")))
    rows = _reference_rows(path)
    assert len(rows) > 25
    info = _info(path)
    bad = []
    for unit_off, start, addr, file, line, col in rows:
        unit = info.units.find_unit(addr)
        assert unit is not None and unit.offset == unit_off, hex(addr)
        info.units.load(unit)
        table = info._line_table(unit)
        got = table.lookup(addr, start if hinted else None)
        if got != (file, line, col):
            bad.append((hex(addr), got, (file, line, col)))
    assert not bad, bad[:10]
    if hinted and variant == "rust":
        # rustc gives every function its own sequence: the hint spared the skim.
        assert not any(t._skimmed for t in info._lines.values() if t is not None)


def test_units_found_without_aranges(build, tmp_path):
    exe = build.c("dw_noaranges_src", ("-g", "-O2"))
    stripped = tmp_path / "noaranges"
    subprocess.run(["objcopy", "--remove-section=.debug_aranges", str(exe), str(stripped)],
                   check=True)
    assert ElfFile.open(str(stripped)).section(".debug_aranges") is None
    addrs = [s + size // 2 for s, size, _ in oracle.function_symbols(exe)]
    with Symbolizer() as sym:
        a = sym.symbolize_file(str(exe), addrs)
        b = sym.symbolize_file(str(stripped), addrs)
    assert [oracle.ours(x) for x in a] == [oracle.ours(x) for x in b]
    assert sum(1 for x in b if x[0].line) >= len(addrs) // 2


@pytest.mark.parametrize("flags", [("-g", "-O2"), ("-gdwarf-4", "-O2"), ("-g", "-O3"),
                                   ("-g", "-O2", "-fPIE", "-pie"), ("-g", "-O2", "-no-pie")])
def test_inline_chains_match_addr2line(build, flags):
    exe = build.c("dw_inl_" + "_".join(f.strip("-") for f in flags), flags)
    addrs = []
    for start, size, _name in oracle.function_symbols(exe):
        addrs.extend(range(start, start + size))
    with Symbolizer() as sym:
        got = [oracle.ours(f) for f in sym.symbolize_file(str(exe), addrs)]
    exp = oracle.addr2line(exe, addrs)
    cmp = oracle.compare(addrs, got, exp, exe)
    assert cmp.ratio == 1.0, cmp.report()
    # The always_inline helpers of the test program really are inline chains here.
    chains = [g for g in got if [lvl[0] for lvl in g][:3] == ["leaf", "middle", "outer"]]
    assert chains and all(g[1][2] != "?" and g[2][2] != "?" for g in chains)


def test_split_dwarf_degrades_to_symbols(build):
    exe = build.c("dw_split", ("-g", "-O2", "-gsplit-dwarf"))
    addrs = [s for s, _size, name in oracle.function_symbols(exe) if name == "outer"]
    with Symbolizer() as sym:
        (frames,) = sym.symbolize_file(str(exe), addrs)
    assert frames[-1].function == "outer"


@pytest.mark.parametrize("variant", ["dwarf5", "rust", "libc"])
def test_symbol_hints_change_nothing(build, variant):
    """Finding functions by their low_pc bytes (symbol-table hints) must give exactly what
    indexing whole units gives, on every sampled address."""
    from hud.symbolize.symtab import SymbolTable

    if variant == "libc":
        path = Path("/lib/x86_64-linux-gnu/libc.so.6")
        with Symbolizer() as sym:
            obj, _ = sym.object_for_path(str(path))
            src = obj.debug.name if obj.debug is not None else str(path)
    else:
        path = build.rust() if variant == "rust" else build.c("dw_hint", ("-g", "-O2"))
        src = str(path)
    addrs = oracle.pick_addresses(Path(src), 600)
    hinted, plain = _info(src), _info(src)
    with ElfFile.open(src) as elf:
        table = SymbolTable([elf])
    used = 0
    for a in addrs:
        hint = table.span_of(a)
        used += hint is not None
        assert hinted.locate(a, hint) == plain.locate(a), hex(a)
    assert used > len(addrs) // 2
    # ...and the hints really were taken (found functions without a unit pass).
    found = [idx for st in hinted._state.values() if st[1] is not None
             for idx, _spans in st[1]._hinted.values() if idx >= 0]
    assert len(found) >= (3 if variant == "dwarf5" else 10)


def test_aarch64_binary_matches_its_addr2line(build, tmp_path):
    """Symbolization reads aarch64 ELF/DWARF as well (the file, not the host, decides)."""
    import shutil as _shutil
    gcc = _shutil.which("aarch64-linux-gnu-gcc")
    a2l = _shutil.which("aarch64-linux-gnu-addr2line")
    if gcc is None or a2l is None:
        pytest.skip("no aarch64 cross toolchain")
    from unit.symbolize.binaries import C_PROG
    src = tmp_path / "a64.c"
    src.write_text(C_PROG)
    exe = tmp_path / "a64"
    subprocess.run([gcc, "-g", "-O2", "-o", str(exe), str(src), "-ldl"], check=True)
    with ElfFile.open(str(exe)) as elf:
        assert elf.machine == "aarch64"
    addrs = [a for s, size, _n in oracle.function_symbols(exe) for a in range(s, s + size, 4)]
    with Symbolizer() as sym:
        got = [oracle.ours(f) for f in sym.symbolize_file(str(exe), addrs)]
    exp = oracle.addr2line(exe, addrs, tool=a2l)
    cmp = oracle.compare(addrs, got, exp, exe)
    assert cmp.ratio == 1.0, cmp.report()
    assert any(len(g) == 3 for g in got)     # the inline chain leaf <- middle <- outer
