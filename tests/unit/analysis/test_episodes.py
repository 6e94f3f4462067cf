"""Events -> episodes: park vs blocking vs pool vs sched_delay, and cpu stretches."""
from __future__ import annotations

import pytest
from unit.analysis import tokio_shapes as shapes
from unit.analysis.helpers import MS, StackTable, off, sample

from hud.analysis.episodes import EpisodeBuilder, kernel_site
from hud.classify import Classifier
from hud.model import (
    KIND_BLOCKING,
    KIND_CPU,
    KIND_PARK,
    KIND_POOL,
    KIND_SCHED_DELAY,
    ROLE_BLOCKING,
    ROLE_OTHER,
    ROLE_WORKER,
    CpuSample,
    Frame,
    StackCapture,
    Wake,
)

W, W2, P = 11, 12, 21


def builder(table, threshold_ms=5):
    b = EpisodeBuilder(table, Classifier(shapes.APP), int(threshold_ms * MS))
    b.set_role(W, ROLE_WORKER)
    b.set_role(W2, ROLE_WORKER)
    b.set_role(P, ROLE_BLOCKING)
    return b


def kinds(b, events):
    out = []
    for ev in events:
        if isinstance(ev, CpuSample):
            out.extend(b.sample(ev)[0])
        else:
            out.extend(b.offcpu(ev)[0])
    return out


# --- off-CPU ------------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [shapes.park_epoll_124, shapes.park_epoll_143,
                                  shapes.park_condvar_124,
                                  shapes.park_condvar_parking_lot_143])
def test_worker_parks_become_park_episodes(make):
    t = StackTable()
    b = builder(t)
    (ep,) = kinds(b, [off(t, W, 0, 40, make())])
    assert ep.kind == KIND_PARK and ep.tid == W and ep.duration_ns == 40 * MS


@pytest.mark.parametrize("make, fn", [
    (lambda: shapes.sleep_blocker(version="1.24"), "my_app::handlers::load::{{closure}}"),
    (lambda: shapes.sleep_blocker(version="1.43"), "my_app::handlers::load::{{closure}}"),
    (shapes.mutex_blocker, "my_app::state::Cache::get"),
    (shapes.blocking_lock_in_task, "my_app::handlers::locky::{{closure}}"),
])
def test_worker_blocking(make, fn):
    t = StackTable()
    b = builder(t)
    (ep,) = kinds(b, [off(t, W, 0, 12, make())])
    assert ep.kind == KIND_BLOCKING
    assert any(f.function == fn and f.cls == "user" for f in ep.stack)


def test_current_thread_worker():
    t = StackTable()
    b = builder(t)
    b.set_role(1, ROLE_OTHER)   # discovery did not know: the stack says block_on
    eps = kinds(b, [off(t, 1, 0, 30, shapes.current_thread_park()),
                    off(t, 1, 40, 30, shapes.current_thread_blocking())])
    assert [e.kind for e in eps] == [KIND_PARK, KIND_BLOCKING]
    assert b.role_of(1) == ROLE_WORKER


def test_pool_threads_are_pool_never_blocking_even_when_named_like_workers():
    t = StackTable()
    b = builder(t)
    b.set_role(P + 1, ROLE_WORKER)   # discovery guessed from the shared name
    eps = kinds(b, [off(t, P, 0, 50, shapes.pool_busy()),
                    off(t, P, 60, 500, shapes.pool_idle()),
                    off(t, P + 1, 0, 50, shapes.pool_busy(version="1.43"))])
    assert [e.kind for e in eps] == [KIND_POOL] * 3
    assert [e.detail for e in eps] == ["busy", "idle", "busy"]
    assert b.role_of(P + 1) == ROLE_BLOCKING


def test_block_in_place_is_pool_work_and_the_thread_stays_a_worker():
    t = StackTable()
    b = builder(t)
    (ep,) = kinds(b, [off(t, W, 0, 50, shapes.block_in_place_sleep())])
    assert ep.kind == KIND_POOL
    assert b.role_of(W) == ROLE_WORKER


