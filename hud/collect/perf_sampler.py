"""cpu-clock samples of a target's threads with user registers and a user stack copy.

One perf event per (thread, CPU) with inherit=1, so threads created later are sampled
too (KERNEL-FACTS §5c: an event opened after a thread exists samples only that tid, and
mmap of an inherit=1 cpu=-1 event is EINVAL); the events of one CPU share one ring via
PERF_EVENT_IOC_SET_OUTPUT. Records are decoded by `parse_sample`, a pure function.
"""
from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from typing import Optional

from hud.bpf.perfbuf import PerfRing, close_rings
from hud.errors import HudError, TargetNotFound, UsageError
from hud.linux import procfs
from hud.linux.libc import ARCH
from hud.linux.perf_event import (
    CLOCK_MONOTONIC,
    PERF_CONTEXT_KERNEL,
    PERF_CONTEXT_MAX,
    PERF_CONTEXT_USER,
    PERF_COUNT_SW_CPU_CLOCK,
    PERF_RECORD_LOST,
    PERF_RECORD_MISC_CPUMODE_MASK,
    PERF_RECORD_MISC_KERNEL,
    PERF_RECORD_SAMPLE,
    PERF_SAMPLE_CALLCHAIN,
    PERF_SAMPLE_CPU,
    PERF_SAMPLE_IP,
    PERF_SAMPLE_PERIOD,
    PERF_SAMPLE_REGS_ABI_NONE,
    PERF_SAMPLE_REGS_USER,
    PERF_SAMPLE_STACK_USER,
    PERF_SAMPLE_TID,
    PERF_SAMPLE_TIME,
    PERF_TYPE_SOFTWARE,
    PerfEventAttr,
    enable,
    perf_event_open,
    set_output,
)
from hud.model import CpuSample, Lost, StackCapture, UserRegs

SAMPLE_TYPE = (PERF_SAMPLE_IP | PERF_SAMPLE_TID | PERF_SAMPLE_TIME | PERF_SAMPLE_CPU
               | PERF_SAMPLE_PERIOD | PERF_SAMPLE_CALLCHAIN | PERF_SAMPLE_REGS_USER
               | PERF_SAMPLE_STACK_USER)
# perf register numbers (asm/perf_regs.h): x86_64 BP=6 SP=7 IP=8; arm64 X29, X30, SP=31, PC=32.
REGS_MASK = {"x86_64": (1 << 6) | (1 << 7) | (1 << 8),
             "aarch64": (1 << 29) | (1 << 30) | (1 << 31) | (1 << 32)}
MAX_STACK_USER = 65528          # the kernel's limit (65536 is EINVAL), a multiple of 8
_U64 = struct.Struct("<Q")
_U32X2 = struct.Struct("<II")
_MAX_CALLCHAIN = 4096


def _regs(arch: str, values: Sequence[int]) -> Optional[UserRegs]:
    """UserRegs from sampled register values in mask-bit order."""
    if arch == "x86_64" and len(values) >= 3:
        bp, sp, ip = values[0], values[1], values[2]
        return UserRegs("x86_64", ip=ip, sp=sp, fp=bp)
    if arch == "aarch64" and len(values) >= 4:
        x29, x30, sp, pc = values[0], values[1], values[2], values[3]
        return UserRegs("aarch64", ip=pc, sp=sp, fp=x29, lr=x30)
    return None


