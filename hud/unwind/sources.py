"""Per-module unwind information: CFI tables read from the module's ELF (or the vdso image),
and the module's FP/CFI strategy, decided by a prologue scan on first need."""
from __future__ import annotations

from typing import Any, Callable, Optional

from hud.errors import HudError
from hud.symbolize.elf import ElfFile
from hud.symbolize.minidebug import symbol_files
from hud.symbolize.normalize import KIND_ELF, KIND_VDSO, Module
from hud.symbolize.symtab import SymbolTable
from hud.unwind import prologue
from hud.unwind.cfi import FrameSection
from hud.unwind.table import CfiTable

_SHF_EXECINSTR = 0x4
_PAGE = 4096
_PAGES_KEPT = 64       # code pages a module keeps for stack scans (hud.unwind.scan)


def _frame_section(elf: ElfFile, name: str, is_eh: bool) -> Optional[FrameSection]:
    try:
        sec = elf.section(name)
    except HudError:
        return None
    if sec is None or not sec[1]:
        return None
    return FrameSection(sec[1], sec[0], is_eh, elf.address_size)


def tables_from_elf(elf: ElfFile, debug_elf: Optional[ElfFile] = None) -> CfiTable:
    """The CFI of one ELF: .eh_frame (+ .eh_frame_hdr), then .debug_frame (also from a
    separate debug file, whose addresses are the same link-time addresses)."""
    eh = _frame_section(elf, ".eh_frame", True)
    hdr = None
    if eh is not None:
        try:
            hdr = elf.section(".eh_frame_hdr")
        except HudError:
            hdr = None
    dbg = _frame_section(elf, ".debug_frame", False)
    if dbg is None and debug_elf is not None:
        dbg = _frame_section(debug_elf, ".debug_frame", False)
    return CfiTable(eh, hdr, dbg)


def exec_sections(elf: ElfFile) -> list[tuple[int, bytes]]:
    """(address, bytes) of .text (else of every executable section), for prologue scans:
    PLT stubs and .init never set up frames and would only blur the estimate."""
    out = []
    wanted = [s for s in elf.sections if s.name == ".text"] or list(elf.sections)
    for sec in wanted:
        if sec.flags & _SHF_EXECINSTR and sec.addr and sec.size:
            try:
                out.append((sec.addr, elf.section_data(sec)))
            except HudError:
                continue
    return out


