"""hud.collect.perf_records: the perf backend's ring records, decoded from synthetic bytes.

Capture samples are cross-checked against hud.bpf.records.parse_sample, an independent
generic decoder of the same perf_event.h layout.
"""
from __future__ import annotations

import struct

import pytest

from hud.bpf.records import parse_sample
from hud.collect.perf_records import (
    CAPTURE_SAMPLE_TYPE,
    PREEMPT_SAMPLE_TYPE,
    Capture,
    SwitchFields,
    decode_capture,
    decode_exit,
    decode_lost,
    decode_preempt,
    decode_switch,
    sample_id,
)
from hud.collect.perf_sampler import REGS_MASK
from hud.errors import BadInput
from hud.linux.perf_event import (
    PERF_CONTEXT_KERNEL,
    PERF_CONTEXT_USER,
    PERF_RECORD_MISC_SWITCH_OUT,
    PERF_RECORD_MISC_SWITCH_OUT_PREEMPT,
)
from hud.linux.tracefs import parse_format

# The 6.18 format file of sched:sched_switch (this project's VM).
FORMAT_618 = """name: sched_switch
ID: 372
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:char prev_comm[16];\toffset:8;\tsize:16;\tsigned:0;
\tfield:pid_t prev_pid;\toffset:24;\tsize:4;\tsigned:1;
\tfield:int prev_prio;\toffset:28;\tsize:4;\tsigned:1;
\tfield:long prev_state;\toffset:32;\tsize:8;\tsigned:1;
\tfield:char next_comm[16];\toffset:40;\tsize:16;\tsigned:0;
\tfield:pid_t next_pid;\toffset:56;\tsize:4;\tsigned:1;
\tfield:int next_prio;\toffset:60;\tsize:4;\tsigned:1;
"""
FIELDS = SwitchFields.from_format(parse_format(FORMAT_618))
X86 = REGS_MASK["x86_64"]
ARM = REGS_MASK["aarch64"]


def head(ident: int = 7, pid: int = 100, tid: int = 101, time: int = 5_000, cpu: int = 1) -> bytes:
    return struct.pack("<QIIQII", ident, pid, tid, time, cpu, 0)


def capture_body(chain=(), regs=(0x1000, 0x7ffc0000, 0x401000), stack=b"", size=None,
                 **kw) -> bytes:
    out = head(**kw) + struct.pack("<Q", len(chain)) + struct.pack(f"<{len(chain)}Q", *chain)
    if regs is None:
        out += struct.pack("<Q", 0)                       # PERF_SAMPLE_REGS_ABI_NONE
    else:
        out += struct.pack("<Q", 2) + struct.pack(f"<{len(regs)}Q", *regs)
    size = len(stack) + (-len(stack) % 8) if size is None else size
    out += struct.pack("<Q", size)
    if size:
        out += stack.ljust(size, b"\0") + struct.pack("<Q", len(stack))
    return out


def trailer(pid=100, tid=101, time=9_000, cpu=0, ident=7) -> bytes:
    return struct.pack("<IIQIIQ", pid, tid, time, cpu, 0, ident)


def raw_switch(state: int, next_pid: int, next_comm: bytes) -> bytes:
    raw = bytearray(64)
    struct.pack_into("<H", raw, 0, 372)
    raw[8:24] = b"tokio-runtime-w".ljust(16, b"\0")
    struct.pack_into("<i", raw, 24, 101)
    struct.pack_into("<q", raw, 32, state)
    raw[40:56] = next_comm.ljust(16, b"\0")
    struct.pack_into("<i", raw, 56, next_pid)
    return bytes(raw)


def test_capture_matches_the_generic_decoder():
    chain = (PERF_CONTEXT_KERNEL, 0xffffffff81000010, 0xffffffff81000020,
             PERF_CONTEXT_USER, 0x401234, 0, 0x402345)
    stack = bytes(range(256)) * 3
    body = capture_body(chain=chain, stack=stack, size=1024, ident=42, tid=777, time=123456)
    c = Capture(body, "x86_64")
    ref = parse_sample(body, CAPTURE_SAMPLE_TYPE, X86)
    assert (c.id, c.pid, c.tid, c.time, c.cpu) == (ref.id, ref.pid, ref.tid, ref.time, ref.cpu)
    assert c.site == (ref.reg(8), ref.reg(7))             # (ip, sp) without decoding
    cap = c.capture
    assert cap == decode_capture(body, "x86_64") and not c.bad
    assert cap.stack == ref.stack == stack                # cut to dyn_size, not size
    assert cap.regs is not None
    assert (cap.regs.fp, cap.regs.sp, cap.regs.ip) == (ref.reg(6), ref.reg(7), ref.reg(8))
    assert cap.kernel_ips == (0xffffffff81000010, 0xffffffff81000020)
    assert cap.fp_ips == (0x401234, 0x402345)             # markers and zeros dropped
    assert sample_id(body) == 42


