"""hud.collect.perf_pump: the ring reader thread, driven by fake drains (no rings, no root)."""
from __future__ import annotations

import os
import threading
import time

import pytest

from hud.collect.perf_pump import RingPump


def wait_for(cond, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "the pump thread did not get there"
        time.sleep(0.005)


def test_records_gathered_on_the_pump_thread_are_handed_over_in_order():
    seen_threads = set()
    counter = iter(range(10**6))

    def drain(batch: list) -> None:
        seen_threads.add(threading.current_thread().name)
        batch.extend([next(counter), next(counter)])

    pump = RingPump(drain, interval_s=0.001)
    pump.start()
    try:
        wait_for(lambda: pump.passes >= 3)
        before = time.monotonic_ns()
        first, stamp1 = pump.take()
        wait_for(lambda: pump.passes >= 6)
        second, stamp2 = pump.take()
    finally:
        pump.stop()
        pump.stop()
    assert seen_threads == {"hud-perf-pump"}
    got = first + second
    assert got == list(range(len(got))) and len(first) >= 6
    assert 0 < stamp1 <= before + 10**9 and stamp2 >= stamp1


def test_a_full_inbox_pauses_reading_and_wakes_the_poller():
    pump = RingPump(lambda batch: batch.extend(range(10)), interval_s=0.001,
                    max_backlog=25, wake_backlog=1000)
    pump.start()
    try:
        wait_for(lambda: pump.paused > 0)
        assert pump.wake.is_set()
        batch, _ = pump.take()
        assert 25 <= len(batch) < 40 and not pump.wake.is_set()
    finally:
        pump.stop()


def test_a_readable_watch_fd_means_gone_after_a_last_pass():
    r, w = os.pipe()
    try:
        pump = RingPump(lambda batch: batch.append("x"), watch_fd=r, interval_s=0.05)
        pump.start()
        os.write(w, b"!")
        assert pump.wake.wait(5)
        wait_for(lambda: pump.gone)
        batch, _ = pump.take()
        assert batch and batch[-1] == "x"
        pump.stop()
    finally:
        os.close(r)
        os.close(w)


def test_an_error_in_the_drain_reaches_the_poller():
    def drain(batch: list) -> None:
        raise RuntimeError("ring vanished")

    pump = RingPump(drain, interval_s=0.001)
    pump.start()
    assert pump.wake.wait(5)
    with pytest.raises(RuntimeError, match="ring vanished"):
        pump.take()
    pump.stop()
    assert pump.take() == ([], 0)
