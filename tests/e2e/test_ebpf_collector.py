"""The eBPF collector on the Tokio `blockers` fixture built without frame pointers: the
stacks it captures unwind (hud.unwind, CFI over the copied stack) and symbolize
(hud.symbolize) to the manifest's ground truth, and Tokio parks learned from symbolized
stacks stop costing records."""
from __future__ import annotations

import statistics
import time
from collections import Counter

from hud.collect.ebpf import EbpfCollector
from hud.model import CpuSample, OffCpuEvent, ThreadTimes
from hud.symbolize import Symbolizer
from hud.unwind import Unwinder

VARIANT = "blockers-nofp"


def _collect(col: EbpfCollector, seconds: float, until=None) -> list:
    events: list = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        events += col.poll(0.05)
        if until is not None and until(events):
            break
    return events


class _Resolver:
    """Unwind + symbolize captures of one process: (frames, unwind result) per capture."""

    def __init__(self, pid: int) -> None:
        self.sym = Symbolizer().for_process(pid)
        self.unwinder = Unwinder(self.sym.maps)

    def __call__(self, capture):
        res = self.unwinder.unwind(capture)
        frames = [f for group in self.sym.symbolize(res.ips) for f in group]
        return frames, res


def test_sleep_blocker_offcpu_stack_unwinds_to_the_manifest_line(tokio_fixture):
    fx = tokio_fixture(VARIANT, ["sleep"])
    truth = fx.manifest.scenarios["sleep"]
    block_ns = fx.scenarios["sleep"]["block_ms"] * 1_000_000
    workers = set(fx.worker_tids)
    assert fx.manifest.frame_pointers is False

    def long_sleeps(events):
        return [e for e in events if isinstance(e, OffCpuEvent) and e.tid in workers
                and e.duration_ns >= block_ns]

    with EbpfCollector(fx.pid) as col:
        for tid in workers:
            col.set_role(tid, "worker")
        events = _collect(col, 10.0, lambda ev: len(long_sleeps(ev)) >= 12)  # parks too
        resolve = _Resolver(fx.pid)
        hits = []
        for ev in long_sleeps(events):
            assert not ev.runnable and ev.state & 1 and ev.pid == fx.pid
            frames, res = resolve(ev.stack)
            here = [f for f in frames if f.function == truth.function]
            if here:
                hits.append((ev, frames, res, here))
    assert len(hits) >= 3, [(e.duration_ns, [f.function for f in fr][:8]) for e, fr, _, _ in hits]
    # At least the sleep; more only by the wait for a CPU after the wake-up.
    assert statistics.median(e.duration_ns for e, _, _, _ in hits) < block_ns + 20_000_000
    for _ev, frames, res, here in hits:
        assert res.reason == "end", (res.reason, [f.function for f in frames])
        assert any(f.line is not None and abs(f.line - truth.line) <= 1 and
                   (f.file or "").endswith(truth.dwarf_file) for f in here), here
        # Innermost first: the libc sleep, then std, then the blocker, then the runtime.
        names = [f.function or "" for f in frames]
        k = names.index(truth.function)
        assert any("sleep" in n for n in names[:k])
        assert any(n.startswith("tokio::") for n in names[k + 1:])


def test_cpu_burner_samples_unwind_to_the_manifest_function(tokio_fixture):
    fx = tokio_fixture(VARIANT, ["cpu"])
    truth = fx.manifest.scenarios["cpu"]
    workers = set(fx.worker_tids)
    with EbpfCollector(fx.pid) as col:        # default rate: >= 2 samples per 5 ms
        assert col.freq >= 400
        samples = [e for e in _collect(col, 3.0) if isinstance(e, CpuSample)
                   and e.tid in workers]
        resolve = _Resolver(fx.pid)
        burning = []
        for s in samples:
            frames, res = resolve(s.stack)
            if any(f.function == truth.function for f in frames):
                burning.append((s, frames, res))
    assert len(burning) >= 30, f"{len(burning)} of {len(samples)} samples in {truth.function}"
    complete = sum(res.reason == "end" for _, _, res in burning)
    assert complete >= 0.9 * len(burning)
    # One 50 ms burn is one on-CPU stretch: its samples share a switch_seq, so runs of
    # equal switch_seq several samples long exist (preemption does not change it).
    runs = Counter((s.tid, s.switch_seq) for s, _, _ in burning)
    assert max(runs.values()) >= 10


def test_learned_tokio_parks_stop_costing_records(tokio_fixture):
    fx = tokio_fixture(VARIANT, ["sleep"])
    workers = set(fx.worker_tids)
    with EbpfCollector(fx.pid, sample=False) as col:
        for tid in workers:
            col.set_role(tid, "worker")
        resolve = _Resolver(fx.pid)
        learned: set = set()
        parks_seen = 0
        end = time.monotonic() + 8.0
        while time.monotonic() < end and len(learned) < len(workers):
            for ev in col.poll(0.1):
                if not isinstance(ev, OffCpuEvent) or ev.tid not in workers:
                    continue
                frames, _ = resolve(ev.stack)
                if any("park" in (f.function or "") and (f.function or "").startswith("tokio::")
                       for f in frames):
                    parks_seen += 1
                    site = (ev.tid, ev.stack.regs.ip, ev.stack.regs.sp)
                    if site not in learned:
                        assert col.mark_park(*site)
                        learned.add(site)
        assert parks_seen and learned
        marked_at = time.monotonic_ns()
        before = {t.tid: t for t in col.thread_times()}
        after_events = _collect(col, 2.0)
        after = {t.tid: t for t in col.thread_times()}
    again = [e for e in after_events if isinstance(e, OffCpuEvent)
             and (e.tid, e.stack.regs.ip, e.stack.regs.sp) in learned and e.start_ns > marked_at]
    assert again == []
    parked = sum(after[t].parked_ns - before[t].parked_ns for t in workers if t in before)
    assert parked > 0
    assert all(isinstance(t, ThreadTimes) for t in after.values())
