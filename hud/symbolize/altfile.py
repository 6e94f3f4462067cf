"""Supplementary DWARF files: the common file `dwz -m` moves shared DIEs and strings into.

Distribution debug packages (Fedora, RHEL, Debian's -dbgsym) are compressed with dwz:
DIEs that several files share (abstract instances of inlined functions, types) and their
strings move to one supplementary file, which the debug file names in
`.gnu_debugaltlink` (a path and the file's build-id) or, in DWARF 5, `.debug_sup` (a
path and a checksum). Attributes then refer there (DW_FORM_GNU_ref_alt /
DW_FORM_ref_sup*, DW_FORM_GNU_strp_alt / DW_FORM_strp_sup). Without that file an inlined
level has no name and a unit's directory is unknown.

Candidates are only read as ELF data and accepted when their build-id (or .debug_sup
checksum) is the one recorded: searching user-writable places is safe as root.
"""
from __future__ import annotations

import posixpath
from collections.abc import Sequence
from typing import Callable, Optional

from hud.errors import BadInput
from hud.symbolize.debugfile import DEFAULT_DEBUG_DIRS, open_if
from hud.symbolize.elf import ElfFile

_MAX_LINK = 4096    # a path and an id: anything longer is not a link section


def alt_link(elf: ElfFile) -> Optional[tuple[str, bytes, str]]:
    """(path, id, kind) of the supplementary file `elf` refers to, or None: the id is
    the build-id for kind "altlink" (.gnu_debugaltlink), the checksum for "sup"."""
    try:
        got = elf.section(".gnu_debugaltlink")
        if got is not None and 0 < len(got[1]) <= _MAX_LINK:
            path, nul, ident = got[1].partition(b"\0")
            if nul and path and ident:
                return path.decode("utf-8", "replace"), bytes(ident), "altlink"
        got = elf.section(".debug_sup")
    except BadInput:
        return None
    if got is not None:
        parsed = _debug_sup(got[1])
        if parsed is not None and not parsed[0] and parsed[1]:
            return parsed[1], parsed[2], "sup"
    return None


def _debug_sup(data: bytes) -> Optional[tuple[bool, str, bytes]]:
    """(is_supplementary, filename, checksum) of a .debug_sup section (DWARF 5 7.3.6)."""
    if len(data) < 4 or len(data) > _MAX_LINK or int.from_bytes(data[:2], "little") != 5:
        return None
    is_sup = data[2] != 0
    end = data.find(b"\0", 3)
    if end < 0:
        return None
    name = data[3:end].decode("utf-8", "replace")
    pos, size, shift = end + 1, 0, 0
    while pos < len(data) and shift < 28:
        b = data[pos]
        size |= (b & 0x7F) << shift
        pos += 1
        shift += 7
        if b < 0x80:
            break
    else:
        return None
    if pos + size > len(data):
        return None
    return is_sup, name, bytes(data[pos:pos + size])


def find_alt_file(holder: ElfFile, holder_path: str, root: str = "",
                  debug_dirs: Sequence[str] = (),
                  fetch: Optional[Callable[[str], tuple[Optional[str], str]]] = None,
                  ) -> tuple[Optional[ElfFile], str]:
    """The supplementary file of `holder` (the file with the DWARF), opened, and where it
    was found; (None, why) when `holder` needs none ("") or it cannot be found.

    `holder_path` is where `holder` was opened (a relative link is relative to its
    directory); `root` reaches the target's filesystem (/proc/PID/root, or "").
    `fetch(build_id)` (debuginfod) is asked last, for a .gnu_debugaltlink's build-id."""
    link = alt_link(holder)
    if link is None:
        return None, ""
    path, ident, kind = link
    tried: list[str] = []
    for cand in _candidates(path, ident, kind, holder_path, root, debug_dirs):
        if cand in tried:
            continue
        tried.append(cand)
        got = _accept(cand, ident, kind)
        if got is not None:
            return got, cand
    if fetch is not None and kind == "altlink":
        cand, _note = fetch(ident.hex())
        got = _accept(cand, ident, kind) if cand else None
        if got is not None:
            return got, cand
    return None, f"dwz file {path} not found: inlined functions have no names"


def _candidates(path: str, ident: bytes, kind: str, holder_path: str, root: str,
                debug_dirs: Sequence[str]) -> list[str]:
    out: list[str] = []
    if path.startswith("/"):
        if root:
            out.append(root + path)
        out.append(path)
    elif holder_path.startswith("/"):
        out.append(posixpath.normpath(posixpath.join(posixpath.dirname(holder_path), path)))
    dirs = list(debug_dirs) + list(DEFAULT_DEBUG_DIRS)
    if root:
        dirs += [root + d for d in DEFAULT_DEBUG_DIRS]
    hexid = ident.hex()
    for d in dirs:
        # dwz files are installed under <debug dir>/.dwz/ and linked by build-id.
        out.append(posixpath.join(d, ".dwz", posixpath.basename(path)))
        if kind == "altlink" and len(hexid) > 2:
            out.append(posixpath.join(d, ".build-id", hexid[:2], hexid[2:] + ".debug"))
    return out


def _accept(path: str, ident: bytes, kind: str) -> Optional[ElfFile]:
    def belongs(cand: ElfFile) -> bool:
        if kind == "altlink":
            return cand.build_id == ident.hex()
        got = cand.section(".debug_sup")
        sup = _debug_sup(got[1]) if got is not None else None
        return sup is not None and sup[0] and sup[2] == ident
    return open_if(path, belongs)
