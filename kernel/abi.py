"""Structures that cross the kernel/user boundary: map specs, record layouts, ctx offsets.

A `Layout` is a named little-endian struct whose size is asserted where it is defined
(at import), so a program and its decoder cannot silently disagree. Programs in
kernel/programs declare their maps as `MapSpec`s and their records as `Layout`s; the
loader creates maps from specs and hud.bpf.records decodes with the same layouts.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from kernel import uapi


@dataclass(frozen=True)
class MapSpec:
    """What BPF_MAP_CREATE needs; `max_entries` 0 on a PERF_EVENT_ARRAY means one per
    possible CPU (the kernel refuses 0 with EINVAL, so the loader fills it in)."""

    name: str
    map_type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0
    map_extra: int = 0

    def __post_init__(self) -> None:
        if self.map_type == uapi.BPF_MAP_TYPE_RINGBUF:
            size = self.max_entries
            if self.key_size or self.value_size or size < 4096 or size & (size - 1):
                raise ValueError(f"ringbuf {self.name}: key and value size 0, max_entries a "
                                 "power-of-two multiple of the page size")
        if self.map_type == uapi.BPF_MAP_TYPE_STACK_TRACE and self.value_size % 8:
            raise ValueError(f"stack map {self.name}: value_size must be a multiple of 8")


class Layout:
    """A little-endian C struct: `fields` are (name, struct format) in order, with explicit
    padding fields ("x" formats) where C would pad; the total must equal `size`."""

    def __init__(self, name: str, fields: list[tuple[str, str]], size: int) -> None:
        self.name = name
        self.fields = tuple(fields)
        self.struct = struct.Struct("<" + "".join(fmt for _, fmt in fields))
        if self.struct.size != size:
            raise AssertionError(f"{name}: layout is {self.struct.size} bytes, expected {size}")
        self.size = size
        self.offsets: dict[str, int] = {}
        # (name, number of values) per non-padding field: "16Q" is one field of 16 values.
        self._names: list[tuple[str, int]] = []
        off = 0
        for fname, fmt in fields:
            self.offsets[fname] = off
            width = struct.calcsize("<" + fmt)
            off += width
            if not fmt.endswith("x"):
                count = len(struct.unpack("<" + fmt, bytes(width)))
                self._names.append((fname, count))

    def offset(self, field: str) -> int:
        return self.offsets[field]

    def unpack(self, data: bytes, offset: int = 0) -> dict[str, Any]:
        """Field values by name (padding omitted; repeated formats as tuples); raises
        struct.error if `data` is short."""
        values = self.struct.unpack_from(data, offset)
        out: dict[str, Any] = {}
        i = 0
        for name, count in self._names:
            out[name] = values[i] if count == 1 else tuple(values[i:i + count])
            i += count
        return out

    def pack(self, **values: Any) -> bytes:
        flat: list[Any] = []
        for name, count in self._names:
            v = values.get(name, 0 if count == 1 else (0,) * count)
            if count == 1:
                flat.append(v)
            else:
                flat.extend(v)
        return self.struct.pack(*flat)


# bpf_perf_event_data (include/uapi/linux/bpf_perf_event.h): pt_regs, then sample_period
# and addr. x86_64 pt_regs offsets (arch/x86/include/uapi/asm/ptrace.h), checked against
# the 6.18 vmlinux BTF.
PT_REGS_X86_64 = {"r15": 0, "r14": 8, "r13": 16, "r12": 24, "bp": 32, "bx": 40, "r11": 48,
                  "r10": 56, "r9": 64, "r8": 72, "ax": 80, "cx": 88, "dx": 96, "si": 104,
                  "di": 112, "orig_ax": 120, "ip": 128, "cs": 136, "flags": 144, "sp": 152,
                  "ss": 160}
PERF_EVENT_DATA_X86_64 = {"regs": 0, "sample_period": 168, "addr": 176}
PERF_EVENT_DATA_SIZE_X86_64 = 184

TASK_COMM_LEN = 16
MAX_STACK_DEPTH = 127  # kernel.perf_event_max_stack default: deeper stack maps get EINVAL

# A BPF ringbuf record header: u32 len (BUSY/DISCARD in the top bits), u32 pg_off.
RINGBUF_HDR = Layout("bpf_ringbuf_hdr", [("len", "I"), ("pg_off", "I")], 8)
