"""Pure decoders of what the kernel side hands to userspace (bytes in, values out)."""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Optional

from hud.errors import BadInput

_U32 = struct.Struct("<I")
_LOST = struct.Struct("<QQ")


def raw_sample(body: bytes) -> bytes:
    """The RAW payload of a PERF_RECORD_SAMPLE whose sample_type is PERF_SAMPLE_RAW only
    (what bpf_perf_event_output produces).

    The u32 size counts the padding that aligns size + data to 8 bytes: a 1080-byte
    output arrives as 1084 bytes, so callers slice their struct from the front.
    """
    if len(body) < 4:
        raise BadInput("perf RAW sample shorter than its size field")
    size = _U32.unpack_from(body)[0]
    if 4 + size > len(body):
        raise BadInput(f"perf RAW sample claims {size} bytes, has {len(body) - 4}")
    return body[4:4 + size]


def lost(body: bytes) -> tuple[int, int]:
    """(event id, records lost) of a PERF_RECORD_LOST body."""
    if len(body) < _LOST.size:
        raise BadInput("PERF_RECORD_LOST record is truncated")
    return _LOST.unpack_from(body)


def stack_ips(raw: bytes, count: int = -1) -> tuple[int, ...]:
    """Instruction pointers from a stack map value or bpf_get_stack buffer.

    `count` limits how many u64 slots are read (bpf_get_stack returns a byte count;
    pass it // 8). Zero entries are padding and are dropped.
    """
    n = len(raw) // 8 if count < 0 else min(count, len(raw) // 8)
    return tuple(ip for ip in struct.unpack_from(f"<{n}Q", raw) if ip)


def cstring(raw: bytes) -> str:
    """A NUL-terminated kernel string (task comm and the like)."""
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


# perf_event.h sample_type bits this decoder understands, in record order.
_IDENTIFIER, _IP, _TID, _TIME, _ADDR = 1 << 16, 1 << 0, 1 << 1, 1 << 2, 1 << 3
_ID, _STREAM_ID, _CPU, _PERIOD, _READ = 1 << 6, 1 << 9, 1 << 7, 1 << 8, 1 << 4
_CALLCHAIN, _RAW, _BRANCH_STACK = 1 << 5, 1 << 10, 1 << 11
_REGS_USER, _STACK_USER = 1 << 12, 1 << 13


@dataclass(frozen=True)
class PerfSample:
    """A decoded PERF_RECORD_SAMPLE body. Absent fields are 0 / empty.

    `regs` pairs perf register numbers (bits of sample_regs_user) with values, in bit
    order; `stack` is the user stack copy starting at the sampled sp, cut to dyn_size.
    """

    id: int = 0
    ip: int = 0
    pid: int = 0
    tid: int = 0
    time: int = 0
    addr: int = 0
    stream_id: int = 0
    cpu: int = 0
    period: int = 0
    callchain: tuple[int, ...] = ()
    raw: bytes = b""
    regs_abi: int = 0
    regs: tuple[tuple[int, int], ...] = ()
    stack: bytes = b""

    def reg(self, regno: int) -> Optional[int]:
        """The value of perf register `regno`, or None when it was not captured."""
        for n, v in self.regs:
            if n == regno:
                return v
        return None


def parse_sample(body: bytes, sample_type: int, regs_mask: int = 0) -> PerfSample:
    """Decode a sample written with `sample_type` (and `sample_regs_user` = regs_mask).

    READ and BRANCH_STACK layouts depend on more attr fields and are refused; fields that
    come after STACK_USER in the record (WEIGHT, DATA_SRC ...) are ignored.
    """
    if sample_type & (_READ | _BRANCH_STACK):
        raise BadInput("parse_sample does not decode PERF_SAMPLE_READ or BRANCH_STACK")
    out: dict = {}
    pos = 0

    def take(fmt: str) -> tuple:
        nonlocal pos
        try:
            size = struct.calcsize(fmt)
        except struct.error:  # a corrupt count too large for any format
            raise BadInput(f"perf sample field {fmt!r} is impossibly large") from None
        if pos + size > len(body):
            raise BadInput(f"perf sample truncated at byte {pos} (needs {size} more)")
        vals = struct.unpack_from(fmt, body, pos)
        pos += size
        return vals

    if sample_type & _IDENTIFIER:
        out["id"] = take("<Q")[0]
    if sample_type & _IP:
        out["ip"] = take("<Q")[0]
    if sample_type & _TID:
        out["pid"], out["tid"] = take("<II")
    if sample_type & _TIME:
        out["time"] = take("<Q")[0]
    if sample_type & _ADDR:
        out["addr"] = take("<Q")[0]
    if sample_type & _ID:
        out["id"] = take("<Q")[0]
    if sample_type & _STREAM_ID:
        out["stream_id"] = take("<Q")[0]
    if sample_type & _CPU:
        out["cpu"] = take("<II")[0]
    if sample_type & _PERIOD:
        out["period"] = take("<Q")[0]
    if sample_type & _CALLCHAIN:
        nr = take("<Q")[0]
        out["callchain"] = take(f"<{nr}Q") if nr else ()
    if sample_type & _RAW:
        size = take("<I")[0]
        out["raw"] = bytes(take(f"<{size}s")[0])
    if sample_type & _REGS_USER:
        abi = take("<Q")[0]
        out["regs_abi"] = abi
        if abi:  # PERF_SAMPLE_REGS_ABI_NONE (a kernel thread) carries no registers
            bits = [b for b in range(64) if regs_mask >> b & 1]
            out["regs"] = tuple(zip(bits, take(f"<{len(bits)}Q")))
    if sample_type & _STACK_USER:
        size = take("<Q")[0]
        if size:
            data = take(f"<{size}s")[0]
            dyn = take("<Q")[0]
            out["stack"] = bytes(data[:min(dyn, size)])
    return PerfSample(**out)
