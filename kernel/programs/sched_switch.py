"""The sched/sched_switch tracepoint program: per-thread time accounting and off-CPU records.

A tracepoint program fires for every switch of every task on every CPU, so it filters
itself: the switch-out half runs only when `prev` (which is `current` here) belongs to the
target tgid, the switch-in half only when `next_pid` has a hud_threads entry.

Switch-out of a target thread (prev):
- account on-CPU time since its switch-in; remember the switch-out time and prev_state;
  bump `switch_seq` when it leaves voluntarily (not runnable);
- an exiting thread (X/Z) sends an EXIT record with its final counters and its entries
  are deleted (tids are reused);
- roles not in `capture_roles` (IGNORE) stop here: times only;
- a sleeping thread whose user (ip, sp) is a known park of this tid (hud_sites, filled by
  userspace once it has symbolized that stack) costs one more lookup and nothing else:
  idle parks are most switch-outs of a Tokio worker;
- anything else (blocked, or runnable: preempted/yielded) captures user regs, the
  frame-pointer stack and a page-wise copy of the user stack into hud_caps[tid]; a
  blocked thread whose saved user ip does not follow a system call instruction sleeps
  in a page fault (F_FAULT in its record).

Switch-in of a tracked thread (next): the time since switch-out goes to parked_ns,
runq_ns (runnable at switch-out) or offcpu_ns; past the threshold, a captured episode is
sent as an OFFCPU record. A run-queue wait's holder is the task that took the CPU at the
switch-out (`next` then): the one that displaced a preempted thread. (The task running
just before the switch-in is only the last of those that ran meanwhile; on a busy host
it is often not the hog.) A blocked wait's holder is its waker (sched_waking.py), or
none.

Field offsets come from the live tracepoint `format` (SwitchFields), never hard-coded.
"""
from __future__ import annotations

from kernel import uapi
from kernel.asm import Assembler, Image, r0, r1, r2, r3, r4, r6, r7, r8, r9, r10
from kernel.programs.common import (
    CFG_NO_RUNQ_STACKS,
    CONFIG,
    EXIT_HDR,
    F_FAULT,
    F_PROBE,
    F_RUNNABLE,
    FP_CFG,
    FP_FLAGS,
    FP_INIT,
    FP_INSN,
    FP_IP,
    FP_KEY,
    FP_KIND,
    FP_LIGHT,
    FP_NOW,
    FP_PKEY,
    FP_ST,
    FP_STATE,
    FP_ZERO,
    KIND_BLOCKED,
    KIND_FAULT,
    KIND_NOREC,
    KIND_PARKED,
    KIND_PROBE,
    KIND_RUNNABLE,
    OFFCPU_HDR,
    REC_EXIT,
    REC_OFFCPU,
    SITE_PARK,
    SLEEPING,
    THREAD,
    Params,
    capture,
    count,
    load_config,
    lookup,
    output_capture,
    path,
    read_user_regs,
    stack_key,
    timing_end,
    timing_start,
)

NAME = "hud_switch"
T = THREAD.offsets
H = OFFCPU_HDR.offsets


def build(p: Params) -> Image:
    """The TRACEPOINT program for sched:sched_switch, built for `p`."""
    a = Assembler()
    a.mov(r6, r1)                                       # r6 = ctx for the whole program
    timing_start(a, p)
    path(a, p, "out_other")
    load_config(a, "exit")                              # r9 = &config
    a.call("get_current_pid_tgid").mov(r7, r0)          # r7 = prev's pid_tgid (prev == current)
    a.mov(r1, r7).alu64(">>=", r1, 32).ldx("u32", r2, r9, CONFIG.offset("tgid"))
    a.jmp("!=", r1, r2, "switch_in")
    _switch_out(a, p)
    a.label("switch_in")
    timing_end(a, p, "out")
    path(a, p, "in_other")
    _switch_in(a, p)
    a.label("exit")
    timing_end(a, p, "in")
    # Return 1: a tracepoint program's 0 tells perf_trace_run_bpf_submit() to drop the
    # event for every perf event on sched_switch, host-wide (`perf record -e
    # sched:sched_switch`, other tracers, our own perf backend): hud must not blind them.
    a.mov(r0, 1).exit()
    return a.image(NAME, uapi.BPF_PROG_TYPE_TRACEPOINT)