def test_runnable_worker_is_sched_delay_with_the_holder_unless_parked():
    t = StackTable()
    b = builder(t)
    eps = kinds(b, [off(t, W, 0, 9, shapes.cpu_hog(), runnable=True, holder=("stress", 77)),
                    off(t, W, 20, 9, shapes.park_epoll_124(), runnable=True,
                        holder=("kworker/0:1", 12))])
    assert [e.kind for e in eps] == [KIND_SCHED_DELAY, KIND_PARK]
    assert eps[0].detail == "stress (tid 77)"


def test_a_futex_wait_names_its_waker_and_other_waits_do_not():
    """The waker of a Mutex wait released the lock; a sleep's "waker" is whatever the
    timer interrupt found running, a thread's own tid or 0 is nobody: no name."""
    t = StackTable()
    b = builder(t)
    eps = kinds(b, [off(t, W, 0, 50, shapes.mutex_blocker(), waker=("lock-keeper", 812)),
                    off(t, W, 60, 50, shapes.blocking_lock_in_task(), waker=("w-2", 813)),
                    off(t, W, 120, 50, shapes.sleep_blocker(), waker=("stress", 99)),
                    off(t, W, 180, 50, shapes.mutex_blocker(), waker=("x", W)),
                    off(t, W, 240, 50, shapes.mutex_blocker()),
                    off(t, W, 300, 9, shapes.cpu_hog(), runnable=True, waker=("y", 5))])
    assert [e.kind for e in eps] == [KIND_BLOCKING] * 5 + [KIND_SCHED_DELAY]
    assert [e.detail for e in eps[:5]] == ["woken by lock-keeper (tid 812)",
                                           "woken by w-2 (tid 813)", "", "", ""]


def test_a_wait_in_a_page_fault_says_so_unless_a_waker_explains_it():
    t = StackTable()
    b = builder(t)
    eps = kinds(b, [off(t, W, 0, 50, shapes.cpu_hog(), fault=True),
                    off(t, W, 60, 50, shapes.sleep_blocker()),
                    off(t, W, 120, 50, shapes.mutex_blocker(), waker=("lock-keeper", 812),
                        fault=True)])
    assert [(e.kind, e.fault, e.detail) for e in eps] == [
        (KIND_BLOCKING, True, "in a page fault"), (KIND_BLOCKING, False, ""),
        (KIND_BLOCKING, True, "woken by lock-keeper (tid 812)")]


def test_the_wakers_own_stack_says_where_it_woke_the_wait():
    """A Wake of the same wait (same start, same waker) gives the waker's frame; a Wake
    of an earlier wait, or none, gives the name only."""
    t = StackTable()
    b = builder(t)
    keeper = (shapes.libc("syscall"),
              shapes.fr("std::sys::unix::futex::futex_wake", f"{shapes.RUSTC}/std/src/sys/"
                        "unix/futex.rs", 80),
              shapes.fr("my_app::cache::refresh::{{closure}}", f"{shapes.SRC}/cache.rs", 88),
              *shapes.thread_start())
    b.wake(Wake(100, W, 812, "lock-keeper", int(0 * MS), int(49 * MS), t.cap(keeper)))
    (e1,) = kinds(b, [off(t, W, 0, 50, shapes.mutex_blocker(), waker=("lock-keeper", 812))])
    assert e1.waker == ("lock-keeper (tid 812)", "my_app::cache::refresh (cache.rs:88)")
    assert e1.detail == "woken by lock-keeper (tid 812) at my_app::cache::refresh (cache.rs:88)"
    b.wake(Wake(100, W, 812, "lock-keeper", int(60 * MS), int(99 * MS), t.cap(keeper)))
    (e2,) = kinds(b, [off(t, W, 120, 50, shapes.mutex_blocker(), waker=("lock-keeper", 812))])
    assert e2.waker == ("lock-keeper (tid 812)", "")


def test_threshold_and_unknown_threads():
    t = StackTable()
    b = builder(t, threshold_ms=10)
    eps = kinds(b, [off(t, W, 0, 9.999, shapes.sleep_blocker()),
                    off(t, W, 20, 10, shapes.sleep_blocker()),
                    off(t, 999, 0, 50, shapes.truncated(shapes.sleep_blocker(), 4))])
    assert [e.start_ns for e in eps] == [20 * MS]
    assert b.counts["below_threshold"] == 1 and b.counts["ignored_offcpu"] == 1


