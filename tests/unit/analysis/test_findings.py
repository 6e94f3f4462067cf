"""Findings: grouping, p99 (nearest rank), ranking, representative stack, removal."""
from __future__ import annotations

import math
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st
from unit.analysis import tokio_shapes as shapes
from unit.analysis.helpers import MS

from hud.analysis.episodes import kernel_site
from hud.analysis.findings import FindingsTable, p99_index, rank
from hud.classify import classify_stack
from hud.model import (
    CLASS_KERNEL,
    FINDING_KINDS,
    KIND_BLOCKING,
    KIND_CPU,
    KIND_PARK,
    KIND_POOL,
    KIND_SCHED_DELAY,
    Episode,
    Frame,
)


def ep(kind, tid, start_ms, dur_ms, stack, detail=""):
    return Episode(kind, tid, int(start_ms * MS), int((start_ms + dur_ms) * MS),
                   classify_stack(stack, shapes.APP), detail)


SLEEP = shapes.sleep_blocker()
SLEEP_43 = shapes.sleep_blocker(line=43)
MUTEX = shapes.mutex_blocker()


def brute_p99(values):
    """The textbook nearest-rank definition, written independently."""
    s = sorted(values)
    for v in s:
        if sum(1 for x in s if x <= v) >= 0.99 * len(s):
            return v
    return None


@given(st.lists(st.integers(min_value=1, max_value=10**9), min_size=1, max_size=400))
def test_p99_is_nearest_rank(values):
    s = sorted(values)
    assert s[p99_index(len(s))] == brute_p99(values)


def test_p99_known_values():
    assert p99_index(1) == 0
    assert p99_index(99) == 98           # below 100 values p99 is the max
    assert p99_index(100) == 98          # the 99th of 100
    assert p99_index(101) == 99
    assert p99_index(200) == 197
    assert p99_index(1000) == 989


def test_group_aggregates():
    t = FindingsTable(FINDING_KINDS)
    durs = list(range(1, 201))          # 200 episodes, 1..200 ms
    for i, d in enumerate(reversed(durs)):
        t.add(ep(KIND_BLOCKING, 10 + i % 3, i * 1000, d, SLEEP))
    (f,) = t.findings()
    assert f.kind == KIND_BLOCKING
    assert f.function == "my_app::handlers::load"
    assert (f.file, f.line) == ("/usr/src/app/src/handlers.rs", 42)
    assert f.count == 200
    assert math.isclose(f.total_ms, sum(durs))
    assert math.isclose(f.max_ms, 200)
    assert math.isclose(f.p99_ms, 198)   # rank ceil(0.99*200) = 198
    assert f.workers == (10, 11, 12)
    assert f.stack[4].function == "my_app::handlers::load::{{closure}}"


def test_blocking_groups_by_line_cpu_merges_lines():
    t = FindingsTable(FINDING_KINDS)
    t.add(ep(KIND_BLOCKING, 1, 0, 10, SLEEP))
    t.add(ep(KIND_BLOCKING, 1, 100, 20, SLEEP_43))
    t.add(ep(KIND_CPU, 1, 200, 7, shapes.cpu_hog(line=120)))
    t.add(ep(KIND_CPU, 1, 300, 9, shapes.cpu_hog(line=123)))
    fs = t.findings()
    blocking = [f for f in fs if f.kind == KIND_BLOCKING]
    assert sorted(f.line for f in blocking) == [42, 43]
    (cpu,) = [f for f in fs if f.kind == KIND_CPU]
    assert cpu.count == 2 and cpu.line == 123      # the longest episode's line
    assert cpu.function == "my_app::handlers::hog"


def test_representative_stack_is_the_longest_episode():
    t = FindingsTable(FINDING_KINDS)
    short = ep(KIND_BLOCKING, 1, 0, 10, shapes.sleep_blocker(task_fn="my_app::a"))
    long = ep(KIND_BLOCKING, 2, 50, 30, shapes.sleep_blocker(task_fn="my_app::b"))
    t.add(short)
    t.add(long)
    t.add(ep(KIND_BLOCKING, 1, 100, 10, shapes.sleep_blocker(task_fn="my_app::a")))
    (f,) = t.findings()
    assert f.stack is long.stack


def test_ranked_by_total_time():
    t = FindingsTable(FINDING_KINDS)
    for i in range(10):
        t.add(ep(KIND_BLOCKING, 1, i * 100, 6, SLEEP))          # 60 ms total
    t.add(ep(KIND_BLOCKING, 1, 2000, 50, MUTEX))                # 50 ms, one long
    t.add(ep(KIND_CPU, 1, 3000, 70, shapes.cpu_hog()))         # 70 ms
    fs = t.findings()
    assert [f.total_ms for f in fs] == sorted((f.total_ms for f in fs), reverse=True)
    assert [f.kind for f in fs] == [KIND_CPU, KIND_BLOCKING, KIND_BLOCKING]
    assert fs[1].function == "my_app::handlers::load"
    assert rank(reversed(fs)) == fs


