"""perf_event_open() with a complete perf_event_attr (VER8, 136 bytes), and its ioctls."""
from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass
from typing import Optional

from hud.linux.libc import check, ioctl, raw_syscall

# include/uapi/linux/perf_event.h (values unchanged since their introduction)
PERF_TYPE_HARDWARE = 0
PERF_TYPE_SOFTWARE = 1
PERF_TYPE_TRACEPOINT = 2

PERF_COUNT_SW_CPU_CLOCK = 0
PERF_COUNT_SW_TASK_CLOCK = 1
PERF_COUNT_SW_PAGE_FAULTS = 2
PERF_COUNT_SW_CONTEXT_SWITCHES = 3
PERF_COUNT_SW_DUMMY = 9
PERF_COUNT_SW_BPF_OUTPUT = 10

PERF_SAMPLE_IP = 1 << 0
PERF_SAMPLE_TID = 1 << 1
PERF_SAMPLE_TIME = 1 << 2
PERF_SAMPLE_ADDR = 1 << 3
PERF_SAMPLE_READ = 1 << 4
PERF_SAMPLE_CALLCHAIN = 1 << 5
PERF_SAMPLE_ID = 1 << 6
PERF_SAMPLE_CPU = 1 << 7
PERF_SAMPLE_PERIOD = 1 << 8
PERF_SAMPLE_STREAM_ID = 1 << 9
PERF_SAMPLE_RAW = 1 << 10
PERF_SAMPLE_BRANCH_STACK = 1 << 11
PERF_SAMPLE_REGS_USER = 1 << 12
PERF_SAMPLE_STACK_USER = 1 << 13
PERF_SAMPLE_WEIGHT = 1 << 14
PERF_SAMPLE_DATA_SRC = 1 << 15
PERF_SAMPLE_IDENTIFIER = 1 << 16

PERF_FLAG_FD_NO_GROUP = 1 << 0
PERF_FLAG_FD_OUTPUT = 1 << 1
PERF_FLAG_PID_CGROUP = 1 << 2
PERF_FLAG_FD_CLOEXEC = 1 << 3

# Record types in the ring buffer.
PERF_RECORD_MMAP = 1
PERF_RECORD_LOST = 2
PERF_RECORD_COMM = 3
PERF_RECORD_EXIT = 4
PERF_RECORD_THROTTLE = 5
PERF_RECORD_UNTHROTTLE = 6
PERF_RECORD_FORK = 7
PERF_RECORD_SAMPLE = 9
PERF_RECORD_MMAP2 = 10
PERF_RECORD_SWITCH = 14
PERF_RECORD_SWITCH_CPU_WIDE = 15
PERF_RECORD_LOST_SAMPLES = 13

PERF_RECORD_MISC_CPUMODE_MASK = 7
PERF_RECORD_MISC_KERNEL = 1
PERF_RECORD_MISC_SWITCH_OUT = 1 << 13
PERF_RECORD_MISC_SWITCH_OUT_PREEMPT = 1 << 14

# Callchain context markers (as u64).
PERF_CONTEXT_KERNEL = (1 << 64) - 128
PERF_CONTEXT_USER = (1 << 64) - 512
PERF_CONTEXT_MAX = (1 << 64) - 4095

PERF_SAMPLE_REGS_ABI_NONE = 0
PERF_SAMPLE_REGS_ABI_32 = 1
PERF_SAMPLE_REGS_ABI_64 = 2

# ioctls: _IO('$', n) / _IOW('$', n, T)
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_DISABLE = 0x2401
PERF_EVENT_IOC_REFRESH = 0x2402
PERF_EVENT_IOC_RESET = 0x2403
PERF_EVENT_IOC_PERIOD = 0x40082404
PERF_EVENT_IOC_SET_OUTPUT = 0x2405
PERF_EVENT_IOC_SET_FILTER = 0x40082406
PERF_EVENT_IOC_ID = 0x80082407
PERF_EVENT_IOC_SET_BPF = 0x40042408
PERF_EVENT_IOC_PAUSE_OUTPUT = 0x40042409

PERF_ATTR_SIZE_VER8 = 136

# Bit positions in the u64 flag word at offset 40.
_FLAG_BITS = {
    "disabled": 0, "inherit": 1, "pinned": 2, "exclusive": 3, "exclude_user": 4,
    "exclude_kernel": 5, "exclude_hv": 6, "exclude_idle": 7, "mmap": 8, "comm": 9,
    "freq": 10, "inherit_stat": 11, "enable_on_exec": 12, "task": 13, "watermark": 14,
    # precise_ip is two bits at 15-16
    "mmap_data": 17, "sample_id_all": 18, "exclude_host": 19, "exclude_guest": 20,
    "exclude_callchain_kernel": 21, "exclude_callchain_user": 22, "mmap2": 23,
    "comm_exec": 24, "use_clockid": 25, "context_switch": 26, "write_backward": 27,
    "namespaces": 28, "ksymbol": 29, "bpf_event": 30, "aux_output": 31, "cgroup": 32,
    "text_poke": 33, "build_id": 34, "inherit_thread": 35, "remove_on_exec": 36,
    "sigtrap": 37,
}


