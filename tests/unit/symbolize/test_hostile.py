"""Hostile input: truncated and corrupted ELF and DWARF must give unknown frames or a
HudError (BadInput), never another exception or a hang. Hypothesis mutates real files
(C with DWARF 5 and 4, compressed sections, and a Rust binary) and raw DWARF sections."""
from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from unit.symbolize.oracle import function_symbols

from hud.errors import HudError
from hud.model import Frame
from hud.symbolize import ElfFile, Symbolizer, lazysection, symbolizer
from hud.symbolize.demangle import demangle
from hud.symbolize.dwarf import DwarfInfo
from hud.symbolize.dwarf_units import DwarfSections

pytestmark = pytest.mark.timeout(600)

FUZZ = settings(max_examples=int(os.environ.get("HUD_FUZZ_EXAMPLES", "60")), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])
DEBUG_SECTIONS = (".debug_info", ".debug_abbrev", ".debug_line", ".debug_str",
                  ".debug_line_str", ".debug_ranges", ".debug_rnglists", ".debug_aranges",
                  ".debug_addr", ".debug_str_offsets")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from unit.symbolize.binaries import Builder
    b = Builder(tmp_path_factory.mktemp("hostile"))
    files = {
        "dwarf5": b.c("h_d5", ("-g", "-O2")),
        "dwarf4": b.c("h_d4", ("-gdwarf-4", "-O2")),
        "zlib": b.c("h_gz", ("-g", "-O2", "-gz=zlib")),
        "rust": b.rust("h_rs"),
    }
    out = _Corpus()
    for name, path in files.items():
        data = path.read_bytes()
        funcs = function_symbols(path)
        step = max(1, len(funcs) // 20)
        addrs = [s + k for s, size, _ in funcs[::step] for k in (0, size // 2)]
        out[name] = (data, addrs[:40])
    return out


class _Corpus(dict):
    def __repr__(self) -> str:   # hypothesis prints arguments of failing examples
        return f"<corpus {sorted(self)}>"


def _sections(data: bytes) -> dict:
    with ElfFile.from_bytes(data) as elf:
        return {n: (elf.section_header(n).offset, elf.section_header(n).size)
                for n in DEBUG_SECTIONS
                if elf.section_header(n) is not None and not elf.section_header(n).compressed}


def _check_frames(result: list, addrs: list) -> None:
    assert len(result) == len(addrs)
    for frames in result:
        assert frames and all(isinstance(f, Frame) for f in frames)
        for f in frames:
            assert f.function is not None or f.reason, f


def _symbolize_bytes(tmp_path, data: bytes, addrs: list, lazy: bool = False) -> None:
    """`lazy`: every big-enough section read a piece at a time (lazysection), as big
    binaries' are: the pieces' readers must be as careful as the whole-section ones."""
    path = tmp_path / "mutant"
    path.write_bytes(data)
    with _pieces(lazy), Symbolizer() as sym:
        result = sym.symbolize_file(str(path), addrs)
        result += sym.symbolize_file(str(path), addrs, return_addresses=True)
    _check_frames(result, addrs + addrs)


@contextmanager
def _pieces(on: bool) -> Iterator[None]:
    """With `on`, every section that can be is read in pieces (lazysection) meanwhile.
    Not monkeypatch: hypothesis runs many examples in one test function."""
    saved = lazysection.LAZY_MIN
    lazysection.LAZY_MIN = 0 if on else saved
    try:
        yield
    finally:
        lazysection.LAZY_MIN = saved


@FUZZ
@given(which=st.sampled_from(["dwarf5", "dwarf4", "zlib"]), cut=st.floats(0, 1),
       lazy=st.booleans())
def test_truncated_files(corpus, tmp_path, which, cut, lazy):
    data, addrs = corpus[which]
    _symbolize_bytes(tmp_path, data[:int(len(data) * cut)], addrs, lazy)


@FUZZ
@given(which=st.sampled_from(["dwarf5", "dwarf4", "zlib"]),
       edits=st.lists(st.tuples(st.floats(0, 1), st.binary(min_size=1, max_size=8)),
                      min_size=1, max_size=12),
       lazy=st.booleans())
def test_corrupted_files(corpus, tmp_path, which, edits, lazy):
    data, addrs = corpus[which]
    buf = bytearray(data)
    for where, blob in edits:
        at = int(where * (len(buf) - 1))
        buf[at:at + len(blob)] = blob
    _symbolize_bytes(tmp_path, bytes(buf[:len(data)]), addrs, lazy)


@FUZZ
@given(which=st.sampled_from(["dwarf5", "dwarf4", "rust"]),
       section=st.sampled_from(DEBUG_SECTIONS),
       edits=st.lists(st.tuples(st.floats(0, 1),
                                st.sampled_from([b"\xff", b"\x00", b"\x80" * 9, b"\x7f",
                                                 b"\xff\xff\xff\xff", b"\x01\x00\x00\x00"])
                                | st.binary(min_size=1, max_size=6)),
                      min_size=1, max_size=8),
       lazy=st.booleans())
def test_corrupted_dwarf_sections(corpus, which, section, edits, lazy):
    """Mutate one DWARF section in place (the ELF stays valid): the DWARF reader either
    raises BadInput while opening or answers every address, reasons included."""
    data, addrs = corpus[which]
    secs = _sections(data)
    if section not in secs:
        return
    off, size = secs[section]
    buf = bytearray(data)
    for where, blob in edits:
        at = off + int(where * max(size - 1, 0))
        end = min(at + len(blob), off + size)
        buf[at:end] = blob[:end - at]
    with ElfFile.from_bytes(bytes(buf)) as elf:
        def load(name):
            got = elf.section(name)
            return got[1] if got else None
        with _pieces(True):
            try:
                info = DwarfInfo(DwarfSections(load, symbolizer._lazy_loader(elf) if lazy
                                               else None))
            except HudError:
                return
            for a in addrs:
                try:
                    locs, why = info.locate(a)
                except HudError:
                    continue
                assert isinstance(locs, tuple) and isinstance(why, str)


@FUZZ
@given(body=st.text(alphabet="0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_$.",
                    max_size=200),
       prefix=st.sampled_from(["_R", "_RNv", "_RINv", "_ZN", "_Z", "_RB_", "_RNvB0_"]))
def test_demangler_never_raises(prefix, body):
    out = demangle(prefix + body)
    assert isinstance(out, str) and len(out) < 1 << 17


def test_demangler_backref_loops_are_cut():
    # A backreference to itself (or to a later position) must not recurse forever.
    for sym in ("_RB_", "_RNvB0_3foo", "_RINvB_E", "_RNvNtB2_3foo3bar", "_RYB_B_"):
        assert isinstance(demangle(sym), str)
    deep = "_R" + "I" * 5000 + "C3foo" + "E" * 5000
    assert demangle(deep) == deep


def test_garbage_rust_binary_sections(tmp_path):
    """A file that is all ELF header and junk: opening gives BadInput, symbolizing data."""
    junk = b"\x7fELF\x02\x01\x01" + bytes(9) + os.urandom(4096)
    path = tmp_path / "junk"
    path.write_bytes(junk)
    with pytest.raises(HudError):
        ElfFile.open(str(path))
    with Symbolizer() as sym:
        (frames,) = sym.symbolize_file(str(path), [0x1000])
    assert frames[0].function is None and frames[0].reason


# -- the layouts read beside the main DWARF: dwz links, packages, MiniDebugInfo ----------

@FUZZ
@given(st.binary(max_size=600))
def test_link_and_package_parsers_take_any_bytes(blob):
    from hud.symbolize import altfile, splitdwarf
    got = altfile._debug_sup(blob)
    assert got is None or (isinstance(got[1], str) and isinstance(got[2], bytes))
    try:
        index = splitdwarf._cu_index(blob)
    except (ValueError, IndexError, struct.error):   # what _open_dwp turns into "none"
        return
    assert all(isinstance(k, int) for k in index)


@FUZZ
@given(st.data())
def test_hostile_gnu_debugdata_costs_names_only(corpus, data):
    """The C corpus stripped to .dynsym is not at hand here: mutate an xz stream of a
    real symbol table and hand it to the MiniDebugInfo reader through a tiny ELF."""
    import lzma

    from hud.symbolize import minidebug
    raw, _addrs = corpus["dwarf5"]
    packed = bytearray(lzma.compress(raw[:20000], format=lzma.FORMAT_XZ))
    for _ in range(data.draw(st.integers(0, 8))):
        at = data.draw(st.integers(0, len(packed) - 1))
        packed[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(packed)))

    class _Holder:
        name = "<fuzz>"

        def section(self, name):
            return (0, bytes(packed[:cut])) if name == ".gnu_debugdata" else None

    mini, why = minidebug.mini_debuginfo(_Holder())
    assert mini is not None or why
