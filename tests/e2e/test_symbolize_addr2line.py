"""Differential test: hud's symbolization against binutils `addr2line -f -i -C` on every
fixture variant and on the fixtures' libc, >= 2,000 addresses spread over all functions.
Function, file and line of every inline level must agree on >= 99% of addresses;
disagreements are printed (elfutils' line lookup settles innermost-line differences)."""
from __future__ import annotations

import bisect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support.fixture_build import VARIANTS as VARIANT_SPECS
from support.fixtures import VARIANTS, load_manifest
from unit.symbolize import oracle

from hud.symbolize import Symbolizer
from hud.symbolize.normalize import ProcessMaps

N_ADDRESSES = 2000
AGREEMENT = 0.99
LIBC = Path("/lib/x86_64-linux-gnu/libc.so.6")
REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(600)


def _run(binary: Path, symbol_file: Path, seed: int = 1,
         has_lines: bool = True) -> oracle.Comparison:
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
    # some carry inline chains (guards against two tools agreeing on "??"). Without
    # DWARF: every address is named (by the symbol table), none has a line or inlines.
    with_lines = sum(1 for g in got if g[0][2] not in ("?", "0"))
    inlined = sum(1 for g in got if len(g) > 1)
    if has_lines:
        assert with_lines > N_ADDRESSES // 2, f"only {with_lines} addresses have a line"
        assert inlined > N_ADDRESSES // 20, f"only {inlined} addresses have inline frames"
    else:
        named = sum(1 for g in got if g[-1][0] != "??")
        assert named == len(addrs) and with_lines == inlined == 0, (named, with_lines,
                                                                    inlined)
    return cmp


# Line-tables-only DWARF names a function by its last path segment, and binutils then
# names the innermost level after the symbol instead: that variant has its own test.
BINUTILS_VARIANTS = tuple(v for v in VARIANTS if VARIANT_SPECS[v]["profile"] != "lines")


@pytest.mark.parametrize("variant", BINUTILS_VARIANTS)
def test_fixture_variant_agrees_with_addr2line(variant):
    m = load_manifest(variant)
    cmp = _run(m.binary, m.symbol_file, has_lines=m.has_lines)
    assert cmp.ratio >= AGREEMENT, cmp.report()


def test_line_tables_only_agrees_with_llvm_symbolizer():
    """`debug = "line-tables-only"` (what hud's hint asks for): every inline level's
    function, file and line as llvm-symbolizer gives them from the same DWARF (binutils
    names the innermost level after the symbol), except two kinds of names DWARF has
    only the last segment of: the outermost level's, which hud takes whole from the
    symbol table (as nm -C prints it), and an inlined closure's or async body's, which
    hud takes from its type as the function it is inlined into spells it."""
    m = load_manifest("blockers-lines")
    addrs = oracle.pick_addresses(m.binary, N_ADDRESSES)
    with Symbolizer() as sym:
        frames = sym.symbolize_file(str(m.binary), addrs)
    got = [oracle.ours(f) for f in frames]
    gnu = ("-a", "-i", "-C", "--output-style=GNU")
    exp = oracle.addr2line(m.binary, addrs, "llvm-symbolizer", (*gnu, "-f"))
    # The same with every level named as DWARF names it (above, the outermost level is
    # named after its symbol): what hud reads a closure's path from.
    dwarf = oracle.addr2line(m.binary, addrs, "llvm-symbolizer", (*gnu, "--functions=short"))
    sized = {a: v for a, v in oracle.demangled_names(m.binary, "tTwW").items() if v[0] > a}
    starts = sorted(sized)
    symbols = [sized[a] for a in starts]
    whole = shims = qualified = 0
    for k, (a, g) in enumerate(zip(addrs, got)):
        i = bisect.bisect_right(starts, a) - 1
        end, names = symbols[i] if i >= 0 else (0, set())
        e = exp[k]
        if a < end and any(n.endswith(".shim}}") for n in names):
            # A shim (FnOnce::call_once{{vtable.shim}}): its DWARF names what it wraps.
            shims += 1
            assert g[-1][0] in names, (hex(a), g, names)
        # An inlined closure DWARF calls `{closure#0}` is named after its type as the
        # function it is inlined into spells it (llvm-symbolizer prints that name too).
        for j, (fn, file, line) in enumerate(g[:-1]):
            bare = e[j][0] if j + 1 < len(e) else ""
            kind = re.fullmatch(r"\{(closure|async_fn|async_block)#(\d+)\}", bare)
            caller = e[j + 1][0] if j + 2 < len(e) else dwarf[k][-1][0]
            if kind and fn.endswith("::" + bare) and caller.count(
                    f"{fn[:-len(bare)]}{{{kind[1]}_env#{kind[2]}}}") == 1:
                qualified += 1
                g[j] = (bare, file, line)
        if a < end and g[-1][0] in names and e:
            whole += "::" in g[-1][0] or g[-1][0].startswith("<")
            e[-1] = (g[-1][0], *e[-1][1:])      # the outermost name is judged by nm
        # llvm-symbolizer prints "0" where binutils and hud print "?" (no line), but
        # for an address it knows nothing of.
        exp[k] = [(fn, file, "?" if line == "0" and (fn, file) != ("??", "??") else line)
                  for fn, file, line in e]
    cmp = oracle.compare(addrs, got, exp)
    print(cmp.report())
    assert whole >= 0.9 * len(addrs) and shims and qualified, (whole, shims, qualified)
    assert sum(1 for g in got if g[0][2] != "?") > N_ADDRESSES // 2
    assert sum(1 for g in got if len(g) > 1) > N_ADDRESSES // 20
    assert cmp.ratio >= AGREEMENT, cmp.report()


