"""Per-CPU perf ring readers: `PerfRing` over one perf event's mmap, and `PerfEventArray`.

The ring is the kernel's perf_event_mmap_page followed by 2^n data pages. The kernel
writes records at data_head; we consume up to it and publish data_tail. Head and tail are
read and written as single aligned 8-byte loads/stores through ctypes (struct.unpack_from
on an mmap is a memcpy and not guaranteed atomic). On x86-64 (TSO) the smp_rmb() after
reading head and the smp_mb() before writing tail that perf requires are compiler barriers
only, and every ctypes access is a separate C call, so no explicit fence is needed.
"""
from __future__ import annotations

import ctypes
import os
import select
import struct
from collections.abc import Iterator
from typing import Optional

from hud.bpf.maps import Map
from hud.errors import UsageError
from hud.linux import libc, procfs
from hud.linux import perf_event as pe
from hud.linux.perf_event import PERF_RECORD_LOST
from kernel import uapi

# struct perf_event_mmap_page (include/uapi/linux/perf_event.h): these offsets have been
# stable since data_offset/data_size were added in 4.1; the first 1024 bytes are the
# self-monitoring header.
_DATA_HEAD = 1024
_DATA_TAIL = 1032
_DATA_OFFSET = 1040
_DATA_SIZE = 1048

_HEADER = struct.Struct("<IHH")  # struct perf_event_header: type, misc, size
_LOST = struct.Struct("<QQ")     # PERF_RECORD_LOST body: id, lost (then sample_id if enabled)


class PerfRing:
    """A consumer of one perf event's ring buffer (records may wrap; copied in two parts).

    `read()` yields `(type, misc, body)` for every record the kernel has completed, with
    the 8-byte perf_event_header stripped. PERF_RECORD_LOST records are yielded like the
    others and their counts are also summed into `lost`. The ring must be mapped
    read-write: with a read-only mapping the kernel ignores data_tail and overwrites.
    """

    def __init__(self, fd: int, data_pages: int, own_fd: bool = False) -> None:
        self.fd = fd
        self._own_fd = own_fd
        self._base: Optional[int] = None
        self.page = libc.PAGE_SIZE
        self._length = (1 + data_pages) * self.page
        try:
            if data_pages < 1 or data_pages & (data_pages - 1):
                raise UsageError(f"perf ring of {data_pages} data pages",
                                 "the data area must be a power of two pages (1, 2, 4 ...)")
            self._base = libc.mmap(fd, self._length, libc.PROT_READ | libc.PROT_WRITE, 0,
                                   what="mmap of a perf ring")
        except BaseException:
            self.close()   # an owned fd must not leak when the ring cannot be set up
            raise
        offset = ctypes.c_uint64.from_address(self._base + _DATA_OFFSET).value
        size = ctypes.c_uint64.from_address(self._base + _DATA_SIZE).value
        self._data = self._base + (offset or self.page)
        self.size = size or data_pages * self.page
        self._head = ctypes.c_uint64.from_address(self._base + _DATA_HEAD)
        self._tail = ctypes.c_uint64.from_address(self._base + _DATA_TAIL)
        self.lost = 0       # sum of PERF_RECORD_LOST counts
        self.records = 0    # records consumed (all types)
        self.wrapped = 0    # records that straddled the end of the data area
        self.corrupt = 0    # times a malformed header forced a skip to head

    def pending(self) -> int:
        """Bytes written by the kernel and not yet consumed."""
        self._check_open()
        return (self._head.value - self._tail.value) & 0xFFFFFFFFFFFFFFFF

    def read(self) -> Iterator[tuple[int, int, bytes]]:
        """Consume every complete record now in the ring.

        The records are copied out and the tail published before the first one is
        yielded, so abandoning the iterator loses nothing that was not already copied.
        """
        self._check_open()
        head = self._head.value          # one 8-byte load; smp_rmb is implied on TSO
        tail = self._tail.value
        out = []
        data, size = self._data, self.size
        span = (head - tail) & 0xFFFFFFFFFFFFFFFF
        if span > size:
            # The kernel never runs more than the ring ahead of us: a garbled position.
            self.corrupt += 1
            span = 0
            tail = head
        # One copy of everything pending (two when it wraps) instead of two ctypes calls
        # per record: the per-call cost dominated a busy ring.
        pos = tail % size
        if pos + span <= size:
            buf = ctypes.string_at(data + pos, span) if span else b""
        else:
            first = size - pos
            buf = ctypes.string_at(data + pos, first) + ctypes.string_at(data, span - first)
        off = 0
        while span - off >= _HEADER.size:
            rtype, misc, rsize = _HEADER.unpack_from(buf, off)
            if rsize < _HEADER.size or rsize > span - off:
                # A header that cannot be right: resynchronise at head rather than spin.
                self.corrupt += 1
                off = span
                break
            body = buf[off + _HEADER.size:off + rsize]
            if (pos + off) % size + rsize > size:
                self.wrapped += 1
            if rtype == PERF_RECORD_LOST and len(body) >= _LOST.size:
                self.lost += _LOST.unpack_from(body)[1]
            out.append((rtype, misc, body))
            off += rsize
        tail += off
        # Publish the tail only after the copies: the kernel may overwrite freed space at
        # once (perf's smp_mb before the tail store; a compiler barrier on x86-64).
        self._tail.value = tail
        self.records += len(out)
        return iter(out)

    def poll(self, timeout_ms: int = 0) -> bool:
        """Wait up to `timeout_ms` for the event to signal data; True when readable or hung up.

        The kernel wakes pollers only every `wakeup_events` samples (or watermark bytes);
        callers that need latency should read on a timer instead of relying on this.
        """
        p = select.poll()
        p.register(self.fd, select.POLLIN)
        return bool(p.poll(timeout_ms)) or self.pending() > 0

    def close(self) -> None:
        """Unmap the ring (and close the fd when owned); safe to call twice."""
        if self._base is not None:
            libc.munmap(self._base, self._length)
            self._base = None
        if self._own_fd and self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _check_open(self) -> None:
        if self._base is None:
            raise UsageError("perf ring used after close", "keep the ring open while reading")

    def __enter__(self) -> PerfRing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # last resort; callers use `with` or close()
        try:
            self.close()
        except Exception:
            pass


