"""Pure decoders of the perf backend's switch rings: capture samples, preemption samples,
SWITCH, EXIT and LOST records.

The events of hud.collect.perf_switch write into one ring per CPU, all with
`sample_id_all=1` and PERF_SAMPLE_IDENTIFIER first in every sample, so a record's event
(and therefore its layout) is known from its first 8 bytes:

- a capture sample (software context-switches event, period 1), CAPTURE_SAMPLE_TYPE =
  IDENTIFIER | TID | TIME | CPU | CALLCHAIN | REGS_USER | STACK_USER, taken at the
  switch-out in the thread's own context: its user registers, stack copy and callchain;
- a preemption sample (sched:sched_switch tracepoint filtered to runnable switch-outs),
  PREEMPT_SAMPLE_TYPE = IDENTIFIER | TID | TIME | CPU | RAW: prev_state and the task that
  took the CPU (next_pid, next_comm at the live format's offsets);
- PERF_RECORD_SWITCH (misc SWITCH_OUT[_PREEMPT] or an IN), PERF_RECORD_EXIT and
  PERF_RECORD_LOST, each with the sample_id trailer (TID, TIME, CPU, IDENTIFIER).

Field order in a sample and in the trailer is perf_event.h's (KERNEL-FACTS §5). Bytes in,
values out: unit-tested on synthetic records without root.
"""
from __future__ import annotations

import struct
from typing import Any, NamedTuple, Optional

from hud.bpf.records import cstring
from hud.collect.perf_sampler import REGS_MASK, split_callchain
from hud.collect.perf_sampler import _regs as regs_from_values  # shared, not copied
from hud.errors import BadInput
from hud.linux.perf_event import (
    PERF_RECORD_MISC_SWITCH_OUT,
    PERF_RECORD_MISC_SWITCH_OUT_PREEMPT,
    PERF_SAMPLE_CALLCHAIN,
    PERF_SAMPLE_CPU,
    PERF_SAMPLE_IDENTIFIER,
    PERF_SAMPLE_RAW,
    PERF_SAMPLE_REGS_ABI_NONE,
    PERF_SAMPLE_REGS_USER,
    PERF_SAMPLE_STACK_USER,
    PERF_SAMPLE_TID,
    PERF_SAMPLE_TIME,
)
from hud.linux.tracefs import Format
from hud.model import StackCapture

_BASE = PERF_SAMPLE_IDENTIFIER | PERF_SAMPLE_TID | PERF_SAMPLE_TIME | PERF_SAMPLE_CPU
CAPTURE_SAMPLE_TYPE = (_BASE | PERF_SAMPLE_CALLCHAIN | PERF_SAMPLE_REGS_USER
                       | PERF_SAMPLE_STACK_USER)
PREEMPT_SAMPLE_TYPE = _BASE | PERF_SAMPLE_RAW
# The sample_id trailer of non-sample records with these sample types: TID, TIME, CPU,
# IDENTIFIER (ID and STREAM_ID are not set).
_SAMPLE_ID = struct.Struct("<IIQIIQ")
_HEAD = struct.Struct("<QIIQII")    # identifier, pid, tid, time, cpu, res
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_LOST = struct.Struct("<QQ")
_TASK = struct.Struct("<IIIIQ")     # PERF_RECORD_EXIT/FORK: pid, ppid, tid, ptid, time
_MAX_CALLCHAIN = 4096


class SwitchFields(NamedTuple):
    """Where sched_switch's raw fields are, from the live tracepoint format, and which
    prev_state bits are task states (none set: runnable)."""

    prev_state: tuple[int, int]     # (offset, size) in the raw data
    next_pid: tuple[int, int]
    next_comm: tuple[int, int]
    state_mask: int = 0xFF

    @classmethod
    def from_format(cls, fmt: Format, state_mask: int = 0xFF) -> SwitchFields:
        try:
            f = {n: (fmt.field(n).offset, fmt.field(n).size)
                 for n in ("prev_state", "next_pid", "next_comm")}
        except KeyError as e:
            raise BadInput(f"sched_switch format lacks a field hud needs: {e}",
                           "this kernel's sched_switch tracepoint is not supported") from None
        for name in ("prev_state", "next_pid"):
            if f[name][1] not in (4, 8):
                raise BadInput(f"sched_switch {name} is {f[name][1]} bytes")
        return cls(f["prev_state"], f["next_pid"], f["next_comm"], state_mask)

    def runnable_filter(self) -> str:
        """The tracepoint filter keeping switch-outs of a task still runnable."""
        return f"!(prev_state & {self.state_mask})"


