"""Run the built Tokio fixtures from tests: manifests (ground truth), worker tids, sure cleanup.

    from support.fixtures import run_fixture, load_manifest

    with run_fixture("blockers-nofp", ["sleep", "cpu:30/100"]) as fx:
        fx.pid, fx.worker_tids, fx.manifest.scenarios["sleep"].line
        ...                                   # profile fx.pid
    summary = fx.summary                      # episodes the program measured itself

or, in a test, the `tokio_fixture` factory (registered by tests/conftest.py):

    def test_x(tokio_fixture):
        fx = tokio_fixture("blockers-fp", ["mutex"], threads=2)

Cleanup never depends on the test finishing: each program runs in its own process group,
dies with the forking thread (PR_SET_PDEATHSIG via setpriv), exits by itself when its stdin
closes (the harness holds the only write end), and is killed by finalizers and atexit.
"""
from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from support import fixture_build

BUILD = fixture_build.BUILD
VARIANTS = tuple(fixture_build.VARIANTS)
BLOCKERS_VARIANTS = tuple(v for v in VARIANTS if v.startswith("blockers"))
DEMO_VARIANTS = tuple(v for v in VARIANTS if v.startswith("demo"))


class FixtureError(RuntimeError):
    """A fixture is not built, is stale, or did not start; the message says what to do."""


# ---- manifests ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Scenario:
    """Ground truth for one scenario (blockers) or endpoint (demo)."""
    name: str
    kind: str                      # "blocking" | "cpu" | "none"
    function: str                  # demangled, no hash: blockers::scenarios::sleep_blocker
    file: str                      # absolute, as addr2line prints it (DW_AT_comp_dir joined)
    file_rel: str                  # relative to the repository root
    dwarf_file: str                # as the DWARF line table names it (relative to comp dir)
    line: int                      # the marked line: the blocking call / hot loop
    line_text: str
    fn_line: int                   # first and last line of the function
    fn_end_line: int
    block_ms: Optional[int]        # default episode length; None: set by the kernel/storage
    period_ms: Optional[int]       # default start-to-start period
    runs_on: str                   # "worker" | "blocking_pool" | "block_in_place"
    about: str
    path: Optional[str] = None     # demo: the HTTP path

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Scenario:
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class Manifest:
    """One variant's manifest (tests/fixtures/build/VARIANT/manifest.json, schema
    hud-fixture/1); `raw` keeps every field."""
    variant: str
    program: str
    binary: Path
    debug_file: Optional[Path]
    frame_pointers: bool
    stripped: bool
    args: list[str]
    flavor: str
    worker_names: list[str]
    blocking_pool_names: list[str]
    scenarios: dict[str, Scenario]
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Manifest:
        return cls(
            variant=d["variant"],
            program=d["program"],
            binary=Path(d["binary"]),
            debug_file=Path(d["debug_file"]) if d.get("debug_file") else None,
            frame_pointers=bool(d["frame_pointers"]),
            stripped=bool(d["stripped"]),
            args=list(d["args"]),
            flavor=d["runtime"]["flavor"],
            worker_names=list(d["worker_names"]),
            blocking_pool_names=list(d["blocking_pool_names"]),
            scenarios={k: Scenario.from_json(v) for k, v in d["scenarios"].items()},
            raw=d,
        )

    @property
    def symbol_file(self) -> Path:
        """Where the symbol table and DWARF are: the debug file of a stripped binary."""
        return self.debug_file or self.binary

    @property
    def has_lines(self) -> bool:
        """Whether DWARF (in the binary or its debug file) gives file:line; without it
        (`blockers-nodebug`) only the symbol table names functions."""
        return self.debug_file is not None or bool(self.raw["has_debug_info"])


_digest_cache: dict[str, str] = {}


def _current_digest(variant: str) -> str:
    if variant not in _digest_cache:
        _digest_cache[variant] = fixture_build.variant_hash(variant)
    return _digest_cache[variant]