class ModuleInfo:
    """What the unwinder knows about one module: its bias, arch, CFI and strategy."""

    def __init__(self, module: Module, opener: Callable[[], Optional[ElfFile]],
                 debug_path: Optional[str] = None,
                 symbols: Optional[Callable[[], Optional[SymbolTable]]] = None) -> None:
        self.module = module
        self.bias = module.bias
        self._opener = opener
        self._strategy: Optional[prologue.ModuleStrategy] = None
        self._debug_path = debug_path
        self._pages: dict[int, Optional[bytes]] = {}
        self._symbols: Optional[SymbolTable] = None
        self._symbols_from = symbols     # a table someone already read (the symbolizer's)
        self.arch = ""
        self.reason = ""
        self.table = CfiTable()
        elf = self._open()
        if elf is None:
            return
        debug = None
        try:
            self.arch = elf.machine
            if debug_path:
                try:
                    debug = ElfFile.open(debug_path)
                except HudError:
                    debug = None
            self.table = tables_from_elf(elf, debug)
            if self.table.empty:
                self.reason = "no .eh_frame or .debug_frame"
        finally:
            elf.close()
            if debug is not None:
                debug.close()

    @classmethod
    def from_table(cls, module: Module, table: CfiTable, arch: str,
                   strategy: Optional[prologue.ModuleStrategy] = None) -> ModuleInfo:
        """A ModuleInfo over CFI already in hand (tests, replayed recordings)."""
        info = cls(module, lambda: None)
        info.table = table
        info.arch = arch
        info.reason = ""
        info._strategy = strategy
        return info

    def _open(self) -> Optional[ElfFile]:
        try:
            elf = self._opener()
        except (HudError, OSError) as e:
            self.reason = f"cannot read: {e}"
            return None
        if elf is None:
            self.reason = "no file to read"
        return elf

    def code(self, vaddr: int, size: int) -> Optional[bytes]:
        """`size` bytes of the module's file image at link-time `vaddr` (None where it has
        none), from pages kept for stack scans, which look at a few call sites and
        function bodies only; the pages not kept yet are read with one open."""
        first = vaddr - vaddr % _PAGE
        pages = range(first, vaddr + size, _PAGE)
        missing = [p for p in pages if p not in self._pages]
        if missing:
            self._load(missing)
        parts = [self._pages.get(p) for p in pages]
        # Every page there, and whole but for the last (where the file may end).
        if any(d is None for d in parts) or any(len(d) < _PAGE for d in parts[:-1]):
            return None
        data = b"".join(parts)[vaddr - first:vaddr - first + size]
        return data if len(data) == size else None

    def _load(self, pages: list[int]) -> None:
        while len(self._pages) + len(pages) > _PAGES_KEPT and self._pages:
            self._pages.pop(next(iter(self._pages)))
        elf = self._open()
        try:
            for page in pages:
                data = None
                if elf is not None:
                    try:
                        off = elf.vaddr_to_offset(page)
                        if off is not None:
                            data = elf.read(off, min(_PAGE, elf.size - off))
                    except HudError:
                        data = None
                self._pages[page] = data
        finally:
            if elf is not None:
                elf.close()

    def function_span(self, vaddr: int) -> Optional[tuple[int, tuple[str, ...]]]:
        """(link-time start, names) of the function symbol holding `vaddr` (the separate
        debug file's .symtab first): the table given at construction, or read on the
        first stack scan in this module."""
        if self._symbols is None and self._symbols_from is not None:
            try:
                self._symbols = self._symbols_from()
            except HudError:
                self._symbols = None
        if self._symbols is None:
            elves: list = []
            try:
                if self._debug_path:
                    try:
                        elves.append(ElfFile.open(self._debug_path))
                    except HudError:
                        pass
                elf = self._open()
                if elf is not None:
                    elves.append(elf)
                    elves, _why = symbol_files(elves, elf)
                try:
                    self._symbols = SymbolTable(elves)
                except HudError:
                    self._symbols = SymbolTable([])
            finally:
                for e in elves:
                    e.close()
        span = self._symbols.span_of(vaddr)
        return (span[0], span[2]) if span is not None else None

    def strategy(self) -> prologue.ModuleStrategy:
        """The module's FP/CFI strategy (scans prologues once, on first call)."""
        if self._strategy is None:
            self._strategy = self._decide()
        return self._strategy

    def _decide(self) -> prologue.ModuleStrategy:
        has_cfi = not self.table.empty
        path = self.module.path
        if not self.arch or not prologue.capstone_available(self.arch):
            return prologue.decide(path, has_cfi, None, 0, self.reason)
        entries = self.table.function_starts()
        if not entries:
            return prologue.decide(path, has_cfi, None, 0, "no function entries known")
        elf = self._open()
        if elf is None:
            return prologue.decide(path, has_cfi, None, 0, self.reason)
        try:
            text = exec_sections(elf)
        finally:
            elf.close()
        fraction, scanned = prologue.scan(self.arch, text, entries)
        return prologue.decide(path, has_cfi, fraction, scanned)


def opener_for(module: Module, maps: Any) -> Callable[[], Optional[ElfFile]]:
    """How to (re)open a module's ELF image: its file, or the vdso read from the target."""
    if module.kind == KIND_VDSO:
        def open_vdso() -> Optional[ElfFile]:
            read = getattr(maps, "read_vdso", None)
            data = read(module) if read is not None else None
            return ElfFile.from_bytes(data, "[vdso]") if data else None
        return open_vdso
    if module.kind == KIND_ELF and module.open_path:
        return lambda: ElfFile.open(module.open_path)
    return lambda: None
