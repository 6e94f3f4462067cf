"""No BPF program, link or map outlives its owner: after close(), and after SIGKILL of a
process that loaded and attached everything (ids enumerated with GET_NEXT_ID, and bpftool)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from hud.bpf.loader import Loader
from hud.bpf.perfbuf import PerfEventArray
from hud.bpf.ringbuf import RingBuf
from hud.linux import bpf
from kernel import uapi
from kernel.abi import MapSpec
from kernel.asm import Assembler, r0

ROOT = Path(__file__).resolve().parents[2]

# Everything a run creates: two maps of each kind the readers use, a tracepoint program
# with a link, a raw_tp program with a link, a perf_event program on cpu-clock.
SCRIPT = textwrap.dedent("""
    import json, sys
    from hud.bpf.loader import Loader
    from hud.bpf.perfbuf import PerfEventArray
    from hud.bpf.ringbuf import RingBuf
    from kernel import uapi
    from kernel.abi import MapSpec
    from kernel.asm import Assembler, r0, r1, r2, r3, r4, r5

    def out_prog(name, prog_type):
        a = Assembler()
        a.ld_map(r2, "pea").mov32(r3, -1).mov(r4, r1).mov(r5, 8)
        a.ld_map(r0, "rb").mov(r0, 0).exit()
        return a.image(name, prog_type)

    ld = Loader()
    ld.create_map(MapSpec("rb", uapi.BPF_MAP_TYPE_RINGBUF, 0, 0, 1 << 16))
    ld.create_map(MapSpec("pea", uapi.BPF_MAP_TYPE_PERF_EVENT_ARRAY, 4, 4, 0))
    ld.own(RingBuf(ld.maps["rb"]))
    ld.own(PerfEventArray(ld.maps["pea"], 1))
    tp = ld.load(out_prog("hud_k_tp", uapi.BPF_PROG_TYPE_TRACEPOINT))
    raw = ld.load(out_prog("hud_k_raw", uapi.BPF_PROG_TYPE_RAW_TRACEPOINT))
    pe = ld.load(out_prog("hud_k_pe", uapi.BPF_PROG_TYPE_PERF_EVENT))
    links = [ld.attach_tracepoint(tp, "sched", "sched_switch"),
             ld.attach_raw_tracepoint(raw, "sched_switch")]
    links += ld.attach_cpu_clock(pe, freq=10)
    print(json.dumps({"progs": [p.id for p in (tp, raw, pe)],
                      "maps": [m.id for m in ld.maps.values()],
                      "links": [l.info.id for l in links]}), flush=True)
    sys.stdin.read()   # hold everything until killed
""")


def _ids() -> dict:
    return {"progs": set(bpf.prog_ids()), "maps": set(bpf.map_ids()),
            "links": set(bpf.link_ids())}


def _bpftool(kind: str) -> set:
    out = subprocess.run(["bpftool", "-j", kind, "show"], capture_output=True, text=True,
                         check=True).stdout
    return {obj["id"] for obj in json.loads(out or "[]")}


def _gone(mine: dict, polls: int = 500) -> dict:
    """Ids of `mine` still present; objects are freed asynchronously (RCU), so poll a
    bounded number of times rather than assert at once."""
    for _ in range(polls):
        now = _ids()
        left = {k: set(v) & now[k] for k, v in mine.items()}
        if not any(left.values()):
            return left
        time.sleep(0.01)
    return left


def test_close_releases_every_object():
    with Loader() as ld:
        ld.create_map(MapSpec("rb", uapi.BPF_MAP_TYPE_RINGBUF, 0, 0, 1 << 16))
        ld.create_map(MapSpec("pea", uapi.BPF_MAP_TYPE_PERF_EVENT_ARRAY, 4, 4, 0))
        ld.create_map(MapSpec("h", uapi.BPF_MAP_TYPE_HASH, 4, 4, 8))
        ld.own(RingBuf(ld.maps["rb"]))
        ld.own(PerfEventArray(ld.maps["pea"], 1))
        a = Assembler().mov(r0, 0).exit()
        prog = ld.load(a.image("hud_c_tp", uapi.BPF_PROG_TYPE_TRACEPOINT))
        link = ld.attach_tracepoint(prog, "sched", "sched_switch")
        mine = {"progs": {prog.id}, "maps": {m.id for m in ld.maps.values()},
                "links": {link.info.id}}
        now = _ids()
        assert all(mine[k] <= now[k] for k in mine)
        assert mine["progs"] <= _bpftool("prog") and mine["links"] <= _bpftool("link")
    assert _gone(mine) == {"progs": set(), "maps": set(), "links": set()}
    assert not mine["progs"] & _bpftool("prog")
    assert not mine["maps"] & _bpftool("map")
    assert not mine["links"] & _bpftool("link")


def test_sigkill_of_a_loader_child_leaves_nothing():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen([sys.executable, "-c", SCRIPT], cwd=str(ROOT), env=env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline()
        assert line, child.stderr.read()
        mine = {k: set(v) for k, v in json.loads(line).items()}
        assert len(mine["progs"]) == 3 and len(mine["links"]) >= 3
        now = _ids()
        assert all(mine[k] <= now[k] for k in mine), (mine, now)
        assert mine["links"] <= _bpftool("link")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        child.stderr.close()
        child.stdin.close()
    assert child.returncode == -signal.SIGKILL
    assert _gone(mine) == {"progs": set(), "maps": set(), "links": set()}
    assert not mine["progs"] & _bpftool("prog")
    assert not mine["maps"] & _bpftool("map")
    assert not mine["links"] & _bpftool("link")