def test_park_and_pool_are_never_findings():
    t = FindingsTable(FINDING_KINDS)
    assert not t.add(ep(KIND_PARK, 1, 0, 100, shapes.park_epoll_124()))
    assert not t.add(ep(KIND_POOL, 2, 0, 100, shapes.pool_busy()))
    assert t.findings() == []


def test_sched_delay_carries_the_holders():
    t = FindingsTable(FINDING_KINDS)
    t.add(ep(KIND_SCHED_DELAY, 1, 0, 30, shapes.cpu_hog(), "stress (tid 9)"))
    t.add(ep(KIND_SCHED_DELAY, 1, 50, 10, shapes.cpu_hog(line=121), "kworker/0:1 (tid 3)"))
    (f,) = t.findings()
    assert f.detail == "CPU held by stress (tid 9) 75%, kworker/0:1 (tid 3) 25%"
    d = f.to_dict()
    assert d["holders"] == [{"holder": "stress (tid 9)", "ms": 30.0},
                            {"holder": "kworker/0:1 (tid 3)", "ms": 10.0}]


def test_blocking_names_its_wakers_as_shares_of_the_blocked_time():
    mutex = shapes.mutex_blocker()
    t = FindingsTable(FINDING_KINDS, keep_members=True)
    at = "my_app::cache::refresh (cache.rs:88)"
    a = replace(ep(KIND_BLOCKING, 1, 0, 30, mutex), waker=("keeper (tid 7)", at))
    t.add(a)
    t.add(replace(ep(KIND_BLOCKING, 1, 50, 10, mutex), waker=("w-2 (tid 8)", "")))
    t.add(ep(KIND_BLOCKING, 1, 70, 10, mutex))                  # no waker seen
    (f,) = t.findings()
    assert f.detail == f"woken by keeper (tid 7) at {at} 60%, w-2 (tid 8) 20%"
    assert f.to_dict()["wakers"] == [{"waker": "keeper (tid 7)", "at": at, "ms": 30.0},
                                     {"waker": "w-2 (tid 8)", "ms": 10.0}]
    t.remove(a)
    (f,) = t.findings()
    assert f.detail == "woken by w-2 (tid 8) 50%"
    t2 = FindingsTable(FINDING_KINDS)
    t2.add(ep(KIND_BLOCKING, 1, 0, 30, SLEEP))
    (g,) = t2.findings()
    assert g.detail == "" and "wakers" not in g.to_dict()


def test_cpu_findings_say_how_much_of_their_time_was_the_kernels():
    t = FindingsTable(FINDING_KINDS, keep_members=True)
    sys_a = replace(ep(KIND_CPU, 1, 0, 40, shapes.cpu_hog()), kernel_ns=36 * MS)
    sys_b = replace(ep(KIND_CPU, 1, 50, 10, shapes.cpu_hog()), kernel_ns=10 * MS)
    for e in (sys_a, sys_b):
        t.add(e)
    (f,) = t.findings()
    assert f.detail == "in the kernel 92%" and f.to_dict()["kernel_ms"] == 46.0
    t.remove(sys_a)
    (f,) = t.findings()
    assert f.detail == "in the kernel 100%" and f.to_dict()["kernel_ms"] == 10.0
    # Below a tenth of the time: the share is in the report, not in the detail.
    t.add(ep(KIND_CPU, 1, 100, 100, shapes.cpu_hog()))
    (f,) = t.findings()
    assert f.detail == "" and f.to_dict()["kernel_ms"] == 10.0
    # Other kinds have no kernel share.
    t.add(ep(KIND_BLOCKING, 1, 0, 10, SLEEP))
    assert "kernel_ms" not in of_kind(t, KIND_BLOCKING).to_dict()


def test_blocking_findings_say_how_much_of_their_time_was_in_page_faults():
    t = FindingsTable(FINDING_KINDS)
    t.add(replace(ep(KIND_BLOCKING, 1, 0, 45, SLEEP), fault=True))
    t.add(ep(KIND_BLOCKING, 1, 50, 5, SLEEP))
    (f,) = t.findings()
    assert f.detail == "in a page fault 90%" and f.to_dict()["fault_ms"] == 45.0
    t.add(ep(KIND_BLOCKING, 1, 100, 500, SLEEP))
    (f,) = t.findings()
    assert f.detail == "" and f.to_dict()["fault_ms"] == 45.0
    t.add(ep(KIND_CPU, 1, 0, 10, shapes.cpu_hog()))
    assert "fault_ms" not in of_kind(t, KIND_CPU).to_dict()


def of_kind(table, kind):
    return next(f for f in table.findings() if f.kind == kind)


