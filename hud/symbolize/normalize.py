"""/proc/PID/maps to modules: which file holds an address, how to open it, and its bias.

A module is one ELF file as mapped into the target (all its consecutive mappings), the
vdso, or an anonymous / JIT range. Files are opened through /proc/PID/map_files (the very
inode that is mapped, also when deleted, replaced or in another mount namespace) and, when
that is not allowed, through /proc/PID/root; never through the bare path, which on our side
of a container boundary may name a different file.
"""
from __future__ import annotations

import bisect
import os
import time
from dataclasses import dataclass
from typing import Optional

from hud.errors import BadInput
from hud.linux import procfs
from hud.linux.procfs import MapEntry
from hud.symbolize.elf import ElfFile

KIND_ELF = "elf"
KIND_VDSO = "vdso"
KIND_ANON = "anon"
KIND_JIT = "jit"
KIND_UNKNOWN = "unknown"

_DELETED = " (deleted)"
_SHARED_ANON = ("/dev/zero (deleted)", "/SYSV", "/dev/shm/")
_VDSO_MAX = 1 << 20   # the vdso is a few pages; refuse to read more than this


@dataclass(frozen=True)
class Module:
    """One mapped object of a process.

    `bias` is runtime address minus ELF virtual address (0 for non-PIE executables), so
    `addr - bias` is the address to look up in the file's symbols and DWARF.
    """

    path: str             # as the target sees it (maps path), e.g. "[vdso]"
    open_path: str        # where hud reads the file (map_files or root path); "" if none
    start: int            # lowest mapped address
    end: int              # highest mapped address (exclusive)
    bias: int             # runtime address - ELF virtual address
    build_id: Optional[str]
    kind: str             # "elf" | "vdso" | "anon" | "jit" | "unknown"
    dev: str = ""
    inode: int = 0
    reason: str = ""      # why kind is "unknown", when it is

    def to_vaddr(self, addr: int) -> int:
        """The ELF virtual address of runtime address `addr`."""
        return addr - self.bias

    @property
    def deleted(self) -> bool:
        return self.path.endswith(_DELETED)

    @property
    def file_path(self) -> str:
        """`path` without the " (deleted)" marker."""
        return self.path[:-len(_DELETED)] if self.deleted else self.path


