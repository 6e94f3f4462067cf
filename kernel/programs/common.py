"""What hud's two BPF programs share: parameters, maps, record layouts, asm routines.

The sched_switch program (sched_switch.py) and the cpu-clock sampler (sampler.py) run on
the same maps, created once by the collector (hud.collect.ebpf):

| map | type | key -> value | written by |
|---|---|---|---|
| `hud_cfg` | ARRAY[1] | 0 -> CONFIG | userspace, once |
| `hud_roles` | HASH | tid -> u32 role | userspace (set_role); deleted by BPF at thread exit |
| `hud_sites` | HASH | SITE_KEY (tid, ip, sp) -> SITE_PARK / SITE_NOT_PARK | userspace |
| `hud_threads` | HASH (prealloc) | tid -> THREAD (times, switch_seq, state) | BPF |
| `hud_caps` | HASH (no prealloc) | tid -> capture record (header + stacks) | BPF |
| `hud_scratch` | ARRAY[ncpus] | cpu -> capture record | BPF (sampler) |
| `hud_counts` | PERCPU_ARRAY[1] | 0 -> u64[COUNTERS] | BPF |
| `hud_in_timer` | PERCPU_ARRAY[1] | 0 -> u64 1 while an hrtimer callback runs | BPF (timer_flag) |
| `hud_rb` | RINGBUF | records | BPF |

A capture record is a 64-byte header (OFFCPU_HDR, SAMPLE_HDR or EXIT_HDR: all start with
u32 type, u32 tid; a WAKE record is an OFFCPU_HDR of type REC_WAKE: the wakee's tid, its
wait's start and the wake's time, the waker in the holder fields, and the waker's own
capture), CAPTURE (user regs, lengths), `fp_depth` u64 frame-pointer ips from
bpf_get_stack, `kernel_depth` u64 kernel ips (bpf_get_stack without BPF_F_USER_STACK:
where in the kernel the thread sleeps or was sampled), then the copy of the user stack
from sp. Only the header, CAPTURE, the ips and the copied bytes go to the ring
(`stack_off + stack_len` bytes). The buffer keeps one
page of slack past `stack_bytes`: the verifier bounds each page's copy by its own range
(offset <= stack_bytes - 1, size <= page), not by their sum.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from kernel import uapi
from kernel.abi import Layout, MapSpec
from kernel.asm import Assembler, Reg, r0, r1, r2, r3, r4, r6, r8, r9, r10

# Thread roles as the kernel side stores them (hud_roles); absent = ROLE_UNKNOWN.
ROLE_UNKNOWN, ROLE_WORKER, ROLE_BLOCKING, ROLE_OTHER, ROLE_IGNORE = range(5)
ALL_ROLES = (1 << 5) - 1
# Roles whose stacks are captured / sampled by default: all but IGNORE (timing only).
DEFAULT_ROLE_MASK = ALL_ROLES & ~(1 << ROLE_IGNORE)

# Record types (first u32 of every ring record).
REC_OFFCPU, REC_SAMPLE, REC_EXIT, REC_WAKE = 1, 2, 3, 4

# OFFCPU_HDR.flags / SAMPLE_HDR.flags
F_RUNNABLE = 1 << 0     # left the CPU runnable (preempted or yielded): run-queue wait
F_KERNEL_MODE = 1 << 1  # the sample interrupted kernel code (ctx regs were kernel regs)
F_PROBE = 1 << 2        # below the threshold, sent because its site is not classified yet
F_FAULT = 1 << 3        # blocked in a page fault: it entered the kernel by no system call

# sched_switch prev_state bits of a sleeping task: S (TASK_INTERRUPTIBLE) and D
# (TASK_UNINTERRUPTIBLE, also TASK_KILLABLE); not T/t (stopped, traced) or X/Z.
SLEEPING = 0x1 | 0x2

# THREAD.out_kind: how the thread left the CPU last time (0 while on CPU / never seen out).
KIND_NONE, KIND_RUNNABLE, KIND_PARKED, KIND_BLOCKED = 0, 1, 2, 3
KIND_NOREC = 0x10       # role not captured: account time, emit nothing
KIND_PROBE = 0x20       # blocked at a site userspace has not classified: may be probed
KIND_FAULT = 0x40       # blocked in a page fault (F_FAULT)

# CONFIG.flags
CFG_NO_RUNQ_STACKS = 1 << 0   # runnable switch-outs keep regs only: no FP walk, no copy

# hud_sites values: what userspace decided a (tid, ip, sp) switch-out site is.
SITE_PARK, SITE_NOT_PARK = 1, 2

# hud_counts slots: failures become Lost events, the rest are statistics.
COUNTERS = ("captures", "offcpu_records", "sample_records", "exits", "probes",
            "ringbuf_offcpu", "ringbuf_sample", "ringbuf_exit", "stack_copy", "fp_stack",
            "threads_full", "captures_full", "wake_records", "ringbuf_wake", "kernel_stack")
C = {name: i for i, name in enumerate(COUNTERS)}
LOSSES = ("ringbuf_offcpu", "ringbuf_sample", "ringbuf_exit", "stack_copy", "fp_stack",
          "threads_full", "captures_full", "ringbuf_wake", "kernel_stack")

CONFIG = Layout("hud_config", [
    ("tgid", "I"), ("flags", "I"), ("threshold_ns", "Q"), ("stack_bytes", "I"),
    ("capture_roles", "I"), ("sample_roles", "I"), ("sample_stack_bytes", "I"),
    ("probe_ns", "Q")], 40)

THREAD = Layout("hud_thread", [
    ("in_ns", "Q"), ("out_ns", "Q"), ("oncpu_ns", "Q"), ("parked_ns", "Q"),
    ("offcpu_ns", "Q"), ("runq_ns", "Q"), ("switch_seq", "Q"), ("out_state", "q"),
    ("out_kind", "I"), ("captured", "I"), ("switches", "Q"), ("parks", "Q"),
    ("probe_ns", "Q")], 96)

SITE_KEY = Layout("hud_site_key", [("tid", "I"), ("_pad", "4x"), ("ip", "Q"), ("sp", "Q")],
                  24)

OFFCPU_HDR = Layout("hud_offcpu", [
    ("type", "I"), ("tid", "I"), ("pid", "I"), ("cpu", "I"), ("start_ns", "Q"),
    ("end_ns", "Q"), ("state", "q"), ("holder_pid", "I"), ("flags", "I"),
    ("holder_comm", "16s")], 64)

SAMPLE_HDR = Layout("hud_sample", [
    ("type", "I"), ("tid", "I"), ("pid", "I"), ("cpu", "I"), ("time_ns", "Q"),
    ("period_ns", "Q"), ("switch_seq", "q"), ("_res", "I"), ("flags", "I"),
    ("oncpu_ns", "q"), ("_pad", "8x")], 64)

CAPTURE = Layout("hud_capture", [
    ("ip", "Q"), ("sp", "Q"), ("fp", "Q"), ("lr", "Q"), ("fp_bytes", "i"),
    ("stack_len", "I"), ("kernel_bytes", "i"), ("_pad", "4x")], 48)

# An exit record: the header, then the thread's final THREAD value.
EXIT_HDR = Layout("hud_exit", [("type", "I"), ("tid", "I"), ("time_ns", "Q")], 16)

HDR_SIZE = 64
CAP_OFF = HDR_SIZE
FP_OFF = CAP_OFF + CAPTURE.size


@dataclass(frozen=True)
class ArchRegs:
    """Where user registers sit in this architecture's struct pt_regs, and how a
    perf_event ctx tells a kernel-mode sample (`mode_off` & `mode_mask` == `user_value`)."""

    ip: int
    sp: int
    fp: int
    lr: Optional[int]
    mode_off: int
    mode_mask: int
    user_value: int
    period_off: int  # bpf_perf_event_data.sample_period
    # The system call a task is in (x86_64 orig_ax, aarch64 syscallno; low 32 bits read):
    # -1 when the registers were saved by an interrupt or exception from user mode, 0 in
    # a kernel thread's zeroed registers.
    syscall_off: int = 0
    # The calls inside which a task ends another's futex wait: FUTEX_WAKE/REQUEUE and
    # their futex2 forms, exit (CLONE_CHILD_CLEARTID: a join), signals. A wake seen with
    # the waker anywhere else came from an interrupt that happened to land on it.
    wake_calls: tuple[int, ...] = ()
    # The system call instruction, as the little-endian word ending at the user ip saved
    # by a system call: a thread blocked with anything else there entered the kernel by
    # an exception, which for a sleeping thread means a page fault.
    syscall_insn: int = 0
    syscall_insn_len: int = 0


# x86_64: arch/x86/include/uapi/asm/ptrace.h (user mode: cs & 3 == 3).
# aarch64: struct user_pt_regs {regs[31], sp, pc, pstate} (user mode: pstate & 0xf == 0,
# EL0t). Both checked against vmlinux BTF of their kernels; bpf_perf_event_data puts
# sample_period right after the regs.
ARCH_REGS = {
    # futex, exit, exit_group, kill, tkill, tgkill, rt_sigqueueinfo, rt_tgsigqueueinfo,
    # pidfd_send_signal, futex_wake, futex_requeue (arch/x86/entry/syscalls/syscall_64.tbl)
    "x86_64": ArchRegs(ip=128, sp=152, fp=32, lr=None, mode_off=136, mode_mask=3,
                       user_value=3, period_off=168, syscall_off=120,
                       wake_calls=(202, 60, 231, 62, 200, 234, 129, 297, 424, 454, 456),
                       syscall_insn=0x050F, syscall_insn_len=2),        # syscall: 0f 05
    # the same calls in include/uapi/asm-generic/unistd.h; syscallno follows orig_x0
    "aarch64": ArchRegs(ip=256, sp=248, fp=232, lr=240, mode_off=264, mode_mask=0xF,
                        user_value=0, period_off=272, syscall_off=280,
                        wake_calls=(98, 93, 94, 129, 130, 131, 138, 240, 424, 454, 456),
                        syscall_insn=0xD4000001, syscall_insn_len=4),   # svc #0
}


@dataclass(frozen=True)
class SwitchFields:
    """sched_switch tracepoint field offsets (from the live `format` file) and the meaning
    of prev_state (from its print fmt): bits of `state_mask` set = not runnable (S, D,
    ...); none set = runnable (0 = yielded, TASK_REPORT_MAX = preempted); `exit_mask` =
    X/Z, the final switch of an exiting thread."""

    prev_state: int
    prev_state_size: int
    next_pid: int
    next_comm: int
    state_mask: int = 0xFF
    exit_mask: int = 0x30


@dataclass(frozen=True)
class Params:
    """Everything the programs are built for; the collector derives it from this host."""

    fields: SwitchFields = field(default_factory=lambda: SwitchFields(32, 8, 56, 40))
    arch: str = "x86_64"
    stack_bytes: int = 16384
    page_size: int = 4096
    fp_depth: int = 127
    # Kernel frames per capture: a sleep's path into schedule() is 8-20 frames deep (a
    # buffered read waiting on a block device ~30); deeper paths are cut at their outer end.
    kernel_depth: int = 48
    max_threads: int = 4096
    max_sites: int = 8192
    ringbuf_bytes: int = 1 << 24
    ncpus: int = 1
    timing: bool = False   # benchmarks only: time each path into hud_timing

    def __post_init__(self) -> None:
        if self.arch not in ARCH_REGS:
            raise ValueError(f"no register layout for {self.arch}")
        if not 0 < self.stack_bytes <= 65536 or self.stack_bytes % 8:
            raise ValueError("stack_bytes: a multiple of 8 in 8..65536")
        if self.page_size & (self.page_size - 1) or self.page_size < 4096:
            raise ValueError("page_size: a power of two >= 4096")
        if not 0 <= self.fp_depth <= 127:
            raise ValueError("fp_depth: 0..127 (perf_event_max_stack); 0 = no kernel FP walk")
        if not 0 <= self.kernel_depth <= 127:
            raise ValueError("kernel_depth: 0..127 (perf_event_max_stack); 0 = no kernel stack")

    @property
    def regs(self) -> ArchRegs:
        return ARCH_REGS[self.arch]

    @property
    def kernel_off(self) -> int:
        """Offset of the kernel ips in a capture record."""
        return FP_OFF + 8 * self.fp_depth

    @property
    def stack_off(self) -> int:
        """Offset of the stack copy in a capture record."""
        return self.kernel_off + 8 * self.kernel_depth

    @property
    def record_size(self) -> int:
        """Capture buffer size: header, regs, ips, stack, and one page of verifier slack."""
        return self.stack_off + self.stack_bytes + self.page_size

    @property
    def copy_chunks(self) -> int:
        """Page-wise probe_read_user calls: the partial first page, then whole pages."""
        return -(-self.stack_bytes // self.page_size) + 1


def map_specs(p: Params) -> list[MapSpec]:
    """The maps both programs use, sized for `p`."""
    return [
        MapSpec("hud_cfg", uapi.BPF_MAP_TYPE_ARRAY, 4, CONFIG.size, 1),
        MapSpec("hud_roles", uapi.BPF_MAP_TYPE_HASH, 4, 4, p.max_threads),
        MapSpec("hud_sites", uapi.BPF_MAP_TYPE_HASH, SITE_KEY.size, 4, p.max_sites),
        MapSpec("hud_threads", uapi.BPF_MAP_TYPE_HASH, 4, THREAD.size, p.max_threads),
        # Big values, allocated per thread as it is first captured: memory follows the
        # threads really tracked (a preallocated map would be max_threads x 21 KiB).
        MapSpec("hud_caps", uapi.BPF_MAP_TYPE_HASH, 4, p.record_size, p.max_threads,
                uapi.BPF_F_NO_PREALLOC),
        MapSpec("hud_scratch", uapi.BPF_MAP_TYPE_ARRAY, 4, p.record_size, max(p.ncpus, 1)),
        MapSpec("hud_counts", uapi.BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8 * len(COUNTERS), 1),
        MapSpec("hud_in_timer", uapi.BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 1),
        MapSpec("hud_rb", uapi.BPF_MAP_TYPE_RINGBUF, 0, 0, p.ringbuf_bytes),
    ] + ([MapSpec("hud_timing", uapi.BPF_MAP_TYPE_PERCPU_ARRAY, 4, 16 * len(PATHS), 1)]
         if p.timing else [])


# -- BPF stack frame shared by both programs (offsets from r10) ------------------------------
FP_ZERO = -4        # u32 0: key of single-entry arrays
FP_KEY = -8         # u32 tid: key of hud_threads / hud_caps / hud_roles
FP_NOW = -16        # u64 ktime at the switch-out / sample
FP_STATE = -24      # u64 prev_state
FP_KIND = -32       # u64 KIND_* of this switch-out
FP_CFG = -40        # spilled &config
FP_ST = -48         # spilled &thread
FP_LIM = -56        # u64 bytes to copy (min(config.stack_bytes, stack_bytes))
FP_FLAGS = -56      # switch-in: u64 record flags (FP_LIM is a switch-out slot)
FP_LIGHT = -120     # u64 non-zero: capture the registers only
FP_CHUNK = -64      # u64 size of the page chunk being copied
FP_INSN = -64       # switch-out, before the capture: the instruction before the user ip
FP_PKEY = -104      # SITE_KEY: tid, pad, ip, sp ...
FP_IP, FP_SP, FP_FPREG, FP_LR = -96, -88, -80, -72   # ... then fp and lr follow the key
FP_T0 = -216        # timing builds: ktime at the start of the half being timed (below
                    # FP_INIT: a new thread's zeroed entry would clear it mid-path)
FP_INIT = -200      # a zeroed THREAD, to create hud_threads entries
FP_PATH = -208      # timing builds: PATHS index of the path taken

# Paths a timing build tells apart (hud_timing[i] = {u64 sum_ns, u64 count}). The
# switch-out and switch-in halves of hud_switch are timed separately.
PATHS = ("out_other", "out_times", "out_park", "out_capture", "out_exit", "out_nocap",
         "in_other", "in_first", "in_account", "in_record", "smp_other", "smp_record")
P = {name: i for i, name in enumerate(PATHS)}


def stack_key(a: Assembler, off: int, value: int) -> Assembler:
    """*(u32 *)(r10 + off) = value"""
    return a.st("u32", r10, off, value)


def lookup(a: Assembler, map_name: str, key_off: int) -> Assembler:
    """r0 = bpf_map_lookup_elem(map, r10 + key_off); clobbers r1-r5."""
    return a.ld_map(r1, map_name).mov(r2, r10).alu64("+=", r2, key_off).call("map_lookup_elem")


def count(a: Assembler, name: str, tag: str) -> Assembler:
    """hud_counts[this cpu][name] += 1; clobbers r0-r5. Per-CPU and never re-entered on a
    CPU (sched_switch runs with interrupts off; the sampler is not nested in it), so a
    plain add is enough."""
    skip = f"nocount_{tag}"
    stack_key(a, FP_ZERO, 0)
    lookup(a, "hud_counts", FP_ZERO).jmp("==", r0, 0, skip)
    off = 8 * C[name]
    a.ldx("u64", r1, r0, off).alu64("+=", r1, 1).stx("u64", r0, off, r1)
    return a.label(skip)


def load_config(a: Assembler, fail: str) -> Assembler:
    """r9 = &config (spilled to FP_CFG), or jump to `fail`; clobbers r0-r5."""
    stack_key(a, FP_ZERO, 0)
    lookup(a, "hud_cfg", FP_ZERO).jmp("==", r0, 0, fail)
    return a.mov(r9, r0).stx("u64", r10, FP_CFG, r9)


def timing_start(a: Assembler, p: Params) -> Assembler:
    """Timing builds: FP_T0 = now; clobbers r0."""
    if p.timing:
        a.call("ktime_get_ns").stx("u64", r10, FP_T0, r0)
    return a


def path(a: Assembler, p: Params, name: str) -> Assembler:
    """Timing builds: the path being taken is `name`."""
    if p.timing:
        a.st("u64", r10, FP_PATH, P[name])
    return a


def timing_end(a: Assembler, p: Params, tag: str) -> Assembler:
    """Timing builds: hud_timing[FP_PATH] += (now - FP_T0, 1), and restart the clock.
    The figure includes one bpf_ktime_get_ns call. Clobbers r0-r5."""
    if not p.timing:
        return a
    skip = f"notime_{tag}"
    a.call("ktime_get_ns").ldx("u64", r1, r10, FP_T0)
    a.alu64("-=", r0, r1).stx("u64", r10, FP_CHUNK, r0)
    stack_key(a, FP_ZERO, 0)
    lookup(a, "hud_timing", FP_ZERO).jmp("==", r0, 0, skip)
    a.ldx("u64", r1, r10, FP_PATH).jmp(">=", r1, len(PATHS), skip)
    a.alu64("<<=", r1, 4).alu64("+=", r0, r1)
    a.ldx("u64", r1, r0, 0).ldx("u64", r2, r10, FP_CHUNK).alu64("+=", r1, r2)
    a.stx("u64", r0, 0, r1).ldx("u64", r1, r0, 8).alu64("+=", r1, 1).stx("u64", r0, 8, r1)
    a.label(skip)
    return a.call("ktime_get_ns").stx("u64", r10, FP_T0, r0)  # bookkeeping excluded


def read_user_regs(a: Assembler, p: Params) -> Assembler:
    """User ip/sp/fp/lr of the current task into FP_IP.. (bpf_task_pt_regs: the registers
    saved at kernel entry, user ones even when a sample lands in kernel code)."""
    regs = p.regs
    a.call("get_current_task_btf").mov(r1, r0).call("task_pt_regs")
    a.ldx("u64", r1, r0, regs.ip).stx("u64", r10, FP_IP, r1)
    a.ldx("u64", r1, r0, regs.sp).stx("u64", r10, FP_SP, r1)
    a.ldx("u64", r1, r0, regs.fp).stx("u64", r10, FP_FPREG, r1)
    if regs.lr is not None:
        a.ldx("u64", r1, r0, regs.lr).stx("u64", r10, FP_LR, r1)
    else:
        a.st("u64", r10, FP_LR, 0)
    return a


def capture(a: Assembler, p: Params, tag: str, ctx: Reg = r6, dst: Reg = r8,
            light_slot: Optional[int] = None, limit: str = "stack_bytes",
            kernel: bool = True, kernel_unless: Optional[tuple[int, int]] = None
            ) -> Assembler:
    """Fill CAPTURE, the frame-pointer ips, the kernel ips (with `kernel`) and the stack
    copy of the record at `dst` from FP_IP.. and `ctx`. Needs config spilled at FP_CFG;
    clobbers r0-r5 and r9. With `light_slot`, a non-zero u64 there means registers only
    (no FP walk, no kernel stack, no copy). `limit` names the CONFIG field capping the
    copy at run time. `kernel_unless` = (slot, value): no kernel stack when the u64 at
    that stack slot equals value (a preemption's is the interrupt's way into schedule(),
    the same every time; a sample of user code has none, but asking still costs).

    The stack is copied page by page, from sp to the end of its page and then whole pages,
    stopping at the first page that cannot be read: one bpf_probe_read_user over a range
    that crosses an unmapped page fails entirely, and shallow thread stacks end close to
    their mapping's end.
    """
    for off, name in ((FP_IP, "ip"), (FP_SP, "sp"), (FP_FPREG, "fp"), (FP_LR, "lr")):
        a.ldx("u64", r1, r10, off).stx("u64", dst, CAP_OFF + CAPTURE.offset(name), r1)
    done = f"copy_done_{tag}"
    # The record is reused per thread (hud_caps): a field not written here keeps the last
    # capture's value.
    a.st("u32", dst, CAP_OFF + CAPTURE.offset("kernel_bytes"), 0)
    if light_slot is not None:
        a.mov(r9, 0).st("u32", dst, CAP_OFF + CAPTURE.offset("fp_bytes"), 0)
        a.ldx("u64", r1, r10, light_slot).jmp("!=", r1, 0, done)
    if p.kernel_depth and kernel:
        if kernel_unless is not None:
            slot, value = kernel_unless
            a.ldx("u64", r1, r10, slot).jmp("==", r1, value, f"kstack_none_{tag}")
        # The kernel's own unwinder (ORC on x86_64, frame records on aarch64) from the
        # registers of ctx: for a tracepoint its caller's, for a cpu-clock sample the
        # interrupted ones (nothing when it interrupted user code). A failure leaves 0:
        # the user stack matters more and is still taken. 0 is no failure: a sample of
        # user code has no kernel frames.
        a.mov(r1, ctx).mov(r2, dst).alu64("+=", r2, p.kernel_off).mov(r3, 8 * p.kernel_depth)
        a.mov(r4, 0).call("get_stack")
        a.jmp("s>", r0, 0, f"kstack_ok_{tag}")
        a.jmp("==", r0, 0, f"kstack_none_{tag}")
        count(a, "kernel_stack", f"kstack_{tag}")
        a.ja(f"kstack_none_{tag}")
        a.label(f"kstack_ok_{tag}")
        a.stx("u32", dst, CAP_OFF + CAPTURE.offset("kernel_bytes"), r0)
        a.label(f"kstack_none_{tag}")
    if p.fp_depth:
        # The kernel's frame-pointer walk (~1.5 us here): frames past the end of the copy
        # and builds whose CFI is missing.
        a.mov(r1, ctx).mov(r2, dst).alu64("+=", r2, FP_OFF).mov(r3, 8 * p.fp_depth)
        a.mov(r4, uapi.BPF_F_USER_STACK).call("get_stack")
        a.stx("u32", dst, CAP_OFF + CAPTURE.offset("fp_bytes"), r0)
        a.jmp("s>=", r0, 0, f"fp_ok_{tag}")
        count(a, "fp_stack", f"fp_{tag}")
        a.label(f"fp_ok_{tag}")
    else:
        a.st("u32", dst, CAP_OFF + CAPTURE.offset("fp_bytes"), 0)
    # limit = min(config.<limit>, p.stack_bytes), known to the verifier as <= the latter.
    a.ldx("u64", r1, r10, FP_CFG).ldx("u32", r1, r1, CONFIG.offset(limit))
    a.jmp("<=", r1, p.stack_bytes, f"lim_ok_{tag}").mov(r1, p.stack_bytes)
    a.label(f"lim_ok_{tag}").stx("u64", r10, FP_LIM, r1)
    a.mov(r9, 0)                                          # r9 = bytes copied
    a.ldx("u64", r1, r10, FP_SP).jmp("==", r1, 0, done)
    for k in range(p.copy_chunks):
        a.ldx("u64", r2, r10, FP_LIM).alu64("-=", r2, r9)  # bytes still wanted (> 0)
        if k == 0:
            # up to the end of sp's page
            a.ldx("u64", r3, r10, FP_SP).alu64("&=", r3, p.page_size - 1)
            a.mov(r1, p.page_size).alu64("-=", r1, r3).mov(r3, r1)
        else:
            a.mov(r3, p.page_size)
        a.jmp("<=", r2, r3, f"chunk_{tag}_{k}").mov(r2, r3)
        a.label(f"chunk_{tag}_{k}").stx("u64", r10, FP_CHUNK, r2)
        a.mov(r1, dst).alu64("+=", r1, p.stack_off).alu64("+=", r1, r9)
        a.ldx("u64", r3, r10, FP_SP).alu64("+=", r3, r9)
        a.call("probe_read_user")
        a.jmp("!=", r0, 0, f"copy_fail_{tag}" if k == 0 else done)
        a.ldx("u64", r1, r10, FP_CHUNK).alu64("+=", r9, r1)
        a.ldx("u64", r1, r10, FP_LIM).jmp(">=", r9, r1, done)
    a.ja(done)
    a.label(f"copy_fail_{tag}")
    count(a, "stack_copy", f"copy_{tag}")
    a.label(done)
    return a.stx("u32", dst, CAP_OFF + CAPTURE.offset("stack_len"), r9)


def output_capture(a: Assembler, p: Params, failure: str, success: str, tag: str,
                   dst: Reg = r8) -> Assembler:
    """bpf_ringbuf_output(the record at `dst`, STACK_OFF + stack_len bytes), counted;
    clobbers r0-r5."""
    a.ldx("u32", r3, dst, CAP_OFF + CAPTURE.offset("stack_len"))
    a.jmp("<=", r3, p.stack_bytes, f"len_ok_{tag}").mov(r3, 0)
    a.label(f"len_ok_{tag}").alu64("+=", r3, p.stack_off)
    a.ld_map(r1, "hud_rb").mov(r2, dst).mov(r4, uapi.BPF_RB_NO_WAKEUP).call("ringbuf_output")
    a.jmp("==", r0, 0, f"out_ok_{tag}")
    count(a, failure, f"rbfail_{tag}")
    a.ja(f"out_end_{tag}")
    a.label(f"out_ok_{tag}")
    count(a, success, f"rbok_{tag}")
    return a.label(f"out_end_{tag}")