def load_manifest(variant: str, *, check_fresh: bool = True) -> Manifest:
    """The manifest of a built variant. Raises FixtureError (never skips) when it is missing
    or built from other sources than the checkout's: CI must not pass on a missing fixture."""
    if variant not in fixture_build.VARIANTS:
        raise FixtureError(f"unknown fixture variant {variant!r}; known: {', '.join(VARIANTS)}")
    path = fixture_build.manifest_path(variant)
    hint = f"run scripts/build-fixtures {variant} (or scripts/setup)"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FixtureError(f"fixture {variant} is not built ({path} missing): {hint}") from None
    except ValueError as e:
        raise FixtureError(f"fixture {variant}: bad manifest {path}: {e}: {hint}") from None
    if data.get("schema") != fixture_build.SCHEMA:
        raise FixtureError(f"fixture {variant}: manifest schema {data.get('schema')!r}, "
                           f"expected {fixture_build.SCHEMA}: {hint}")
    if check_fresh and data.get("source_hash") != _current_digest(variant):
        raise FixtureError(f"fixture {variant} is stale (sources, toolchain or Debian crates "
                           f"changed since it was built): {hint}")
    m = Manifest.from_json(data)
    for f in (m.binary, m.debug_file):
        if f is not None and not f.exists():
            raise FixtureError(f"fixture {variant}: {f} missing: {hint}")
    return m


# ---- processes ----------------------------------------------------------------------------

_live: weakref.WeakSet[FixtureProcess] = weakref.WeakSet()


def _kill_group(pid: int, proc: subprocess.Popen) -> None:
    # Only while the leader is unreaped: after that its pgid may belong to someone else.
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)


@atexit.register
def _kill_all() -> None:
    for fx in list(_live):
        fx.kill()


def _pdeathsig_prefix() -> list[str]:
    # setpriv (util-linux) sets PR_SET_PDEATHSIG and execs the program: the same effect as a
    # preexec_fn without running Python between fork and exec in a threaded parent.
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


_swept: list[bool] = []


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _work_root() -> Path:
    """Where work dirs go: under the build dir, not /tmp, because fsync must hit a real disk
    (a tmpfs /tmp makes it free) and it is no world-writable place. Work dirs are named
    VARIANT-HARNESSPID-XXXX; those of harnesses that died without cleanup (SIGKILL) are
    removed on first use."""
    root = BUILD / "work"
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not _swept:
        _swept.append(True)
        sweep_work_dirs()
    return root