@dataclass
class PerfEventAttr:
    """struct perf_event_attr; `pack()` gives the 136-byte VER8 layout (KERNEL-FACTS §7).

    `period_or_freq` is sample_period, or sample_freq when `freq` is set. `wakeup` is
    wakeup_events, or wakeup_watermark (bytes) when `watermark` is set.
    """

    type: int
    config: int = 0
    period_or_freq: int = 0
    sample_type: int = 0
    read_format: int = 0
    disabled: bool = False
    inherit: bool = False
    pinned: bool = False
    exclude_user: bool = False
    exclude_kernel: bool = False
    exclude_hv: bool = False
    exclude_idle: bool = False
    mmap: bool = False
    comm: bool = False
    freq: bool = False
    enable_on_exec: bool = False
    task: bool = False
    watermark: bool = False
    precise_ip: int = 0
    sample_id_all: bool = False
    exclude_callchain_kernel: bool = False
    exclude_callchain_user: bool = False
    mmap2: bool = False
    comm_exec: bool = False
    use_clockid: bool = False
    context_switch: bool = False
    inherit_thread: bool = False
    remove_on_exec: bool = False
    wakeup: int = 0
    bp_type: int = 0
    config1: int = 0
    config2: int = 0
    branch_sample_type: int = 0
    sample_regs_user: int = 0
    sample_stack_user: int = 0
    clockid: int = 0
    sample_regs_intr: int = 0
    aux_watermark: int = 0
    sample_max_stack: int = 0
    aux_sample_size: int = 0
    sig_data: int = 0
    config3: int = 0

    def flags(self) -> int:
        word = 0
        for name, bit in _FLAG_BITS.items():
            if getattr(self, name, False):
                word |= 1 << bit
        word |= (self.precise_ip & 3) << 15
        return word

    def pack(self) -> bytes:
        buf = struct.pack(
            "<IIQQQQQIIQQQQIiQIHHIIQQ",
            self.type, PERF_ATTR_SIZE_VER8, self.config, self.period_or_freq,
            self.sample_type, self.read_format, self.flags(), self.wakeup, self.bp_type,
            self.config1, self.config2, self.branch_sample_type, self.sample_regs_user,
            self.sample_stack_user, self.clockid, self.sample_regs_intr, self.aux_watermark,
            self.sample_max_stack, 0, self.aux_sample_size, 0, self.sig_data, self.config3)
        assert len(buf) == PERF_ATTR_SIZE_VER8, len(buf)
        return buf


CLOCK_MONOTONIC = 1


def perf_event_open(attr: PerfEventAttr, pid: int, cpu: int, group_fd: int = -1,
                    flags: int = PERF_FLAG_FD_CLOEXEC, what: Optional[str] = None) -> int:
    """Open a perf event and return its fd (always close-on-exec); raises HudError."""
    raw = ctypes.create_string_buffer(attr.pack(), PERF_ATTR_SIZE_VER8)
    ret = raw_syscall("perf_event_open", ctypes.addressof(raw), pid, cpu, group_fd,
                      flags | PERF_FLAG_FD_CLOEXEC)
    return check(ret, what or f"perf_event_open(type={attr.type}, config={attr.config}, "
                              f"pid={pid}, cpu={cpu})",
                 "run as root, or grant CAP_PERFMON" if ret in (-1, -13) else "")


def enable(fd: int) -> None:
    check(ioctl(fd, PERF_EVENT_IOC_ENABLE, 0), "PERF_EVENT_IOC_ENABLE")


def disable(fd: int) -> None:
    check(ioctl(fd, PERF_EVENT_IOC_DISABLE, 0), "PERF_EVENT_IOC_DISABLE")


def set_output(fd: int, target_fd: int) -> None:
    """Send fd's records into target_fd's ring (same CPU only: EINVAL across CPUs)."""
    check(ioctl(fd, PERF_EVENT_IOC_SET_OUTPUT, target_fd), "PERF_EVENT_IOC_SET_OUTPUT")


def set_filter(fd: int, expression: str) -> None:
    """Kernel-side tracepoint filter, e.g. 'prev_pid == 12 || next_pid == 12'."""
    buf = ctypes.create_string_buffer(expression.encode())
    check(ioctl(fd, PERF_EVENT_IOC_SET_FILTER, ctypes.addressof(buf)),
          "PERF_EVENT_IOC_SET_FILTER", "the filter expression uses fields of the format file")


def set_bpf(fd: int, prog_fd: int) -> None:
    """Attach a BPF program the old way; prefer a BPF link (hud.bpf.links)."""
    check(ioctl(fd, PERF_EVENT_IOC_SET_BPF, prog_fd), "PERF_EVENT_IOC_SET_BPF")


def event_id(fd: int) -> int:
    out = ctypes.c_uint64(0)
    check(ioctl(fd, PERF_EVENT_IOC_ID, ctypes.addressof(out)), "PERF_EVENT_IOC_ID")
    return out.value


# x86_64 perf register numbers (arch/x86/include/uapi/asm/perf_regs.h): AX=0 BX CX DX SI DI
# BP=6 SP=7 IP=8 FLAGS CS SS DS ES FS GS R8=16 .. R15=23.
X86_REG = {"ax": 0, "bx": 1, "cx": 2, "dx": 3, "si": 4, "di": 5, "bp": 6, "sp": 7, "ip": 8,
           "flags": 9, "cs": 10, "ss": 11, "r8": 16, "r9": 17, "r10": 18, "r11": 19,
           "r12": 20, "r13": 21, "r14": 22, "r15": 23}
# aarch64 (arch/arm64/include/uapi/asm/perf_regs.h): X0..X30 = 0..30, SP=31, PC=32.
ARM64_REG = {**{f"x{i}": i for i in range(31)}, "lr": 30, "sp": 31, "pc": 32}
