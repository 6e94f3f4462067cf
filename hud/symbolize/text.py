"""Frames as text in binutils' `addr2line -f -i -C` layout (what `hud addr2line` prints)."""
from __future__ import annotations

from typing import Optional


def format_frames(frames: tuple, address: Optional[int] = None, basenames: bool = False,
                  ) -> str:
    """Text for one address in binutils' `-f -i -C` layout (with `-a` when `address`)."""
    lines = []
    if address is not None:
        lines.append(f"0x{address:016x}")
    if len(frames) == 1 and frames[0].function is None and frames[0].file is None:
        lines += ["??", "??:0"]
        return "\n".join(lines)
    for f in frames:
        file = f.file or "??"
        if basenames and f.file:
            file = file.rsplit("/", 1)[-1]
        lines.append(f"{f.function or '??'}\n{file}:{f.line or '?'}")
    return "\n".join(lines)
