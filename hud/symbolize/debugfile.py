"""Finding separate debug files: user overrides, build-id trees, .gnu_debuglink.

Candidates are only ever read as ELF data (never loaded or run) and are accepted only when
they prove they belong to the binary: same build-id, or, when the binary has none, the
CRC32 that .gnu_debuglink records. So searching user-writable places is safe as root.
"""
from __future__ import annotations

import os
import posixpath
import zlib
from collections.abc import Sequence
from typing import Callable, Optional

from hud.errors import BadInput
from hud.symbolize.elf import ElfFile

DEFAULT_DEBUG_DIRS = ("/usr/lib/debug",)
_CRC_CHUNK = 1 << 20


def find_debug_file(elf: ElfFile, target_path: str, root: str = "",
                    debug_dirs: Sequence[str] = (), debug_files: Sequence[str] = (),
                    fetch: Optional[Callable[[str], tuple[Optional[str], str]]] = None,
                    ) -> tuple[Optional[ElfFile], str]:
    """The separate debug file of `elf`, opened, and a note of where it came from.

    `target_path` is the binary's path as its process sees it (for debuglink's
    directory rules); `root` is the prefix that reaches that process's filesystem
    (e.g. /proc/PID/root; "" for ours). `fetch(build_id)` is asked last (debuginfod:
    a path and a note, or None and why). Returns (None, why) when none matches.
    """
    build_id = elf.build_id
    link = elf.debuglink
    tried = []
    for cand in _candidates(build_id, link, target_path, root, debug_dirs, debug_files):
        if cand in tried:
            continue
        tried.append(cand)
        got = _accept(cand, build_id, link, cand in debug_files)
        if got is not None:
            return got, cand
    if build_id is None and link is None:
        return None, "no build-id or debuglink"
    if fetch is not None and build_id:
        path, note = fetch(build_id)
        if path:
            got = _accept(path, build_id, None, False)
            if got is not None:
                return got, path
        elif note:
            return None, f"no separate debug file found ({note})"
    return None, "no separate debug file found"


def _candidates(build_id: Optional[str], link: Optional[tuple[str, int]], target_path: str,
                root: str, debug_dirs: Sequence[str],
                debug_files: Sequence[str]) -> list[str]:
    out = list(debug_files)
    dirs = list(debug_dirs) + list(DEFAULT_DEBUG_DIRS)
    if root:
        # Debug packages installed inside the target's container.
        dirs += [root + d for d in DEFAULT_DEBUG_DIRS]
    if build_id and len(build_id) > 2:
        for d in dirs:
            out.append(posixpath.join(d, ".build-id", build_id[:2], build_id[2:] + ".debug"))
    if link is not None:
        name = link[0]
        clean = target_path[:-len(" (deleted)")] if target_path.endswith(" (deleted)") \
            else target_path
        bindir = posixpath.dirname(clean) if clean.startswith("/") else ""
        for d in debug_dirs:
            out.append(posixpath.join(d, name))
        if bindir:
            out.append(root + posixpath.join(bindir, name))
            out.append(root + posixpath.join(bindir, ".debug", name))
            for d in dirs:
                out.append(d + posixpath.join(bindir, name))
    return out


def open_if(path: str, belongs: Callable[[ElfFile], bool]) -> Optional[ElfFile]:
    """The ELF file at `path`, opened, if it is one and `belongs(it)` says it is the
    file sought (a BadInput while checking is a no); else None, nothing left open."""
    if not os.path.isfile(path):
        return None
    try:
        cand = ElfFile.open(path)
    except BadInput:
        return None
    try:
        ok = belongs(cand)
    except BadInput:
        ok = False
    if not ok:
        cand.close()
        return None
    return cand


def _accept(path: str, build_id: Optional[str], link: Optional[tuple[str, int]],
            named_by_user: bool) -> Optional[ElfFile]:
    def belongs(cand: ElfFile) -> bool:
        if build_id is not None:
            return cand.build_id == build_id
        if link is not None and (named_by_user or posixpath.basename(path) == link[0]):
            return _crc32(cand) == link[1]
        # Neither side can prove anything: take the user's word, but not for a file
        # that names another build.
        return named_by_user and cand.build_id is None
    return open_if(path, belongs)


def _crc32(elf: ElfFile) -> int:
    crc = 0
    pos = 0
    while pos < elf.size:
        chunk = elf.read(pos, min(_CRC_CHUNK, elf.size - pos))
        crc = zlib.crc32(chunk, crc)
        pos += len(chunk)
    return crc & 0xFFFFFFFF
