"""Addresses to frames: the public Symbolizer (per file, cached by build-id) and the
ProcessSymbolizer (runtime addresses of one process, through its maps).

Every failure below this point is data: an address that cannot be resolved becomes a
Frame with function=None and a reason, never an exception.
"""
from __future__ import annotations

import gc
import os
import struct
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Optional

from hud.errors import BadInput
from hud.model import PLAIN_FRAME, Frame
from hud.symbolize import fanout, lazysection
from hud.symbolize.altfile import find_alt_file
from hud.symbolize.debugfile import find_debug_file
from hud.symbolize.demangle import demangle, split_top
from hud.symbolize.diskcache import MAX_ENTRIES, SymbolCache, content_key
from hud.symbolize.dwarf import DwarfInfo
from hud.symbolize.dwarf_units import DwarfSections
from hud.symbolize.elf import SHT_NOBITS, ElfFile
from hud.symbolize.minidebug import has_symtab, symbol_files
from hud.symbolize.normalize import (
    KIND_ANON,
    KIND_ELF,
    KIND_JIT,
    KIND_VDSO,
    Module,
    ProcessMaps,
)
from hud.symbolize.splitdwarf import SplitUnits
from hud.symbolize.symtab import SymbolTable

if TYPE_CHECKING:
    from hud.symbolize.debuginfod import Debuginfod

# What hostile bytes can raise from deep inside the decoders: all of it becomes a reason.
DATA_ERRORS = (BadInput, IndexError, KeyError, ValueError, OverflowError, struct.error,
               UnicodeError, zlib.error, RecursionError)

_NO_NAME = "DWARF gives this level no name"
_MAX_CACHED = 1 << 18


