"""BPF ringbuf consumer (BPF_MAP_TYPE_RINGBUF), in libbpf's layout.

Two mappings of the map fd: the consumer page read-write at offset 0 (we publish
consumer_pos there), and read-only from offset PAGE the producer page followed by the
data area mapped twice in a row, so a record that wraps around the end is contiguous in
memory. Each record starts with an 8-byte header: u32 len, whose bit 31 (BUSY) means the
producer has not committed it yet (stop there) and bit 30 (DISCARD) means skip it, then
u32 pg_off. Records advance by round_up(len + 8, 8). Positions are read and written with
single aligned 8-byte ctypes accesses; the header's len with one 4-byte load. On x86-64
(TSO) the acquire/release ordering libbpf uses needs no fence beyond the separate C calls.
The BPF ringbuf has no LOST record: programs count their failed reserves in a map.
"""
from __future__ import annotations

import ctypes
import select
from collections.abc import Iterator
from typing import Optional, Union

from hud.bpf.maps import Map
from hud.errors import UsageError
from hud.linux import libc
from hud.linux.closing import Closing
from kernel import uapi

_LEN_MASK = ~(uapi.BPF_RINGBUF_BUSY_BIT | uapi.BPF_RINGBUF_DISCARD_BIT) & 0xFFFFFFFF


class RingBuf(Closing):
    """Reads records out of one ringbuf map; `read()` yields each committed record's bytes."""

    def __init__(self, ring: Union[Map, int], size: Optional[int] = None) -> None:
        if isinstance(ring, Map):
            if ring.map_type != uapi.BPF_MAP_TYPE_RINGBUF:
                raise UsageError(f"map {ring.name} is not a ringbuf")
            fd, size = ring.fd, ring.max_entries
        else:
            fd = ring
        if not size or size & (size - 1):
            raise UsageError(f"ringbuf size {size}", "a power of two multiple of the page size")
        page = libc.PAGE_SIZE
        self.fd = fd
        self.size = size
        self._mask = size - 1
        self._cons_len = page
        self._prod_len = page + 2 * size
        self._cons: Optional[int] = libc.mmap(fd, page, libc.PROT_READ | libc.PROT_WRITE, 0,
                                              what="mmap of a ringbuf consumer page")
        try:
            # The producer page and data are read-only to userspace (PROT_WRITE -> EPERM).
            self._prod: Optional[int] = libc.mmap(fd, self._prod_len, libc.PROT_READ, page,
                                                  what="mmap of a ringbuf data area")
        except BaseException:
            libc.munmap(self._cons, page)
            self._cons = None
            raise
        self._data = self._prod + page
        self._cons_pos = ctypes.c_uint64.from_address(self._cons)
        self._prod_pos = ctypes.c_uint64.from_address(self._prod)
        self.records = 0     # committed records returned
        self.discarded = 0   # records the program discarded
        self.wrapped = 0     # records that crossed the end of the data area

    def pending(self) -> int:
        """Bytes the producer has reserved beyond our consumer position."""
        self._check()
        return self._prod_pos.value - self._cons_pos.value

    def read(self, limit: Optional[int] = None) -> Iterator[bytes]:
        """Consume committed records (up to `limit` of them); copies, then publishes."""
        self._check()
        cons = self._cons_pos.value
        prod = self._prod_pos.value
        out = []
        while cons < prod and (limit is None or len(out) < limit):
            pos = cons & self._mask
            hdr = ctypes.c_uint32.from_address(self._data + pos).value
            if hdr & uapi.BPF_RINGBUF_BUSY_BIT:
                break
            length = hdr & _LEN_MASK
            total = (length + uapi.BPF_RINGBUF_HDR_SZ + 7) & ~7
            if not hdr & uapi.BPF_RINGBUF_DISCARD_BIT:
                start = pos + uapi.BPF_RINGBUF_HDR_SZ
                # Contiguous thanks to the double mapping, even across the end.
                out.append(ctypes.string_at(self._data + start, length))
                if start + length > self.size:
                    self.wrapped += 1
            else:
                self.discarded += 1
            cons += total
            # Re-read the producer position lazily: records committed meanwhile are
            # picked up in this same call.
            if cons >= prod:
                prod = self._prod_pos.value
        self._cons_pos.value = cons   # release: the producer may reuse the space now
        self.records += len(out)
        return iter(out)

    def poll(self, timeout_ms: int = 0) -> bool:
        """Wait for the kernel's wakeup (POLLIN on the map fd), or data already pending."""
        self._check()
        if self.pending():
            return True
        p = select.poll()
        p.register(self.fd, select.POLLIN)
        return bool(p.poll(timeout_ms))

    def _check(self) -> None:
        if self._cons is None:
            raise UsageError("ringbuf used after close")

    def close(self) -> None:
        """Unmap both areas (the map fd belongs to its Map)."""
        if self._cons is not None:
            libc.munmap(self._prod, self._prod_len)
            libc.munmap(self._cons, self._cons_len)
            self._cons = self._prod = None
