"""Recordings: a profiling run's events as JSON lines, replayable without the target.

Format (docs/REPORT.md, "Recordings"), UTF-8, one JSON object per line:

- line 1, the header: ``{"format": "hud-recording", "version": 1, "target": {"pid",
  "exe", "comm", "threads": [{"tid", "name", "role", "runtime"}]}, "meta": {...}}``
  (``meta`` is free-form: backend, threshold_ms, freq_hz ...);
- ``{"t": "stack", "id": N, "frames": [...], "capture": {...}}`` defines stack N before
  its first use. ``frames`` are pre-resolved frames (address, function, file, line,
  column, inlined, module, reason), so a replay needs no binary, no unwinding and no
  symbolization; ``capture`` optionally keeps the raw capture (fp_ips, kernel_ips, regs,
  stack_b64) for re-symbolizing later. At least one of the two is present; ``poll``
  (optional) is which task poll a worker sample of this stack is in, as the live run
  told it (hud.task_identity; only compared within one recording);
- events, each naming its stack by id: ``offcpu``, ``sample``, ``times``, ``seen``,
  ``exit``, ``lost``, ``target_exit``, ``wake`` (the fields of the hud.model classes), and
  ``thread`` (tid, name, role, runtime): discovery's role updates, in stream order.

Reading is hostile-input safe: a line that is too long, not UTF-8, not JSON, has a
giant number, a wrong type, or names an undefined stack is counted and skipped, never a
crash; only a missing or unusable header (or a newer version) is an error (BadInput).
Unknown record types are counted apart (a newer writer's additions).

A stack given only as frames is replayed as a synthetic StackCapture whose `stack`
bytes name its table entry (``hud-recording stack N``): never unwound, only looked up
by the recording's own resolver, `Recording.resolve`.
"""
from __future__ import annotations

import base64
import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Optional, Union