def sweep_work_dirs() -> list[Path]:
    """Remove the work dirs of harness processes that no longer exist; return them."""
    removed = []
    root = BUILD / "work"
    for d in root.iterdir() if root.is_dir() else ():
        m = re.match(r".*-(\d+)-[^-]+$", d.name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


class FixtureProcess:
    """A running fixture program. Construct with `start()`; stop with `stop()` (idempotent)."""

    def __init__(self, manifest: Manifest, argv: list[str], work_dir: Path,
                 ready_timeout: float, env: Optional[dict[str, str]] = None):
        self.manifest = manifest
        self.variant = manifest.variant
        self.argv = argv
        self.work_dir = work_dir
        self.ready: dict[str, Any] = {}
        self.summary: Optional[dict[str, Any]] = None
        self.events: list[dict[str, Any]] = []  # every protocol line, in order
        self._changed = threading.Condition()
        self._eof = False
        self._stderr: list[str] = []
        self.proc = subprocess.Popen(
            _pdeathsig_prefix() + argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True, cwd=str(work_dir), env=env,
        )
        _live.add(self)
        self._finalizer = weakref.finalize(self, _kill_group, self.proc.pid, self.proc)
        threading.Thread(target=self._read_stdout, name=f"fx-stdout-{self.proc.pid}",
                         daemon=True).start()
        threading.Thread(target=self._read_stderr, name=f"fx-stderr-{self.proc.pid}",
                         daemon=True).start()
        try:
            self.ready = self._wait_event("ready", ready_timeout)
        except BaseException:
            self.kill()
            raise

    # -- plumbing --
    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            with self._changed:
                self.events.append(event)
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self._stderr.append(raw.decode(errors="replace").rstrip())
            del self._stderr[:-200]

    def _wait_for(self, what: str, found: Callable[[], Any], timeout: float) -> Any:
        """Wait (bounded) until found() returns something truthy, judged after every line."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                got = found()
                if got:
                    return got
                if self._eof:
                    try:
                        code: Any = self.proc.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        code = "still running"
                    raise FixtureError(f"{self.variant} exited ({code}) before {what}: "
                                       f"{' '.join(self.argv)}{self._stderr_tail()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise FixtureError(f"{self.variant}: no {what} within {timeout} s"
                                       f"{self._stderr_tail()}")
                self._changed.wait(left)

    def _wait_event(self, name: str, timeout: float) -> dict[str, Any]:
        return self._wait_for(
            f"{name!r} line",
            lambda: next((e for e in self.events if e.get("event") == name), None), timeout)

    def _stderr_tail(self) -> str:
        time.sleep(0.05)  # let the reader catch the last lines of a dying program
        tail = "\n".join(self._stderr[-20:])
        return f"\nstderr:\n{tail}" if tail else ""

    # -- what tests use --
    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def worker_tids(self) -> list[int]:
        """The runtime's workers, as the program found them (a task pinned on each worker;
        the main thread for current_thread)."""
        return list(self.ready["workers"])

    @property
    def scenarios(self) -> dict[str, dict[str, Any]]:
        """Effective settings per scenario (block_ms, period_ms) after command-line overrides."""
        return {s["name"]: s for s in self.ready.get("scenarios", [])}

    @property
    def stderr(self) -> str:
        return "\n".join(self._stderr)

    def wait_episodes(self, names: Optional[Sequence[str]] = None,
                      timeout: float = 30.0) -> None:
        """Wait (bounded) until each named scenario (default: all running) has completed at
        least one episode: the program prints {"event": "episode", ...} at each first one."""
        want = set(names if names is not None else self.scenarios)

        def done() -> bool:
            seen = {e.get("scenario") for e in self.events if e.get("event") == "episode"}
            return want <= seen

        self._wait_for(f"a first episode of each of {sorted(want)}", done, timeout)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def threads(self) -> dict[int, str]:
        """tid -> comm of every thread now (/proc/PID/task/*/comm)."""
        out: dict[int, str] = {}
        task = Path(f"/proc/{self.pid}/task")
        for t in task.iterdir() if task.exists() else ():
            with contextlib.suppress(OSError):
                out[int(t.name)] = (t / "comm").read_text().rstrip("\n")
        return out

    def blocking_pool_tids(self) -> list[int]:
        """Threads named like the blocking pool that are not workers. Workers and pool threads
        share a name in Tokio 1.24, so the name alone cannot tell them apart."""
        names = set(self.manifest.blocking_pool_names)
        workers = set(self.worker_tids)
        return sorted(t for t, c in self.threads().items() if c in names and t not in workers)

    def stop(self, timeout: float = 10.0) -> Optional[dict[str, Any]]:
        """End the program: close its stdin, read its summary line, reap it (SIGKILL to its
        process group if it does not exit in time), remove its work dir. Returns the summary
        (each scenario's measured episodes) or None if the program did not give one."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        if self.summary is None:
            with contextlib.suppress(FixtureError):
                self.summary = self._wait_event("summary", timeout)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=timeout)
        self.kill()
        return self.summary

    def kill(self) -> None:
        """SIGKILL the program's process group now and remove its work dir."""
        _kill_group(self.proc.pid, self.proc)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        _live.discard(self)
        shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> FixtureProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<FixtureProcess {self.variant} pid={self.pid} alive={self.alive()}>"


def start(variant: str = "blockers-fp", scenarios: Optional[Sequence[str]] = None, *,
          threads: Optional[int] = None, duration: Optional[float] = None,
          args: Sequence[str] = (), ready_timeout: float = 30.0,
          env: Optional[dict[str, str]] = None, binary: Optional[Path] = None
          ) -> FixtureProcess:
    """Start a built variant and wait for its ready line.

    blockers: `scenarios` are tokens NAME[:BLOCK_MS[/PERIOD_MS]] or "all" (default: sleep);
    `threads` sets the worker count. demo: starts `demo serve`; give no scenarios (every
    endpoint is always served). `args` go last on the command line; the variant's own flags (manifest
    "args": thread name, runtime flavour) come first. `binary` runs another copy of the
    variant's program (a post-processed one) with the same manifest.
    """
    m = load_manifest(variant)
    work_dir = Path(tempfile.mkdtemp(prefix=f"{variant}-{os.getpid()}-", dir=str(_work_root())))
    argv = [str(binary or m.binary)]
    if m.program == "demo":
        if scenarios:
            raise FixtureError("the demo has no scenarios: its endpoints are always served")
        argv.append("serve")
    argv += list(m.args)
    if m.program == "blockers":
        chosen = list(scenarios) if scenarios is not None else ["sleep"]
        if not chosen:
            raise FixtureError("blockers needs at least one scenario")
        argv += ["--scenario", ",".join(chosen)]
    if threads is not None:
        argv += ["--threads", str(threads)]
    if duration is not None:
        argv += ["--duration", str(duration)]
    argv += ["--work-dir", str(work_dir), "--exit-on-stdin-eof", *args]
    try:
        return FixtureProcess(m, argv, work_dir, ready_timeout, env)
    except BaseException:
        shutil.rmtree(work_dir, ignore_errors=True)
        raise


@contextlib.contextmanager
def run_fixture(variant: str = "blockers-fp", scenarios: Optional[Sequence[str]] = None,
                **kw: Any) -> Iterator[FixtureProcess]:
    """`start()` as a context manager: the program is stopped on exit, whatever happened."""
    fx = start(variant, scenarios, **kw)
    try:
        yield fx
    finally:
        fx.stop()


def run_load(server: FixtureProcess, *, duration: float = 2.0, connections: int = 8,
             mix: Optional[str] = None, max_requests: Optional[int] = None,
             threads: int = 1) -> dict[str, Any]:
    """Run `demo load` against a running demo server until done; return its result line
    (requests, errors, rps, by_path, latency_ms)."""
    if server.manifest.program != "demo":
        raise FixtureError(f"run_load needs a demo server, not {server.variant}")
    argv = [str(server.manifest.binary), "load", "--addr", server.ready["addr"],
            "--duration", str(duration), "--connections", str(connections),
            "--threads", str(threads)]
    if mix:
        argv += ["--mix", mix]
    if max_requests is not None:
        argv += ["--max-requests", str(max_requests)]
    proc = subprocess.Popen(_pdeathsig_prefix() + argv, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=duration + 60)
    finally:
        _kill_group(proc.pid, proc)
    for raw in out.decode().splitlines():
        with contextlib.suppress(ValueError):
            event = json.loads(raw)
            if event.get("event") == "load":
                return event
    raise FixtureError(f"demo load gave no result (exit {proc.returncode}): {err.decode()}")


# ---- pytest plugin (registered in tests/conftest.py) --------------------------------------

@pytest.fixture
def tokio_fixture() -> Iterator[Callable[..., FixtureProcess]]:
    """Factory: `tokio_fixture(variant, scenarios, **start_kwargs)` -> FixtureProcess; every
    program it started is stopped when the test ends (passed, failed or timed out)."""
    started: list[FixtureProcess] = []

    def factory(variant: str = "blockers-fp", scenarios: Optional[Sequence[str]] = None,
                **kw: Any) -> FixtureProcess:
        fx = start(variant, scenarios, **kw)
        started.append(fx)
        return fx

    yield factory
    for fx in started:
        fx.stop()


@pytest.fixture
def fixture_manifest() -> Callable[[str], Manifest]:
    """`fixture_manifest(variant)` -> Manifest; fails (not skips) when it is not built."""
    return load_manifest