class ObjectSymbols:
    """Symbols and DWARF of one object file (and its separate debug file), loaded lazily.

    `frames(vaddr, address, module)` gives a Frame per inline level, innermost first (a
    level without a name carries the reason). Frames are cached per address, and with a
    `cache` (and a build-id) the resolved levels on disk: read at the first lookup,
    written by `save_cache()`.
    """

    def __init__(self, elf: ElfFile, target_path: str = "", root: str = "",
                 debug_dirs: Sequence[str] = (), debug_files: Sequence[str] = (), *,
                 cache: Optional[SymbolCache] = None, build_id: Optional[str] = None,
                 fetch: Optional[Callable[[str], tuple[Optional[str], str]]] = None,
                 jobs: Optional[int] = 1) -> None:
        self.elf = elf
        self.jobs = jobs
        self.debug: Optional[ElfFile] = None
        self.debug_note = ""
        self.mini_note = ""     # why an embedded .gnu_debugdata was not used, if it was not
        if fetch is not None and _has_dwarf(elf):
            fetch = None   # DWARF of its own: nothing to download
        try:
            self.debug, self.debug_note = find_debug_file(elf, target_path or elf.name, root,
                                                         debug_dirs, debug_files, fetch)
        except DATA_ERRORS as e:
            self.debug_note = f"debug file search failed: {e}"
        # Where the binary is on our side (.dwp and relative links are found from it).
        binary_path = root + target_path if target_path.startswith("/") else elf.name
        # Split DWARF: .dwo files where the skeletons say, or <binary>.dwp beside it.
        self._split = SplitUnits(binary_path, root)
        # A dwz-compressed debug file keeps shared DIEs and strings in a supplementary file.
        self.alt: Optional[ElfFile] = None
        self.alt_note = ""
        holder, holder_path = self.debug, self.debug_note
        if holder is None or not holder.has_section(".debug_info"):
            holder, holder_path = elf, binary_path
        try:
            self.alt, self.alt_note = find_alt_file(holder, holder_path, root, debug_dirs,
                                                    fetch)
        except DATA_ERRORS as e:
            self.alt_note = f"dwz file search failed: {e}"
        self._symtab: Optional[SymbolTable] = None
        self._dwarf: Optional[DwarfInfo] = None
        self._dwarf_why = ""
        self._dwarf_loaded = False
        self._frames: dict[tuple, dict[int, tuple[Frame, ...]]] = {}
        self._nframes = 0
        self._disk_cache = cache if build_id else None
        self._build_id = build_id or ""
        self._disk_key = ""
        self._disk: Optional[dict[int, tuple]] = None    # None until the first lookup
        self._fresh: dict[int, tuple] = {}                # resolved here, not on disk yet
        self._helpers: list[fanout.Helper] = []           # slices of a batch being resolved
        self.helped = 0                                   # addresses helpers resolved

    def close(self) -> None:
        """Release the file descriptors of the object and its debug file."""
        for helper in self._helpers:
            helper.abandon()
        self._helpers = []
        if self._dwarf is not None:
            self._dwarf.sections.close()
        self.elf.close()
        if self.debug is not None:
            self.debug.close()
        if self.alt is not None:
            self.alt.close()
        self._split.close()

    @property
    def symtab(self) -> SymbolTable:
        if self._symtab is None:
            files = [self.debug, self.elf] if self.debug is not None else [self.elf]
            # Stripped to .dynsym, no debug file: its MiniDebugInfo, if any, names the
            # functions .dynsym leaves out (as gdb and elfutils read it).
            files, self.mini_note = symbol_files(files, self.elf)
            try:
                self._symtab = SymbolTable(files)
            except DATA_ERRORS:
                self._symtab = SymbolTable([])
        return self._symtab

    @property
    def names_functions(self) -> bool:
        """Whether anything names this object's functions: a symbol table or DWARF, in
        it or in its debug file, or MiniDebugInfo. Without, its frames are addresses."""
        files = [self.elf] if self.debug is None else [self.elf, self.debug]
        return (any(has_symtab(f) or f.has_section(".debug_info") for f in files)
                or self.elf.has_section(".gnu_debugdata"))

    @property
    def dwarf(self) -> Optional[DwarfInfo]:
        if not self._dwarf_loaded:
            self._dwarf_loaded = True
            src = None
            for f in (self.debug, self.elf):
                if f is not None and f.has_section(".debug_info"):
                    src = f
                    break
            if src is None:
                self._dwarf_why = "no DWARF (stripped, and no debug file found)"
            elif src.endian != "<":
                self._dwarf_why = "big-endian DWARF is not supported"
            else:
                try:
                    sections = _sections_of(src)
                    if self.alt is not None:
                        sections.alt = _sections_of(self.alt)
                    self._dwarf = DwarfInfo(sections, demangle, self._split)
                except DATA_ERRORS as e:
                    self._dwarf_why = f"unreadable DWARF: {e}"
        return self._dwarf

    def _levels(self, vaddr: int) -> tuple:
        """(function, file, line, column) of the innermost level at `vaddr`, the levels
        of its callers (shared with other addresses: never modified) and why the answer
        is incomplete, if it is."""
        disk = self._disk
        if disk is None:
            disk = self._load_disk()
        got = disk.get(vaddr)
        if got is not None:
            return got
        if self._helpers and self._collect(vaddr):
            got = disk.get(vaddr)
            if got is not None:
                return got
        got, keep = self._resolve(vaddr)
        if keep and self._disk_cache is not None and len(self._fresh) < MAX_ENTRIES:
            self._fresh[vaddr] = got
        return got

    def _resolve(self, vaddr: int) -> tuple[tuple, bool]:
        """The levels at `vaddr` from the file, and whether they may be kept."""
        try:
            return self._locate(vaddr), True
        except DATA_ERRORS as e:
            # Not kept: a RecursionError depends on the caller's stack, not the file.
            return (None, None, None, None, (), f"corrupt input: {e}"), False

    def _resolve_slice(self, vaddrs: list[int]) -> dict[int, tuple]:
        """A helper's work (hud.symbolize.fanout): the levels of its slice."""
        self._helpers = []   # the parent's, not ours to wait for
        dwarf = self.dwarf
        if dwarf is not None:
            self._prepare_units(dwarf, vaddrs, self.symtab)
        out = {}
        for v in vaddrs:
            got, keep = self._resolve(v)
            if keep:
                out[v] = got
        return out

    def _collect(self, vaddr: int) -> bool:
        """Take in the answer of the helper resolving `vaddr`, if one is; True if so."""
        for k, helper in enumerate(self._helpers):
            if helper.covers(vaddr):
                del self._helpers[k]
                got = helper.collect()
                if got:
                    self.helped += len(got)
                    self._disk.update(got)
                    if self._disk_cache is not None:
                        room = MAX_ENTRIES - len(self._fresh)
                        if room > 0:
                            self._fresh.update(list(got.items())[:room])
                return True
        return False

    def settle(self) -> None:
        """Take in every helper's answer still outstanding (the end of a batch)."""
        while self._helpers:
            self._collect(self._helpers[0].lo)

    def _load_disk(self) -> dict[int, tuple]:
        self._disk = {}
        cache = self._disk_cache
        if cache is not None and not cache.disabled:
            try:
                # Hashes the object and debug file (~15 ms for 17 MB): the build-id alone
                # does not say which of them, stripped or not, the answers came from.
                self._disk_key = content_key((self.elf, self.debug, self.alt))
            except DATA_ERRORS:
                self._disk_cache = None
                return self._disk
            self._disk = cache.load(self._build_id, self._disk_key)
        return self._disk

    def save_cache(self) -> bool:
        """Write the addresses resolved since loading to the disk cache (merged with
        what is there); True when a file was written."""
        cache = self._disk_cache
        if cache is None or not self._fresh or not self._disk_key:
            return False
        # Ours first: when the union is over the bound, the older entries give way.
        entries = {**self._fresh, **(self._disk or {})}
        self._fresh = {}
        # Encoding allocates a few hundred thousand acyclic objects, each collection of
        # them walking the whole heap of resolved frames.
        with _gc_paused():
            return cache.store(self._build_id, self._disk_key, entries)

    def _locate(self, vaddr: int) -> tuple:
        dwarf = self.dwarf
        name = file = line = col = None
        callers: tuple = ()
        why = self._dwarf_why
        if dwarf is not None:
            name, file, line, col, callers, why = dwarf.lookup(vaddr,
                                                               self.symtab.span_of(vaddr))
            if callers is None:
                callers = ()
        outer = callers[-1][0] if callers else name
        if outer is not None and _unqualified(outer):
            # DWARF without linkage names (rustc's debug = "line-tables-only") names a
            # function by its last path segment only ("run_task"); the outermost level is
            # the symbol's own function, whose symbol gives the whole path.
            sym = self.symtab.lookup(vaddr)
            full = demangle(sym[0]) if sym is not None and sym[0] else None
            if full is not None and full != outer and _same_function(outer, full):
                if callers:
                    last = callers[-1]
                    callers = (*callers[:-1], (full, last[1], last[2], last[3]))
                else:
                    name = full
        # The outermost level is the real function: fall back to the symbol table.
        if (callers[-1][0] if callers else name) is None:
            sym = self.symtab.lookup(vaddr)
            if sym is not None:
                func = demangle(sym[0]) if sym[0] else None
                if callers:
                    last = callers[-1]
                    callers = (*callers[:-1], (func, last[1], last[2], last[3]))
                else:
                    if file is None:
                        # No DWARF at all: binutils names the symbol's STT_FILE (an
                        # object or codegen-unit name): still where the code came from.
                        file = self.symtab.file_of(vaddr)
                    name = func
            if (callers[-1][0] if callers else name) is None and not why:
                why = "no symbol covers this address"
        return name, file, line, col, callers, why

    def prepare(self, vaddrs: Sequence[int]) -> None:
        """Hint that these addresses come next (lets big batches index units whole)."""
        if len(vaddrs) < 64:
            return
        disk = self._disk if self._disk is not None else self._load_disk()
        if disk:
            # Addresses found on disk need no DWARF: index units only for the rest.
            vaddrs = [v for v in vaddrs if v not in disk]
            if len(vaddrs) < 64:
                return
        dwarf = self.dwarf
        if dwarf is None:
            return
        symtab = self.symtab   # before any helper is forked: they share it
        self.settle()
        if len(vaddrs) >= fanout.FANOUT_MIN:
            vaddrs = self._fan_out(vaddrs, dwarf)
        self._prepare_units(dwarf, vaddrs, symtab)

    @staticmethod
    def _prepare_units(dwarf: DwarfInfo, vaddrs: Sequence[int], symtab: SymbolTable) -> None:
        try:
            dwarf.prepare(vaddrs, symtab)
        except DATA_ERRORS:
            pass   # each address will say what is wrong when it is resolved

    def _fan_out(self, vaddrs: Sequence[int], dwarf: DwarfInfo) -> Sequence[int]:
        """Hand slices of a big cold batch to helper processes (hud.symbolize.fanout);
        the addresses left for this process."""
        todo = sorted(set(vaddrs))
        parts = fanout.jobs_for(len(todo), self.jobs)
        # Helpers pay off where the batch is decoding. Lookups in units already decoded
        # would write to pages shared with this process, each write a page copy: on the
        # fixture a helper took 2.4x as long as this process would have.
        if parts < 2 or dwarf.untouched_share(todo) < 0.25:
            return vaddrs
        slices = fanout.split(todo, parts)
        # The first slice is ours; the helpers' answers are taken in when the caller's
        # address-ordered walk reaches their slices (or by settle()).
        mine = slices[0]
        for piece in slices[1:]:
            helper = fanout.start(self._resolve_slice, piece)
            if helper is None:
                mine = mine + piece
            else:
                self._helpers.append(helper)
        return mine

    def frames(self, vaddr: int, address: int, module: Optional[str]) -> tuple[Frame, ...]:
        """Frames for one address: `vaddr` to look up, `address` to report."""
        # Cached per (load bias, module), then per address: no key object per address.
        per = self._frames.get((address - vaddr, module))
        if per is None:
            per = self._frames[(address - vaddr, module)] = {}
        got = per.get(vaddr)
        if got is not None:
            return got
        name, file, line, col, callers, why = self._levels(vaddr)
        make = make_frame
        reason = why or (self.alt_note or _NO_NAME)
        if not callers:
            got = (make(address, name, file, line, col, False, module,
                        None if name is not None else reason),)
        else:
            out = [make(address, name, file, line, col, True, module,
                        None if name is not None else reason)]
            last = len(callers) - 1
            for k, (name, file, line, col) in enumerate(callers):
                out.append(make(address, name, file, line, col, k < last, module,
                                None if name is not None else reason))
            got = tuple(out)
        self._nframes += 1
        if self._nframes > _MAX_CACHED:
            # A crude bound: profiles revisit few distinct addresses.
            self._frames.clear()
            self._nframes = 1
            per = self._frames[(address - vaddr, module)] = {}
        per[vaddr] = got
        return got


