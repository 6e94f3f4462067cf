"""Read-only, bounds-checked view of one ELF file: headers, segments, sections, notes.

Every byte comes from the target and is treated as hostile: each read is checked against
the file size, counts are capped, and anything inconsistent raises BadInput. The file is
read with pread on one descriptor (never mmap: a target truncating its own file would turn
our page faults into SIGBUS), or from a bytes buffer (the vdso, tests).
"""
from __future__ import annotations

import os
import stat
import struct
import zlib
from dataclasses import dataclass
from typing import Optional

from hud.errors import BadInput
from hud.linux.closing import Closing, close_fd

# e_type
ET_EXEC = 2
ET_DYN = 3
# p_type
PT_LOAD = 1
PT_DYNAMIC = 2
PT_INTERP = 3
PT_NOTE = 4
# p_flags
PF_X = 1
PF_W = 2
PF_R = 4
# sh_type
SHT_SYMTAB = 2
SHT_NOTE = 7
SHT_NOBITS = 8
SHT_DYNSYM = 11
# sh_flags
SHF_ALLOC = 0x2
SHF_EXECINSTR = 0x4
SHF_COMPRESSED = 0x800
# note types (owner "GNU")
NT_GNU_BUILD_ID = 3
# compression (Elf_Chdr.ch_type)
ELFCOMPRESS_ZLIB = 1
ELFCOMPRESS_ZSTD = 2

_MACHINES = {3: "i386", 40: "arm", 62: "x86_64", 183: "aarch64", 243: "riscv64"}

# Caps that keep a hostile header from making us allocate or loop without bound.
MAX_PHDRS = 4096
MAX_SHDRS = 65536
MAX_SECTION_BYTES = 1 << 30          # decompressed size of one section
_MAX_NOTE_BYTES = 1 << 20


@dataclass(frozen=True)
class Segment:
    """One program header."""

    type: int
    flags: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int
    align: int

    @property
    def executable(self) -> bool:
        return bool(self.flags & PF_X)


@dataclass(frozen=True)
class Section:
    """One section header, with its name resolved."""

    name: str
    type: int
    flags: int
    addr: int
    offset: int
    size: int
    link: int
    info: int
    entsize: int

    @property
    def compressed(self) -> bool:
        return bool(self.flags & SHF_COMPRESSED)