def test_capture_aarch64_registers_in_mask_order():
    body = capture_body(regs=(0x29, 0x30, 0x7ff0, 0x4000), stack=b"\1" * 16)
    assert Capture(body, "aarch64").site == (0x4000, 0x7ff0)
    regs = decode_capture(body, "aarch64").regs
    assert regs is not None
    assert (regs.fp, regs.lr, regs.sp, regs.ip) == (0x29, 0x30, 0x7ff0, 0x4000)
    ref = parse_sample(body, CAPTURE_SAMPLE_TYPE, ARM)
    assert (ref.reg(29), ref.reg(30), ref.reg(31), ref.reg(32)) == (0x29, 0x30, 0x7ff0, 0x4000)


def test_capture_of_a_kernel_thread_has_no_regs_or_stack():
    c = Capture(capture_body(regs=None, size=0), "x86_64")
    assert c.site is None
    assert c.capture.regs is None and c.capture.stack == b""


@pytest.mark.parametrize("cut", [4, 30, 60, -9, -1])
def test_truncated_capture_is_bad_input(cut):
    body = capture_body(chain=(PERF_CONTEXT_USER, 1, 2), stack=b"x" * 64)
    with pytest.raises(BadInput):
        decode_capture(body[:cut], "x86_64")
    if len(body[:cut]) >= 32:
        # The lazy form reads the header only; a bad rest is data, not an exception.
        c = Capture(body[:cut], "x86_64")
        assert c.capture.regs is None and c.bad
    else:
        with pytest.raises(BadInput):
            Capture(body[:cut], "x86_64")


def test_capture_with_an_absurd_callchain_is_bad_input():
    body = head() + struct.pack("<Q", 1 << 40)
    with pytest.raises(BadInput):
        decode_capture(body, "x86_64")


def test_preempt_reads_the_format_offsets():
    raw = raw_switch(256, 4242, b"stress-ng")
    body = head(ident=9, tid=101, time=77) + struct.pack("<I", len(raw) + 4) + raw + b"\0" * 4
    p = decode_preempt(body, FIELDS)
    assert (p.id, p.tid, p.time, p.state, p.next_pid, p.next_comm) == \
        (9, 101, 77, 256, 4242, "stress-ng")
    ref = parse_sample(body, PREEMPT_SAMPLE_TYPE)
    assert ref.raw[:64] == raw


def test_preempt_with_short_raw_data_is_bad_input():
    raw = raw_switch(0, 1, b"x")[:40]
    body = head() + struct.pack("<I", len(raw)) + raw
    with pytest.raises(BadInput):
        decode_preempt(body, FIELDS)


def test_switch_fields_and_runnable_filter():
    assert FIELDS.prev_state == (32, 8) and FIELDS.next_pid == (56, 4)
    assert FIELDS.next_comm == (40, 16)
    assert FIELDS.runnable_filter() == "!(prev_state & 255)"
    assert SwitchFields.from_format(parse_format(FORMAT_618), 0x7F).runnable_filter() == \
        "!(prev_state & 127)"


def test_switch_fields_need_prev_state():
    text = FORMAT_618.replace("prev_state", "prev_whatever")
    with pytest.raises(BadInput):
        SwitchFields.from_format(parse_format(text))


@pytest.mark.parametrize("misc,switch_in,preempt", [
    (0, True, False),
    (PERF_RECORD_MISC_SWITCH_OUT, False, False),
    (PERF_RECORD_MISC_SWITCH_OUT | PERF_RECORD_MISC_SWITCH_OUT_PREEMPT, False, True),
])
def test_switch_record(misc, switch_in, preempt):
    m = decode_switch(trailer(tid=55, time=31337, cpu=1, ident=3), misc)
    assert (m.switch_in, m.preempt, m.tid, m.time, m.cpu, m.id) == \
        (switch_in, preempt, 55, 31337, 1, 3)


def test_switch_record_reads_the_trailer_from_the_end():
    # A CPU-wide switch record has next_prev_pid/tid before the trailer.
    m = decode_switch(struct.pack("<II", 1, 2) + trailer(tid=55, time=8), 0)
    assert (m.tid, m.time) == (55, 8)
    with pytest.raises(BadInput):
        decode_switch(trailer()[:-1], 0)


def test_exit_and_lost_records():
    e = decode_exit(struct.pack("<IIIIQ", 100, 1, 103, 101, 4444) + trailer())
    assert (e.pid, e.tid, e.time) == (100, 103, 4444)
    lost = decode_lost(struct.pack("<QQ", 7, 12) + trailer(time=999, cpu=1))
    assert (lost.id, lost.lost, lost.time, lost.cpu) == (7, 12, 999, 1)
    assert decode_lost(struct.pack("<QQ", 7, 3)).time == 0     # without sample_id_all
    with pytest.raises(BadInput):
        decode_exit(b"\0" * 8)
    with pytest.raises(BadInput):
        decode_lost(b"\0" * 8)
    with pytest.raises(BadInput):
        sample_id(b"\0" * 4)