def _has_dwarf(elf: ElfFile) -> bool:
    try:
        return elf.has_section(".debug_info") and elf.has_section(".debug_line")
    except DATA_ERRORS:
        return False


def _unqualified(name: str) -> bool:
    # Once per address on a cold batch: no character walk. A demangled path starts with
    # its crate (or "<" for an impl), so its "::"s come before the first "<" when it has
    # more than one segment.
    return not name.startswith("<") and "::" not in name.split("<", 1)[0]


def _same_function(short: str, full: str) -> bool:
    """Is `full` (a symbol's demangled path) the function DWARF calls `short`? The
    last segments agree without their generic arguments, which the two spell
    differently (closures: "{closure#0}" / "{{closure}}", async bodies: "{async_fn#0}").
    A shim's symbol names the function it wraps (`FnOnce::call_once{{vtable.shim}}`,
    v0 `...::call_once::{shim:vtable#0}`); its DWARF, that function."""
    segments = split_top(full, "::")
    last = segments[-1]
    if last.startswith("{shim:") and len(segments) > 1:
        last = segments[-2]
    elif last.endswith(".shim}}") and "{{" in last:
        last = last[:last.index("{{")]
    if short.startswith("{") or last.startswith("{"):
        return short.startswith("{") and last.startswith("{")
    return short.split("<", 1)[0] == last.split("<", 1)[0]


