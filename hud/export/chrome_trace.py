"""Chrome Trace Event JSON (opens in Perfetto and chrome://tracing): one track per thread.

Every episode is a complete (`X`) slice on its thread's track: `ts`/`dur` are integer
microseconds from the start of the run (integers so no rounding can make two slices of a
track overlap). Per track, slices are sorted and clamped: a slice that starts before the
previous one ended starts at that end instead, and one left with no duration is dropped
(counted in `otherData.clamped`/`dropped`); cpu stretches are estimates from samples and
may touch the next off-CPU episode. `M` metadata names the process and each track
(`tokio-runtime-w (worker)`: pool threads share workers' names, the role tells them apart)
and orders workers first. `args` carry the function, `file:line`, the duration, the
detail and, for all but idle parks, the stack (innermost first).
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Optional

from hud import __version__
from hud.analysis.episodes import kernel_sites_of
from hud.classify import blocking_frame, display_function
from hud.export._atomic import atomic_text
from hud.model import (
    KIND_PARK,
    KIND_POOL,
    ROLE_BLOCKING,
    ROLE_OTHER,
    ROLE_WORKER,
    Episode,
    Frame,
    Target,
    Thread,
)

ROLE_LABEL = {ROLE_WORKER: "worker", ROLE_BLOCKING: "blocking pool", ROLE_OTHER: "other"}
ROLE_ORDER = {ROLE_WORKER: 0, ROLE_BLOCKING: 1, ROLE_OTHER: 2}


def frame_text(f: Frame) -> str:
    """`function (file:line)` with an inline marker; unresolved frames say why."""
    if f.function is None:
        where = f.module.rsplit("/", 1)[-1] if f.module else "?"
        return f"[unknown] {where}+0x{f.address:x}" + (f" ({f.reason})" if f.reason else "")
    loc = f" ({f.file}:{f.line})" if f.file else ""
    return f"{f.function}{loc}" + (" [inlined]" if f.inlined else "")


def _slice_name(ep: Episode, func: str) -> str:
    if ep.kind == KIND_PARK:
        return "park"
    if ep.kind == KIND_POOL and ep.detail == "idle":
        return "pool idle"
    return f"{ep.kind}: {func}"


def _args(ep: Episode, max_stack: int) -> dict:
    b = blocking_frame(ep.stack)
    func = display_function(b.function if b else None)
    args: dict[str, Any] = {"function": func,
                            "duration_ms": round(ep.duration_ns / 1e6, 3)}
    if b is not None and b.file:
        args["location"] = f"{b.file}:{b.line}" if b.line is not None else b.file
    if ep.detail:
        args["detail"] = ep.detail
    if ep.waker is not None:
        # Apart from the detail too, so a Perfetto query can group by them.
        args["waker"] = ep.waker[0]
        if ep.waker[1]:
            args["woken_at"] = ep.waker[1]
    idle = ep.kind == KIND_PARK or (ep.kind == KIND_POOL and ep.detail == "idle")
    # Where in the kernel the slice waited or mostly ran (its own key, as the waker's).
    sites = () if idle else kernel_sites_of(ep)
    if sites:
        args["kernel"] = sites[0][0]
    if not idle and ep.stack:
        frames = [frame_text(f) for f in ep.stack[:max_stack]]
        if len(ep.stack) > max_stack:
            frames.append(f"... {len(ep.stack) - max_stack} more frames")
        args["stack"] = frames
    return args


def build_trace(episodes: Iterable[Episode], *, target: Target,
                threads: Iterable[Thread] = (), t0_ns: Optional[int] = None,
                backend: str = "", threshold_ms: Optional[float] = None,
                max_stack: int = 64) -> dict:
    """The trace object. `threads` (name, role) override the target's; `t0_ns` is the
    time shown as 0 (default: the earliest episode start)."""
    eps = list(episodes)
    info: dict = {t.tid: t for t in target.threads}
    for t in threads:
        info[t.tid] = t
    if t0_ns is None:
        t0_ns = min((e.start_ns for e in eps), default=0)
    by_tid: dict = {}
    for e in eps:
        by_tid.setdefault(e.tid, []).append(e)
    pid = target.pid
    name = target.comm or target.exe.rsplit("/", 1)[-1] or "target"
    events: list[dict] = [
        {"ph": "M", "name": "process_name", "pid": pid, "tid": 0,
         "args": {"name": f"{name} (pid {pid})"}}]
    tracks = sorted(set(by_tid) | {t.tid for t in info.values() if t.role == ROLE_WORKER},
                    key=lambda tid: (ROLE_ORDER.get(_role(info, tid), 3), tid))
    for idx, tid in enumerate(tracks):
        t = info.get(tid)
        label = ROLE_LABEL.get(_role(info, tid), "other")
        tname = (t.name if t and t.name else f"tid {tid}")
        events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid,
                       "args": {"name": f"{tname} ({label})"}})
        events.append({"ph": "M", "name": "thread_sort_index", "pid": pid, "tid": tid,
                       "args": {"sort_index": idx}})
    clamped = dropped = 0
    for tid in tracks:
        cursor = None
        for e in sorted(by_tid.get(tid, ()), key=lambda x: (x.start_ns, x.end_ns)):
            start = (e.start_ns - t0_ns) // 1000
            end = (e.end_ns - t0_ns) // 1000
            if cursor is not None and start < cursor:
                start = cursor
                clamped += 1
            if end <= start or start < 0:
                dropped += 1
                continue
            cursor = end
            args = _args(e, max_stack)
            events.append({"ph": "X", "name": _slice_name(e, args["function"]), "cat": e.kind,
                           "ts": start, "dur": end - start, "pid": pid, "tid": tid,
                           "args": args})
    other = {"hud_version": __version__, "target_exe": target.exe, "t0_ns": t0_ns,
             "clamped": clamped, "dropped": dropped}
    if backend:
        other["backend"] = backend
    if threshold_ms is not None:
        other["threshold_ms"] = threshold_ms
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": other}


def _role(info: dict, tid: int) -> str:
    t = info.get(tid)
    return t.role if t is not None else ROLE_OTHER


def write_chrome_trace(path: str, trace: dict) -> None:
    """Write the trace atomically (compact JSON: traces get large)."""
    with atomic_text(path) as f:
        json.dump(trace, f, separators=(",", ":"), ensure_ascii=False)
        f.write("\n")


def validate_trace(obj: Any) -> list[str]:
    """Structural problems of a trace hud wrote (empty when valid): every X slice has
    name/ts/dur/pid/tid, slices of a track are in time order and never overlap, and
    every track and the process are named."""
    if not isinstance(obj, dict) or not isinstance(obj.get("traceEvents"), list):
        return ["not a JSON object with a traceEvents list"]
    errs: list[str] = []
    named_threads, named_procs = set(), set()
    last_end: dict = {}
    last_ts: dict = {}
    for i, ev in enumerate(obj["traceEvents"]):
        if not isinstance(ev, dict):
            errs.append(f"event {i}: not an object")
            continue
        ph = ev.get("ph")
        if ph == "M":
            if ev.get("name") == "thread_name":
                named_threads.add((ev.get("pid"), ev.get("tid")))
            elif ev.get("name") == "process_name":
                named_procs.add(ev.get("pid"))
            continue
        if ph != "X":
            errs.append(f"event {i}: unexpected phase {ph!r}")
            continue
        bad = [k for k in ("name", "ts", "dur", "pid", "tid") if k not in ev]
        if bad:
            errs.append(f"event {i}: missing {', '.join(bad)}")
            continue
        ts, dur = ev["ts"], ev["dur"]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (ts, dur)) \
                or ts < 0 or dur < 0:
            errs.append(f"event {i}: ts/dur must be non-negative numbers")
            continue
        track = (ev["pid"], ev["tid"])
        if track in last_ts and ts < last_ts[track]:
            errs.append(f"event {i}: ts goes backwards on track {track}")
        if track in last_end and ts < last_end[track]:
            errs.append(f"event {i}: overlaps the previous slice on track {track}")
        last_ts[track] = ts
        last_end[track] = max(last_end.get(track, 0), ts + dur)
    for track in last_end:
        if track not in named_threads:
            errs.append(f"track {track}: no thread_name metadata")
        if track[0] not in named_procs:
            errs.append(f"process {track[0]}: no process_name metadata")
    return errs
