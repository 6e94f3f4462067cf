"""ElfFile: headers, sections (also compressed), notes, build-id, debuglink, bias; checked
against readelf/objcopy, and garbage must raise BadInput."""
from __future__ import annotations

import re
import subprocess
import zlib

import pytest

from hud.errors import BadInput
from hud.symbolize.elf import ElfFile, Segment, parse_notes


def _readelf(args: list, path) -> str:
    return subprocess.run(["readelf", "-W", *args, str(path)], capture_output=True,
                          text=True, check=True).stdout


def test_headers_match_readelf(build):
    exe = build.c("elf_pie", ("-g", "-O2", "-fPIE", "-pie"))
    with ElfFile.open(str(exe)) as elf:
        assert elf.machine == "x86_64" and elf.is64 and elf.is_pie
        out = _readelf(["-S"], exe)
        names = re.findall(r"\]\s+(\S+)\s+[A-Z_0-9]+\s+[0-9a-f]{16}", out)
        assert [s.name for s in elf.sections if s.name] == names
        loads = [ln.split() for ln in _readelf(["-l"], exe).splitlines()
                 if ln.strip().startswith("LOAD")]
        assert [(int(r[1], 16), int(r[2], 16)) for r in loads] == [
            (s.offset, s.vaddr) for s in elf.load_segments]
        m = re.search(r"Build ID: ([0-9a-f]+)", _readelf(["-n"], exe))
        assert elf.build_id == m.group(1)
        addr, text = elf.section(".text")
        sec = elf.section_header(".text")
        assert addr == sec.addr and len(text) == sec.size
        assert elf.section(".no_such_section") is None


def test_non_pie_is_exec(build):
    exe = build.c("elf_nopie", ("-g", "-O2", "-no-pie"))
    with ElfFile.open(str(exe)) as elf:
        assert elf.type == 2 and not elf.is_pie


def test_compressed_sections_are_inflated(build, tmp_path):
    plain = build.c("elf_plain", ("-g", "-O2"))
    packed = tmp_path / "gz"
    subprocess.run(["objcopy", "--compress-debug-sections=zlib", str(plain), str(packed)],
                   check=True)
    with ElfFile.open(str(plain)) as a, ElfFile.open(str(packed)) as b:
        assert b.section_header(".debug_info").compressed
        assert not a.section_header(".debug_info").compressed
        for name in (".debug_info", ".debug_line", ".debug_abbrev"):
            assert a.section(name)[1] == b.section(name)[1]


def test_zdebug_sections_are_inflated(build, tmp_path):
    plain = build.c("elf_plain", ("-g", "-O2"))
    out = tmp_path / "zdebug"
    r = subprocess.run(["objcopy", "--compress-debug-sections=zlib-gnu", str(plain), str(out)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip("objcopy cannot write .zdebug sections")
    with ElfFile.open(str(plain)) as a, ElfFile.open(str(out)) as b:
        assert b.section_header(".debug_info").name in (".zdebug_info", ".debug_info")
        assert a.section(".debug_info")[1] == b.section(".debug_info")[1]


def test_debuglink(build):
    exe = build.c("elf_split_src", ("-g", "-O2"))
    stripped, dbg = build.split_debug(exe, "elf_split")
    with ElfFile.open(str(stripped)) as s:
        name, crc = s.debuglink
        assert name == dbg.name
        assert crc == zlib.crc32(dbg.read_bytes())
        assert s.section(".debug_info") is None
    with ElfFile.open(str(dbg)) as d:
        # The debug file keeps the headers of allocated sections as NOBITS.
        assert d.section(".text") is None and d.section(".debug_info") is not None
        assert d.build_id == ElfFile.open(str(exe)).build_id


def test_garbage_raises_bad_input(tmp_path):
    for blob in (b"", b"\x7fELF", b"hello world" * 10, b"\x7fELF\x02\x01\x01" + b"\0" * 9):
        f = tmp_path / "x"
        f.write_bytes(blob)
        with pytest.raises(BadInput):
            ElfFile.open(str(f))
    with pytest.raises(BadInput):
        ElfFile.open(str(tmp_path / "missing"))
    with pytest.raises(BadInput):
        ElfFile.open(str(tmp_path))           # a directory


def test_truncated_file_raises_bad_input(build, tmp_path):
    exe = build.c("elf_pie", ("-g", "-O2", "-fPIE", "-pie"))
    data = exe.read_bytes()
    f = tmp_path / "cut"
    f.write_bytes(data[:len(data) // 2])   # section headers live at the end
    with pytest.raises(BadInput):
        ElfFile.open(str(f))


def test_fifo_does_not_hang(tmp_path):
    import os
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(BadInput):
        ElfFile.open(str(fifo))


def test_notes_alignment():
    desc = bytes(range(20))
    blob = (b"\x04\0\0\0" + b"\x14\0\0\0" + b"\x03\0\0\0" + b"GNU\0" + desc)
    assert parse_notes(blob) == [(b"GNU", 3, desc)]
    # a lying descsz stops the walk instead of reading past the end
    assert parse_notes(blob[:-1]) == []


class _FakeElf(ElfFile):
    def __init__(self, segs):  # no file: only the segment logic is under test
        self.segments = tuple(segs)


def test_bias_rust_lld_layout():
    # rust-lld, no padding: the RX segment starts inside the R segment's last page.
    segs = [Segment(1, 4, 0x0, 0x0, 0x141a0, 0x141a0, 0x1000),
            Segment(1, 5, 0x141a0, 0x151a0, 0x3fad0, 0x3fad0, 0x1000),
            Segment(1, 6, 0x53c70, 0x55c70, 0x2a90, 0x3390, 0x1000)]
    elf = _FakeElf(segs)
    base = 0x55E81F8D2000
    # r-xp mapping of offset 0x14000 (the page holding both R's tail and RX's head)
    assert elf.bias_for_mapping(base + 0x15000, 0x14000, base + 0x55000, "r-xp") == base
    assert elf.bias_for_mapping(base, 0x0, base + 0x15000, "r--p") == base
    assert elf.bias_for_mapping(base + 0x55000, 0x53000, base + 0x59000, "r--p") == base


def test_bias_non_pie_and_shared():
    exe = _FakeElf([Segment(1, 4, 0, 0x400000, 0x500, 0x500, 0x1000),
                    Segment(1, 5, 0x1000, 0x401000, 0x2000, 0x2000, 0x1000)])
    assert exe.bias_for_mapping(0x401000, 0x1000, 0x403000, "r-xp") == 0
    lib = _FakeElf([Segment(1, 4, 0, 0, 0x26000, 0x26000, 0x1000),
                    Segment(1, 5, 0x26000, 0x26000, 0x156000, 0x156000, 0x1000)])
    assert lib.bias_for_mapping(0x7F0000026000, 0x26000, 0x7F000017C000, "r-xp") == 0x7F0000000000