def test_a_worker_stack_teaches_the_role_to_later_truncated_stacks():
    t = StackTable()
    b = builder(t)
    short = shapes.truncated(shapes.sleep_blocker(), 5)
    assert kinds(b, [off(t, 5, 0, 50, short)]) == []         # unknown thread, no signature
    kinds(b, [off(t, 5, 100, 50, shapes.park_epoll_124())])
    (ep,) = kinds(b, [off(t, 5, 200, 50, short)])
    assert ep.kind == KIND_BLOCKING


def test_resolver_failure_is_data():
    def broken(pid, cap):
        raise RuntimeError("boom")
    b = EpisodeBuilder(broken, Classifier(shapes.APP), 5 * MS)
    b.set_role(W, ROLE_WORKER)
    cap = StackCapture(fp_ips=(0x10, 0x20))
    from hud.model import OffCpuEvent
    eps, _ = b.offcpu(OffCpuEvent(1, W, 0, 0, 50 * MS, 1, False, cap))
    assert eps[0].kind == KIND_BLOCKING
    assert [f.address for f in eps[0].stack] == [0x10, 0x20]
    assert all(f.reason == "resolver failed" for f in eps[0].stack)
    assert b.counts["resolve_errors"] == 1 and "boom" in b.first_resolve_error


# --- cpu stretches -----------------------------------------------------------------------------

def hog_run(t, tid, start_ms, n, seq=3, period_ms=1.0, task="hog"):
    stack = shapes.cpu_hog if task == "hog" else (lambda line: shapes.sleep_blocker(line=line))
    return [sample(t, tid, start_ms + i * period_ms, stack(120 + i % 4), seq=seq,
                   period_ms=period_ms) for i in range(n)]


def test_one_stretch_from_first_sample_to_last_plus_period():
    t = StackTable()
    b = builder(t)
    eps = kinds(b, hog_run(t, W, 100, 20)) + b.flush()
    (ep,) = eps
    assert ep.kind == KIND_CPU
    assert (ep.start_ns, ep.end_ns) == (100 * MS, 120 * MS)
    assert ep.detail == "20 samples"
    assert ep.stack[0].function == "my_app::handlers::hog::{{closure}}"


def test_a_stretch_keeps_the_share_of_its_samples_in_kernel_code():
    t = StackTable()
    b = builder(t)
    evs = [sample(t, W, ms, shapes.cpu_hog(120), seq=3, kernel=ms % 4 != 0)
           for ms in range(20)]
    (ep,) = kinds(b, evs) + b.flush()
    assert (ep.start_ns, ep.end_ns) == (0, 20 * MS)
    assert ep.detail == "20 samples, 15 in the kernel" and ep.kernel_ns == 15 * MS
    (ep,) = kinds(b, hog_run(t, W, 100, 20)) + b.flush()
    assert ep.detail == "20 samples" and ep.kernel_ns == 0


def test_a_stretch_keeps_its_kernel_time_by_the_kernel_function_its_samples_ran_in():
    def kernel(*names):
        return tuple(Frame(0xFFFF_FFFF_8100_0000 + 16 * i, n, module="[kernel]")
                     for i, n in enumerate(names))
    zero = kernel("clear_user_erms", "read_iter_zero", "vfs_read") + shapes.cpu_hog(120)
    copy = kernel("_copy_to_iter", "read_iter_zero", "vfs_read") + shapes.cpu_hog(120)
    t = StackTable()
    b = builder(t)
    # 20 samples: 12 in clear_user_erms, 4 in _copy_to_iter, 4 of user code (whose stack
    # has no kernel frames; and a user sample with some would not count).
    stacks = [zero] * 12 + [copy] * 4 + [shapes.cpu_hog(120)] * 4
    evs = [sample(t, W, ms, st, seq=3, kernel=st is not stacks[-1])
           for ms, st in enumerate(stacks)]
    (ep,) = kinds(b, evs) + b.flush()
    assert ep.kernel_ns == 16 * MS
    assert ep.kernel_sites == (("clear_user_erms", 12 * MS), ("_copy_to_iter", 4 * MS))

