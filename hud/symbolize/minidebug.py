"""MiniDebugInfo: the xz-compressed ELF of extra function symbols in `.gnu_debugdata`.

Fedora, RHEL, CentOS and Amazon Linux strip their binaries and libraries to .dynsym, but
leave in `.gnu_debugdata` a small ELF whose .symtab holds the function symbols .dynsym
lacks (static and hidden functions: libc's internals behind getaddrinfo, for one). Without
it, an address in such a function belongs to no symbol. gdb and elfutils read it the
same way; it is used only when no separate debug file was found.
"""
from __future__ import annotations

from typing import Optional

from hud.errors import BadInput
from hud.symbolize.elf import SHT_SYMTAB, ElfFile

SECTION = ".gnu_debugdata"
# Decompressed size cap: libc's is about 0.4 MB. A hostile section must not inflate
# without bound (an xz stream can expand by a factor of thousands).
MAX_INFLATED = 64 << 20
MAX_DECODER_MEMORY = 128 << 20


def has_symtab(elf: ElfFile) -> bool:
    """Does `elf` carry a full symbol table (.symtab) of its own?"""
    return any(s.type == SHT_SYMTAB for s in elf.sections)


def mini_debuginfo(elf: ElfFile) -> tuple[Optional[ElfFile], str]:
    """The embedded MiniDebugInfo ELF of `elf` and "", or (None, why) when it has none
    that can be read (why is "" when there is simply no such section)."""
    try:
        got = elf.section(SECTION)
    except BadInput as e:
        return None, f"unreadable {SECTION}: {e.message}"
    if got is None:
        return None, ""
    try:
        import lzma  # optional in CPython builds: without it, no MiniDebugInfo
    except ImportError:
        return None, f"this Python has no lzma module: {SECTION} not read"
    # memlimit: an xz header may ask for a dictionary of gigabytes up front.
    inflater = lzma.LZMADecompressor(format=lzma.FORMAT_XZ, memlimit=MAX_DECODER_MEMORY)
    try:
        inner = inflater.decompress(got[1], max_length=MAX_INFLATED)
    except (lzma.LZMAError, EOFError) as e:
        return None, f"corrupt {SECTION}: {e}"
    if not inflater.eof:
        if inflater.needs_input:
            return None, f"truncated {SECTION}"
        return None, f"{SECTION} inflates past {MAX_INFLATED >> 20} MiB"
    try:
        mini = ElfFile.from_bytes(inner, name=f"{elf.name} [{SECTION}]")
    except BadInput as e:
        return None, f"{SECTION} holds no usable ELF: {e.message}"
    return mini, ""


def symbol_files(files: list, binary: ElfFile) -> tuple[list, str]:
    """`files` (a debug file and `binary`, richest first) for a SymbolTable, with the
    binary's MiniDebugInfo in front when none of them has a .symtab; and why that was
    not possible ("" when it was, or when there was nothing to add)."""
    if any(has_symtab(f) for f in files):
        return files, ""
    mini, why = mini_debuginfo(binary)
    return ([mini, *files] if mini is not None else files), why