def test_remove_restores_the_previous_state():
    t = FindingsTable(FINDING_KINDS, keep_members=True)
    a = ep(KIND_BLOCKING, 1, 0, 10, SLEEP)
    b = ep(KIND_BLOCKING, 2, 20, 40, SLEEP)
    c = ep(KIND_BLOCKING, 3, 80, 20, SLEEP)
    for e in (a, b, c):
        t.add(e)
    t.remove(a)
    t.remove(b)        # the longest leaves: the next longest represents
    (f,) = t.findings()
    assert (f.count, f.total_ms, f.max_ms, f.workers) == (1, 20.0, 20.0, (3,))
    assert f.stack is c.stack
    t.remove(c)
    assert t.findings() == [] and len(t) == 0


def _kernel(*names):
    """Kernel frames as the resolver puts them before the user ones (innermost first)."""
    return tuple(Frame(address=0xFFFF_FFFF_8100_0000 + 16 * i, function=n, module="[kernel]")
                 for i, n in enumerate(names))


SLEEP_K = _kernel("__schedule", "schedule", "do_nanosleep", "hrtimer_nanosleep",
                  "__x64_sys_clock_nanosleep", "do_syscall_64") + SLEEP
FAULT_K = _kernel("__schedule", "schedule", "handle_userfault", "do_anonymous_page",
                  "handle_mm_fault", "exc_page_fault") + SLEEP


def test_kernel_site_is_the_first_kernel_function_past_the_scheduler():
    assert kernel_site(classify_stack(SLEEP_K, shapes.APP)) == "do_nanosleep"
    assert kernel_site(classify_stack(SLEEP, shapes.APP)) == ""
    only_sched = _kernel("__schedule", "schedule_hrtimeout_range_clock", "schedule") + SLEEP
    assert kernel_site(classify_stack(only_sched, shapes.APP)) == ""
    unnamed = (Frame(address=0xFFFF_FFFF_8100_0000, module="[kernel]", reason="x"),
               *_kernel("finish_task_switch.isra.0", "ep_poll"), *SLEEP)
    assert kernel_site(classify_stack(unnamed, shapes.APP)) == "ep_poll"
    # poll(2)'s own wrapper of schedule() is the scheduler's too; clone suffixes go.
    polled = _kernel("__schedule", "poll_schedule_timeout.constprop.0",
                     "do_poll.constprop.0", "do_sys_poll") + SLEEP
    assert kernel_site(classify_stack(polled, shapes.APP)) == "do_poll"
    # A sample in kernel code: the leaf itself.
    assert kernel_site(classify_stack(_kernel("clear_user_erms", "read_iter_zero") + SLEEP,
                                      shapes.APP)) == "clear_user_erms"


def test_findings_say_where_in_the_kernel_they_wait_or_run():
    t = FindingsTable(FINDING_KINDS, keep_members=True)
    a = ep(KIND_BLOCKING, 1, 0, 30, SLEEP_K)
    t.add(a)
    t.add(ep(KIND_BLOCKING, 1, 40, 10, SLEEP))         # no kernel frames (perf backend)
    (f,) = t.findings()
    assert f.detail == "in the kernel at do_nanosleep 75%"
    assert f.to_dict()["kernel_sites"] == [{"function": "do_nanosleep", "ms": 30.0}]
    assert f.stack[0].function == "__schedule" and f.stack[0].cls == CLASS_KERNEL
    t.remove(a)
    (f,) = t.findings()
    assert f.detail == "" and "kernel_sites" not in f.to_dict()
    # A page fault says where it waits; a named waker still comes first.
    t.add(replace(ep(KIND_BLOCKING, 1, 100, 40, FAULT_K), fault=True))
    (f,) = t.findings()
    assert f.detail == "in a page fault 80%, at handle_userfault"
    u = FindingsTable(FINDING_KINDS)
    u.add(replace(ep(KIND_BLOCKING, 1, 0, 30, SLEEP_K), waker=("w-2 (tid 8)", "")))
    assert u.findings()[0].detail == "woken by w-2 (tid 8) 100%"
    # cpu: the kernel share, then the function the samples ran in.
    c = FindingsTable(FINDING_KINDS)
    c.add(replace(ep(KIND_CPU, 1, 0, 40, _kernel("clear_user_erms", "read_iter_zero")
                     + shapes.cpu_hog()), kernel_ns=36 * MS))
    assert c.findings()[0].detail == "in the kernel 90%, at clear_user_erms"
    # A cpu episode from samples carries its kernel time by site: that, not its one
    # representative stack, is what counts.
    d = FindingsTable(FINDING_KINDS, keep_members=True)
    e = replace(ep(KIND_CPU, 1, 0, 40, shapes.cpu_hog()), kernel_ns=36 * MS,
                kernel_sites=(("read_iter_zero", 30 * MS), ("_copy_to_iter", 6 * MS)))
    d.add(e)
    (g,) = d.findings()
    assert g.detail == "in the kernel 90%, at read_iter_zero"
    assert g.to_dict()["kernel_sites"] == [{"function": "read_iter_zero", "ms": 30.0},
                                           {"function": "_copy_to_iter", "ms": 6.0}]
    d.remove(e)
    assert d.findings() == []            # its only episode gone: no finding, no sites left
