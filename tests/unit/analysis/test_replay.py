"""Recordings: round trip, pre-resolved stacks, hostile lines, and the demo recording."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from unit.analysis import tokio_shapes as shapes
from unit.analysis.helpers import MS, StackTable, off, sample

from hud.analysis import Analyzer
from hud.collect.replay import (
    FORMAT,
    RecordingWriter,
    read_recording,
    write_recording,
)
from hud.errors import BadInput
from hud.model import (
    CLASS_KERNEL,
    KIND_BLOCKING,
    KIND_CPU,
    KIND_PARK,
    KIND_POOL,
    KIND_SCHED_DELAY,
    ROLE_BLOCKING,
    ROLE_WORKER,
    Frame,
    Lost,
    OffCpuEvent,
    StackCapture,
    Target,
    TargetExit,
    Thread,
    ThreadExit,
    ThreadSeen,
    ThreadTimes,
    UserRegs,
    Wake,
)

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "tests" / "data" / "recordings" / "demo.jsonl"
TARGET = Target(100, shapes.APP, "my-app", (Thread(11, "tokio-runtime-w", ROLE_WORKER),
                                            Thread(21, "tokio-runtime-w", ROLE_BLOCKING)))


def all_kinds(t):
    raw = StackCapture(fp_ips=(0x401000, 0x402000), kernel_ips=(0xFFFFFFFF81000000,),
                       regs=UserRegs("x86_64", 0x401000, 0x7FFF0000, 0x7FFF0100, 0,
                                     ((3, 7), (12, 0xDEAD))), stack=bytes(range(256)) * 4)
    t._caps[("raw",)] = raw
    t._frames[raw] = (shapes.fr("my_app::x", "/usr/src/app/src/x.rs", 3),)
    return [
        ThreadSeen(11, "tokio-runtime-w", 1 * MS),
        off(t, 11, 2, 50, shapes.sleep_blocker()),
        Wake(100, 11, 812, "lock-keeper", 55 * MS, 58 * MS, raw),
        off(t, 11, 55, 4, shapes.mutex_blocker(), waker=("lock-keeper", 812)),
        sample(t, 11, 60, shapes.cpu_hog(), seq=3),
        sample(t, 11, 61, shapes.cpu_hog(), seq=3, kernel=True),
        off(t, 11, 62, 6, shapes.cpu_hog(), fault=True),
        OffCpuEvent(100, 11, 1, 70 * MS, 90 * MS, 0, True, raw, 4242, "stress-ng"),
        ThreadTimes(11, 100 * MS, 1, 2, 3, 4),
        Thread(22, "tokio-runtime-w", ROLE_BLOCKING),
        Lost("ringbuf", 5, 101 * MS),
        ThreadExit(22, 102 * MS),
        TargetExit(100, 103 * MS),
    ]


def test_round_trip_with_raw_captures(tmp_path):
    t = StackTable()
    evs = all_kinds(t)
    path = tmp_path / "r.jsonl"
    n = write_recording(str(path), TARGET, evs, resolve=t, meta={"backend": "ebpf"},
                        keep_raw=True)
    assert n == len(evs)
    rec = read_recording(str(path))
    assert (rec.bad_lines, rec.unknown_lines) == (0, 0)
    assert rec.target == TARGET and rec.meta == {"backend": "ebpf"} and rec.version == 1
    assert rec.events == evs                       # captures identical, bytes included
    for ev in evs:
        if hasattr(ev, "stack"):
            assert rec.resolve(ev.pid, ev.stack) == t(ev.pid, ev.stack)


def test_frames_only_recordings_replay_to_the_same_findings(tmp_path):
    t = StackTable()
    evs = [off(t, 11, i * 100, 20 + i, shapes.sleep_blocker()) for i in range(5)]
    evs += [off(t, 11, 600, 40, shapes.park_epoll_124()),
            off(t, 21, 0, 30, shapes.pool_busy())]
    evs += [sample(t, 11, 700 + i, shapes.cpu_hog(line=120 + i % 2), seq=9) for i in range(12)]
    live = Analyzer(t, threshold_ms=5, target=TARGET)
    live.feed_all(evs)
    live.close()
    path = tmp_path / "r.jsonl"
    write_recording(str(path), TARGET, evs, resolve=t)
    text = path.read_text()
    assert '"capture"' not in text and text.count('"t":"stack"') == 5   # stored once each
    rec = read_recording(str(path))
    replay = Analyzer(rec.resolve, threshold_ms=5, target=rec.target)
    replay.feed_all(rec.events)
    replay.close()
    assert replay.findings() == live.findings()
    assert [e.kind for e in replay.episodes] == [e.kind for e in live.episodes]


def test_kernel_frames_replay_as_kernel_frames(tmp_path):
    # Recorded frames carry no class: a replay classifies them again, kernel ones by
    # their module ("[kernel]") or, for a module's ("[ext4]"), by their address.
    kernel = (Frame(0xFFFF_FFFF_8100_0010, "__schedule", module="[kernel]"),
              Frame(0xFFFF_FFFF_C0A0_0020, "ext4_fsync_journal", module="[ext4]"),
              Frame(0xFFFF_FFFF_8100_0030, "do_fsync", module="[kernel]"))
    t = StackTable()
    evs = [off(t, 11, i * 100, 20 + i, kernel + shapes.sleep_blocker()) for i in range(3)]
    live = Analyzer(t, threshold_ms=5, target=TARGET)
    live.feed_all(evs)
    live.close()
    path = tmp_path / "r.jsonl"
    write_recording(str(path), TARGET, evs, resolve=t)
    rec = read_recording(str(path))
    replay = Analyzer(rec.resolve, threshold_ms=5, target=rec.target)
    replay.feed_all(rec.events)
    replay.close()
    assert replay.findings() == live.findings()
    (f,) = replay.findings()
    assert [fr.cls for fr in f.stack[:3]] == [CLASS_KERNEL] * 3
    assert f.detail.startswith("in the kernel at ext4_fsync_journal ")

def test_poll_identities_are_kept_so_a_replay_tells_polls_apart_as_live(tmp_path):
    # 20 samples of one async fn, a new task every 2 (hud.task_identity told them
    # apart live): no cpu finding. Frames alone cannot tell, so the recording keeps it.
    t = StackTable()
    evs = [sample(t, 11, i, shapes.cpu_hog(line=100 + i), seq=3) for i in range(20)]
    polls = {ev.stack: i // 2 for i, ev in enumerate(evs)}

    def ident(pid, capture, stack, info):
        return polls.get(capture)

    live = Analyzer(t, threshold_ms=5, target=TARGET, poll_identity=ident)
    live.feed_all(evs)
    live.close()
    assert live.findings() == []
    path = tmp_path / "r.jsonl"
    write_recording(str(path), TARGET, evs, resolve=t,
                    poll_of=lambda pid, capture, frames: polls.get(capture))
    assert path.read_text().count('"poll":') == 20
    rec = read_recording(str(path))
    replay = Analyzer(rec.resolve, threshold_ms=5, target=rec.target,
                      poll_identity=rec.poll_identity)
    replay.feed_all(rec.events)
    replay.close()
    assert replay.findings() == live.findings()
    assert replay.stats()["task_polls"]["told_apart"] == 9
    # Without them the replay would merge the polls into one 20 ms finding.
    blind = Analyzer(rec.resolve, threshold_ms=5, target=rec.target)
    blind.feed_all(rec.events)
    blind.close()
    assert [f.kind for f in blind.findings()] == [KIND_CPU]


def test_raw_only_stacks_use_the_fallback(tmp_path):
    cap = StackCapture(fp_ips=(0x10, 0x20))
    path = tmp_path / "r.jsonl"
    write_recording(str(path), TARGET, [OffCpuEvent(1, 11, 0, 0, 9 * MS, 1, False, cap)])
    rec = read_recording(str(path))
    assert rec.events[0].stack == cap
    assert [f.address for f in rec.resolve(1, cap)] == [0x10, 0x20]
    assert rec.resolve(1, cap)[0].reason == "not resolved in the recording"
    rec = read_recording(str(path), fallback=lambda pid, c: (shapes.fr("resolved::later"),))
    assert rec.resolve(1, cap)[0].function == "resolved::later"


def _valid(tmp_path):
    t = StackTable()
    path = tmp_path / "good.jsonl"
    write_recording(str(path), TARGET, [off(t, 11, 1, 30, shapes.sleep_blocker())], resolve=t)
    return path.read_bytes().splitlines(keepends=True)


BAD_LINES = [
    b'{"t":"offcpu","pid":1\n',                                      # truncated JSON
    b'\xff\xfe{"t":"lost"}\n',                                       # not UTF-8
    b'{"t":"lost","source":"x","count":' + b"9" * 5000 + b"}\n",     # giant number
    b'{"t":"lost","source":"x","count":NaN}\n',
    b"[" * 100_000 + b"\n",                                          # nesting bomb
    b'{"t":"lost","source":"x","count":-1}\n',
    b'{"t":"lost","source":"x","count":true}\n',
    b'{"t":"lost","source":"x","count":1.5}\n',
    b'{"t":"lost","source":7,"count":1}\n',
    b'{"t":"offcpu","pid":1,"tid":2,"start_ns":5,"end_ns":9,"stack":99}\n',   # no stack 99
    b'{"t":"offcpu","pid":1,"tid":2,"start_ns":9,"end_ns":5,"stack":1}\n',    # ends first
    b'{"t":"offcpu","pid":1,"tid":2,"start_ns":5,"end_ns":9,"stack":[1]}\n',
    b'{"t":"offcpu","pid":1,"tid":2,"start_ns":5,"end_ns":9,"stack":1,"runnable":1}\n',
    b'{"t":"sample","pid":1,"tid":2,"time_ns":5,"stack":1,"kernel":"yes"}\n',
    b'{"t":"offcpu","pid":1,"tid":2,"start_ns":5,"end_ns":9,"stack":1,"fault":null}\n',
    b'{"t":"stack","id":1,"frames":[]}\n',                            # id 1 defined twice
    b'{"t":"stack","id":7}\n',                                        # neither frames nor capture
    b'{"t":"stack","id":8,"frames":[{"address":"0x1"}]}\n',
    b'{"t":"stack","id":9,"capture":{"stack_b64":"***"}}\n',
    b'{"t":"thread","tid":3,"name":"x","role":"boss"}\n',
    b'"just a string"\n',
    b'{"no":"type"}\n',
    b"x" * 20_000 + b"\n",                                            # over the line limit
]


def test_hostile_lines_are_counted_and_skipped(tmp_path):
    good = _valid(tmp_path)
    header, stack_line, event_line = good
    data = header + stack_line + b"".join(BAD_LINES) + b"\n\n" + \
        b'{"t":"from_the_future","x":1}\n' + event_line
    path = tmp_path / "bad.jsonl"
    path.write_bytes(data)
    rec = read_recording(str(path), max_line=16_384)
    assert rec.bad_lines == len(BAD_LINES)
    assert rec.unknown_lines == 1
    assert len(rec.events) == 1 and rec.events[0].tid == 11     # the good line survived
    assert rec.resolve(1, rec.events[0].stack)[4].function == \
        "my_app::handlers::load::{{closure}}"
    assert len(rec.problems) == 20 and rec.problems[0].startswith("line 3:")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=200), max_size=20))
def test_random_garbage_never_crashes(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("fuzz") / "r.jsonl"
    header = json.dumps({"format": FORMAT, "version": 1,
                         "target": {"pid": 1, "exe": "x", "threads": []}}).encode()
    body = b"\n".join(lines)
    path.write_bytes(header + b"\n" + body)
    rec = read_recording(str(path))
    physical = body.count(b"\n") + 1 if lines else 0
    assert rec.bad_lines + rec.unknown_lines + len(rec.events) <= physical


@pytest.mark.parametrize("content, needle", [
    (b"", "empty"),
    (b"\n\n", "empty"),
    (b"hello\n", "not JSON"),
    (b'{"format":"something-else"}\n', "not a hud recording"),
    (b'{"format":"hud-recording","version":2,"target":{}}\n', "newer"),
    (b'{"format":"hud-recording","version":"1","target":{}}\n', "version"),
    (b'{"format":"hud-recording","version":1,"target":{"pid":"x"}}\n', "bad target"),
    (b'{"format":"hud-recording","version":1,"target":7}\n', "bad target"),
])
def test_bad_headers_are_bad_input(tmp_path, content, needle):
    path = tmp_path / "r.jsonl"
    path.write_bytes(content)
    with pytest.raises(BadInput) as e:
        read_recording(str(path))
    assert needle in e.value.message and e.value.exit_code == 8


def test_missing_file_is_bad_input(tmp_path):
    with pytest.raises(BadInput):
        read_recording(str(tmp_path / "nope.jsonl"))


def test_writer_is_atomic(tmp_path):
    path = tmp_path / "r.jsonl"
    with pytest.raises(RuntimeError), RecordingWriter(str(path), TARGET) as w:
        w.write(Lost("x", 1))
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    victim = tmp_path / "victim"
    victim.write_text("keep")
    path.symlink_to(victim)
    write_recording(str(path), TARGET, [Lost("x", 1)])
    assert victim.read_text() == "keep" and not path.is_symlink()
    with pytest.raises(TypeError), RecordingWriter(str(tmp_path / "b.jsonl"), TARGET) as w:
        w.write("not an event")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.jsonl", "victim"]


# --- the demo recording ------------------------------------------------------------------------

def test_demo_recording_is_what_the_generator_makes(tmp_path):
    out = tmp_path / "demo.jsonl"
    subprocess.run([sys.executable, str(DEMO.parent / "make_demo.py"), str(out)], check=True,
                   capture_output=True, cwd=ROOT)
    assert out.read_bytes() == DEMO.read_bytes()


def test_demo_recording_gives_its_ground_truth():
    rec = read_recording(str(DEMO))
    assert (rec.bad_lines, rec.unknown_lines) == (0, 0)
    a = Analyzer(rec.resolve, threshold_ms=rec.meta["threshold_ms"], target=rec.target,
                 window_s=2)
    a.feed_all(rec.events)
    a.close()
    fs = a.findings()
    top = fs[0]
    assert (top.kind, top.function, top.file, top.line) == \
        (KIND_BLOCKING, "my_app::handlers::load", "/usr/src/app/src/handlers.rs", 42)
    assert 50 <= top.max_ms <= 50.3
    got = {(f.kind, f.function) for f in fs}
    assert got == {(KIND_BLOCKING, "my_app::handlers::load"),
                   (KIND_BLOCKING, "my_app::state::Cache::get"),
                   (KIND_CPU, "my_app::handlers::hog"),
                   (KIND_SCHED_DELAY, "my_app::handlers::route")}
    (cpu,) = [f for f in fs if f.kind == KIND_CPU]
    assert 40 <= cpu.max_ms <= 80
    (sd,) = [f for f in fs if f.kind == KIND_SCHED_DELAY]
    assert sd.detail.startswith("CPU held by stress-ng (tid 9001)")
    assert not any(f.kind in (KIND_PARK, KIND_POOL) for f in fs)
    pool = a.pool_summary()
    assert pool.threads == (4247, 4248, 4249)
    assert {f.function for f in pool.top} == {"my_app::handlers::save_blocking"}
    assert [w.tid for w in a.workers()] == [4243, 4244, 4245, 4246]
    assert a.stats()["lost"] == 3
    assert all(s.source == "times" and s.parked > 0.5 for s in a.shares())