class ProcessMaps:
    """The modules of one process, refreshed from /proc/PID/maps on demand."""

    def __init__(self, pid: int, miss_refresh_interval: float = 0.05) -> None:
        self.pid = pid
        self.miss_refresh_interval = miss_refresh_interval
        self._modules: list[Module] = []
        self._starts: list[int] = []
        self._ranges: list[tuple[int, int, Module]] = []
        self._code: list[tuple[int, int]] = []       # executable mappings of modules
        self._code_starts: list[int] = []
        # Modules survive refreshes: re-reading ELF headers of unchanged mappings is waste.
        self._known: dict[tuple, Module] = {}
        self._last_miss_refresh = 0.0
        self.refresh()

    def refresh(self) -> None:
        """Re-read /proc/PID/maps (an empty list when the process is gone)."""
        entries = procfs.read_maps(self.pid)
        modules: list[Module] = []
        ranges: list[tuple[int, int, Module]] = []
        known: dict[tuple, Module] = {}
        for group in _group(entries):
            first = group[0]
            key = (first.dev, first.inode, first.path, first.start, first.offset,
                   group[-1].end, len(group))
            mod = self._known.get(key)
            if mod is None:
                mod = self._make_module(group)
            known[key] = mod
            modules.append(mod)
            for e in group:
                ranges.append((e.start, e.end, mod))
        ranges.sort(key=lambda r: r[0])
        self._code = [(e.start, e.end) for e in entries if e.executable]
        self._code.sort()
        self._code_starts = [c[0] for c in self._code]
        self._known = known
        self._modules = modules
        self._ranges = ranges
        self._starts = [r[0] for r in ranges]

    def find(self, addr: int) -> Optional[Module]:
        """The module mapping `addr`; re-reads the maps once on a miss (a new dlopen)."""
        mod = self._lookup(addr)
        if mod is None:
            now = time.monotonic()
            if now - self._last_miss_refresh >= self.miss_refresh_interval:
                self._last_miss_refresh = now
                self.refresh()
                mod = self._lookup(addr)
        return mod

    def find_known(self, addr: int) -> Optional[Module]:
        """The module mapping `addr` among those already read, never re-reading the maps
        (for callers that ask about arbitrary words, most of which map nothing)."""
        return self._lookup(addr)

    def is_code(self, addr: int) -> bool:
        """Whether `addr` lies in an executable mapping already read (no re-read)."""
        i = bisect.bisect_right(self._code_starts, addr) - 1
        return i >= 0 and addr < self._code[i][1]

    def modules(self) -> list[Module]:
        """All modules, in address order."""
        return list(self._modules)

    def read_vdso(self, module: Module) -> Optional[bytes]:
        """The vdso image of the target (or, failing that, ours: the kernel's is the same)."""
        if module.kind != KIND_VDSO or not 0 < module.end - module.start <= _VDSO_MAX:
            return None
        data = _read_mem(self.pid, module.start, module.end - module.start)
        if data is not None:
            return data
        for e in procfs.read_maps(os.getpid()):
            if e.path == "[vdso]" and 0 < e.end - e.start <= _VDSO_MAX:
                return _read_mem(os.getpid(), e.start, e.end - e.start)
        return None

    def _lookup(self, addr: int) -> Optional[Module]:
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0:
            start, end, mod = self._ranges[i]
            if start <= addr < end:
                return mod
        return None

    def _make_module(self, group: list[MapEntry]) -> Module:
        first = group[0]
        start, end = first.start, max(e.end for e in group)
        execs = [e for e in group if e.executable]
        if first.path == "[vdso]":
            return self._vdso_module(first)
        if not first.file_backed:
            kind = KIND_JIT if execs and not first.path.startswith("[") else KIND_ANON
            return Module(first.path, "", start, end, 0, None, kind, first.dev, first.inode)
        if first.path.startswith(_SHARED_ANON):
            # Shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS, SysV shm): not a file.
            kind = KIND_JIT if execs else KIND_ANON
            return Module(first.path, "", start, end, 0, None, kind, first.dev, first.inode)
        elf, open_path, why = self._open(first)
        if elf is None:
            kind = KIND_JIT if execs and first.path.startswith("/memfd:") else KIND_UNKNOWN
            return Module(first.path, "", start, end, 0, None, kind, first.dev, first.inode,
                          why)
        with elf:
            ref = execs[0] if execs else first
            bias = elf.bias_for_mapping(ref.start, ref.offset, ref.end, ref.perms)
            build_id = elf.build_id
        if bias is None:
            return Module(first.path, open_path, start, end, 0, build_id, KIND_UNKNOWN,
                          first.dev, first.inode, "no ELF segment matches the mapping")
        return Module(first.path, open_path, start, end, bias, build_id, KIND_ELF,
                      first.dev, first.inode)

    def _open(self, entry: MapEntry) -> tuple[Optional[ElfFile], str, str]:
        """Open the mapped file: map_files first, then the target's root (same inode only)."""
        why = ""
        path = procfs.map_files_path(self.pid, entry)
        try:
            return ElfFile.open(path), path, ""
        except BadInput as e:
            why = e.message
        clean = entry.path[:-len(_DELETED)] if entry.path.endswith(_DELETED) else entry.path
        path = procfs.root_path(self.pid, clean)
        try:
            st = os.stat(path)
        except OSError as e:
            return None, "", f"{why}; {path}: {e.strerror}"
        if st.st_ino != entry.inode or _dev_text(st.st_dev) != entry.dev:
            # Replaced on disk since it was mapped: its symbols would be wrong.
            return None, "", f"{why}; {path} is not the mapped file (replaced)"
        try:
            return ElfFile.open(path), path, ""
        except BadInput as e:
            return None, "", e.message

    def _vdso_module(self, entry: MapEntry) -> Module:
        data = self.read_vdso(Module(entry.path, "", entry.start, entry.end, 0, None,
                                     KIND_VDSO))
        bias, build_id, why = entry.start, None, ""
        if data is None:
            why = "cannot read the vdso"
        else:
            try:
                with ElfFile.from_bytes(data, "[vdso]") as elf:
                    b = elf.bias_for_mapping(entry.start, 0, entry.end, "r-xp")
                    bias = entry.start if b is None else b
                    build_id = elf.build_id
            except BadInput as e:
                why = e.message
        return Module(entry.path, "", entry.start, entry.end, bias, build_id, KIND_VDSO,
                      entry.dev, entry.inode, why)


def _group(entries: list[MapEntry]) -> list[list[MapEntry]]:
    """Consecutive mappings of one file (same dev, inode and path) form one module."""
    groups: list[list[MapEntry]] = []
    for e in entries:
        if groups:
            last = groups[-1][-1]
            if (e.file_backed and last.file_backed and e.path == last.path
                    and e.inode == last.inode and e.dev == last.dev and e.start >= last.end
                    and e.offset >= groups[-1][0].offset):
                groups[-1].append(e)
                continue
        groups.append([e])
    return groups


def _dev_text(st_dev: int) -> str:
    # /proc/PID/maps prints the device as major:minor in hex, at least two digits each.
    return f"{os.major(st_dev):02x}:{os.minor(st_dev):02x}"


def _read_mem(pid: int, addr: int, size: int) -> Optional[bytes]:
    try:
        fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.pread(fd, size, addr)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data if len(data) == size else None