def _thread_entry(a: Assembler, fail: str) -> None:
    """r8 = hud_threads[tid at FP_KEY], created zeroed when absent (counted when full)."""
    lookup(a, "hud_threads", FP_KEY).jmp("!=", r0, 0, "have_thread")
    for off in range(0, THREAD.size, 8):
        a.st("u64", r10, FP_INIT + off, 0)
    a.ld_map(r1, "hud_threads").mov(r2, r10).alu64("+=", r2, FP_KEY)
    a.mov(r3, r10).alu64("+=", r3, FP_INIT).mov(r4, uapi.BPF_NOEXIST).call("map_update_elem")
    a.jmp("==", r0, 0, "created")
    count(a, "threads_full", "threads")
    a.ja(fail)
    a.label("created")
    lookup(a, "hud_threads", FP_KEY).jmp("==", r0, 0, fail)
    a.label("have_thread").mov(r8, r0)


def _switch_out(a: Assembler, p: Params) -> None:
    f = p.fields
    path(a, p, "out_nocap")
    a.stx("u32", r10, FP_KEY, r7)                       # key = tid
    _thread_entry(a, "switch_in")
    a.call("ktime_get_ns").stx("u64", r10, FP_NOW, r0)
    a.ldx("u64", r1, r8, T["in_ns"]).jmp("==", r1, 0, "no_oncpu")
    a.mov(r2, r0).alu64("-=", r2, r1)
    a.ldx("u64", r3, r8, T["oncpu_ns"]).alu64("+=", r3, r2).stx("u64", r8, T["oncpu_ns"], r3)
    a.label("no_oncpu")
    a.stx("u64", r8, T["out_ns"], r0).st("u64", r8, T["in_ns"], 0)
    a.st("u32", r8, T["captured"], 0)
    a.ldx("u64", r1, r8, T["switches"]).alu64("+=", r1, 1).stx("u64", r8, T["switches"], r1)
    size = "u64" if f.prev_state_size == 8 else "u32"
    a.ldx(size, r1, r6, f.prev_state).stx("u64", r8, T["out_state"], r1)
    a.stx("u64", r10, FP_STATE, r1)
    a.mov(r2, r1).alu64("&=", r2, f.state_mask).jmp("!=", r2, 0, "voluntary")
    a.st("u64", r10, FP_KIND, KIND_RUNNABLE).ja("role")
    a.label("voluntary")
    a.ldx("u64", r2, r8, T["switch_seq"]).alu64("+=", r2, 1).stx("u64", r8, T["switch_seq"], r2)
    a.alu64("&=", r1, f.exit_mask).jmp("!=", r1, 0, "exiting")
    a.st("u64", r10, FP_KIND, KIND_BLOCKED)

    # A known park costs this lookup and nothing more: checked before the role (only
    # threads whose stacks are captured ever get park marks). A site userspace has not
    # classified yet may be probed at switch-in, below the threshold.
    read_user_regs(a, p)
    a.stx("u32", r10, FP_PKEY, r7).st("u32", r10, FP_PKEY + 4, 0)
    lookup(a, "hud_sites", FP_PKEY).jmp("!=", r0, 0, "known_site")
    a.st("u64", r10, FP_KIND, KIND_BLOCKED | KIND_PROBE).ja("role")
    a.label("known_site")
    a.ldx("u32", r1, r0, 0).jmp("!=", r1, SITE_PARK, "role")
    a.st("u32", r8, T["out_kind"], KIND_PARKED)
    a.ldx("u64", r1, r8, T["parks"]).alu64("+=", r1, 1).stx("u64", r8, T["parks"], r1)
    path(a, p, "out_park").ja("switch_in")

    # Role: absent = unknown (0); a role outside capture_roles accounts time only.
    a.label("role")
    lookup(a, "hud_roles", FP_KEY).mov(r1, 0).jmp("==", r0, 0, "have_role")
    a.ldx("u32", r1, r0, 0)
    a.label("have_role")
    a.ldx("u32", r2, r9, CONFIG.offset("capture_roles")).alu64(">>=", r2, r1)
    a.alu64("&=", r2, 1).jmp("!=", r2, 0, "capture")
    a.ldx("u64", r1, r10, FP_KIND).alu64("|=", r1, KIND_NOREC)
    a.stx("u32", r8, T["out_kind"], r1)
    path(a, p, "out_times").ja("switch_in")

    a.label("capture")
    a.ldx("u64", r1, r10, FP_KIND).alu64("&=", r1, 0xF).jmp("==", r1, KIND_BLOCKED, "blocked")
    read_user_regs(a, p)                                # runnable: regs not read yet
    a.ja("not_parked")
    a.label("blocked")
    _page_fault(a, p)

    a.label("not_parked")
    a.ldx("u64", r1, r10, FP_KIND).stx("u32", r8, T["out_kind"], r1)
    a.stx("u64", r10, FP_ST, r8)
    lookup(a, "hud_caps", FP_KEY).jmp("!=", r0, 0, "have_cap")
    # First capture of this thread: insert from any buffer of the right size (the
    # sampler's scratch; contents are irrelevant, every byte sent is written first).
    stack_key(a, FP_ZERO, 0)
    lookup(a, "hud_scratch", FP_ZERO).jmp("==", r0, 0, "switch_in")
    a.mov(r3, r0).ld_map(r1, "hud_caps").mov(r2, r10).alu64("+=", r2, FP_KEY)
    a.mov(r4, uapi.BPF_NOEXIST).call("map_update_elem").jmp("==", r0, 0, "cap_created")
    count(a, "captures_full", "caps")
    a.ja("switch_in")
    a.label("cap_created")
    lookup(a, "hud_caps", FP_KEY).jmp("==", r0, 0, "switch_in")
    a.label("have_cap").mov(r8, r0)
    # Registers only for a run-queue wait when config says so: preemptions are the most
    # frequent captures of a loaded server (a wakee preempting a worker inside send()).
    a.mov(r1, 0).ldx("u64", r2, r10, FP_KIND).jmp("!=", r2, KIND_RUNNABLE, "light")
    a.ldx("u64", r2, r10, FP_CFG).ldx("u32", r1, r2, CONFIG.offset("flags"))
    a.alu64("&=", r1, CFG_NO_RUNQ_STACKS)
    a.label("light").stx("u64", r10, FP_LIGHT, r1)
    # The holder of a run-queue wait: the task taking the CPU from this one (`next`). The
    # task that gives it back at switch-in is only the last of those that ran meanwhile.
    # A blocked wait's holder is its waker, written by sched_waking if it sees one.
    a.ldx("u64", r2, r10, FP_KIND).jmp("!=", r2, KIND_RUNNABLE, "no_holder")
    a.ldx("u32", r1, r6, f.next_pid).stx("u32", r8, H["holder_pid"], r1)
    for k in (0, 8):
        a.ldx("u64", r1, r6, f.next_comm + k).stx("u64", r8, H["holder_comm"] + k, r1)
    a.ja("holder_set")
    a.label("no_holder").st("u32", r8, H["holder_pid"], 0)
    for k in (0, 8):
        a.st("u64", r8, H["holder_comm"] + k, 0)
    a.label("holder_set")
    capture(a, p, "out", light_slot=FP_LIGHT, kernel_unless=(FP_KIND, KIND_RUNNABLE))
    a.ldx("u64", r1, r10, FP_ST).st("u32", r1, T["captured"], 1)
    count(a, "captures", "captures")
    path(a, p, "out_capture").ja("switch_in")

    # The thread's last switch: send its final counters, forget it (its tid will be reused).
    a.label("exiting")
    path(a, p, "out_exit")
    a.ld_map(r1, "hud_rb").mov(r2, EXIT_HDR.size + THREAD.size).mov(r3, 0)
    a.call("ringbuf_reserve").jmp("!=", r0, 0, "exit_rec")
    count(a, "ringbuf_exit", "exit")
    a.ja("forget")
    a.label("exit_rec")
    a.st("u32", r0, EXIT_HDR.offset("type"), REC_EXIT)
    a.stx("u32", r0, EXIT_HDR.offset("tid"), r7)
    a.ldx("u64", r1, r10, FP_NOW).stx("u64", r0, EXIT_HDR.offset("time_ns"), r1)
    for off in range(0, THREAD.size, 8):
        a.ldx("u64", r1, r8, off).stx("u64", r0, EXIT_HDR.size + off, r1)
    a.mov(r1, r0).mov(r2, 0).call("ringbuf_submit")
    count(a, "exits", "exits")
    a.label("forget")
    for m in ("hud_threads", "hud_caps", "hud_roles"):
        a.ld_map(r1, m).mov(r2, r10).alu64("+=", r2, FP_KEY).call("map_delete_elem")