def _frame_by_init(address: int, function: Optional[str], file: Optional[str],
                   line: Optional[int], column: Optional[int], inlined: bool,
                   module: Optional[str], reason: Optional[str]) -> Frame:
    return Frame(address=address, function=function, file=file, line=line, column=column,
                 inlined=inlined, module=module, reason=reason)


def _frame_by_dict(address: int, function: Optional[str], file: Optional[str],
                   line: Optional[int], column: Optional[int], inlined: bool,
                   module: Optional[str], reason: Optional[str]) -> Frame:
    # A frozen dataclass's __init__ pays object.__setattr__ per field (2.6 us a frame);
    # filling __dict__ directly makes the same object in a seventh of that (item stores
    # beat update(**kwargs), which builds a dict first). Only used while Frame is a plain
    # dataclass (model.PLAIN_FRAME) with these fields: see _FAST_FRAMES.
    f = _new(Frame)
    d = f.__dict__
    d["address"] = address
    d["function"] = function
    d["file"] = file
    d["line"] = line
    d["column"] = column
    d["inlined"] = inlined
    d["module"] = module
    d["cls"] = _CLS
    d["reason"] = reason
    return f


_new = object.__new__
_CLS = Frame.__dataclass_fields__["cls"].default
_FAST_FRAMES = PLAIN_FRAME and set(Frame.__dataclass_fields__) == {
    "address", "function", "file", "line", "column", "inlined", "module", "cls", "reason"}