from hud.errors import BadInput, HudError
from hud.model import (
    ROLE_BLOCKING,
    ROLE_OTHER,
    ROLE_WORKER,
    CpuSample,
    Event,
    Frame,
    Lost,
    OffCpuEvent,
    Stack,
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

FORMAT = "hud-recording"
VERSION = 1
MAX_LINE = 1 << 20          # bytes per line
MAX_FRAMES = 1024
MAX_STR = 4096
MAX_STACK_BYTES = 256 << 10
MAX_PROBLEMS = 20
U64 = (1 << 64) - 1
ROLES = (ROLE_WORKER, ROLE_BLOCKING, ROLE_OTHER)

Resolver = Callable[[int, StackCapture], Stack]
# (pid, capture, the frames just resolved for it) -> which task poll it is in, or None.
PollOf = Callable[[int, StackCapture, Stack], Optional[int]]
Item = Union[Event, Thread]


# --- writing -----------------------------------------------------------------------------

def _frame_dict(f: Frame) -> dict:
    d: dict = {"address": f.address, "function": f.function}
    for key in ("file", "line", "column", "module", "reason"):
        v = getattr(f, key)
        if v is not None:
            d[key] = v
    if f.inlined:
        d["inlined"] = True
    return d


def _capture_dict(c: StackCapture) -> dict:
    d: dict = {"fp_ips": list(c.fp_ips)}
    if c.kernel_ips:
        d["kernel_ips"] = list(c.kernel_ips)
    if c.regs is not None:
        r = c.regs
        d["regs"] = {"arch": r.arch, "ip": r.ip, "sp": r.sp, "fp": r.fp, "lr": r.lr,
                     "extra": [list(x) for x in r.extra]}
    if c.stack:
        d["stack_b64"] = base64.b64encode(c.stack).decode("ascii")
    return d


def _thread_dict(t: Thread) -> dict:
    return {"tid": t.tid, "name": t.name, "role": t.role, "runtime": t.runtime}


class RecordingWriter:
    """Streams a recording to `path` (atomically: it appears when closed without error).

    `resolve` turns captures into frames as they are first seen (stored once per distinct
    capture); without it, or with `keep_raw`, raw captures are stored too.
    """

    def __init__(self, path: str, target: Target, meta: Optional[dict] = None,
                 resolve: Optional[Resolver] = None, keep_raw: bool = False,
                 poll_of: Optional[PollOf] = None) -> None:
        self.path = path
        self.resolve = resolve
        # Which task poll a capture is in (the live run's hud.task_identity): a replay
        # cannot compute it from frames, so it is kept with the stack.
        self.poll_of = poll_of
        self.keep_raw = keep_raw or resolve is None
        self._ids: dict = {}
        self.count = 0
        dest = os.path.abspath(path)
        try:
            fd, self._tmp = tempfile.mkstemp(prefix=".hud-", suffix=".tmp",
                                             dir=os.path.dirname(dest))
        except OSError as exc:
            raise HudError(f"cannot write {path}: {exc.strerror}",
                           "check that the directory exists and is writable") from None
        self._dest = dest
        self._f: Optional[IO[str]] = os.fdopen(fd, "w", encoding="utf-8", newline="\n")
        header = {"format": FORMAT, "version": VERSION,
                  "target": {"pid": target.pid, "exe": target.exe, "comm": target.comm,
                             "threads": [_thread_dict(t) for t in target.threads]},
                  "meta": meta or {}}
        self._line(header)

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _line(self, obj: dict) -> None:
        assert self._f is not None, "recording already closed"
        self._f.write(json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n")

    def _stack_id(self, pid: int, capture: StackCapture) -> int:
        sid = self._ids.get(capture)
        if sid is not None:
            return sid
        sid = self._ids[capture] = len(self._ids) + 1
        rec: dict = {"t": "stack", "id": sid}
        if self.resolve is not None:
            frames = self.resolve(pid, capture)
            rec["frames"] = [_frame_dict(f) for f in frames]
            if self.poll_of is not None:
                poll = self.poll_of(pid, capture, frames)
                if poll is not None:
                    rec["poll"] = poll
        if self.keep_raw:
            rec["capture"] = _capture_dict(capture)
        self._line(rec)
        return sid

    def write(self, item: Item) -> None:
        """Append one event (or a `Thread` role update)."""
        if isinstance(item, OffCpuEvent):
            rec = {"t": "offcpu", "pid": item.pid, "tid": item.tid, "cpu": item.cpu,
                   "start_ns": item.start_ns, "end_ns": item.end_ns, "state": item.state,
                   "runnable": item.runnable, "stack": self._stack_id(item.pid, item.stack),
                   "holder_pid": item.holder_pid, "holder_comm": item.holder_comm}
            if item.waker_tid:
                rec["waker_tid"], rec["waker_comm"] = item.waker_tid, item.waker_comm
            if item.fault:
                rec["fault"] = True
        elif isinstance(item, CpuSample):
            rec = {"t": "sample", "pid": item.pid, "tid": item.tid, "cpu": item.cpu,
                   "time_ns": item.time_ns, "period_ns": item.period_ns,
                   "stack": self._stack_id(item.pid, item.stack),
                   "switch_seq": item.switch_seq, "oncpu_ns": item.oncpu_ns}
            if item.kernel:
                rec["kernel"] = True
        elif isinstance(item, ThreadTimes):
            rec = {"t": "times", "tid": item.tid, "time_ns": item.time_ns,
                   "oncpu_ns": item.oncpu_ns, "parked_ns": item.parked_ns,
                   "offcpu_ns": item.offcpu_ns, "runq_ns": item.runq_ns}
        elif isinstance(item, ThreadSeen):
            rec = {"t": "seen", "tid": item.tid, "name": item.name, "time_ns": item.time_ns}
        elif isinstance(item, ThreadExit):
            rec = {"t": "exit", "tid": item.tid, "time_ns": item.time_ns}
        elif isinstance(item, Lost):
            rec = {"t": "lost", "source": item.source, "count": item.count,
                   "time_ns": item.time_ns}
        elif isinstance(item, TargetExit):
            rec = {"t": "target_exit", "pid": item.pid, "time_ns": item.time_ns}
        elif isinstance(item, Wake):
            rec = {"t": "wake", "pid": item.pid, "tid": item.tid, "waker_tid": item.waker_tid,
                   "waker_comm": item.waker_comm, "start_ns": item.start_ns,
                   "time_ns": item.time_ns, "stack": self._stack_id(item.pid, item.stack)}
        elif isinstance(item, Thread):
            rec = {"t": "thread", **_thread_dict(item)}
        else:
            raise TypeError(f"not a hud.model event: {type(item).__name__}")
        self._line(rec)
        self.count += 1

    def close(self) -> None:
        """Finish: flush, fsync and move the file into place."""
        if self._f is None:
            return
        f, self._f = self._f, None
        try:
            f.flush()
            os.fchmod(f.fileno(), 0o644)
            os.fsync(f.fileno())
            f.close()
            os.replace(self._tmp, self._dest)
        except OSError as exc:
            f.close()
            self._discard()
            raise HudError(f"cannot write {self.path}: {exc.strerror}",
                           "free disk space or write elsewhere") from None

    def abort(self) -> None:
        """Give up: no file appears."""
        if self._f is not None:
            self._f.close()
            self._f = None
        self._discard()

    def _discard(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self._tmp)


def write_recording(path: str, target: Target, events: Iterable[Item],
                    resolve: Optional[Resolver] = None, meta: Optional[dict] = None,
                    keep_raw: bool = False,
                    poll_of: Optional[PollOf] = None) -> int:
    """Write a whole recording; returns the number of events written."""
    with RecordingWriter(path, target, meta, resolve, keep_raw, poll_of) as w:
        for ev in events:
            w.write(ev)
        return w.count


# --- reading -----------------------------------------------------------------------------

class _Bad(Exception):
    """One unusable line (the message says why)."""


class _Unknown(Exception):
    """A record type this version does not know (a newer writer's addition)."""


def _int(d: dict, key: str, lo: int = 0, hi: int = U64, default: Optional[int] = None) -> int:
    v = d.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise _Bad(f"{key}: expected an integer in [{lo}, {hi}]")
    return v


def _str(d: dict, key: str, default: Optional[str] = None, optional: bool = False
         ) -> Optional[str]:
    v = d.get(key, default)
    if v is None and optional:
        return None
    if not isinstance(v, str) or len(v) > MAX_STR:
        raise _Bad(f"{key}: expected a string (at most {MAX_STR} characters)")
    return v


def _bool(d: dict, key: str) -> bool:
    v = d.get(key, False)
    if not isinstance(v, bool):
        raise _Bad(f"{key}: not a boolean")
    return v


def _opt_int(d: dict, key: str) -> Optional[int]:
    return None if d.get(key) is None else _int(d, key, 0, 1 << 31)


def _ints(v: Any, what: str) -> tuple[int, ...]:
    if not isinstance(v, list) or len(v) > MAX_FRAMES or not all(
            isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= U64 for x in v):
        raise _Bad(f"{what}: expected a list of addresses")
    return tuple(v)


def _frame(d: Any) -> Frame:
    if not isinstance(d, dict):
        raise _Bad("frame: not an object")
    inlined = d.get("inlined", False)
    if not isinstance(inlined, bool):
        raise _Bad("frame.inlined: not a boolean")
    return Frame(address=_int(d, "address"), function=_str(d, "function", optional=True),
                 file=_str(d, "file", optional=True), line=_opt_int(d, "line"),
                 column=_opt_int(d, "column"), inlined=inlined,
                 module=_str(d, "module", optional=True),
                 reason=_str(d, "reason", optional=True))


def _capture(d: Any) -> StackCapture:
    if not isinstance(d, dict):
        raise _Bad("capture: not an object")
    regs = None
    r = d.get("regs")
    if r is not None:
        if not isinstance(r, dict) or r.get("arch") not in ("x86_64", "aarch64"):
            raise _Bad("capture.regs: bad registers")
        extra = r.get("extra", [])
        if not isinstance(extra, list) or len(extra) > 64 or not all(
                isinstance(x, list) and len(x) == 2 for x in extra):
            raise _Bad("capture.regs.extra: bad")
        regs = UserRegs(arch=r["arch"], ip=_int(r, "ip"), sp=_int(r, "sp"),
                        fp=_int(r, "fp", default=0), lr=_int(r, "lr", default=0),
                        extra=tuple(_ints(x, "extra") for x in extra))  # type: ignore[misc]
    raw = b""
    b64 = d.get("stack_b64")
    if b64 is not None:
        if not isinstance(b64, str) or len(b64) > MAX_STACK_BYTES * 4 // 3 + 4:
            raise _Bad("capture.stack_b64: bad or too large")
        try:
            raw = base64.b64decode(b64, validate=True)
        except ValueError:
            raise _Bad("capture.stack_b64: not base64") from None
    return StackCapture(fp_ips=_ints(d.get("fp_ips", []), "fp_ips"), regs=regs, stack=raw,
                        kernel_ips=_ints(d.get("kernel_ips", []), "kernel_ips"))


def _parse_int(text: str) -> int:
    # json would happily build a million-digit int (quadratic time on Python 3.9)
    if len(text) > 24:
        raise ValueError("number too long")
    return int(text)


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not allowed")


def _loads(line: bytes) -> Any:
    return json.loads(line.decode("utf-8"), parse_int=_parse_int, parse_constant=_no_constant)


@dataclass
class Recording:
    """A recording read back: target, meta, events (and role updates) in order, and the
    resolver that gives each event's stack its recorded frames."""

    target: Target
    meta: dict
    version: int
    events: list = field(default_factory=list)
    bad_lines: int = 0
    unknown_lines: int = 0
    problems: list = field(default_factory=list)
    fallback: Optional[Resolver] = None
    _frames: dict = field(default_factory=dict)
    _polls: dict = field(default_factory=dict)

    def poll_identity(self, pid: int, capture: StackCapture, stack: Stack,
                      info: object) -> Optional[int]:
        """The task poll the live run told this capture is in (None: not recorded)."""
        return self._polls.get(capture)

    def resolve(self, pid: int, capture: StackCapture) -> Stack:
        """The recorded frames of a capture; else the fallback resolver; else the
        capture's addresses as unresolved frames."""
        hit = self._frames.get(capture)
        if hit is not None:
            return hit
        if self.fallback is not None:
            return self.fallback(pid, capture)
        ips = capture.fp_ips or (0,)
        return tuple(Frame(address=ip, reason="not resolved in the recording") for ip in ips)

    def __iter__(self) -> Iterator[Item]:
        return iter(self.events)


def _lines(f: IO[bytes], max_line: int) -> Iterator[tuple[int, Optional[bytes]]]:
    """(line number, bytes) per line; None for a line longer than `max_line`."""
    n = 0
    while True:
        chunk = f.readline(max_line + 1)
        if not chunk:
            return
        n += 1
        if len(chunk) > max_line and not chunk.endswith(b"\n"):
            while True:   # skip the rest of the over-long line
                more = f.readline(max_line + 1)
                if not more or more.endswith(b"\n"):
                    break
            yield n, None
            continue
        yield n, chunk


def _header(obj: Any) -> tuple[Target, dict, int]:
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise BadInput("not a hud recording (no hud-recording header on line 1)",
                       "record with `hud --record FILE`, or check the file name")
    version = obj.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise BadInput("hud recording header has no valid version")
    if version > VERSION:
        raise BadInput(f"hud recording version {version} is newer than this hud reads "
                       f"(up to {VERSION})", "upgrade hud to replay it")
    try:
        t = obj["target"]
        threads = []
        for td in t.get("threads", [])[:100_000]:
            role = td.get("role", ROLE_OTHER)
            threads.append(Thread(_int(td, "tid", 0, 1 << 31), _str(td, "name", ""),
                                  role if role in ROLES else ROLE_OTHER,
                                  _int(td, "runtime", 0, 1 << 31, default=0)))
        target = Target(pid=_int(t, "pid", 0, 1 << 31), exe=_str(t, "exe", ""),
                        comm=_str(t, "comm", ""), threads=tuple(threads))
    except (_Bad, KeyError, TypeError, AttributeError) as exc:
        raise BadInput(f"hud recording header has a bad target: {exc}") from None
    meta = obj.get("meta", {})
    return target, meta if isinstance(meta, dict) else {}, version


def _event(d: dict, kind: str, stacks: dict) -> Item:
    def stack() -> StackCapture:
        sid = d.get("stack")
        if sid not in stacks or isinstance(sid, bool):
            raise _Bad(f"stack {sid!r} is not defined before use")
        return stacks[sid]

    if kind == "offcpu":
        runnable = _bool(d, "runnable")
        start, end = _int(d, "start_ns"), _int(d, "end_ns")
        if end < start:
            raise _Bad("end_ns before start_ns")
        return OffCpuEvent(pid=_int(d, "pid", 0, 1 << 31), tid=_int(d, "tid", 0, 1 << 31),
                           cpu=_int(d, "cpu", 0, 1 << 20, 0), start_ns=start, end_ns=end,
                           state=_int(d, "state", 0, U64, 0), runnable=runnable, stack=stack(),
                           holder_pid=_int(d, "holder_pid", 0, 1 << 31, 0),
                           holder_comm=_str(d, "holder_comm", ""),
                           waker_tid=_int(d, "waker_tid", 0, 1 << 31, 0),
                           waker_comm=_str(d, "waker_comm", ""), fault=_bool(d, "fault"))
    if kind == "sample":
        return CpuSample(pid=_int(d, "pid", 0, 1 << 31), tid=_int(d, "tid", 0, 1 << 31),
                         cpu=_int(d, "cpu", 0, 1 << 20, 0), time_ns=_int(d, "time_ns"),
                         period_ns=_int(d, "period_ns", 0, 1 << 40), stack=stack(),
                         switch_seq=_int(d, "switch_seq", -1, U64, -1),
                         oncpu_ns=_int(d, "oncpu_ns", -1, U64, -1),
                         kernel=_bool(d, "kernel"))
    if kind == "times":
        return ThreadTimes(tid=_int(d, "tid", 0, 1 << 31), time_ns=_int(d, "time_ns"),
                           oncpu_ns=_int(d, "oncpu_ns", default=0),
                           parked_ns=_int(d, "parked_ns", default=0),
                           offcpu_ns=_int(d, "offcpu_ns", default=0),
                           runq_ns=_int(d, "runq_ns", default=0))
    if kind == "seen":
        return ThreadSeen(_int(d, "tid", 0, 1 << 31), _str(d, "name", ""),
                          _int(d, "time_ns", default=0))
    if kind == "exit":
        return ThreadExit(_int(d, "tid", 0, 1 << 31), _int(d, "time_ns", default=0))
    if kind == "lost":
        return Lost(_str(d, "source", ""), _int(d, "count"), _int(d, "time_ns", default=0))
    if kind == "target_exit":
        return TargetExit(_int(d, "pid", 0, 1 << 31), _int(d, "time_ns", default=0))
    if kind == "wake":
        return Wake(pid=_int(d, "pid", 0, 1 << 31), tid=_int(d, "tid", 0, 1 << 31),
                    waker_tid=_int(d, "waker_tid", 0, 1 << 31),
                    waker_comm=_str(d, "waker_comm", ""), start_ns=_int(d, "start_ns"),
                    time_ns=_int(d, "time_ns"), stack=stack())
    if kind == "thread":
        role = d.get("role")
        if role not in ROLES:
            raise _Bad(f"role {role!r} unknown")
        return Thread(_int(d, "tid", 0, 1 << 31), _str(d, "name", ""), role,
                      _int(d, "runtime", 0, 1 << 31, 0))
    raise _Unknown(kind)


def read_recording(path: str, fallback: Optional[Resolver] = None,
                   max_line: int = MAX_LINE) -> Recording:
    """Read a recording. Bad lines are counted (`bad_lines`, first `problems`), not fatal.

    `fallback` resolves captures the recording has no frames for (raw-only stacks).
    """
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror}", "check the file name") from None
    with f:
        lines = _lines(f, max_line)
        rec: Optional[Recording] = None
        stacks: dict = {}
        for n, raw in lines:
            if rec is None:
                if raw is None:
                    raise BadInput(f"{path}: line 1 is too long to be a hud recording header")
                if not raw.strip():
                    continue
                try:
                    head = _loads(raw)
                except (ValueError, RecursionError):
                    raise BadInput(f"{path}: not a hud recording (line 1 is not JSON)",
                                   "check the file name") from None
                target, meta, version = _header(head)
                rec = Recording(target, meta, version, fallback=fallback)
                continue
            if raw is not None and not raw.strip():
                continue
            try:
                if raw is None:
                    raise _Bad(f"longer than {max_line} bytes")
                try:
                    d = _loads(raw)
                except (ValueError, RecursionError) as exc:
                    raise _Bad(f"not JSON ({type(exc).__name__})") from None
                if not isinstance(d, dict) or not isinstance(d.get("t"), str):
                    raise _Bad("not an object with a string `t`")
                kind = d["t"]
                if kind == "stack":
                    _stack_record(d, stacks, rec)
                else:
                    rec.events.append(_event(d, kind, stacks))
            except _Unknown:
                rec.unknown_lines += 1
            except (_Bad, TypeError, AttributeError, ValueError, OverflowError,
                    KeyError) as exc:
                rec.bad_lines += 1
                if len(rec.problems) < MAX_PROBLEMS:
                    rec.problems.append(f"line {n}: {exc}")
        if rec is None:
            raise BadInput(f"{path}: empty, not a hud recording")
        return rec


def _stack_record(d: dict, stacks: dict, rec: Recording) -> None:
    sid = _int(d, "id", 1, 1 << 40)
    if sid in stacks:
        raise _Bad(f"stack {sid} defined twice")
    frames = None
    if "frames" in d:
        fl = d["frames"]
        if not isinstance(fl, list) or len(fl) > MAX_FRAMES:
            raise _Bad(f"frames: expected a list of at most {MAX_FRAMES}")
        frames = tuple(_frame(x) for x in fl)
    if "capture" in d:
        capture = _capture(d["capture"])
    elif frames is not None:
        ips = tuple(f.address for f in frames if not f.inlined) or (0,)
        capture = StackCapture(fp_ips=ips, stack=f"hud-recording stack {sid}".encode())
    else:
        raise _Bad("stack has neither frames nor capture")
    poll = d.get("poll")
    if poll is not None:
        rec._polls.setdefault(capture, _int(d, "poll", -(1 << 63), (1 << 63) - 1))
    if frames is not None:
        rec._frames.setdefault(capture, frames)
    stacks[sid] = capture
