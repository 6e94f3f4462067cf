"""The host probes: each does for real, briefly, what a profiling run does.

Create a map, a ringbuf; load and attach tiny programs (and hud's own, through its
collector); open perf events. Every BPF object is owned by a Loader or closed at once,
programs are named hud_dr_* and nothing is pinned, so nothing outlives a probe. tracefs
is never mounted on the host: when it is absent, mounting it is tried in a private
mount namespace of a short-lived child. Probes return data (Probe), never raise.
"""
from __future__ import annotations

import ctypes
import errno as _errno
import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from hud.errors import HudError
from hud.linux import bpf, perf_event, procfs
from hud.linux.libc import ARCH
from kernel import uapi

TRACEFS_DIRS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
PROBE_PREFIX = "hud_dr_"
RINGBUF_BYTES = 1 << 16


def read_small(path: str) -> Optional[str]:
    # Not procfs.read_text: its 16 MiB read() makes /proc/sys files fail with ENOMEM
    # (the kernel allocates a buffer of the requested size for sysctls).
    try:
        with open(path, "rb") as f:
            return f.read(65536).decode("utf-8", "replace")
    except OSError:
        return None


def open_errno(path: str) -> Optional[int]:
    """None when `path` opens for reading, else the errno (the file is closed at once)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as e:
        return e.errno or _errno.EIO
    os.close(fd)
    return None


def to_int(text: Optional[str]) -> Optional[int]:
    try:
        return int((text or "").strip())
    except ValueError:
        return None


@dataclass
class Probe:
    """The outcome of one real attempt: ok, or the errno and message of the failure."""

    ok: bool
    err: Optional[int] = None
    message: str = ""
    data: dict = field(default_factory=dict)


def attempt(fn: Callable[[], Any]) -> Probe:
    try:
        got = fn()
    except HudError as e:
        return Probe(False, e.errno, e.message)
    except OSError as e:
        return Probe(False, e.errno, f"{e.strerror}")
    except Exception as e:  # a probe's bug must become a line, never a traceback
        return Probe(False, None, f"{type(e).__name__}: {e}")
    return Probe(True, data=got if isinstance(got, dict) else {})


def _trivial(name: str, prog_type: int, **kw: Any) -> Any:
    from kernel.asm import Assembler, r0
    return Assembler().mov(r0, 0).exit().image(name, prog_type, **kw)


def _helpers_image() -> Any:
    """A PERF_EVENT program calling the helpers hud's sampler and switch programs need
    that are younger than bpf() itself; the verifier names any that is missing."""
    from kernel.asm import Assembler, r0, r1, r2, r3, r4, r6, r10
    a = Assembler()
    a.mov(r6, r1).st("u64", r10, -8, 0)
    a.call("get_current_task_btf").mov(r1, r0).call("task_pt_regs")
    a.mov(r1, r6).mov(r2, r10).alu64("+=", r2, -64).mov(r3, 48)
    a.mov(r4, uapi.BPF_F_USER_STACK).call("get_stack")
    a.mov(r1, r10).alu64("+=", r1, -16).mov(r2, 8).mov(r3, 0).call("probe_read_user")
    a.ld_map(r1, PROBE_PREFIX + "rb").mov(r2, r10).alu64("+=", r2, -8).mov(r3, 8)
    a.mov(r4, 0).call("ringbuf_output")
    a.mov(r0, 0).exit()
    return a.image(PROBE_PREFIX + "pe", uapi.BPF_PROG_TYPE_PERF_EVENT)


def probe_bpf() -> tuple[Probe, Probe]:
    """(map create, trivial TRACEPOINT program load), each closed at once."""
    from hud.bpf.loader import Program

    def mk_map() -> None:
        fd = bpf.map_create(uapi.BPF_MAP_TYPE_ARRAY, 4, 8, 1, name=PROBE_PREFIX + "arr")
        os.close(fd)

    def load() -> None:
        with Program(_trivial(PROBE_PREFIX + "tp", uapi.BPF_PROG_TYPE_TRACEPOINT)):
            pass

    return attempt(mk_map), attempt(load)


def probe_ringbuf() -> Probe:
    """Create a BPF ringbuf and map it as the collector does."""
    from hud.bpf.maps import Map
    from hud.bpf.ringbuf import RingBuf

    def ring() -> None:
        with Map.create(PROBE_PREFIX + "rb", uapi.BPF_MAP_TYPE_RINGBUF, 0, 0,
                        RINGBUF_BYTES) as m:
            RingBuf(m).close()

    return attempt(ring)


def _first_cpu() -> int:
    return procfs.online_cpus()[0]


def _cpu_clock_attr(**kw: Any) -> perf_event.PerfEventAttr:
    return perf_event.PerfEventAttr(type=perf_event.PERF_TYPE_SOFTWARE,
                                    config=perf_event.PERF_COUNT_SW_CPU_CLOCK,
                                    period_or_freq=1, freq=True, disabled=True, **kw)


def _tracepoint_attr(tp_id: int) -> perf_event.PerfEventAttr:
    return perf_event.PerfEventAttr(type=perf_event.PERF_TYPE_TRACEPOINT, config=tp_id,
                                    period_or_freq=1, sample_type=perf_event.PERF_SAMPLE_RAW,
                                    disabled=True)


def _open_close(attr: perf_event.PerfEventAttr, pid: int, cpu: int, what: str) -> None:
    os.close(perf_event.perf_event_open(attr, pid=pid, cpu=cpu, what=what))


def probe_attach(tp_id: int) -> tuple[Probe, Probe]:
    """(the helpers program on a never-enabled cpu-clock event, a trivial program on
    sched:sched_switch), each through a BPF link as the eBPF backend attaches them;
    everything is closed before returning."""
    from hud.bpf.loader import Loader

    def sampler() -> None:
        with Loader() as ld:
            ld.create_map(_ringbuf_spec())
            prog = ld.load(_helpers_image())
            pfd = perf_event.perf_event_open(_cpu_clock_attr(), pid=-1, cpu=_first_cpu(),
                                             what="perf_event_open(cpu-clock)")
            try:
                os.close(bpf.link_create(prog.fd, pfd, uapi.BPF_PERF_EVENT))
            finally:
                os.close(pfd)

    def switch() -> None:
        with Loader() as ld:
            prog = ld.load(_trivial(PROBE_PREFIX + "sw", uapi.BPF_PROG_TYPE_TRACEPOINT))
            # By id, not through tracefs: the doctor must not mount tracefs on the host.
            pfd = perf_event.perf_event_open(_tracepoint_attr(tp_id), pid=-1,
                                             cpu=_first_cpu(),
                                             what="perf_event_open(sched:sched_switch)")
            try:
                os.close(bpf.link_create(prog.fd, pfd, uapi.BPF_PERF_EVENT))
            finally:
                os.close(pfd)

    return attempt(sampler), attempt(switch)


def _ringbuf_spec() -> Any:
    from kernel.abi import MapSpec
    return MapSpec(PROBE_PREFIX + "rb", uapi.BPF_MAP_TYPE_RINGBUF, 0, 0, RINGBUF_BYTES)


def probe_programs() -> Probe:
    """Open hud's eBPF collector on ourselves for an instant: its real programs pass
    this kernel's verifier and attach, exactly as a profiling run does."""
    def run() -> dict:
        from hud.collect.ebpf import EbpfCollector
        col = EbpfCollector(os.getpid(), ringbuf_bytes=RINGBUF_BYTES, max_threads=16,
                            freq=19, times_interval_s=3600.0)
        try:
            col.open()
            return {"programs": col.program_names()}
        finally:
            col.close()

    return attempt(run)


