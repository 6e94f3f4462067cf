"""hud.collect.perf_state: pairing switch records into episodes, times and switch counts."""
from __future__ import annotations

from hud.collect.perf_records import Capture, Preempt, SwitchMark
from hud.collect.perf_state import Reorder, SwitchTracker
from hud.model import CpuSample, OffCpuEvent, StackCapture, ThreadExit, ThreadTimes, UserRegs

PID, TID = 100, 101
MS = 1_000_000


def cap(time: int, ip: int = 0x401000, sp: int = 0x7ff000, tid: int = TID) -> Capture:
    return Capture.of(tid, time, StackCapture(fp_ips=(ip,), stack=b"\x11" * 64,
                                              regs=UserRegs("x86_64", ip=ip, sp=sp)), PID)


def out(time: int, preempt: bool = False, tid: int = TID, cpu: int = 0) -> SwitchMark:
    return SwitchMark(False, preempt, PID, tid, time, cpu, 1)


def feed(tr: SwitchTracker, *recs) -> list:
    """Records as the collector hands them over, in time order."""
    events: list = []
    for r in recs:
        if isinstance(r, Capture):
            tr.capture(r.tid, r)
        elif isinstance(r, Preempt):
            tr.preempt(r.tid, r)
        elif isinstance(r, SwitchMark) and not r.switch_in:
            tr.switch_out(r.tid, r.time, r.cpu, r.preempt)
        elif isinstance(r, SwitchMark):
            e = tr.switch_in(r.tid, r.time)
            if e is not None:
                events.append(e)
    return events


def sin(time: int, tid: int = TID) -> SwitchMark:
    return SwitchMark(True, False, PID, tid, time, 1, 1)


def test_blocked_episode_past_the_threshold_carries_its_switch_out_stack():
    tr = SwitchTracker(PID, threshold_ns=5 * MS)
    c = cap(10 * MS + 1)
    evs = feed(tr, sin(1 * MS), c, out(10 * MS + 2, cpu=1), sin(60 * MS))
    assert len(evs) == 1
    ev = evs[0]
    assert isinstance(ev, OffCpuEvent)
    assert (ev.pid, ev.tid, ev.cpu, ev.start_ns, ev.end_ns) == (PID, TID, 1, 10 * MS + 2, 60 * MS)
    assert ev.stack is c.capture and not ev.runnable and ev.state == -1
    (tt,) = tr.times(61 * MS)
    assert tt.oncpu_ns == 9 * MS + 2 and tt.offcpu_ns == 50 * MS - 2
    assert tt.parked_ns == 0 and tt.runq_ns == 0


def test_short_episodes_make_no_event_but_count_their_time():
    tr = SwitchTracker(PID, threshold_ns=5 * MS)
    evs = feed(tr, sin(0), cap(1 * MS), out(1 * MS), sin(3 * MS))
    assert evs == [] and tr.counts["below_threshold"] == 1
    assert tr.times(4 * MS)[0].offcpu_ns == 2 * MS


def test_runnable_episode_names_the_preemptor():
    tr = SwitchTracker(PID, threshold_ns=5 * MS)
    pre = Preempt(2, PID, TID, 2 * MS, 0, state=256, next_pid=4242, next_comm="hog")
    evs = feed(tr, sin(0), pre, cap(2 * MS + 1), out(2 * MS + 2, preempt=True),
               sin(20 * MS))
    (ev,) = evs
    assert ev.runnable and ev.state == 256
    assert (ev.holder_pid, ev.holder_comm) == (4242, "hog")
    assert tr.times(21 * MS)[0].runq_ns == 18 * MS - 2


def test_a_preemptor_without_a_preempted_switch_out_is_not_used():
    tr = SwitchTracker(PID, threshold_ns=1 * MS)
    pre = Preempt(2, PID, TID, 2 * MS, 0, state=256, next_pid=4242, next_comm="hog")
    (ev,) = feed(tr, sin(0), pre, cap(2 * MS + 1), out(2 * MS + 2, preempt=False),
                 sin(20 * MS))
    assert not ev.runnable and ev.holder_pid == 0 and ev.holder_comm == ""


def test_known_parks_are_dropped_before_unwinding_and_count_as_parked():
    tr = SwitchTracker(PID, threshold_ns=5 * MS)
    tr.parks.add((TID, 0xAAA, 0xBBB))
    evs = feed(tr, sin(0), cap(1 * MS, ip=0xAAA, sp=0xBBB), out(1 * MS), sin(100 * MS))
    assert evs == [] and tr.counts["parked_dropped"] == 1
    tt = tr.times(101 * MS)[0]
    assert tt.parked_ns == 99 * MS and tt.offcpu_ns == 0
    # The same ip at another sp is not that park: a blocker is reported.
    evs = feed(tr, cap(101 * MS, ip=0xAAA, sp=0xCCC), out(101 * MS), sin(200 * MS))
    assert len(evs) == 1 and evs[0].stack.regs.sp == 0xCCC


def test_a_preempted_thread_at_a_park_site_is_a_run_queue_wait():
    tr = SwitchTracker(PID, threshold_ns=5 * MS)
    tr.parks.add((TID, 0xAAA, 0xBBB))
    (ev,) = feed(tr, sin(0), cap(1 * MS, ip=0xAAA, sp=0xBBB), out(1 * MS, preempt=True),
                 sin(30 * MS))
    assert ev.runnable and ev.stack.regs is not None