def _page_fault(a: Assembler, p: Params) -> None:
    """KIND_FAULT into FP_KIND when the blocked thread (FP_IP read) sleeps in a page fault.

    The user ip a system call saves is right after its instruction; an exception saves the
    faulting instruction's, and a sleeping (S or D) thread that entered the kernel by an
    exception waits in a page fault (disk I/O of an mmap'd file or evicted code, swap-in,
    userfaultfd). Not for stopped or traced threads (T, t): a signal stop interrupts user
    code too. An unreadable word decides nothing."""
    regs = p.regs
    n = regs.syscall_insn_len
    a.ldx("u64", r1, r10, FP_STATE).alu64("&=", r1, SLEEPING).jmp("==", r1, 0, "no_fault")
    a.ldx("u64", r3, r10, FP_IP).jmp("<", r3, n, "no_fault").alu64("-=", r3, n)
    a.st("u64", r10, FP_INSN, 0)
    a.mov(r1, r10).alu64("+=", r1, FP_INSN).mov(r2, n).call("probe_read_user")
    a.jmp("!=", r0, 0, "no_fault")
    a.ldx("u16" if n == 2 else "u32", r1, r10, FP_INSN)
    a.jmp("==", r1, regs.syscall_insn, "no_fault")
    a.ldx("u64", r1, r10, FP_KIND).alu64("|=", r1, KIND_FAULT).stx("u64", r10, FP_KIND, r1)
    a.label("no_fault")