def has_collector() -> bool:
    try:
        import hud.collect.ebpf  # noqa: F401  (part of this build?)
    except ImportError:
        return False
    return True


def probe_tp_btf() -> Probe:
    """Load a tp_btf program for sched_switch and attach it for an instant."""
    from hud.bpf.loader import Loader

    def run() -> None:
        with Loader() as ld:
            prog = ld.load(_trivial(PROBE_PREFIX + "btf", uapi.BPF_PROG_TYPE_TRACING,
                                    expected_attach_type=uapi.BPF_TRACE_RAW_TP,
                                    attach_btf_name="btf_trace_sched_switch"))
            ld.attach_tp_btf(prog)

    return attempt(run)


def tracefs_mounts(mounts: Optional[str]) -> list[str]:
    """Mount points of tracefs in the text of /proc/self/mounts, standard places first."""
    found = []
    for line in (mounts or "").splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "tracefs":
            found.append(parts[1].replace("\\040", " "))
    return sorted(set(found), key=lambda p: (p not in TRACEFS_DIRS, p))


def mounted_tracefs() -> Optional[str]:
    # From the mount table, not by looking inside: tracefs is root-only (0700), so a
    # plain user must hear "mounted but unreadable", not "not mounted".
    got = tracefs_mounts(read_small("/proc/self/mounts"))
    if got:
        return got[0]
    for d in TRACEFS_DIRS:
        if os.path.isdir(os.path.join(d, "events")):
            return d
    return None