def test_ignored_threads_keep_times_but_make_no_events_or_samples():
    tr = SwitchTracker(PID, threshold_ns=5 * MS)
    tr.ignored.add(TID)
    evs = feed(tr, sin(0), cap(1 * MS), out(1 * MS), sin(100 * MS))
    assert evs == [] and tr.counts["ignored"] == 1
    assert tr.times(101 * MS)[0].offcpu_ns == 99 * MS
    s = CpuSample(PID, TID, 0, 101 * MS, 1 * MS, StackCapture())
    assert tr.sample(s) is None


def test_switch_seq_counts_voluntary_switch_outs_only():
    tr = SwitchTracker(PID, threshold_ns=5 * MS)
    s = CpuSample(PID, TID, 0, 1, 1 * MS, StackCapture())
    assert tr.sample(s).switch_seq == -1           # before the thread's first switch record
    feed(tr, sin(0))
    assert tr.sample(s).switch_seq == 0
    feed(tr, out(1 * MS, preempt=True), sin(2 * MS))
    assert tr.sample(s).switch_seq == 0            # a preemption does not end a poll
    feed(tr, out(3 * MS), sin(4 * MS), out(5 * MS), sin(6 * MS))
    assert tr.sample(s).switch_seq == 2


def test_first_switch_out_counts_on_cpu_time_from_the_start():
    tr = SwitchTracker(PID, threshold_ns=5 * MS, start_ns=10 * MS)
    feed(tr, cap(15 * MS), out(15 * MS))
    assert tr.times(16 * MS)[0].oncpu_ns == 5 * MS
    # A thread first seen switching in has no switch-out to pair: no event.
    assert feed(tr, sin(16 * MS, tid=202)) == []


def test_a_capture_from_before_the_last_switch_in_is_not_this_switch_outs():
    tr = SwitchTracker(PID, threshold_ns=5 * MS)
    stale = cap(1 * MS)
    # The capture's OUT record was lost: the next switch-out has no stack of its own.
    feed(tr, sin(0), stale, sin(2 * MS))
    (ev,) = feed(tr, out(3 * MS), sin(30 * MS))
    assert ev.stack == StackCapture() and tr.counts["outs_without_capture"] == 1
    assert tr.counts["unpaired_in"] == 1


def test_lost_records_taint_pending_switch_outs():
    tr = SwitchTracker(PID, threshold_ns=5 * MS)
    feed(tr, sin(0), cap(1 * MS), out(1 * MS))
    tr.lost(2 * MS)
    assert feed(tr, sin(50 * MS)) == [] and tr.counts["tainted"] == 1
    # Switch-outs after the loss are fine again.
    assert len(feed(tr, cap(51 * MS), out(51 * MS), sin(90 * MS))) == 1


def test_exit_sends_final_times_then_the_exit_and_forgets_parks():
    tr = SwitchTracker(PID, threshold_ns=5 * MS)
    tr.parks.update({(TID, 1, 2), (999, 1, 2)})
    feed(tr, sin(0))
    evs = tr.exit(TID, 7 * MS)
    assert isinstance(evs[0], ThreadTimes) and evs[0].oncpu_ns == 7 * MS
    assert evs[1] == ThreadExit(TID, 7 * MS)
    assert tr.parks == {(999, 1, 2)} and len(tr) == 0
    assert tr.exit(555, 8 * MS) == [ThreadExit(555, 8 * MS)]


def test_times_reports_only_threads_that_moved():
    tr = SwitchTracker(PID, threshold_ns=5 * MS)
    feed(tr, sin(0), out(1 * MS), sin(0, tid=202))
    assert {t.tid for t in tr.times(2 * MS)} == {TID, 202}
    assert tr.times(3 * MS) == []
    feed(tr, sin(4 * MS))
    assert [t.tid for t in tr.times(5 * MS)] == [TID]
    assert len(tr.times(6 * MS, everything=True)) == 2


def test_threshold_changes_apply_to_later_switch_ins():
    tr = SwitchTracker(PID, threshold_ns=50 * MS)
    feed(tr, sin(0), cap(1 * MS), out(1 * MS))
    tr.threshold_ns = 5 * MS
    assert len(feed(tr, sin(20 * MS))) == 1


def test_reorder_releases_older_records_sorted_and_counts_late_ones():
    r = Reorder()
    # Two rings' sorted runs in one batch, then another batch.
    r.add([(10, "a"), (30, "c"), (50, "e")])
    r.add([(10, "a2"), (20, "b"), (25, "edge")])
    assert [x[1] for x in r.pop(25)] == ["a", "a2", "b"]     # ties keep arrival order
    assert len(r) == 3 and r.released_upto == 25
    r.add([(15, "late"), (26, "f")])
    assert r.late == 1
    assert [x[1] for x in r.pop(40)] == ["late", "edge", "f", "c"]
    assert r.pop(5) == [] and r.released_upto == 40        # never goes back
    assert [x[1] for x in r.pop(None)] == ["e"] and len(r) == 0
    r.add([])
    assert r.pop(None) == []
