"""DWARF without linkage names (rustc -C debuginfo=line-tables-only, the cheap way to get
file:line in a release build) names functions by their last path segment only. The
outermost level of each address is the symbol's own function: its name must be the whole
path, as the symbol table (nm -C) gives it, so that frames classify (tokio::..., std::...)
and findings read like everywhere else; file:line stay binutils'."""
from __future__ import annotations

import subprocess

from unit.symbolize import oracle

from hud.symbolize import Symbolizer


def _nm_names(binary) -> dict[int, set]:
    """Every name nm -C gives each text address (identical code is folded: several)."""
    return {a: names for a, (_end, names) in oracle.demangled_names(binary).items()}


def test_outermost_levels_get_the_symbols_whole_path(build):
    exe = build.rust("rs_lines", ("-C", "debuginfo=line-tables-only", "-C", "opt-level=2"))
    sections = subprocess.run(["readelf", "-S", "-W", str(exe)], capture_output=True,
                              text=True, check=True).stdout
    assert ".debug_line" in sections
    names = _nm_names(exe)
    # Function entries of the program's own crate: their DWARF has no linkage names.
    entries = sorted(a for a, ns in names.items()
                     if any(n.startswith("rs_lines::") for n in ns))
    assert len(entries) >= 2, names
    entries += oracle.pick_addresses(exe, 400, seed=3)
    with Symbolizer() as sym:
        got = sym.symbolize_file(str(exe), entries)
    theirs = oracle.addr2line(exe, entries)
    qualified = 0
    for addr, frames, ref in zip(entries, got, theirs):
        outer = frames[-1]
        if addr in names and outer.function is not None:
            assert outer.function in names[addr], (hex(addr), outer.function, names[addr])
        f = outer.function or ""
        if f.startswith("<") or "::" in f.split("<", 1)[0]:
            qualified += 1
        # file:line on every level as binutils has them (its innermost *name* is the
        # symbol's when DWARF has no linkage name, so names are not compared here).
        assert [(f.file or "??", str(f.line or "?")) for f in frames] == \
               [(r[1], r[2]) for r in ref] or ref[0][1] == "??", (hex(addr), frames, ref)
    assert qualified >= 0.9 * len(entries), qualified


def test_shims_get_the_symbols_whole_path_in_both_manglings(build):
    """A vtable shim's symbol names the function it wraps (legacy
    `FnOnce::call_once{{vtable.shim}}`, v0 `...::call_once::{shim:vtable#0}`); its
    line-tables-only DWARF names only that function (`call_once<...>`). The symbol's
    whole path is still the outermost level's name, as for every other function."""
    for mangling, flags in (("legacy", ()), ("v0", ("-C", "symbol-mangling-version=v0"))):
        exe = build.rust(f"rs_shim_{mangling}", (
            "-C", "debuginfo=line-tables-only", "-C", "opt-level=2", *flags))
        names = _nm_names(exe)
        shims = sorted(a for a, ns in names.items()
                       if any(".shim}}" in n or "{shim:" in n for n in ns))
        assert shims, f"{mangling}: no shim in {exe}"
        with Symbolizer() as sym:
            got = sym.symbolize_file(str(exe), shims)
        for addr, frames in zip(shims, got):
            assert frames[-1].function in names[addr], (mangling, hex(addr), frames,
                                                        names[addr])
