"""Per-module CFI lookup: sorted FDE starts (from .eh_frame_hdr when present), rows per FDE
computed on first use and cached.

Addresses here are link-time virtual addresses of the module (runtime pc - bias).
"""
from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass
from typing import Optional

from hud.unwind.cfi import Cie, Fde, FrameSection, iter_fdes, parse_fde
from hud.unwind.encoding import PE_DATAREL, PE_OMIT, PE_SDATA4, CfiError, pointer, u8
from hud.unwind.rows import RULE_SAME, Row, initial_state, row_table

_HDR_FAST = PE_DATAREL | PE_SDATA4   # 0x3b: what every linker writes
_MAX_HDR_ENTRIES = 1 << 22


@dataclass(frozen=True)
class CfiRow:
    """The unwind rule that applies at one address."""

    row: Row
    ra_reg: int
    signal_frame: bool
    fde_start: int
    ra_saved: bool = True  # False when the RA column has no rule: it is still in a register


class _Index:
    """Sorted FDE starts of one section, with a way to get the FDE at each."""

    def __init__(self, sec: FrameSection, starts: list[int], refs: list[int],
                 ends: Optional[list[int]] = None) -> None:
        self.sec = sec
        self.starts = starts
        self.refs = refs          # section offsets of the FDEs
        self.ends = ends          # known when built from a full parse
        self.cies: dict[int, Cie] = {}

    def find(self, vaddr: int) -> Optional[Fde]:
        i = bisect.bisect_right(self.starts, vaddr) - 1
        if i < 0:
            return None
        if self.ends is not None and vaddr >= self.ends[i]:
            return None
        try:
            fde = parse_fde(self.sec, self.refs[i], self.cies)
        except CfiError:
            return None
        if fde is None or not fde.start <= vaddr < fde.end:
            return None
        return fde


def _hdr_index(eh: FrameSection, hdr_addr: int, hdr: bytes) -> Optional[_Index]:
    """Index from .eh_frame_hdr's binary search table, or None when it is unusable."""
    try:
        version, pos = u8(hdr, 0)
        ptr_enc, pos = u8(hdr, pos)
        count_enc, pos = u8(hdr, pos)
        table_enc, pos = u8(hdr, pos)
        if version != 1 or count_enc == PE_OMIT or table_enc == PE_OMIT:
            return None
        _, pos = pointer(hdr, pos, ptr_enc, hdr_addr, hdr_addr)
        count, pos = pointer(hdr, pos, count_enc, hdr_addr, hdr_addr)
    except CfiError:
        return None
    count = min(count, _MAX_HDR_ENTRIES, (len(hdr) - pos) // 8)
    if count <= 0:
        return None
    starts: list[int] = []
    refs: list[int] = []
    if table_enc == _HDR_FAST:
        raw = struct.unpack_from(f"<{2 * count}i", hdr, pos)
        starts = [hdr_addr + v for v in raw[0::2]]
        refs = [hdr_addr + v - eh.addr for v in raw[1::2]]
    else:
        try:
            for _ in range(count):
                s, pos = pointer(hdr, pos, table_enc, hdr_addr, hdr_addr)
                f, pos = pointer(hdr, pos, table_enc, hdr_addr, hdr_addr)
                starts.append(s)
                refs.append(f - eh.addr)
        except CfiError:
            return None
    if any(starts[i] > starts[i + 1] for i in range(len(starts) - 1)):
        order = sorted(range(len(starts)), key=starts.__getitem__)
        starts = [starts[i] for i in order]
        refs = [refs[i] for i in order]
    return _Index(eh, starts, refs)


def _full_index(sec: FrameSection) -> _Index:
    fdes = sorted((f.start, f.end, f.offset) for f in iter_fdes(sec))
    return _Index(sec, [f[0] for f in fdes], [f[2] for f in fdes], [f[1] for f in fdes])


class CfiTable:
    """All CFI of one module: .eh_frame (+ .eh_frame_hdr) and/or .debug_frame."""

    def __init__(self, eh_frame: Optional[FrameSection] = None,
                 eh_frame_hdr: Optional[tuple[int, bytes]] = None,
                 debug_frame: Optional[FrameSection] = None) -> None:
        self._indexes: list[_Index] = []
        self._pending = []
        if eh_frame is not None and eh_frame.data:
            idx = _hdr_index(eh_frame, *eh_frame_hdr) if eh_frame_hdr else None
            if idx is not None:
                self._indexes.append(idx)
            else:
                self._pending.append(eh_frame)
        if debug_frame is not None and debug_frame.data:
            self._pending.append(debug_frame)
        self._rows: dict[tuple[bool, int], tuple[list, list, Fde]] = {}
        self._cie_states: dict[tuple[bool, int], tuple] = {}

    @property
    def empty(self) -> bool:
        return not self._indexes and not self._pending

    def _all_indexes(self) -> list[_Index]:
        # Full parses are deferred to the first lookup: most modules never see one.
        while self._pending:
            self._indexes.append(_full_index(self._pending.pop(0)))
        return self._indexes

    def function_starts(self) -> list[int]:
        """Sorted start addresses of every FDE (function entries, for prologue scans)."""
        out: set[int] = set()
        for idx in self._all_indexes():
            out.update(idx.starts)
        return sorted(out)

    def lookup(self, vaddr: int) -> Optional[CfiRow]:
        """The CFI row covering `vaddr`, or None when no FDE covers it or it is malformed."""
        for idx in self._all_indexes():
            fde = idx.find(vaddr)
            if fde is None:
                continue
            key = (idx.sec.is_eh, fde.offset)
            entry = self._rows.get(key)
            if entry is None:
                try:
                    entry = self._compute(idx.sec, fde)
                except CfiError:
                    entry = ([], [], fde)
                self._rows[key] = entry
            locs, rows, fde = entry
            i = bisect.bisect_right(locs, vaddr) - 1
            if i < 0:
                continue
            row = rows[i]
            ra = fde.cie.ra_reg
            saved = any(r == ra and k != RULE_SAME for r, k, _ in row[3])
            return CfiRow(row, ra, fde.cie.signal_frame, fde.start, saved)
        return None

    def _compute(self, sec: FrameSection, fde: Fde) -> tuple[list, list, Fde]:
        ckey = (sec.is_eh, fde.cie.offset)
        state = self._cie_states.get(ckey)
        if state is None:
            state = initial_state(sec, fde.cie)
            self._cie_states[ckey] = state
        locs, rows = row_table(sec, fde, state)
        return locs, rows, fde
