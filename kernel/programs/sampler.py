"""The cpu-clock sampler: a PERF_EVENT program on one cpu-clock event per CPU.

The events are system-wide (pid -1), so threads created after attach are sampled too;
the program keeps only the target tgid and roles in `sample_roles`. Each kept sample
sends a SAMPLE record: time, period, the thread's `switch_seq` (voluntary switch-outs so
far, from hud_threads; -1 before its first switch-out) and `oncpu_ns` (its on-CPU time so
far: hud_threads' oncpu_ns plus the time since its switch-in; -1 before its first
switch-in), whether it interrupted kernel
code, and the same capture as an off-CPU record (user regs from bpf_task_pt_regs, which
stay the user ones when the ctx regs are kernel regs; frame-pointer ips; page-wise stack
copy). It is built in hud_scratch[cpu]: a timer program is not re-entered on its CPU.
"""
from __future__ import annotations

from kernel import uapi
from kernel.asm import Assembler, Image, r0, r1, r2, r3, r6, r7, r8, r9, r10
from kernel.programs.common import (
    CONFIG,
    F_KERNEL_MODE,
    FP_KEY,
    FP_KIND,
    FP_ZERO,
    REC_SAMPLE,
    SAMPLE_HDR,
    THREAD,
    Params,
    capture,
    load_config,
    lookup,
    output_capture,
    path,
    read_user_regs,
    timing_end,
    timing_start,
)

NAME = "hud_sample"
S = SAMPLE_HDR.offsets
FP_MODE = FP_KIND    # u64 F_KERNEL_MODE or 0 (the switch-out's slot; free in a sample)


def build(p: Params) -> Image:
    """The PERF_EVENT program for cpu-clock events, built for `p`."""
    regs = p.regs
    a = Assembler()
    a.mov(r6, r1)                                       # r6 = bpf_perf_event_data
    timing_start(a, p)
    path(a, p, "smp_other")
    load_config(a, "exit")                              # r9 = &config
    a.call("get_current_pid_tgid").mov(r7, r0)
    a.mov(r1, r7).alu64(">>=", r1, 32).ldx("u32", r2, r9, CONFIG.offset("tgid"))
    a.jmp("!=", r1, r2, "exit")
    a.stx("u32", r10, FP_KEY, r7)
    lookup(a, "hud_roles", FP_KEY).mov(r1, 0).jmp("==", r0, 0, "have_role")
    a.ldx("u32", r1, r0, 0)
    a.label("have_role")
    a.ldx("u32", r2, r9, CONFIG.offset("sample_roles")).alu64(">>=", r2, r1)
    a.alu64("&=", r2, 1).jmp("==", r2, 0, "exit")

    path(a, p, "smp_record")
    a.call("get_smp_processor_id").stx("u32", r10, FP_ZERO, r0)
    lookup(a, "hud_scratch", FP_ZERO).jmp("==", r0, 0, "exit")
    a.mov(r8, r0)                                       # r8 = this CPU's record buffer
    a.st("u32", r8, S["type"], REC_SAMPLE)
    a.stx("u32", r8, S["tid"], r7)
    a.mov(r1, r7).alu64(">>=", r1, 32).stx("u32", r8, S["pid"], r1)
    a.ldx("u32", r1, r10, FP_ZERO).stx("u32", r8, S["cpu"], r1)
    a.call("ktime_get_ns").stx("u64", r8, S["time_ns"], r0)
    a.ldx("u64", r1, r6, regs.period_off).stx("u64", r8, S["period_ns"], r1)
    # On-CPU time so far lets userspace tell a long poll from a short one preempted
    # (below the threshold, so unreported) between two samples: switch_seq counts only
    # voluntary switch-outs.
    a.st("u64", r8, S["oncpu_ns"], -1)
    lookup(a, "hud_threads", FP_KEY).mov(r1, -1).jmp("==", r0, 0, "have_seq")
    a.ldx("u64", r2, r0, THREAD.offset("in_ns")).jmp("==", r2, 0, "no_oncpu")
    a.ldx("u64", r3, r8, S["time_ns"]).jmp("<", r3, r2, "no_oncpu")
    a.alu64("-=", r3, r2).ldx("u64", r2, r0, THREAD.offset("oncpu_ns")).alu64("+=", r3, r2)
    a.stx("u64", r8, S["oncpu_ns"], r3)
    a.label("no_oncpu")
    a.ldx("u64", r1, r0, THREAD.offset("switch_seq"))
    a.label("have_seq").stx("u64", r8, S["switch_seq"], r1)
    a.ldx("u64", r1, r6, regs.mode_off).alu64("&=", r1, regs.mode_mask).mov(r2, 0)
    a.jmp("==", r1, regs.user_value, "user_mode").mov(r2, F_KERNEL_MODE)
    a.label("user_mode").stx("u32", r8, S["flags"], r2).stx("u64", r10, FP_MODE, r2)
    read_user_regs(a, p)
    capture(a, p, "smp", limit="sample_stack_bytes", kernel_unless=(FP_MODE, 0))
    output_capture(a, p, "ringbuf_sample", "sample_records", "smp")
    a.label("exit")
    timing_end(a, p, "smp")
    a.mov(r0, 0).exit()
    return a.image(NAME, uapi.BPF_PROG_TYPE_PERF_EVENT)