class Capture:
    """A thread's user stack at its switch-out (the context-switches sample), decoded
    lazily: most switch-outs end up short or parked, and only the header and the (ip, sp)
    of those are ever read. `capture` decodes the rest once (an empty StackCapture when
    the body is malformed; `bad` says so)."""

    __slots__ = ("_capture", "_site", "arch", "bad", "body", "cpu", "id", "pid", "tid", "time")

    def __init__(self, body: bytes, arch: str) -> None:
        if len(body) < _HEAD.size:
            raise BadInput(f"perf capture sample of {len(body)} bytes")
        self.id, self.pid, self.tid, self.time, self.cpu, _ = _HEAD.unpack_from(body, 0)
        self.body = body
        self.arch = arch
        self.bad = False
        self._capture: Optional[StackCapture] = None
        self._site: Any = _UNSET

    @classmethod
    def of(cls, tid: int, time_ns: int, capture: StackCapture, pid: int = 0, cpu: int = 0,
           arch: str = "x86_64") -> Capture:
        """An already decoded capture (tests, replays)."""
        c = cls(_HEAD.pack(0, pid, tid, time_ns, cpu, 0), arch)
        c._capture = capture
        c._site = (capture.regs.ip, capture.regs.sp) if capture.regs is not None else None
        return c

    @property
    def site(self) -> Optional[tuple[int, int]]:
        """(user ip, sp) at the switch-out, without decoding the stack; None without regs."""
        if self._site is _UNSET:
            self._site = _site(self.body, self.arch)
        return self._site

    @property
    def capture(self) -> StackCapture:
        if self._capture is None:
            try:
                self._capture = decode_capture(self.body, self.arch)
            except BadInput:
                self.bad = True
                self._capture = StackCapture()
            self.body = b""     # decoded: the raw copy is no longer needed
        return self._capture


_UNSET = object()
# Positions of ip and sp among the sampled registers (mask-bit order, REGS_MASK).
_SITE_REGS = {"x86_64": (2, 1), "aarch64": (3, 2)}


def _site(body: bytes, arch: str) -> Optional[tuple[int, int]]:
    try:
        nr, = _U64.unpack_from(body, _HEAD.size)
        if nr > _MAX_CALLCHAIN:
            return None
        pos = _HEAD.size + 8 + 8 * nr
        abi, = _U64.unpack_from(body, pos)
        if abi == PERF_SAMPLE_REGS_ABI_NONE or arch not in _SITE_REGS:
            return None
        ip_at, sp_at = _SITE_REGS[arch]
        ip, = _U64.unpack_from(body, pos + 8 + 8 * ip_at)
        sp, = _U64.unpack_from(body, pos + 8 + 8 * sp_at)
    except struct.error:
        return None
    return ip, sp


class Preempt(NamedTuple):
    """A thread left the CPU still runnable; `next_*` took the CPU (sched_switch)."""

    id: int
    pid: int
    tid: int
    time: int
    cpu: int
    state: int
    next_pid: int
    next_comm: str


class SwitchMark(NamedTuple):
    """A PERF_RECORD_SWITCH: the thread `tid` came onto (or left) the CPU at `time`."""

    switch_in: bool
    preempt: bool        # OUT while still runnable (the kernel's task_is_runnable)
    pid: int
    tid: int
    time: int
    cpu: int
    id: int


class ExitMark(NamedTuple):
    """A PERF_RECORD_EXIT: thread `tid` of process `pid` exited at `time`."""

    pid: int
    tid: int
    time: int


class LostMark(NamedTuple):
    """A PERF_RECORD_LOST: `lost` records of event `id` dropped before `time`."""

    id: int
    lost: int
    time: int
    cpu: int


def sample_id(body: bytes) -> int:
    """The event id of a PERF_RECORD_SAMPLE body (PERF_SAMPLE_IDENTIFIER comes first)."""
    if len(body) < 8:
        raise BadInput(f"perf sample of {len(body)} bytes has no identifier")
    return _U64.unpack_from(body)[0]


