"""Symbolization: runtime or file addresses to frames (function, file:line, inlines).

    from hud.symbolize import Symbolizer
    sym = Symbolizer(debug_dirs=(), debug_files=())
    sym.symbolize_file("/path/to/elf", [0x4011d6])          # ELF virtual addresses
    sym.for_process(pid).symbolize([ip0, ret1, ret2])        # a stack, innermost first
"""
from __future__ import annotations

from hud.symbolize.demangle import demangle
from hud.symbolize.elf import ElfFile
from hud.symbolize.normalize import Module, ProcessMaps
from hud.symbolize.symbolizer import ObjectSymbols, ProcessSymbolizer, Symbolizer

__all__ = ["ElfFile", "Module", "ObjectSymbols", "ProcessMaps", "ProcessSymbolizer",
           "Symbolizer", "demangle"]