def _switch_in(a: Assembler, p: Params) -> None:
    f = p.fields
    a.ldx("u32", r1, r6, f.next_pid).stx("u32", r10, FP_KEY, r1)
    lookup(a, "hud_threads", FP_KEY).jmp("==", r0, 0, "exit")
    a.mov(r8, r0)
    path(a, p, "in_first")
    a.call("ktime_get_ns").mov(r7, r0)                  # r7 = now
    a.ldx("u64", r1, r8, T["out_ns"]).stx("u64", r8, T["in_ns"], r7)
    a.jmp("==", r1, 0, "exit")                          # never seen leaving: nothing to add
    a.st("u64", r8, T["out_ns"], 0)
    path(a, p, "in_account")
    a.stx("u64", r10, FP_NOW, r1)                       # FP_NOW = switch-out time here
    a.mov(r9, r7).alu64("-=", r9, r1)                   # r9 = time off CPU
    a.ldx("u32", r1, r8, T["out_kind"]).stx("u64", r10, FP_KIND, r1)
    a.alu64("&=", r1, 0xF)                             # the KIND without NOREC
    a.jmp("==", r1, KIND_PARKED, "in_parked")
    a.jmp("==", r1, KIND_RUNNABLE, "in_runq")
    a.ldx("u64", r2, r8, T["offcpu_ns"]).alu64("+=", r2, r9).stx("u64", r8, T["offcpu_ns"], r2)
    a.ja("in_record")
    a.label("in_runq")
    a.ldx("u64", r2, r8, T["runq_ns"]).alu64("+=", r2, r9).stx("u64", r8, T["runq_ns"], r2)
    a.ja("in_record")
    a.label("in_parked")
    a.ldx("u64", r2, r8, T["parked_ns"]).alu64("+=", r2, r9).stx("u64", r8, T["parked_ns"], r2)
    a.ja("exit")

    a.label("in_record")
    a.ldx("u32", r1, r8, T["captured"]).jmp("==", r1, 0, "exit")
    a.ldx("u64", r1, r10, FP_KIND).alu64("&=", r1, KIND_NOREC).jmp("!=", r1, 0, "exit")
    a.ldx("u64", r2, r10, FP_KIND).alu64("&=", r2, 0xF).mov(r1, 0)
    a.jmp("!=", r2, KIND_RUNNABLE, "flags").mov(r1, F_RUNNABLE)
    a.label("flags")
    a.ldx("u64", r2, r10, FP_KIND).alu64("&=", r2, KIND_FAULT).jmp("==", r2, 0, "flags_set")
    a.alu64("|=", r1, F_FAULT)
    a.label("flags_set").stx("u64", r10, FP_FLAGS, r1)
    a.ldx("u64", r1, r10, FP_CFG).ldx("u64", r2, r1, CONFIG.offset("threshold_ns"))
    a.jmp(">=", r9, r2, "send")
    # Below the threshold: a probe of a site not classified yet, at most one per thread
    # every config.probe_ns, so that short parks get learned (and then cost no capture).
    a.ldx("u64", r2, r10, FP_KIND).alu64("&=", r2, KIND_PROBE).jmp("==", r2, 0, "exit")
    a.ldx("u64", r2, r1, CONFIG.offset("probe_ns")).jmp("==", r2, 0, "exit")
    a.ldx("u64", r3, r8, T["probe_ns"]).mov(r4, r7).alu64("-=", r4, r3)
    a.jmp("<", r4, r2, "exit")
    a.stx("u64", r8, T["probe_ns"], r7)
    a.ldx("u64", r1, r10, FP_FLAGS).alu64("|=", r1, F_PROBE).stx("u64", r10, FP_FLAGS, r1)
    count(a, "probes", "probes")
    a.label("send")
    a.ldx("u64", r1, r8, T["out_state"]).stx("u64", r10, FP_STATE, r1)
    lookup(a, "hud_caps", FP_KEY).jmp("==", r0, 0, "exit")
    a.mov(r8, r0)                                       # r8 = the capture record
    path(a, p, "in_record")
    a.st("u32", r8, H["type"], REC_OFFCPU)
    a.ldx("u32", r1, r10, FP_KEY).stx("u32", r8, H["tid"], r1)
    a.ldx("u64", r1, r10, FP_CFG).ldx("u32", r1, r1, CONFIG.offset("tgid"))
    a.stx("u32", r8, H["pid"], r1)
    a.call("get_smp_processor_id").stx("u32", r8, H["cpu"], r0)
    a.ldx("u64", r1, r10, FP_NOW).stx("u64", r8, H["start_ns"], r1)
    a.stx("u64", r8, H["end_ns"], r7)
    a.ldx("u64", r1, r10, FP_STATE).stx("u64", r8, H["state"], r1)
    a.ldx("u64", r1, r10, FP_FLAGS).stx("u32", r8, H["flags"], r1)
    output_capture(a, p, "ringbuf_offcpu", "offcpu_records", "in")