make_frame = _frame_by_dict if _FAST_FRAMES else _frame_by_init


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for one batch.

    Decoding a big batch allocates hundreds of thousands of long-lived, acyclic tuples and
    lists: nothing the collector could free, but every 25% of growth it walks all of them
    again (a gen-2 pass; 0.4-0.6 s of 3 s for 20,000 cold addresses). Paused, the heap is
    walked once, by the first full collection after the batch."""
    was_enabled = gc.isenabled()
    if was_enabled:
        gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _sections_of(elf: ElfFile) -> DwarfSections:
    return DwarfSections(elf.section_bytes, _lazy_loader(elf))


# Sections whose readers know how to read a piece at a time (DwarfSections.ensure);
# compressed ones must be inflated whole. .debug_abbrev and .debug_aranges are read
# whole: small, and the address index needs all of the latter.
_LAZY_SECTIONS = frozenset((".debug_info", ".debug_str", ".debug_line", ".debug_line_str",
                            ".debug_ranges", ".debug_rnglists", ".debug_addr",
                            ".debug_str_offsets"))


def _lazy_loader(elf: ElfFile):
    def lazy(name: str) -> Optional[lazysection.LazySection]:
        if name not in _LAZY_SECTIONS:
            return None
        sec = elf.section_header(name)
        if (sec is None or sec.type == SHT_NOBITS or sec.compressed
                or sec.name.startswith(".zdebug_") or sec.size < lazysection.LAZY_MIN
                or sec.offset + sec.size > elf.size):
            return None   # read whole (or refused with its error) by the plain loader
        try:
            return lazysection.LazySection(elf.read, sec.offset, sec.size,
                                           f"{elf.name} {name}")
        except (OSError, ValueError, OverflowError):
            return None   # no address space for the mapping (strict overcommit): whole
    return lazy


class Symbolizer:
    """Process-independent symbolization, with per-object caches keyed by build-id.

    `debug_dirs` are searched before /usr/lib/debug (build-id trees and debuglink
    names); `debug_files` are candidate debug files matched to binaries by build-id.
    With `cache_dir` (see `hud.symbolize.diskcache.default_cache_dir`), resolved
    addresses of objects with a build-id are kept on disk for the next process: read
    on first use, written by `close()`. None (the default) keeps nothing on disk.
    With `debuginfod` (hud.symbolize.debuginfod), an object with no DWARF and no local
    debug file has its debug file fetched by build-id.
    `jobs` above 1 (None: one per usable CPU) lets a big cold batch be resolved in
    that many processes, helpers forked while this process has one thread
    (hud.symbolize.fanout): for one-shot batches such as `hud addr2line`. Units a
    helper decoded stay decoded in the helper only, so a later batch in them is cold.
    """

    def __init__(self, debug_dirs: Sequence[str] = (),
                 debug_files: Sequence[str] = (), cache_dir: Optional[str] = None,
                 debuginfod: Optional[Debuginfod] = None, jobs: Optional[int] = 1) -> None:
        self.jobs = jobs
        self.debug_dirs = tuple(debug_dirs)
        self.debug_files = tuple(debug_files)
        self.debuginfod = debuginfod
        self.cache: Optional[SymbolCache] = SymbolCache(cache_dir) if cache_dir else None
        self._objects: dict[object, ObjectSymbols] = {}
        self._failed: dict[object, str] = {}

    def close(self) -> None:
        """Write the disk cache (if any) and close every file this symbolizer opened."""
        done: set[int] = set()
        for obj in self._objects.values():
            if id(obj) in done:
                continue   # one object under its file key and its build-id
            done.add(id(obj))
            try:
                obj.save_cache()
            finally:
                obj.close()
        self._objects.clear()

    def __enter__(self) -> Symbolizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def object_for_path(self, path: str, target_path: str = "",
                        root: str = "") -> tuple[Optional[ObjectSymbols], str]:
        """The (cached) symbols of the file at `path`, or (None, why)."""
        try:
            st = os.stat(path)
        except OSError as e:
            return None, f"cannot open {path}: {e.strerror}"
        fkey = ("file", st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        obj = self._objects.get(fkey)
        if obj is not None:
            return obj, ""
        if fkey in self._failed:
            return None, self._failed[fkey]
        try:
            elf = ElfFile.open(path)
        except BadInput as e:
            self._failed[fkey] = e.message
            return None, e.message
        return self._adopt(elf, fkey, target_path or path, root), ""

    def object_for_bytes(self, data: bytes, name: str) -> tuple[Optional[ObjectSymbols], str]:
        """Symbols of an in-memory image (the vdso), cached by build-id."""
        try:
            elf = ElfFile.from_bytes(data, name)
        except BadInput as e:
            return None, e.message
        return self._adopt(elf, ("bytes", name, zlib.crc32(data), len(data)), name, ""), ""

    def _adopt(self, elf: ElfFile, fkey: object, target_path: str, root: str) -> ObjectSymbols:
        bid = None
        try:
            bid = elf.build_id
        except DATA_ERRORS:
            bid = None
        if bid:
            obj = self._objects.get(("build-id", bid))
            if obj is not None:
                elf.close()
                self._objects[fkey] = obj
                return obj
        obj = ObjectSymbols(elf, target_path, root, self.debug_dirs, self.debug_files,
                            cache=self.cache, build_id=bid,
                            fetch=self.debuginfod.fetch if self.debuginfod else None,
                            jobs=self.jobs)
        self._objects[fkey] = obj
        if bid:
            self._objects[("build-id", bid)] = obj
        return obj

    def symbolize_file(self, path: str, addrs: Sequence[int],
                       return_addresses: bool = False) -> list[tuple[Frame, ...]]:
        """Frames for ELF virtual addresses of the file at `path`.

        With `return_addresses`, each address is a return address and `addr - 1` is looked
        up (the call instruction); reported addresses stay as given.
        """
        with _gc_paused():
            obj, why = self.object_for_path(path)
            if obj is None:
                return [(Frame(address=a, module=path, reason=why),) for a in addrs]
            vaddrs = [a - 1 if return_addresses and a > 0 else a for a in addrs]
            obj.prepare(vaddrs)
            frames = obj.frames
            if len(addrs) >= 64:
                # Resolve in address order: consecutive lookups then fall in the same
                # unit, function and line sequence, which the lookups remember.
                out: list = [None] * len(addrs)
                for i in sorted(range(len(addrs)), key=vaddrs.__getitem__):
                    out[i] = frames(vaddrs[i], addrs[i], path)
                obj.settle()
                return out
            return [frames(v, a, path) for v, a in zip(vaddrs, addrs)]

    def for_process(self, pid: int) -> ProcessSymbolizer:
        """A symbolizer of runtime addresses of process `pid`, sharing these caches."""
        return ProcessSymbolizer(self, pid)


class ProcessSymbolizer:
    """Runtime addresses of one process to frames, through its /proc maps."""

    def __init__(self, symbolizer: Symbolizer, pid: int) -> None:
        self.symbolizer = symbolizer
        self.pid = pid
        self.maps = ProcessMaps(pid)
        self._by_module: dict[Module, tuple[Optional[ObjectSymbols], str]] = {}

    def symbolize(self, ips: Sequence[int],
                  first_is_exact: bool = True) -> list[tuple[Frame, ...]]:
        """One tuple of frames per ip, innermost inline level first.

        `ips` is a stack, innermost first: every ip but the first (or all, when
        `first_is_exact` is False) is a return address, so `ip - 1` is looked up.
        """
        return self._batch([(ip, k == 0 and first_is_exact) for k, ip in enumerate(ips)])

    def symbolize_addresses(self, ips: Sequence[int],
                            return_addresses: bool = False) -> list[tuple[Frame, ...]]:
        """One tuple of frames per ip, as `Symbolizer.symbolize_file` for runtime
        addresses: all exact, or all return addresses (`ip - 1` looked up)."""
        return self._batch([(ip, not return_addresses) for ip in ips])

    def _batch(self, items: list[tuple[int, bool]]) -> list[tuple[Frame, ...]]:
        with _gc_paused():
            if len(items) >= 64:
                self._prepare(items)
                # In address order first (see Symbolizer.symbolize_file).
                for ip, exact in sorted(set(items)):
                    self.symbolize_one(ip, exact)
                for obj, _why in self._by_module.values():
                    if obj is not None:
                        obj.settle()
            return [self.symbolize_one(ip, exact) for ip, exact in items]

    def _prepare(self, items: list[tuple[int, bool]]) -> None:
        by_module: dict[Module, list[int]] = {}
        for ip, exact in items:
            mod = self.maps.find(ip)
            if mod is not None and mod.kind == KIND_ELF:
                by_module.setdefault(mod, []).append(mod.to_vaddr(ip) - (0 if exact else 1))
        for mod, vaddrs in by_module.items():
            obj, _why = self._object(mod)
            if obj is not None:
                obj.prepare(vaddrs)

    def symbolize_one(self, ip: int, exact: bool = True) -> tuple[Frame, ...]:
        """Frames of one runtime address; `exact` False for a return address."""
        mod = self.maps.find(ip)
        if mod is None:
            return (Frame(address=ip, reason="no mapping holds this address"),)
        if mod.kind == KIND_ANON:
            return (Frame(address=ip, module=mod.path or None,
                          reason="anonymous memory (no file)"),)
        if mod.kind == KIND_JIT:
            return (Frame(address=ip, module=mod.path or None,
                          reason="JIT or generated code (anonymous executable memory)"),)
        obj, why = self._object(mod)
        if obj is None:
            return (Frame(address=ip, module=mod.path, reason=why or mod.reason or None),)
        vaddr = mod.to_vaddr(ip)
        return obj.frames(vaddr if exact else vaddr - 1, ip, mod.path)

    def _object(self, mod: Module) -> tuple[Optional[ObjectSymbols], str]:
        got = self._by_module.get(mod)
        if got is None:
            if mod.kind == KIND_VDSO:
                data = self.maps.read_vdso(mod)
                got = (self.symbolizer.object_for_bytes(data, "[vdso]") if data
                       else (None, "cannot read the vdso"))
            elif mod.kind == KIND_ELF and mod.open_path:
                got = self.symbolizer.object_for_path(mod.open_path, mod.path,
                                                      f"/proc/{self.pid}/root")
            else:
                got = (None, mod.reason or f"cannot read {mod.path}")
            self._by_module[mod] = got
        return got
