"""Pure record decoders: perf samples of any supported sample_type, RAW, LOST, stacks."""
from __future__ import annotations

import struct

import pytest

from hud.bpf import records
from hud.errors import BadInput
from hud.linux import perf_event as pe


def _sample(stack: bytes, dyn: int) -> bytes:
    body = struct.pack("<Q", 0x401000)                     # IP
    body += struct.pack("<II", 10, 11)                     # TID
    body += struct.pack("<Q", 123456789)                   # TIME
    body += struct.pack("<II", 1, 0)                       # CPU
    body += struct.pack("<Q", 1000000)                     # PERIOD
    body += struct.pack("<Q", 3) + struct.pack("<3Q", pe.PERF_CONTEXT_USER, 0x401000, 0x402000)
    body += struct.pack("<Q", pe.PERF_SAMPLE_REGS_ABI_64) + struct.pack("<3Q", 0xB, 0x5, 0x401000)
    body += struct.pack("<Q", len(stack)) + stack + struct.pack("<Q", dyn)
    return body


ST = (pe.PERF_SAMPLE_IP | pe.PERF_SAMPLE_TID | pe.PERF_SAMPLE_TIME | pe.PERF_SAMPLE_CPU
      | pe.PERF_SAMPLE_PERIOD | pe.PERF_SAMPLE_CALLCHAIN | pe.PERF_SAMPLE_REGS_USER
      | pe.PERF_SAMPLE_STACK_USER)
MASK = (1 << pe.X86_REG["bp"]) | (1 << pe.X86_REG["sp"]) | (1 << pe.X86_REG["ip"])


def test_parse_sample_in_record_order():
    stack = bytes(range(64))
    s = records.parse_sample(_sample(stack, 40), ST, MASK)
    assert (s.ip, s.pid, s.tid, s.time, s.cpu, s.period) == (0x401000, 10, 11, 123456789, 1,
                                                             1000000)
    assert s.callchain == (pe.PERF_CONTEXT_USER, 0x401000, 0x402000)
    assert s.regs == ((6, 0xB), (7, 0x5), (8, 0x401000))
    assert s.reg(pe.X86_REG["ip"]) == s.ip and s.reg(pe.X86_REG["ax"]) is None
    assert s.stack == stack[:40]                  # cut to dyn_size


def test_parse_sample_of_a_kernel_thread_and_empty_stack():
    body = struct.pack("<II", 0, 0) + struct.pack("<Q", 0) + struct.pack("<Q", 0)
    s = records.parse_sample(body, pe.PERF_SAMPLE_TID | pe.PERF_SAMPLE_REGS_USER
                             | pe.PERF_SAMPLE_STACK_USER, MASK)
    assert s.regs_abi == 0 and s.regs == () and s.stack == b""


def test_truncated_and_unsupported_samples_are_bad_input():
    full = _sample(b"\0" * 16, 16)
    for cut in (3, 20, len(full) - 1):
        with pytest.raises(BadInput):
            records.parse_sample(full[:cut], ST, MASK)
    with pytest.raises(BadInput):
        records.parse_sample(struct.pack("<Q", 1 << 60), pe.PERF_SAMPLE_CALLCHAIN)
    with pytest.raises(BadInput):
        records.parse_sample(full, ST | pe.PERF_SAMPLE_READ, MASK)


def test_raw_lost_stack_and_strings():
    assert records.raw_sample(struct.pack("<I", 4) + b"abcd") == b"abcd"
    with pytest.raises(BadInput):
        records.raw_sample(struct.pack("<I", 8) + b"abcd")
    assert records.lost(struct.pack("<QQ", 5, 99)) == (5, 99)
    assert records.stack_ips(struct.pack("<4Q", 1, 0, 3, 0)) == (1, 3)
    assert records.stack_ips(struct.pack("<4Q", 1, 2, 3, 4), 2) == (1, 2)
    assert records.cstring(b"tokio-runtime-w\0junk") == "tokio-runtime-w"
