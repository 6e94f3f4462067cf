"""Per-worker shares: thread-times deltas, windows, thinning, episode fallback."""
from __future__ import annotations

import math

from unit.analysis.helpers import MS

from hud.analysis.shares import SOURCE_EPISODES, SOURCE_TIMES, Shares
from hud.model import KIND_BLOCKING, KIND_CPU, KIND_PARK, Episode, ThreadTimes


def tt(tid, t_ms, on, parked, off, runq):
    return ThreadTimes(tid, t_ms * MS, on * MS, parked * MS, off * MS, runq * MS)


def test_window_uses_the_snapshot_at_its_edge():
    s = Shares()
    s.times(tt(1, 1000, 100, 800, 100, 0))
    s.times(tt(1, 2000, 600, 1300, 100, 0))      # second 2: half running, half parked
    whole = s.share(1)
    assert whole.source == SOURCE_TIMES
    assert math.isclose(whole.running, 0.3)      # 600 of 2000 ms since attach
    win = s.share(1, since_ns=1500 * MS)          # edge falls after the 1000 ms snapshot
    assert math.isclose(win.running, 0.5) and math.isclose(win.parked, 0.5)


def test_out_of_order_snapshots_are_ignored():
    s = Shares()
    s.times(tt(1, 2000, 600, 1300, 100, 0))
    s.times(tt(1, 1000, 100, 800, 100, 0))
    assert len(s._t[1].snaps) == 1


def test_thinning_keeps_first_and_newest():
    s = Shares(max_snapshots=7)
    for i in range(1, 200):
        s.times(tt(1, i * 10, i, i * 8, i, 0))
    t = s._t[1]
    assert len(t.snaps) <= 8
    assert t.snaps[0][0] == 10 * MS and t.snaps[-1][0] == 1990 * MS
    assert t.times == sorted(t.times)
    whole = s.share(1)
    assert math.isclose(whole.running, 0.1) and math.isclose(whole.parked, 0.8)


def test_park_episodes_move_off_cpu_time_to_parked_but_never_below_zero():
    s = Shares()
    s.times(tt(1, 0, 0, 0, 0, 0))
    s.episode(Episode(KIND_PARK, 1, 10 * MS, 500 * MS, ()))
    s.times(tt(1, 1000, 500, 0, 300, 200))        # kernel saw 300 ms off CPU only
    sh = s.share(1)
    assert math.isclose(sh.parked, 0.3) and sh.blocked == 0


def test_episode_source():
    s = Shares()
    s.episode(Episode(KIND_BLOCKING, 2, 0, 100 * MS, ()))
    s.episode(Episode(KIND_PARK, 2, 100 * MS, 700 * MS, ()))
    s.episode(Episode(KIND_CPU, 2, 800 * MS, 900 * MS, ()))
    sh = s.share(2)
    assert sh.source == SOURCE_EPISODES and sh.total_ns == 900 * MS
    assert [round(x, 4) for x in (sh.running, sh.parked, sh.blocked, sh.waiting, sh.other)] \
        == [0.1111, 0.6667, 0.1111, 0.0, 0.1111]
    assert s.share(3) is None