class ElfFile(Closing):
    """A read-only view of one ELF file; all reads bounds-checked.

    Open with `ElfFile.open(path)` (raises BadInput on garbage, OSError-derived HudError
    never: an unreadable path raises BadInput too) or `ElfFile.from_bytes(data)`. Close it
    (or use it as a context manager) to release the descriptor.
    """

    def __init__(self, name: str, fd: int = -1, data: Optional[bytes] = None,
                 size: int = 0) -> None:
        self.name = name
        self._fd = fd
        self._data = data
        self.size = size if data is None else len(data)
        self.segments: tuple[Segment, ...] = ()
        self.sections: tuple[Section, ...] = ()
        self._by_name: dict[str, Section] = {}
        self._build_id: Optional[str] = None
        self._build_id_read = False
        self._parse_headers()

    # -- construction -------------------------------------------------------------

    @classmethod
    def open(cls, path: str) -> ElfFile:
        """Open the ELF file at `path`; BadInput if it is unreadable or not a sane ELF."""
        try:
            # O_NONBLOCK: a hostile path may name a FIFO, and open() would wait forever.
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
        except OSError as e:
            raise BadInput(f"cannot open {path}: {e.strerror}",
                           "check the path and permissions") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise BadInput(f"{path} is not a regular file")
            return cls(path, fd=fd, size=st.st_size)
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "<memory>") -> ElfFile:
        """A view of an ELF image held in memory (e.g. the vdso read from the target)."""
        return cls(name, data=bytes(data))

    def close(self) -> None:
        """Release the file descriptor (idempotent)."""
        close_fd(self, "_fd")

    # -- raw reads ----------------------------------------------------------------

    def read(self, offset: int, size: int) -> bytes:
        """Exactly `size` bytes at file `offset`, or BadInput if they are not all there."""
        if offset < 0 or size < 0 or offset + size > self.size:
            raise BadInput(f"{self.name}: read of {size} bytes at {offset:#x} is past the "
                           f"end ({self.size:#x})")
        if size == 0:
            return b""
        if self._data is not None:
            return self._data[offset:offset + size]
        if self._fd < 0:
            raise BadInput(f"{self.name}: file already closed")
        parts = []
        got = 0
        while got < size:
            try:
                chunk = os.pread(self._fd, size - got, offset + got)
            except OSError as e:
                raise BadInput(f"{self.name}: read failed: {e.strerror}") from None
            if not chunk:
                raise BadInput(f"{self.name}: file shrank while reading")
            parts.append(chunk)
            got += len(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    # -- headers ------------------------------------------------------------------

    def _parse_headers(self) -> None:
        ident = self.read(0, 16) if self.size >= 16 else b""
        if ident[:4] != b"\x7fELF":
            raise BadInput(f"{self.name} is not an ELF file")
        if ident[4] not in (1, 2) or ident[5] not in (1, 2):
            raise BadInput(f"{self.name}: unknown ELF class or byte order")
        self.is64 = ident[4] == 2
        self.endian = "<" if ident[5] == 1 else ">"
        e = self.endian
        if self.is64:
            hdr = struct.unpack(e + "HHIQQQIHHHHHH", self.read(16, 48))
        else:
            hdr = struct.unpack(e + "HHIIIIIHHHHHH", self.read(16, 36))
        (self.type, self.machine_id, _version, self.entry, phoff, shoff, _flags, _ehsize,
         phentsize, phnum, shentsize, shnum, shstrndx) = hdr
        self.machine = _MACHINES.get(self.machine_id, f"em{self.machine_id}")
        self.address_size = 8 if self.is64 else 4
        self._parse_segments(phoff, phentsize, phnum)
        self._parse_sections(shoff, shentsize, shnum, shstrndx)

    def _parse_segments(self, phoff: int, phentsize: int, phnum: int) -> None:
        if phnum == 0 or phoff == 0:
            return
        want = 56 if self.is64 else 32
        if phentsize < want or phnum > MAX_PHDRS:
            raise BadInput(f"{self.name}: bad program header table")
        raw = self.read(phoff, phentsize * phnum)
        segs = []
        for i in range(phnum):
            off = i * phentsize
            if self.is64:
                p_type, p_flags, p_offset, p_vaddr, _pa, p_filesz, p_memsz, p_align = (
                    struct.unpack_from(self.endian + "IIQQQQQQ", raw, off))
            else:
                p_type, p_offset, p_vaddr, _pa, p_filesz, p_memsz, p_flags, p_align = (
                    struct.unpack_from(self.endian + "IIIIIIII", raw, off))
            segs.append(Segment(p_type, p_flags, p_offset, p_vaddr, p_filesz, p_memsz, p_align))
        self.segments = tuple(segs)

    def _parse_sections(self, shoff: int, shentsize: int, shnum: int, shstrndx: int) -> None:
        if shoff == 0:
            return
        want = 64 if self.is64 else 40
        if shentsize < want:
            raise BadInput(f"{self.name}: bad section header size")
        fmt = self.endian + ("IIQQQQIIQQ" if self.is64 else "IIIIIIIIII")
        if shnum == 0:
            # More than 0xff00 sections: the real count is in section 0's sh_size.
            first = struct.unpack(fmt, self.read(shoff, want))
            shnum = first[5]
            if shstrndx == 0xFFFF:
                shstrndx = first[6]
        if shnum > MAX_SHDRS:
            raise BadInput(f"{self.name}: too many sections ({shnum})")
        raw = self.read(shoff, shentsize * shnum)
        rows = [struct.unpack_from(fmt, raw, i * shentsize) for i in range(shnum)]
        names = b""
        if 0 < shstrndx < shnum:
            s = rows[shstrndx]
            if s[1] != SHT_NOBITS:
                names = self.read(s[4], s[5])
        secs = []
        by_name: dict[str, Section] = {}
        for r in rows:
            name_off = r[0]
            name = ""
            if name_off < len(names):
                end = names.find(b"\0", name_off)
                name = names[name_off:end if end >= 0 else len(names)].decode("utf-8",
                                                                             "replace")
            sec = Section(name, r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[9])
            secs.append(sec)
            # First one wins: that is what linkers and debuggers do with duplicates.
            by_name.setdefault(name, sec)
        self.sections = tuple(secs)
        self._by_name = by_name

    # -- segments and bias ---------------------------------------------------------

    @property
    def load_segments(self) -> tuple[Segment, ...]:
        """The PT_LOAD segments, in file order."""
        return tuple(s for s in self.segments if s.type == PT_LOAD)

    @property
    def is_pie(self) -> bool:
        """True for a position-independent executable (ET_DYN with an interpreter)."""
        return self.type == ET_DYN and any(s.type == PT_INTERP for s in self.segments)

    @property
    def is_shared(self) -> bool:
        """True for ET_DYN (shared library or PIE): loaded at a bias chosen at run time."""
        return self.type == ET_DYN

    def segment_for_mapping(self, map_offset: int, span: int = 1,
                            perms: str = "") -> Optional[Segment]:
        """The PT_LOAD segment a mapping of file offset `map_offset` (`span` bytes) shows.

        The loader maps each segment from the page below its p_offset, so with rust-lld's
        unpadded layouts one file page can belong to two segments; the mapping's
        permissions ("r-xp") pick the right one.
        """
        want_x = "x" in perms
        want_w = "w" in perms
        best: Optional[Segment] = None
        best_score = -1
        for s in self.load_segments:
            page = _page_of(s)
            lo = s.offset & ~(page - 1)
            hi = s.offset + max(s.filesz, 1)
            if not (lo < map_offset + max(span, 1) and map_offset < hi):
                continue
            score = 0
            if perms:
                score += 4 if s.executable == want_x else 0
                score += 2 if bool(s.flags & PF_W) == want_w else 0
            if lo == map_offset:
                score += 1
            if score > best_score:
                best, best_score = s, score
        return best

    def bias_for_mapping(self, map_start: int, map_offset: int,
                         map_end: Optional[int] = None, perms: str = "") -> Optional[int]:
        """Runtime address minus ELF virtual address, from one mapping of this file.

        A mapping of file offset `map_offset` at `map_start` maps offset x to
        map_start + (x - map_offset); the segment that owns those offsets maps x to
        p_vaddr + (x - p_offset) + bias. Equating gives the bias. Works for non-PIE (0),
        PIE, shared libraries and rust-lld layouts whose segments differ in vaddr-offset.
        """
        span = (map_end - map_start) if map_end is not None else 1
        seg = self.segment_for_mapping(map_offset, span, perms)
        if seg is None:
            return None
        return map_start - map_offset - (seg.vaddr - seg.offset)

    def vaddr_to_offset(self, vaddr: int) -> Optional[int]:
        """File offset of virtual address `vaddr`, or None if no loaded bytes hold it."""
        for s in self.load_segments:
            if s.vaddr <= vaddr < s.vaddr + s.filesz:
                return s.offset + (vaddr - s.vaddr)
        return None

    # -- sections -----------------------------------------------------------------

    def section_header(self, name: str) -> Optional[Section]:
        """The header of the first section called `name` (also tries `.zdebug_*`)."""
        sec = self._by_name.get(name)
        if sec is None and name.startswith(".debug_"):
            sec = self._by_name.get(".z" + name[1:])
        return sec

    def has_section(self, name: str) -> bool:
        sec = self.section_header(name)
        return sec is not None and sec.type != SHT_NOBITS

    def section(self, name: str) -> Optional[tuple[int, bytes]]:
        """(sh_addr, data) of section `name`, decompressed if needed; None if absent.

        SHT_NOBITS sections (e.g. debug sections stripped into a separate file) count
        as absent. Not cached: callers keep what they need.
        """
        sec = self.section_header(name)
        if sec is None or sec.type == SHT_NOBITS:
            return None
        return sec.addr, self.section_data(sec)

    def section_bytes(self, name: str) -> Optional[bytes]:
        """The data of section `name` (as `section` gives it), or None if absent: the
        loader DwarfSections takes."""
        got = self.section(name)
        return got[1] if got is not None else None

    def section_data(self, sec: Section) -> bytes:
        """The bytes of `sec`, decompressed (SHF_COMPRESSED or legacy .zdebug)."""
        if sec.type == SHT_NOBITS:
            return b""
        if sec.size > self.size:
            raise BadInput(f"{self.name}: section {sec.name} is larger than the file")
        raw = self.read(sec.offset, sec.size)
        if sec.compressed:
            return self._decompress_chdr(sec, raw)
        if sec.name.startswith(".zdebug_"):
            return self._decompress_zdebug(sec, raw)
        return raw

    def _decompress_chdr(self, sec: Section, raw: bytes) -> bytes:
        if self.is64:
            if len(raw) < 24:
                raise BadInput(f"{self.name}: truncated compression header in {sec.name}")
            ch_type, _res, ch_size, _align = struct.unpack_from(self.endian + "IIQQ", raw)
            body = raw[24:]
        else:
            if len(raw) < 12:
                raise BadInput(f"{self.name}: truncated compression header in {sec.name}")
            ch_type, ch_size, _align = struct.unpack_from(self.endian + "III", raw)
            body = raw[12:]
        if ch_type == ELFCOMPRESS_ZSTD:
            raise BadInput(f"{self.name}: section {sec.name} is zstd-compressed",
                           "decompress it first: objcopy --decompress-debug-sections")
        if ch_type != ELFCOMPRESS_ZLIB:
            raise BadInput(f"{self.name}: unknown compression {ch_type} in {sec.name}")
        return _inflate(body, ch_size, f"{self.name}: {sec.name}")

    def _decompress_zdebug(self, sec: Section, raw: bytes) -> bytes:
        if len(raw) < 12 or raw[:4] != b"ZLIB":
            return raw  # not actually compressed: .zdebug sections may be stored raw
        size = struct.unpack_from(">Q", raw, 4)[0]
        return _inflate(raw[12:], size, f"{self.name}: {sec.name}")

    # -- notes --------------------------------------------------------------------

    def notes(self) -> list[tuple[bytes, int, bytes]]:
        """(owner, type, desc) of every note, from PT_NOTE segments or SHT_NOTE sections."""
        blobs = []
        for s in self.segments:
            if s.type == PT_NOTE and 0 < s.filesz <= _MAX_NOTE_BYTES:
                blobs.append((self.read(s.offset, s.filesz), s.align))
        if not blobs:
            for sec in self.sections:
                if sec.type == SHT_NOTE and 0 < sec.size <= _MAX_NOTE_BYTES:
                    blobs.append((self.read(sec.offset, sec.size), 4))
        out = []
        for blob, align in blobs:
            out.extend(parse_notes(blob, self.endian, 8 if align == 8 else 4))
        return out

    @property
    def build_id(self) -> Optional[str]:
        """The GNU build-id as lowercase hex, or None."""
        if not self._build_id_read:
            self._build_id_read = True
            try:
                for owner, ntype, desc in self.notes():
                    if owner == b"GNU" and ntype == NT_GNU_BUILD_ID and 0 < len(desc) <= 64:
                        self._build_id = desc.hex()
                        break
            except BadInput:
                self._build_id = None
        return self._build_id

    @property
    def debuglink(self) -> Optional[tuple[str, int]]:
        """(file name, CRC32) from .gnu_debuglink, or None."""
        got = self.section(".gnu_debuglink")
        if got is None:
            return None
        data = got[1]
        end = data.find(b"\0")
        if end <= 0:
            return None
        name = data[:end].decode("utf-8", "replace")
        if "/" in name or name in (".", ".."):
            return None  # a bare file name only: never let the target steer us elsewhere
        crc_off = (end + 4) & ~3
        if crc_off + 4 > len(data):
            return None
        return name, struct.unpack_from(self.endian + "I", data, crc_off)[0]


def parse_notes(blob: bytes, endian: str = "<", align: int = 4) -> list[tuple[bytes, int, bytes]]:
    """Split a note area into (owner without NUL, type, desc); stops at the first bad one."""
    out = []
    pos = 0
    n = len(blob)
    while pos + 12 <= n:
        namesz, descsz, ntype = struct.unpack_from(endian + "III", blob, pos)
        pos += 12
        name_end = pos + namesz
        desc_start = (name_end + align - 1) & ~(align - 1)
        desc_end = desc_start + descsz
        if desc_end > n:
            break
        out.append((blob[pos:name_end].rstrip(b"\0"), ntype, blob[desc_start:desc_end]))
        pos = (desc_end + align - 1) & ~(align - 1)
    return out


def _inflate(body: bytes, size: int, what: str) -> bytes:
    if size > MAX_SECTION_BYTES:
        raise BadInput(f"{what}: decompressed size {size} is too large")
    # zlib cannot expand more than ~1032:1; a larger claim is a lie (or a bomb).
    if size > 1100 * len(body) + 1024:
        raise BadInput(f"{what}: decompressed size {size} is impossible")
    d = zlib.decompressobj()
    try:
        out = d.decompress(body, size)
    except zlib.error as e:
        raise BadInput(f"{what}: corrupt compressed data ({e})") from None
    if len(out) != size:
        raise BadInput(f"{what}: decompressed to {len(out)} bytes, header says {size}")
    return out


def _page_of(seg: Segment) -> int:
    # p_align of PT_LOAD is the page size the file was linked for (4 KiB .. 64 KiB);
    # anything odd falls back to 4 KiB.
    a = seg.align
    if a >= 4096 and (a & (a - 1)) == 0 and a <= (1 << 21):
        return a
    return 4096
