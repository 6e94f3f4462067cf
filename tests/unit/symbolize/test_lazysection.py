"""Big debug sections read a piece at a time (hud.symbolize.lazysection): bytes where
asked for, nothing read where not, and a file that shrinks under us gives reasons, not
a crash (a file mapping would have been SIGBUS)."""
from __future__ import annotations

import os
import shutil

import pytest
from unit.symbolize import oracle

from hud.symbolize import Symbolizer, lazysection
from hud.symbolize.dwarf_forms import DwarfError
from hud.symbolize.lazysection import CHUNK, LazySection


def _file_reader(path):
    fd = os.open(path, os.O_RDONLY)

    def read(offset: int, size: int) -> bytes:
        return os.pread(fd, size, offset)
    return fd, read


@pytest.fixture
def blob(tmp_path):
    data = bytes((i * 7 + i // 251) & 0xFF or 1 for i in range(3 * CHUNK + CHUNK // 2))
    path = tmp_path / "blob"
    path.write_bytes(b"HEAD" + data)
    fd, read = _file_reader(path)
    yield path, data, read
    os.close(fd)


def test_ensure_reads_only_the_chunks_asked_for(blob):
    _path, data, read = blob
    sec = LazySection(read, 4, len(data), "blob")
    assert len(sec) == len(data) and sec.resident == 0
    sec.ensure(CHUNK + 10, CHUNK + 20)
    assert sec.resident == CHUNK
    assert sec.data[CHUNK:2 * CHUNK] == data[CHUNK:2 * CHUNK]
    # Untouched chunks were never read: still the mapping's zeros.
    assert sec.data[:CHUNK] == bytes(CHUNK)
    sec.ensure(CHUNK - 1, 3 * CHUNK + 5)      # spans a resident chunk and the tail
    assert sec.resident == len(data)
    assert sec.data[:] == data
    sec.ensure(0, 10 * CHUNK)                 # clipped; nothing more to read
    assert sec.resident == len(data)
    sec.close()
    sec.close()


def test_peek_does_not_keep_and_strings_cross_chunks(tmp_path):
    text = b"x" * (CHUNK - 3) + b"spans-the-boundary\0" + b"y" * CHUNK + b"\0tail"
    path = tmp_path / "strs"
    path.write_bytes(text)
    fd, read = _file_reader(path)
    try:
        sec = LazySection(read, 0, len(text), "strs")
        assert sec.peek(CHUNK - 3, CHUNK + 4) == text[CHUNK - 3:CHUNK + 4]
        assert sec.resident == 0
        end = sec.cstring_end(CHUNK - 3)
        assert sec.data[CHUNK - 3:end] == b"spans-the-boundary"
        assert sec.cstring_end(len(text) - 4) == -1       # "tail" is unterminated
        assert sec.peek(-5, 3) == text[:3] and sec.peek(len(text), len(text) + 9) == b""
    finally:
        os.close(fd)


def test_a_file_that_shrank_is_an_error_not_a_crash(blob):
    path, data, read = blob
    sec = LazySection(read, 4, len(data), "blob")
    sec.ensure(0, 1)
    os.truncate(path, CHUNK)
    with pytest.raises(DwarfError):
        sec.ensure(2 * CHUNK, 2 * CHUNK + 1)
    with pytest.raises(DwarfError):
        sec.peek(3 * CHUNK, 3 * CHUNK + 8)
    assert sec.data[:CHUNK] == data[:CHUNK]   # what was read stays


@pytest.mark.parametrize("variant", ["rust", "rust_dwarf5", "gcc_dwarf5"])
def test_symbolizer_reads_a_part_and_answers_the_same(build, monkeypatch, variant):
    """rustc's DWARF 4 (.debug_ranges), its DWARF 5 (strx, addrx, rnglistx: the
    .debug_str_offsets, .debug_addr and .debug_rnglists indices) and GCC's DWARF 5
    (line_strp): the same frames read in pieces."""
    if variant == "rust":
        exe = build.rust()
    elif variant == "rust_dwarf5":
        exe = build.rust("rs_lazy_d5", ("-g", "-C", "opt-level=2", "-C", "dwarf-version=5"))
    else:
        exe = build.c("lazy_d5", ("-g", "-O2"))
    addrs = oracle.pick_addresses(exe, 400, seed=5)
    monkeypatch.setattr(lazysection, "LAZY_MIN", 1 << 62)
    with Symbolizer() as sym:
        whole = sym.symbolize_file(str(exe), addrs)
        assert not sym.object_for_path(str(exe))[0].dwarf.sections._lazy
    monkeypatch.setattr(lazysection, "LAZY_MIN", 0)
    with Symbolizer() as sym:
        few = sym.symbolize_file(str(exe), addrs[:3])
        sections = sym.object_for_path(str(exe))[0].dwarf.sections
        if variant.startswith("rust"):
            info = sections._lazy[".debug_info"]
            assert 0 < info.resident < info.size // 2, (info.resident, info.size)
        ranges = sections._lazy.get(".debug_ranges")
        if ranges is not None:
            assert ranges.resident < ranges.size // 2, (ranges.resident, ranges.size)
        assert sections.size() <= sum(s.size for s in sections._lazy.values()) + sum(
            len(d) for n, d in sections._cache.items() if n not in sections._lazy)
        lazy = sym.symbolize_file(str(exe), addrs)
        read = set(sections._lazy)
    assert few == whole[:3]
    assert lazy == whole
    if variant == "rust":
        assert ".debug_ranges" in read, read
    if variant == "rust_dwarf5":
        assert {".debug_str_offsets", ".debug_addr"} <= read, read
    if variant == "gcc_dwarf5":
        assert ".debug_line_str" in read, read


def test_a_binary_truncated_while_open_gives_reasons(build, monkeypatch, tmp_path):
    exe = tmp_path / "victim"
    shutil.copy(build.rust(), exe)
    addrs = oracle.pick_addresses(exe, 300, seed=9)
    monkeypatch.setattr(lazysection, "LAZY_MIN", 0)
    with Symbolizer() as sym:
        obj, why = sym.object_for_path(str(exe))
        assert obj is not None, why
        assert obj.frames(addrs[0], addrs[0], "victim")[0].function is not None
        os.truncate(exe, os.path.getsize(exe) // 3)
        # The object keeps its descriptor: lazy reads past the cut now fail, and the
        # units they were for say so; the symbol table still names every address.
        rest = [obj.frames(a, a, "victim") for a in addrs[1:]]
        reasons = {obj.dwarf.locate(a)[1] for a in addrs[1:]}
    assert all(frames[-1].function for frames in rest)
    assert any("shrank" in r for r in reasons), reasons


def test_unit_ranges_read_in_pieces_are_the_same(build, monkeypatch):
    """Every unit's code ranges (DW_AT_ranges through .debug_rnglists / .debug_ranges,
    indices through .debug_addr) read in pieces as read whole: rustc's DWARF 5 units
    beside its std's DWARF 4 ones."""
    exe = build.rust("rs_lazy_d5", ("-g", "-C", "opt-level=2", "-C", "dwarf-version=5"))

    def all_ranges(lazy_min: int) -> tuple:
        monkeypatch.setattr(lazysection, "LAZY_MIN", lazy_min)
        with Symbolizer() as sym:
            dwarf = sym.object_for_path(str(exe))[0].dwarf
            got = [dwarf.units.unit_ranges(u) for u in dwarf.units.units]
            return got, set(dwarf.sections._lazy)

    whole, _ = all_ranges(1 << 62)
    pieces, read = all_ranges(0)
    assert pieces == whole
    assert sum(len(r) for r in whole) > len(whole)      # lists, not single ranges
    assert {".debug_rnglists", ".debug_addr", ".debug_ranges"} <= read, read


def test_no_room_for_the_mapping_reads_whole(build, monkeypatch):
    """Under strict overcommit a mapping the size of a big section can be refused:
    the section is then read whole, as before, rather than failing the object."""
    exe = build.rust()
    addrs = oracle.pick_addresses(exe, 50, seed=11)

    def refuse(*_args, **_kw):
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(lazysection, "LAZY_MIN", 0)
    monkeypatch.setattr(lazysection, "LazySection", refuse)
    with Symbolizer() as sym:
        got = sym.symbolize_file(str(exe), addrs)
        assert not sym.object_for_path(str(exe))[0].dwarf.sections._lazy
    assert sum(1 for frames in got if frames[0].line) > len(addrs) // 2