def split_callchain(chain: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(kernel ips, user ips) of a perf callchain with PERF_CONTEXT_* markers; zeros dropped."""
    kernel: list[int] = []
    user: list[int] = []
    cur = user
    for ip in chain:
        if ip >= PERF_CONTEXT_MAX:
            cur = kernel if ip == PERF_CONTEXT_KERNEL else user if ip == PERF_CONTEXT_USER \
                else []
            continue
        if ip:
            cur.append(ip)
    return tuple(kernel), tuple(user)


def parse_sample(body: bytes, pid: int, arch: str = ARCH, sample_type: int = SAMPLE_TYPE,
                 regs_mask: Optional[int] = None, misc: int = 0) -> Optional[CpuSample]:
    """Decode a PERF_RECORD_SAMPLE body of exactly SAMPLE_TYPE's fields into a CpuSample.

    Returns None when the body is truncated or inconsistent (the caller counts it).
    `misc` is the record header's: its cpumode says whether kernel code was interrupted.
    Field order (perf_event.h): IP, TID, TIME, CPU, PERIOD, CALLCHAIN, REGS_USER{abi, regs
    in mask-bit order}, STACK_USER{size, data[size], dyn_size if size}.
    """
    if sample_type != SAMPLE_TYPE:
        raise UsageError(f"parse_sample handles sample_type {SAMPLE_TYPE:#x} only")
    mask = REGS_MASK.get(arch, 0) if regs_mask is None else regs_mask
    nregs = bin(mask).count("1")
    n = len(body)
    try:
        _ip, = _U64.unpack_from(body, 0)
        spid, tid = _U32X2.unpack_from(body, 8)
        time_ns, = _U64.unpack_from(body, 16)
        cpu, _res = _U32X2.unpack_from(body, 24)
        period, = _U64.unpack_from(body, 32)
        nr, = _U64.unpack_from(body, 40)
        if nr > _MAX_CALLCHAIN:
            return None
        pos = 48
        chain = struct.unpack_from(f"<{nr}Q", body, pos)
        pos += 8 * nr
        abi, = _U64.unpack_from(body, pos)
        pos += 8
        regs = None
        if abi != PERF_SAMPLE_REGS_ABI_NONE:
            values = struct.unpack_from(f"<{nregs}Q", body, pos)
            pos += 8 * nregs
            regs = _regs(arch, values)
        size, = _U64.unpack_from(body, pos)
        pos += 8
        stack = b""
        if size:
            if pos + size + 8 > n:
                return None
            dyn, = _U64.unpack_from(body, pos + size)
            stack = bytes(body[pos:pos + min(dyn, size)])
            pos += size + 8
    except struct.error:
        return None
    kernel, user = split_callchain(chain)
    return CpuSample(pid=pid if pid else spid, tid=tid, cpu=cpu, time_ns=time_ns,
                     period_ns=period,
                     stack=StackCapture(fp_ips=user, regs=regs, stack=stack,
                                        kernel_ips=kernel),
                     kernel=misc & PERF_RECORD_MISC_CPUMODE_MASK == PERF_RECORD_MISC_KERNEL)


def sample_attr(freq: int = 99, stack_bytes: int = 16384, arch: str = ARCH) -> PerfEventAttr:
    """The cpu-clock event: `freq` Hz, user regs + `stack_bytes` of user stack per sample."""
    if arch not in REGS_MASK:
        raise UsageError(f"no register mask for {arch}", "hud supports x86_64 and aarch64")
    stack_bytes = max(8, min(MAX_STACK_USER, stack_bytes)) // 8 * 8
    return PerfEventAttr(
        type=PERF_TYPE_SOFTWARE, config=PERF_COUNT_SW_CPU_CLOCK, period_or_freq=freq,
        freq=True, sample_type=SAMPLE_TYPE, disabled=True, inherit=True,
        sample_regs_user=REGS_MASK[arch], sample_stack_user=stack_bytes,
        use_clockid=True, clockid=CLOCK_MONOTONIC, wakeup=1)


class PerfSampler:
    """cpu-clock sampling of one process; `read()` returns the CpuSample/Lost events so far."""

    def __init__(self, pid: int, freq: int = 99, stack_bytes: int = 16384,
                 data_pages: int = 256, tids: Optional[Sequence[int]] = None) -> None:
        if not procfs.alive(pid):
            raise TargetNotFound(f"no process {pid}", "check the pid")
        self.pid = pid
        self.arch = ARCH
        self.bad_records = 0
        self._fds: list[int] = []
        self._rings: dict[int, PerfRing] = {}
        attr = sample_attr(freq, stack_bytes, self.arch)
        try:
            for tid in (tids if tids is not None else procfs.list_tids(pid)):
                for cpu in procfs.online_cpus():
                    self._open(attr, tid, cpu, data_pages)
        except BaseException:
            self.close()
            raise
        if not self._fds:
            self.close()
            raise TargetNotFound(f"process {pid} has no threads to sample")

    def _open(self, attr: PerfEventAttr, tid: int, cpu: int, data_pages: int) -> None:
        try:
            fd = perf_event_open(attr, tid, cpu)
        except HudError as e:
            if e.errno == 3:  # ESRCH: the thread exited meanwhile
                return
            raise
        self._fds.append(fd)
        ring = self._rings.get(cpu)
        if ring is None:
            self._rings[cpu] = PerfRing(fd, data_pages)
        else:
            set_output(fd, ring.fd)

    def start(self) -> None:
        for fd in self._fds:
            enable(fd)

    def read(self) -> list:
        """Decoded events since the last call: CpuSample and Lost, ring by ring."""
        return list(self._iter())

    def _iter(self) -> Iterator:
        for cpu, ring in self._rings.items():
            for rtype, misc, body in ring.read():
                if rtype == PERF_RECORD_SAMPLE:
                    s = parse_sample(body, self.pid, self.arch, misc=misc)
                    if s is None:
                        self.bad_records += 1
                    else:
                        yield s
                elif rtype == PERF_RECORD_LOST and len(body) >= 16:
                    yield Lost(f"perf cpu {cpu}", _U64.unpack_from(body, 8)[0])

    def close(self) -> None:
        """Unmap the rings and close every event fd (idempotent)."""
        close_rings(self._rings, self._fds)

    def __enter__(self) -> PerfSampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