def close_rings(rings: dict, fds: list) -> None:
    """Unmap every ring, then close every event fd, emptying both (idempotent). The rings
    map fds from `fds` without owning them, so the unmaps come first."""
    for ring in rings.values():
        ring.close()
    rings.clear()
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
    fds.clear()


class PerfEventArray:
    """The userspace side of a BPF_MAP_TYPE_PERF_EVENT_ARRAY used with bpf_perf_event_output.

    Opens one PERF_COUNT_SW_BPF_OUTPUT event per online CPU (sample_type RAW, pid -1),
    maps a `PerfRing` on each and stores its fd in the map at that CPU's index, which is
    where BPF_F_CURRENT_CPU sends a program's output. `read()` drains every CPU's ring.
    """

    def __init__(self, perf_map: Map, data_pages: int = 16,
                 cpus: Optional[list[int]] = None, wakeup_events: int = 1) -> None:
        if perf_map.map_type != uapi.BPF_MAP_TYPE_PERF_EVENT_ARRAY:
            raise UsageError(f"map {perf_map.name} is not a PERF_EVENT_ARRAY")
        self.map = perf_map
        self.rings: dict[int, PerfRing] = {}
        try:
            for cpu in cpus if cpus is not None else procfs.online_cpus():
                if cpu >= perf_map.max_entries:
                    raise UsageError(f"CPU {cpu} is beyond map {perf_map.name}'s "
                                     f"{perf_map.max_entries} entries")
                attr = pe.PerfEventAttr(type=pe.PERF_TYPE_SOFTWARE,
                                        config=pe.PERF_COUNT_SW_BPF_OUTPUT,
                                        period_or_freq=1, sample_type=pe.PERF_SAMPLE_RAW,
                                        wakeup=wakeup_events)
                fd = pe.perf_event_open(attr, pid=-1, cpu=cpu)
                ring = PerfRing(fd, data_pages, own_fd=True)   # closes fd if it fails
                self.rings[cpu] = ring
                perf_map.set_u32(cpu, fd)
        except BaseException:
            self.close()
            raise

    @property
    def lost(self) -> int:
        """Records the kernel dropped on any CPU (sum of PERF_RECORD_LOST counts)."""
        return sum(r.lost for r in self.rings.values())

    def read(self) -> Iterator[tuple[int, int, int, bytes]]:
        """(cpu, type, misc, body) of every record now in any ring."""
        for cpu, ring in self.rings.items():
            for rtype, misc, body in ring.read():
                yield cpu, rtype, misc, body

    def close(self) -> None:
        """Remove the fds from the map (so programs stop writing) and close the rings."""
        for cpu, ring in list(self.rings.items()):
            try:
                if self.map.fd >= 0:
                    self.map.delete(struct.pack("<I", cpu))
            finally:
                ring.close()
        self.rings.clear()

    def __enter__(self) -> PerfEventArray:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