def test_sections_read_piecemeal_agree_with_addr2line(monkeypatch):
    """Big debug sections are read a piece at a time (hud.symbolize.lazysection); the
    fixture's are under that size, so force it and hold it to the same bar."""
    from hud.symbolize import lazysection

    monkeypatch.setattr(lazysection, "LAZY_MIN", 0)
    m = load_manifest("blockers-nofp")
    cmp = _run(m.binary, m.symbol_file, seed=2)
    assert cmp.ratio >= AGREEMENT, cmp.report()


def test_dwz_compressed_debug_file_agrees_with_addr2line(tmp_path):
    """The stripped fixture's debug file compressed with `dwz -m` together with the
    demo's, as distributions ship debug packages: shared DIEs and strings move to a
    common file that the debug file names in .gnu_debugaltlink. hud reads through it
    and must answer as binutils does on the debug file before dwz."""
    import shutil
    if shutil.which("dwz") is None:
        pytest.fail("dwz missing: it is in .ci/apt-packages")
    m = load_manifest("blockers-stripped")
    debug = tmp_path / "blockers.debug"
    shutil.copy(m.debug_file, debug)
    subprocess.run(["objcopy", "--only-keep-debug", str(load_manifest("demo").binary),
                    str(tmp_path / "demo.debug")], check=True)
    subprocess.run(["dwz", "-m", "common.debug", "-r", "blockers.debug", "demo.debug"],
                   cwd=tmp_path, check=True, capture_output=True)
    text = subprocess.run(["readelf", "--debug-dump=info", str(debug)], capture_output=True,
                          text=True).stdout
    assert text.count("(alt indirect string") > 1000 and "<alt 0x" in text
    addrs = oracle.pick_addresses(m.debug_file, N_ADDRESSES)
    with Symbolizer(debug_files=[str(debug)]) as sym:
        frames = sym.symbolize_file(str(m.binary), addrs)
    got = [oracle.ours(f) for f in frames]
    cmp = oracle.compare(addrs, got, oracle.addr2line(m.debug_file, addrs), m.debug_file)
    print(cmp.report())
    assert sum(1 for g in got if len(g) > 1) > N_ADDRESSES // 20
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


def _hud_addr2line(*args: str, stdin: str) -> str:
    got = subprocess.run([sys.executable, "-m", "hud", "addr2line", "--no-symbol-cache",
                          "-a", *args], input=stdin, capture_output=True, text=True,
                         timeout=300, cwd=REPO)
    assert got.returncode == 0 and not got.stderr, got.stderr
    return got.stdout


def _without_address_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith("0x")]


@pytest.mark.parametrize("flags", [(), ("-r",)])
def test_addr2line_of_a_process_answers_as_for_its_file(tokio_fixture, flags):
    """`hud addr2line --pid` takes runtime addresses (the PIE's load bias added) and says
    for each what `-e FILE` says for the ELF address: a batch of 1,000 (the batch path
    that prepares units), exact or as return addresses."""
    fx = tokio_fixture("blockers-nofp", ["healthy"])
    m = fx.manifest
    vaddrs = oracle.pick_addresses(m.symbol_file, 1000, seed=3)
    maps = ProcessMaps(fx.pid)
    mod = next(x for x in maps.modules() if x.path and os.path.samefile(x.path, m.binary))
    runtime = [v + mod.bias for v in vaddrs]
    assert runtime != vaddrs     # a PIE: the bias is not zero
    by_pid = _hud_addr2line("--pid", str(fx.pid), *flags,
                            stdin="\n".join(f"{a:x}" for a in runtime))
    by_file = _hud_addr2line("-e", str(m.binary), *flags,
                             stdin="\n".join(f"{a:x}" for a in vaddrs))
    assert [int(x, 16) for x in by_pid.splitlines() if x.startswith("0x")] == runtime
    lines = _without_address_lines(by_pid)
    assert lines == _without_address_lines(by_file)
    # About something: most addresses name a function (with -r, an address at a
    # function's start looks up the padding before it).
    named = sum(1 for block in by_pid.split("\n0x") if block.split("\n")[1] != "??")
    assert named > 0.8 * len(vaddrs), by_pid[:2000]
