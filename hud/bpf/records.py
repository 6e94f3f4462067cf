"""Pure decoders of what the kernel side hands to userspace (bytes in, values out)."""
from __future__ import annotations

import struct

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