def read_switch(root: str) -> dict:
    """Id and fields of sched:sched_switch under a tracefs root."""
    from hud.linux.tracefs import parse_format
    base = os.path.join(root, "events", "sched", "sched_switch")
    with open(os.path.join(base, "format")) as f:
        fmt = parse_format(f.read())
    with open(os.path.join(base, "id")) as f:
        tp_id = int(f.read().strip())
    fields = {fl.name: fl.offset for fl in fmt.fields if not fl.common}
    return {"id": tp_id, "fields": fields}


_CLONE_NEWNS = 0x00020000
_MS_REC = 0x4000
_MS_PRIVATE = 1 << 18


def _probe_mount_child(with_programs: bool) -> dict:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                           ctypes.c_ulong, ctypes.c_void_p]
    if libc.unshare(_CLONE_NEWNS) != 0:
        return {"errno": ctypes.get_errno(), "step": "unshare(CLONE_NEWNS)"}
    # Private first, so the mount below cannot propagate to the host's namespace.
    if libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
        return {"errno": ctypes.get_errno(), "step": "mount --make-rprivate /"}
    target = TRACEFS_DIRS[0]
    if libc.mount(b"tracefs", target.encode(), b"tracefs", 0, None) != 0:
        return {"errno": ctypes.get_errno(), "step": f"mount -t tracefs {target}"}
    out = read_switch(target)
    if with_programs:
        # hud's collector would mount tracefs to read the format: here it finds ours.
        p = probe_programs()
        out["programs"] = {"ok": p.ok, "err": p.err, "message": p.message, "data": p.data}
    return out


def probe_mount_tracefs(with_programs: bool = False) -> dict:
    """Mount tracefs in a private mount namespace of a forked child and read sched_switch
    there (and, with `with_programs`, open hud's collector): whether hud could mount it
    and run, without mounting anything on the host. The child's BPF objects die with it.
    """
    if with_programs:
        import hud.collect.ebpf  # noqa: F401  (imported before fork, not in the child)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns
        code = 0
        try:
            os.close(r)
            try:
                out = _probe_mount_child(with_programs)
            except OSError as e:
                out = {"errno": e.errno or _errno.EIO, "step": "read sched_switch"}
            except Exception as e:  # anything at all must reach the parent as data
                out = {"errno": _errno.EIO, "step": f"probe: {e}"}
            os.write(w, json.dumps(out).encode())
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(r)
    os.waitpid(pid, 0)
    try:
        return json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        return {"errno": _errno.EIO, "step": "probe child"}


def supports_tracefs() -> bool:
    return "tracefs" in (read_small("/proc/filesystems") or "")


def probe_perf(tp_id: Optional[int]) -> dict[str, Probe]:
    """Open (and close at once) the perf events the backends use."""
    cpu = _first_cpu()
    mask = (1 << 6) | (1 << 7) | (1 << 8) if ARCH == "x86_64" else \
        (1 << 29) | (1 << 30) | (1 << 31) | (1 << 32)
    stack_attr = _cpu_clock_attr(
        sample_type=perf_event.PERF_SAMPLE_REGS_USER | perf_event.PERF_SAMPLE_STACK_USER,
        sample_regs_user=mask, sample_stack_user=8192, exclude_kernel=True)
    out = {
        "cpu_clock": attempt(lambda: _open_close(_cpu_clock_attr(), -1, cpu,
                                                  "perf_event_open(cpu-clock)")),
        "stack_copy": attempt(lambda: _open_close(stack_attr, os.getpid(), -1,
                                                   "perf_event_open(regs+stack)")),
    }
    if tp_id is not None:
        out["sched_switch"] = attempt(lambda: _open_close(
            _tracepoint_attr(tp_id), -1, cpu, "perf_event_open(sched:sched_switch)"))
    return out