def test_switch_seq_change_splits_stretches():
    t = StackTable()
    b = builder(t)
    evs = hog_run(t, W, 0, 10, seq=1) + hog_run(t, W, 10, 10, seq=2) + hog_run(t, W, 20, 3, seq=3)
    eps = kinds(b, evs) + b.flush()
    assert [(e.start_ns // MS, e.end_ns // MS) for e in eps] == [(0, 10), (10, 20)]
    assert b.counts["short_stretches"] == 1


def test_long_preemption_and_voluntary_switch_end_stretches():
    t = StackTable()
    b = builder(t)
    evs = hog_run(t, W, 0, 8)
    evs.append(off(t, W, 7.5, 6, shapes.cpu_hog(), runnable=True, holder=("x", 1)))
    evs += hog_run(t, W, 13.5, 6)       # same seq: the same poll, after the CPU came back
    eps = kinds(b, evs)
    assert [e.kind for e in eps] == [KIND_CPU, KIND_SCHED_DELAY]
    assert (eps[0].start_ns, eps[0].end_ns) == (0, int(7.5 * MS))   # cut at the switch-out
    eps = kinds(b, [off(t, W, 19, 10, shapes.park_epoll_124())])
    assert [e.kind for e in eps] == [KIND_CPU, KIND_PARK]
    assert (eps[0].start_ns, eps[0].end_ns) == (int(13.5 * MS), 19 * MS)


def test_short_preemptions_are_invisible_and_keep_the_stretch():
    t = StackTable()
    b = builder(t)
    evs = hog_run(t, W, 0, 5) + hog_run(t, W, 5.8, 5)   # a 0.8 ms gap, nothing reported
    (ep,) = kinds(b, evs) + b.flush()
    assert (ep.start_ns, ep.end_ns) == (0, int(10.8 * MS))


def test_a_short_poll_preempted_between_two_samples_is_not_cpu():
    # The worker ran the poll for 0.2 ms, was preempted for 4.6 ms (too briefly to be
    # reported) and came back in the same poll: 4.8 ms of wall time, 1.2 ms of CPU.
    t = StackTable()
    b = builder(t)
    evs = [sample(t, W, 0, shapes.cpu_hog(120), seq=3, oncpu_ms=50.0),
           sample(t, W, 4.8, shapes.cpu_hog(121), seq=3, oncpu_ms=50.2),
           sample(t, W, 5.8, shapes.cpu_hog(122), seq=3, oncpu_ms=51.2)]
    assert kinds(b, evs) + b.flush() == []
    assert b.counts["short_stretches"] == 1


def test_a_long_poll_is_as_long_as_its_cpu_time():
    # 10 samples 1 ms apart with a 2 ms preemption in the middle: 9 ms on CPU + a period.
    t = StackTable()
    b = builder(t)
    evs = [sample(t, W, ms, shapes.cpu_hog(120), seq=3, oncpu_ms=ms)
           for ms in (0, 1, 2, 3, 4)]
    evs += [sample(t, W, ms + 2, shapes.cpu_hog(120), seq=3, oncpu_ms=ms)
            for ms in (5, 6, 7, 8, 9)]
    (ep,) = kinds(b, evs) + b.flush()
    assert ep.kind == KIND_CPU
    assert (ep.start_ns, ep.end_ns) == (0, 10 * MS)


def test_a_short_poll_stalled_by_the_hypervisor_is_not_cpu():
    # A 1 ms poll sampled at 0 and, 4.6 ms later, at its end: on CPU all along by the
    # guest's count, but the 2.49 ms timer never fired in between: the vCPU was stopped.
    t = StackTable()
    b = builder(t)
    evs = [sample(t, W, 0, shapes.cpu_hog(120), seq=3, period_ms=2.49, oncpu_ms=10.0),
           sample(t, W, 4.6, shapes.cpu_hog(121), seq=3, period_ms=2.49, oncpu_ms=14.6)]
    assert kinds(b, evs) + b.flush() == []
    assert b.counts["unsampled_gaps"] == 1 and b.counts["short_stretches"] == 1


@pytest.mark.parametrize("shift_ms, gaps", [(0, 1), (-4, 0)], ids=["stall", "preemption"])
def test_a_long_poll_loses_only_the_unsampled_part_of_a_stall(shift_ms, gaps):
    # 1 ms samples for 10 ms, a 5 ms gap, 10 more samples. Stall: the thread stayed on
    # CPU (24 ms of guest on-CPU time, 4 ms of it unsampled: the gap less one period).
    # Preemption: it was off CPU (on-CPU time grew one period), which on-CPU time already
    # excludes, and nothing is counted as a stall. Either way the poll ran 20 ms.
    t = StackTable()
    b = builder(t)
    evs = [sample(t, W, ms, shapes.cpu_hog(120), seq=3, oncpu_ms=ms) for ms in range(10)]
    evs += [sample(t, W, ms, shapes.cpu_hog(120), seq=3, oncpu_ms=ms + shift_ms)
            for ms in range(14, 24)]
    (ep,) = kinds(b, evs) + b.flush()
    assert (ep.start_ns, ep.end_ns) == (0, 20 * MS)
    assert b.counts["unsampled_gaps"] == gaps


def test_a_different_task_or_a_sample_between_polls_splits():
    t = StackTable()
    b = builder(t)
    evs = hog_run(t, W, 0, 8) + hog_run(t, W, 8, 8, task="other")
    evs.append(sample(t, W, 16, shapes.scheduler_between_polls(), seq=3))
    evs += hog_run(t, W, 17, 8)
    eps = kinds(b, evs) + b.flush()
    assert [(e.start_ns // MS, e.end_ns // MS) for e in eps] == [(0, 8), (8, 16), (17, 25)]


def test_park_sample_ends_a_stretch():
    t = StackTable()
    b = builder(t)
    evs = [*hog_run(t, W, 0, 8), sample(t, W, 8, shapes.park_epoll_124(), seq=3)]
    eps = kinds(b, evs)
    assert [(e.start_ns // MS, e.end_ns // MS) for e in eps] == [(0, 8)]


def test_workers_are_tracked_separately():
    t = StackTable()
    b = builder(t)
    a, c = hog_run(t, W, 0, 10), hog_run(t, W2, 0.5, 10)
    evs = [e for pair in zip(a, c) for e in pair]
    eps = sorted(kinds(b, evs) + b.flush(), key=lambda e: e.tid)
    assert [(e.tid, e.duration_ns) for e in eps] == [(W, 10 * MS), (W2, 10 * MS)]


def test_unknown_switch_seq_uses_the_sample_gap():
    t = StackTable()
    b = builder(t)
    evs = hog_run(t, W, 0, 6, seq=-1) + hog_run(t, W, 6.4, 6, seq=-1)   # gap 1.4 periods
    evs += hog_run(t, W, 20, 6, seq=-1)                                  # gap of 8.6 periods
    eps = kinds(b, evs) + b.flush()
    assert [(e.start_ns, e.end_ns) for e in eps] == [(0, int(12.4 * MS)),
                                                     (20 * MS, 26 * MS)]


def test_non_worker_samples_make_no_cpu_episodes_and_exit_closes():
    t = StackTable()
    b = builder(t)
    assert kinds(b, [sample(t, P, i, shapes.pool_busy(), seq=1) for i in range(30)]) == []
    kinds(b, hog_run(t, W, 0, 10))
    (ep,) = b.thread_exit(W, int(9.5 * MS))
    assert ep.end_ns == int(9.5 * MS)
    assert b.flush() == []


def test_cpu_episode_stack_is_of_the_most_sampled_function():
    t = StackTable()
    b = builder(t)
    evs = [sample(t, W, i, shapes.cpu_hog(line=120, helper="my_app::cpu::mix" if i % 3 else None),
                  seq=1) for i in range(9)]
    (ep,) = kinds(b, evs) + b.flush()
    assert ep.stack[0].function == "my_app::cpu::mix"


def test_offcpu_without_a_stack_makes_no_episode():
    t = StackTable()
    b = builder(t)
    from hud.model import OffCpuEvent
    kinds(b, [sample(t, W, i, shapes.cpu_hog(), seq=1) for i in range(10)])
    eps, _ = b.offcpu(OffCpuEvent(1, W, 0, 10 * MS, 60 * MS, 1, False, StackCapture()))
    assert [e.kind for e in eps] == [KIND_CPU]        # the stretch still ends there
    assert b.counts["offcpu_without_stack"] == 1


def test_interrupt_work_in_a_poll_is_not_its_kernel_time():
    """A timer or device interrupt (and the network softirq at its exit) runs in
    whatever thread it finds on the CPU: a poll hashing in user code must not read as
    spending its time in the kernel, at an interrupt's function."""
    def kernel(*names):
        return tuple(Frame(0xFFFF_FFFF_8100_0000 + 16 * i, n, module="[kernel]")
                     for i, n in enumerate(names))
    softirq = kernel("__ip_queue_xmit", "net_rx_action", "handle_softirqs",
                     "__irq_exit_rcu", "sysvec_apic_timer_interrupt",
                     "asm_sysvec_apic_timer_interrupt") + shapes.cpu_hog(120)
    exit_path = kernel("_raw_spin_unlock_irqrestore", "irqentry_exit_to_user_mode",
                       "sysvec_call_function_single",
                       "asm_sysvec_call_function_single") + shapes.cpu_hog(120)
    arm = kernel("gic_handle_irq", "el0_interrupt", "el0t_64_irq_handler",
                 "el0t_64_irq") + shapes.cpu_hog(120)
    fault = kernel("clear_page_erms", "handle_mm_fault", "exc_page_fault",
                   "asm_exc_page_fault") + shapes.cpu_hog(120)
    syscall = kernel("clear_user_erms", "read_iter_zero", "vfs_read", "do_syscall_64",
                     "entry_SYSCALL_64_after_hwframe") + shapes.cpu_hog(120)
    # On loopback a sendto delivers its own packet: the softirq is the call's work.
    loopback = kernel("tcp_v4_rcv", "net_rx_action", "handle_softirqs", "do_softirq.part.0",
                      "__local_bh_enable_ip", "__dev_queue_xmit", "tcp_sendmsg",
                      "__sys_sendto", "do_syscall_64") + shapes.cpu_hog(120)
    # A device interrupt in the middle of a system call is not the call's.
    in_call = kernel("handle_softirqs", "__irq_exit_rcu", "common_interrupt",
                     "asm_common_interrupt", "tcp_sendmsg_locked", "__sys_sendto",
                     "do_syscall_64") + shapes.cpu_hog(120)
    t = StackTable()
    b = builder(t)
    stacks = [softirq] * 3 + [exit_path] * 2 + [arm] + [fault] * 2 + [syscall] * 4 + \
        [loopback] * 2 + [in_call] + [shapes.cpu_hog(120)] * 5
    evs = [sample(t, W, ms, st, seq=3, kernel=st is not stacks[-1])
           for ms, st in enumerate(stacks)]
    (ep,) = kinds(b, evs) + b.flush()
    assert ep.detail == "20 samples, 8 in the kernel, 7 in interrupts"
    assert ep.kernel_ns == 8 * MS
    assert ep.kernel_sites == (("clear_user_erms", 4 * MS), ("clear_page_erms", 2 * MS),
                               ("tcp_v4_rcv", 2 * MS))


def test_a_sample_where_interrupts_come_back_on_counts_for_its_caller():
    """Sampling skid: a timer sample cannot fire while interrupts are off, so it lands
    on the unlock that turns them back on; the function that held the lock is where
    the time went."""
    stack = tuple(Frame(0xFFFF_FFFF_8100_0000 + 16 * i, n, module="[kernel]", cls="kernel")
                  for i, n in enumerate(("_raw_spin_unlock_irqrestore", "sock_def_readable",
                                         "tcp_rcv_established", "do_syscall_64")))
    assert kernel_site(stack) == "sock_def_readable"
    assert kernel_site(stack[:1]) == ""