def decode_capture(body: bytes, arch: str, regs_mask: Optional[int] = None) -> StackCapture:
    """The stack of a capture sample body (CAPTURE_SAMPLE_TYPE); BadInput if malformed."""
    mask = REGS_MASK.get(arch, 0) if regs_mask is None else regs_mask
    nregs = bin(mask).count("1")
    n = len(body)
    try:
        pos = _HEAD.size
        nr, = _U64.unpack_from(body, pos)
        if nr > _MAX_CALLCHAIN:
            raise BadInput(f"perf capture sample claims {nr} callchain entries")
        chain = struct.unpack_from(f"<{nr}Q", body, pos + 8)
        pos += 8 + 8 * nr
        abi, = _U64.unpack_from(body, pos)
        pos += 8
        regs = None
        if abi != PERF_SAMPLE_REGS_ABI_NONE:
            regs = regs_from_values(arch, struct.unpack_from(f"<{nregs}Q", body, pos))
            pos += 8 * nregs
        size, = _U64.unpack_from(body, pos)
        pos += 8
        stack = b""
        if size:
            if pos + size + 8 > n:
                raise BadInput(f"perf capture sample claims a {size}-byte stack copy")
            dyn, = _U64.unpack_from(body, pos + size)
            stack = bytes(body[pos:pos + min(dyn, size)])
    except struct.error as e:
        raise BadInput(f"truncated perf capture sample: {e}") from None
    kernel, user = split_callchain(chain)
    return StackCapture(fp_ips=user, regs=regs, stack=stack, kernel_ips=kernel)


def decode_preempt(body: bytes, fields: SwitchFields) -> Preempt:
    """A preemption sample body (PREEMPT_SAMPLE_TYPE); BadInput if malformed."""
    try:
        sid, pid, tid, time_ns, cpu, _res = _HEAD.unpack_from(body, 0)
        size, = _U32.unpack_from(body, _HEAD.size)
    except struct.error as e:
        raise BadInput(f"truncated sched_switch sample: {e}") from None
    # The raw data starts at common_type; size counts the padding after it.
    raw = body[_HEAD.size + 4:_HEAD.size + 4 + size]
    off, length = fields.next_comm
    return Preempt(sid, pid, tid, time_ns, cpu, state=_field(raw, fields.prev_state),
                   next_pid=_field(raw, fields.next_pid),
                   next_comm=cstring(raw[off:off + length]))


def _field(raw: bytes, where: tuple[int, int]) -> int:
    off, size = where
    if off + size > len(raw):
        raise BadInput(f"sched_switch raw data of {len(raw)} bytes lacks offset {off}")
    return int.from_bytes(raw[off:off + size], "little", signed=True)


def trailer(body: bytes) -> tuple[int, int, int, int, int]:
    """(pid, tid, time, cpu, event id) of a non-sample record's sample_id trailer, which
    ends the record (a CPU-wide switch record has next_prev_pid/tid before it)."""
    if len(body) < _SAMPLE_ID.size:
        raise BadInput(f"perf record of {len(body)} bytes lacks its sample_id")
    pid, tid, time_ns, cpu, _res, sid = _SAMPLE_ID.unpack_from(body, len(body) - _SAMPLE_ID.size)
    return pid, tid, time_ns, cpu, sid


def decode_switch(body: bytes, misc: int) -> SwitchMark:
    """A PERF_RECORD_SWITCH body (only the sample_id trailer) and its header's misc."""
    pid, tid, time_ns, cpu, sid = trailer(body)
    return SwitchMark(switch_in=not misc & PERF_RECORD_MISC_SWITCH_OUT,
                      preempt=bool(misc & PERF_RECORD_MISC_SWITCH_OUT_PREEMPT),
                      pid=pid, tid=tid, time=time_ns, cpu=cpu, id=sid)


def decode_exit(body: bytes) -> ExitMark:
    """A PERF_RECORD_EXIT body: pid, ppid, tid, ptid, time (then the sample_id trailer)."""
    if len(body) < _TASK.size:
        raise BadInput("PERF_RECORD_EXIT record is truncated")
    pid, _ppid, tid, _ptid, time_ns = _TASK.unpack_from(body)
    return ExitMark(pid, tid, time_ns)


def decode_lost(body: bytes) -> LostMark:
    """A PERF_RECORD_LOST body: id, count, then the sample_id trailer (time 0 without it)."""
    if len(body) < _LOST.size:
        raise BadInput("PERF_RECORD_LOST record is truncated")
    sid, lost = _LOST.unpack_from(body)
    time_ns = cpu = 0
    if len(body) >= _LOST.size + _SAMPLE_ID.size:
        _p, _t, time_ns, cpu, _r, _i = _SAMPLE_ID.unpack_from(body, _LOST.size)
    return LostMark(id=sid, lost=lost, time=time_ns, cpu=cpu)
