"""Ring readers over memfd-backed fake rings (no root): exact wraparound, BUSY/DISCARD,
malformed headers. The kernel's layout is reproduced byte for byte in a memfd."""
from __future__ import annotations

import mmap
import os
import struct

import pytest

from hud.bpf.perfbuf import PerfRing
from hud.bpf.ringbuf import RingBuf
from hud.errors import UsageError
from hud.linux.perf_event import PERF_RECORD_LOST, PERF_RECORD_SAMPLE
from kernel import uapi

PAGE = mmap.PAGESIZE


class FakePerf:
    """perf_event_mmap_page + data pages in a memfd; we play the kernel's producer."""

    def __init__(self, data_pages: int) -> None:
        self.size = data_pages * PAGE
        self.fd = os.memfd_create("hud-fake-perf")
        os.ftruncate(self.fd, PAGE + self.size)
        self.mm = mmap.mmap(self.fd, PAGE + self.size)
        struct.pack_into("<QQ", self.mm, 1040, PAGE, self.size)   # data_offset, data_size
        self.head = 0

    def write(self, rtype: int, body: bytes, misc: int = 0) -> None:
        rec = struct.pack("<IHH", rtype, misc, 8 + len(body)) + body
        assert len(rec) % 8 == 0
        for i, b in enumerate(rec):
            self.mm[PAGE + (self.head + i) % self.size] = b
        self.head += len(rec)
        struct.pack_into("<Q", self.mm, 1024, self.head)

    def tail(self) -> int:
        return struct.unpack_from("<Q", self.mm, 1032)[0]

    def close(self) -> None:
        self.mm.close()
        os.close(self.fd)


def test_perf_ring_copies_records_that_straddle_the_end():
    fake = FakePerf(1)
    try:
        with PerfRing(fake.fd, 1) as ring:
            bodies = [bytes([i & 0xFF]) * (8 * (1 + i % 7)) + struct.pack("<Q", i) for i in range(400)]
            seen = []
            for i, body in enumerate(bodies):
                fake.write(PERF_RECORD_SAMPLE, body, misc=i & 0xFFFF)
                if i % 5 == 4:
                    seen += list(ring.read())
                    assert fake.tail() == fake.head      # tail published after the copies
            seen += list(ring.read())
            assert [b for _, _, b in seen] == bodies
            assert [m for _, m, _ in seen] == list(range(400))
            assert ring.wrapped > 0 and ring.corrupt == 0
    finally:
        fake.close()


def test_perf_ring_counts_lost_and_resyncs_on_garbage():
    fake = FakePerf(1)
    try:
        with PerfRing(fake.fd, 1) as ring:
            fake.write(PERF_RECORD_LOST, struct.pack("<QQ", 7, 123))
            fake.write(PERF_RECORD_LOST, struct.pack("<QQ", 7, 2))
            out = list(ring.read())
            assert [t for t, _, _ in out] == [PERF_RECORD_LOST] * 2 and ring.lost == 125
            # A zero-size header would make a naive reader spin forever.
            struct.pack_into("<IHH", fake.mm, PAGE + fake.head % fake.size, 9, 0, 0)
            fake.head += 16
            struct.pack_into("<Q", fake.mm, 1024, fake.head)
            assert list(ring.read()) == []
            assert ring.corrupt == 1 and fake.tail() == fake.head
    finally:
        fake.close()


class FakeRingBuf:
    """consumer page, producer page, then the data twice (the kernel maps it twice)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.fd = os.memfd_create("hud-fake-rb")
        os.ftruncate(self.fd, 2 * PAGE + 2 * size)
        self.mm = mmap.mmap(self.fd, 2 * PAGE + 2 * size)
        self.prod = 0

    def _put(self, pos: int, data: bytes) -> None:
        for i, b in enumerate(data):
            p = (pos + i) % self.size
            self.mm[2 * PAGE + p] = b
            self.mm[2 * PAGE + self.size + p] = b

    def reserve(self, length: int) -> int:
        pos = self.prod
        self._put(pos, struct.pack("<II", length | uapi.BPF_RINGBUF_BUSY_BIT, 0))
        self.prod += (length + 8 + 7) & ~7
        struct.pack_into("<Q", self.mm, PAGE, self.prod)
        return pos

    def commit(self, pos: int, data: bytes, discard: bool = False) -> None:
        self._put(pos + 8, data)
        flag = uapi.BPF_RINGBUF_DISCARD_BIT if discard else 0
        self._put(pos, struct.pack("<I", len(data) | flag))

    def cons(self) -> int:
        return struct.unpack_from("<Q", self.mm, 0)[0]

    def close(self) -> None:
        self.mm.close()
        os.close(self.fd)


def test_ringbuf_wraps_stops_at_busy_and_skips_discarded():
    fake = FakeRingBuf(PAGE)
    try:
        with RingBuf(fake.fd, PAGE) as rb:
            got, want = [], []
            for i in range(300):
                data = struct.pack("<I", i) * (1 + i % 50)
                fake.commit(fake.reserve(len(data)), data, discard=(i % 7 == 3))
                if i % 7 != 3:
                    want.append(data)
                if i % 4 == 0:
                    got += list(rb.read())
            got += list(rb.read())
            assert got == want
            assert rb.wrapped > 0 and rb.discarded == len([i for i in range(300) if i % 7 == 3])
            # A record still BUSY blocks the ones committed after it, in order.
            first = fake.reserve(8)
            second = fake.reserve(8)
            fake.commit(second, b"B" * 8)
            assert list(rb.read()) == [] and fake.cons() == first
            fake.commit(first, b"A" * 8)
            assert list(rb.read()) == [b"A" * 8, b"B" * 8] and fake.cons() == fake.prod
    finally:
        fake.close()


def test_ring_sizes_are_checked():
    fake = FakePerf(1)
    try:
        with pytest.raises(UsageError):
            PerfRing(fake.fd, 3)
        with pytest.raises(UsageError):
            RingBuf(fake.fd, 3 * PAGE)
    finally:
        fake.close()
