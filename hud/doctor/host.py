"""Host checks: privileges, kernel, bpf(), ringbuf, attach, BTF, tracefs, perf, backend.

Each probe does for real, briefly, what a profiling run does: create a map, load and
attach a tiny program, open a perf event. Every BPF object is owned by one Loader and
closed before the probe returns, programs are named hud_dr_* and nothing is pinned, so
the doctor leaves nothing behind. tracefs is never mounted on the host: when it is
absent, mounting it is tried in a private mount namespace of a short-lived child.
"""
from __future__ import annotations

import ctypes
import errno as _errno
import json
import os
import platform
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from hud.doctor import explain
from hud.doctor.explain import HostFacts, denied
from hud.doctor.model import FAIL, HOST, OK, SKIP, WARN, Check
from hud.errors import HudError
from hud.linux import bpf, perf_event, procfs
from hud.linux.libc import ARCH
from kernel import uapi

MIN_EBPF = (5, 15)      # bpf_task_pt_regs, BPF links on perf events
MIN_KERNEL = (4, 18)    # below: no bpf_get_stack, and perf's stack copies are shaky
ARCHES = ("x86_64", "aarch64")
WANT_MAX_STACK = 127    # the kernel default; hud asks for up to 127 frame-pointer frames
TRACEFS_DIRS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
SWITCH_FIELDS = ("prev_pid", "prev_state", "next_pid")
PROBE_PREFIX = "hud_dr_"
RINGBUF_BYTES = 1 << 16

# What each backend needs to be usable (checks that must be ok or warn).
BACKEND_NEEDS = {
    "ebpf": ("kernel", "bpf", "ringbuf", "bpf_attach", "programs", "tracefs", "perf"),
    "perf": ("kernel", "tracefs", "perf"),
}


def _read(path: str) -> Optional[str]:
    # Not procfs.read_text: its 16 MiB read() makes /proc/sys files fail with ENOMEM
    # (the kernel allocates a buffer of the requested size for sysctls).
    try:
        with open(path, "rb") as f:
            return f.read(65536).decode("utf-8", "replace")
    except OSError:
        return None


def _int(text: Optional[str]) -> Optional[int]:
    try:
        return int((text or "").strip())
    except ValueError:
        return None


def gather_facts() -> HostFacts:
    """Privileges and policies of this process and host."""
    st = procfs.status(os.getpid())
    return HostFacts(
        euid=os.geteuid(), caps=explain.parse_caps(st.get("CapEff")),
        cap_last=_int(_read("/proc/sys/kernel/cap_last_cap")) or 40,
        seccomp=_int(st.get("Seccomp")) or 0,
        userns=explain.in_user_namespace(_read("/proc/self/uid_map")),
        lockdown=explain.parse_lockdown(_read("/sys/kernel/security/lockdown")),
        unprivileged_bpf_disabled=_int(_read("/proc/sys/kernel/unprivileged_bpf_disabled")),
        perf_event_paranoid=_int(_read("/proc/sys/kernel/perf_event_paranoid")),
        yama_ptrace_scope=_int(_read("/proc/sys/kernel/yama/ptrace_scope")))


@dataclass
class Probe:
    """The outcome of one real attempt: ok, or the errno and message of the failure."""

    ok: bool
    err: Optional[int] = None
    message: str = ""
    data: dict = field(default_factory=dict)


def _attempt(fn: Callable[[], Any]) -> Probe:
    try:
        got = fn()
    except HudError as e:
        return Probe(False, e.errno, e.message)
    except OSError as e:
        return Probe(False, e.errno, f"{e.strerror}")
    except Exception as e:  # a probe's bug must become a line, never a traceback
        return Probe(False, None, f"{type(e).__name__}: {e}")
    return Probe(True, data=got if isinstance(got, dict) else {})


# -- privileges and kernel ---------------------------------------------------------------

def check_privileges(facts: HostFacts) -> Check:
    who = "root (uid 0)" if facts.euid == 0 else f"uid {facts.euid}"
    data = {"euid": facts.euid, "cap_eff": f"{facts.caps:016x}",
            "user_namespace": facts.userns, "seccomp": facts.seccomp}
    trace = facts.can("bpf") or facts.can("perf")
    lacking = []
    for what, costs in (("bpf", "no eBPF"), ("perf", "no system-wide perf events"),
                        ("ptrace", "other users' /proc/PID/mem unreadable"),
                        ("map_files", "deleted or containers' binaries unreadable")):
        if not facts.can(what):
            lacking.append((what, costs, facts.missing(what)))
    data["missing"] = {w: m for w, _, m in lacking}
    if facts.userns:
        return Check("privileges", FAIL, f"{who} inside a user namespace: no kernel "
                     "tracing from here", "run hud on the host, or in a container that "
                     "shares the host's user namespace", data=data)
    if not trace:
        return Check("privileges", FAIL, f"{who} without CAP_BPF, CAP_PERFMON or "
                     "CAP_SYS_ADMIN: hud cannot trace", explain.ROOT_HINT, data=data)
    if lacking:
        caps = sorted({c for _, _, m in lacking for c in m})
        costs = "; ".join(c for _, c, _ in lacking)
        return Check("privileges", WARN, f"{who}, lacking {', '.join(caps)}: {costs}",
                     explain.ROOT_HINT, data=data)
    return Check("privileges", OK, who if facts.euid == 0 else
                 f"{who} with the needed capabilities", data=data)


def check_kernel(release: Optional[str] = None, arch: str = ARCH) -> Check:
    release = release or platform.release()
    ver = explain.kernel_version(release)
    data = {"release": release, "arch": arch, "version": list(ver)}
    text = f"{release} {arch}"
    if arch not in ARCHES:
        return Check("kernel", FAIL, f"{text}: hud unwinds x86_64 and aarch64 only",
                     "profile on an x86_64 or aarch64 host", data=data)
    if ver[:2] < MIN_KERNEL:
        return Check("kernel", FAIL, f"{text}: older than "
                     f"{MIN_KERNEL[0]}.{MIN_KERNEL[1]}", "upgrade the kernel", data=data)
    if ver[:2] < MIN_EBPF:
        return Check("kernel", WARN, f"{text}: the eBPF backend needs "
                     f"{MIN_EBPF[0]}.{MIN_EBPF[1]}+ (bpf_task_pt_regs, perf links)",
                     "hud falls back to the perf backend here", data=data)
    return Check("kernel", OK, text, data=data)


# -- bpf -----------------------------------------------------------------------------------

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

    return _attempt(mk_map), _attempt(load)


def check_bpf(facts: HostFacts, probes: Optional[tuple[Probe, Probe]] = None) -> Check:
    mp, pp = probes if probes is not None else probe_bpf()
    data = {"map_create": mp.ok, "prog_load": pp.ok, "lockdown": facts.lockdown,
            "unprivileged_bpf_disabled": facts.unprivileged_bpf_disabled}
    lock = f" (lockdown: {facts.lockdown})" if facts.lockdown not in (None, "none") else ""
    if mp.ok and pp.ok:
        return Check("bpf", OK, f"bpf() creates maps and loads programs{lock}", data=data)
    bad = mp if not mp.ok else pp
    data["errno"] = explain.errno_name(bad.err)
    data["error"] = bad.message
    step = "map create" if not mp.ok else "program load"
    if bad.err in (_errno.EPERM, _errno.EACCES, _errno.ENOSYS):
        why, hint = denied(bad.err, facts, "bpf")
        return Check("bpf", FAIL, f"bpf() {step} refused: {why}", hint, data=data)
    return Check("bpf", FAIL, f"bpf() {step} failed: {bad.message}",
                 "the perf backend may still work (see below)", data=data)


def check_ringbuf(bpf_ok: bool) -> Check:
    if not bpf_ok:
        return Check("ringbuf", SKIP, "not tried: bpf() does not work")
    from hud.bpf.maps import Map
    from hud.bpf.ringbuf import RingBuf

    def ring() -> None:
        with Map.create(PROBE_PREFIX + "rb", uapi.BPF_MAP_TYPE_RINGBUF, 0, 0,
                        RINGBUF_BYTES) as m:
            RingBuf(m).close()

    p = _attempt(ring)
    if p.ok:
        return Check("ringbuf", OK, "a BPF ringbuf is created and mapped",
                     data={"bytes": RINGBUF_BYTES})
    return Check("ringbuf", FAIL, f"BPF ringbuf: {p.message}",
                 "needs Linux 5.8+; hud falls back to the perf backend",
                 data={"errno": explain.errno_name(p.err), "error": p.message})


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

    return _attempt(sampler), _attempt(switch)


def _ringbuf_spec() -> Any:
    from kernel.abi import MapSpec
    return MapSpec(PROBE_PREFIX + "rb", uapi.BPF_MAP_TYPE_RINGBUF, 0, 0, RINGBUF_BYTES)


def check_bpf_attach(facts: HostFacts, bpf_ok: bool, tp_id: Optional[int],
                     probes: Optional[tuple[Probe, Probe]] = None) -> Check:
    if not bpf_ok:
        return Check("bpf_attach", SKIP, "not tried: bpf() does not work")
    if tp_id is None:
        return Check("bpf_attach", SKIP, "not tried: no sched_switch tracepoint id "
                     "(tracefs)")
    sp, wp = probes if probes is not None else probe_attach(tp_id)
    data = {"sampler": sp.ok, "sched_switch": wp.ok}
    if sp.ok and wp.ok:
        return Check("bpf_attach", OK, "sampler helpers load; cpu-clock and sched_switch "
                     "links attach", data=data)
    bad, what = (sp, "the sampler program") if not sp.ok else (wp, "sched_switch link")
    data.update(errno=explain.errno_name(bad.err), error=bad.message)
    if bad.err in (_errno.EPERM, _errno.EACCES):
        why, hint = denied(bad.err, facts, "bpf")
        return Check("bpf_attach", FAIL, f"{what}: {why}", hint, data=data)
    return Check("bpf_attach", FAIL, f"{what}: {bad.message}",
                 "this kernel lacks what hud's programs use; hud falls back to the perf "
                 "backend", data=data)


def probe_programs() -> Probe:
    """Open hud's eBPF collector on ourselves for an instant: its real programs pass
    this kernel's verifier and attach, exactly as a profiling run does."""
    def run() -> dict:
        from hud.collect.ebpf import EbpfCollector
        from kernel.programs import sampler, sched_switch
        col = EbpfCollector(os.getpid(), ringbuf_bytes=RINGBUF_BYTES, max_threads=16,
                            freq=19, times_interval_s=3600.0)
        try:
            col.open()
            return {"programs": [sched_switch.NAME, sampler.NAME]}
        finally:
            col.close()

    return _attempt(run)


def _has_collector() -> bool:
    try:
        import hud.collect.ebpf  # noqa: F401  (part of this build?)
    except ImportError:
        return False
    return True


def check_programs(facts: HostFacts, attach_ok: bool, tracefs: Check,
                   probe: Optional[Probe] = None) -> Check:
    """hud's real programs, loaded and attached by its collector for an instant."""
    if not attach_ok:
        return Check("programs", SKIP, "not tried: the bpf_attach probes failed")
    if not _has_collector():
        return Check("programs", SKIP, "not tried: this build has no eBPF collector")
    if probe is None:
        child = tracefs.data.get("programs")
        if isinstance(child, dict):   # tried where the tracefs probe mounted it
            probe = Probe(bool(child.get("ok")), child.get("err"),
                          str(child.get("message", "")), dict(child.get("data") or {}))
        elif tracefs.data.get("mounted") is None:
            return Check("programs", SKIP, "not tried: tracefs cannot be mounted")
        else:
            probe = probe_programs()
    p = probe
    if p.ok:
        names = ", ".join(p.data.get("programs", ()))
        return Check("programs", OK, f"hud's programs ({names}) pass the verifier and "
                     "attach", data=p.data)
    data = {"errno": explain.errno_name(p.err), "error": p.message}
    if p.err in (_errno.EPERM, _errno.EACCES):
        why, hint = denied(p.err, facts, "bpf")
        return Check("programs", FAIL, f"hud's programs refused: {why}", hint, data=data)
    return Check("programs", FAIL, f"hud's programs do not load here: {p.message}",
                 "hud falls back to the perf backend; report this kernel and the "
                 "--json output", data=data)


def probe_tp_btf() -> Probe:
    """Load a tp_btf program for sched_switch and attach it for an instant."""
    from hud.bpf.loader import Loader

    def run() -> None:
        with Loader() as ld:
            prog = ld.load(_trivial(PROBE_PREFIX + "btf", uapi.BPF_PROG_TYPE_TRACING,
                                    expected_attach_type=uapi.BPF_TRACE_RAW_TP,
                                    attach_btf_name="btf_trace_sched_switch"))
            ld.attach_tp_btf(prog)

    return _attempt(run)


def check_btf(bpf_ok: bool, path: str = "/sys/kernel/btf/vmlinux",
              probe: Optional[Probe] = None) -> Check:
    if not os.path.exists(path):
        return Check("btf", WARN, f"{path} is missing: no kernel BTF",
                     "needs CONFIG_DEBUG_INFO_BTF; the eBPF sampler cannot load without it",
                     data={"present": False})
    size = os.path.getsize(path)
    data: dict[str, Any] = {"present": True, "bytes": size}
    if not bpf_ok:
        return Check("btf", SKIP, f"{path} present ({size >> 10} KiB); tp_btf not tried: "
                     "bpf() does not work", data=data)
    p = probe if probe is not None else probe_tp_btf()
    data["tp_btf"] = p.ok
    if p.ok:
        return Check("btf", OK, "vmlinux BTF present; a tp_btf program attaches to "
                     "sched_switch", data=data)
    data["error"] = p.message
    return Check("btf", WARN, f"vmlinux BTF present, but tp_btf fails: {p.message}",
                 "hud's programs use the sched_switch tracepoint; this costs nothing yet",
                 data=data)


# -- tracefs -------------------------------------------------------------------------------

def tracefs_mounts(mounts: Optional[str]) -> list[str]:
    """Mount points of tracefs in the text of /proc/self/mounts, standard places first."""
    found = []
    for line in (mounts or "").splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "tracefs":
            found.append(parts[1].replace("\\040", " "))
    return sorted(set(found), key=lambda p: (p not in TRACEFS_DIRS, p))


def _mounted_tracefs() -> Optional[str]:
    # From the mount table, not by looking inside: tracefs is root-only (0700), so a
    # plain user must hear "mounted but unreadable", not "not mounted".
    got = tracefs_mounts(_read("/proc/self/mounts"))
    if got:
        return got[0]
    for d in TRACEFS_DIRS:
        if os.path.isdir(os.path.join(d, "events")):
            return d
    return None


def _read_switch(root: str) -> dict:
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
    out = _read_switch(target)
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


def _supports_tracefs() -> bool:
    return "tracefs" in (_read("/proc/filesystems") or "")


def check_tracefs(facts: HostFacts, with_programs: bool = False
                  ) -> tuple[Check, Optional[int]]:
    """The tracefs check and the sched_switch tracepoint id (None when unknown). When
    tracefs is not mounted, hud's programs are tried in the probe's private mount
    namespace (`with_programs`), their result left in data["programs"]."""
    root = _mounted_tracefs()
    mounted = root is not None
    data: dict[str, Any] = {"mounted": root}
    if root is None:
        if not _supports_tracefs():
            return Check("tracefs", FAIL, "this kernel has no tracefs (no tracepoints)",
                         "needs CONFIG_TRACING / CONFIG_FTRACE", data=data), None
        got = probe_mount_tracefs(with_programs and _has_collector())
        if "errno" in got:
            why, hint = denied(got["errno"], facts, "tracefs")
            data["error"] = f"{got.get('step')}: {explain.errno_name(got['errno'])}"
            return Check("tracefs", FAIL, f"not mounted, and mounting it fails: {why}",
                         hint if why.startswith(("EPERM", "EACCES")) else
                         "mount it: mount -t tracefs nodev /sys/kernel/tracing",
                         data=data), None
    else:
        try:
            got = _read_switch(root)
        except OSError as e:
            why, hint = denied(e.errno, facts, "tracefs_read")
            data["error"] = str(e)
            return Check("tracefs", FAIL, f"{root}/events/sched/sched_switch unreadable: "
                         f"{why}", hint, data=data), None
        except ValueError as e:
            data["error"] = str(e)
            return Check("tracefs", FAIL, f"sched_switch format unreadable: {e}",
                         "report this kernel's format file", data=data), None
    data.update(got)
    lacking = [f for f in SWITCH_FIELDS if f not in got.get("fields", {})]
    if lacking:
        return Check("tracefs", FAIL, f"sched_switch lacks {', '.join(lacking)}",
                     "report this kernel's sched_switch format", data=data), None
    where = f"mounted at {root}" if mounted else \
        f"not mounted; mountable (hud mounts it at {TRACEFS_DIRS[0]})"
    return Check("tracefs", OK, f"{where}; sched_switch format read", data=data), got["id"]


# -- perf ----------------------------------------------------------------------------------

def probe_perf(tp_id: Optional[int]) -> dict[str, Probe]:
    """Open (and close at once) the perf events the backends use."""
    cpu = _first_cpu()
    mask = (1 << 6) | (1 << 7) | (1 << 8) if ARCH == "x86_64" else \
        (1 << 29) | (1 << 30) | (1 << 31) | (1 << 32)
    stack_attr = _cpu_clock_attr(
        sample_type=perf_event.PERF_SAMPLE_REGS_USER | perf_event.PERF_SAMPLE_STACK_USER,
        sample_regs_user=mask, sample_stack_user=8192, exclude_kernel=True)
    out = {
        "cpu_clock": _attempt(lambda: _open_close(_cpu_clock_attr(), -1, cpu,
                                                  "perf_event_open(cpu-clock)")),
        "stack_copy": _attempt(lambda: _open_close(stack_attr, os.getpid(), -1,
                                                   "perf_event_open(regs+stack)")),
    }
    if tp_id is not None:
        out["sched_switch"] = _attempt(lambda: _open_close(
            _tracepoint_attr(tp_id), -1, cpu, "perf_event_open(sched:sched_switch)"))
    return out


def check_perf(facts: HostFacts, tp_id: Optional[int],
               probes: Optional[dict[str, Probe]] = None) -> Check:
    got = probes if probes is not None else probe_perf(tp_id)
    par = facts.perf_event_paranoid
    data: dict[str, Any] = {k: p.ok for k, p in got.items()}
    data["perf_event_paranoid"] = par
    names = {"cpu_clock": "system-wide cpu-clock", "stack_copy": "user regs + stack copy",
             "sched_switch": "sched_switch event"}
    for key in ("cpu_clock", "sched_switch", "stack_copy"):
        p = got.get(key)
        if p is None or p.ok:
            continue
        data["errno"] = explain.errno_name(p.err)
        data["error"] = p.message
        if p.err in (_errno.EPERM, _errno.EACCES, _errno.ENOSYS):
            why, hint = denied(p.err, facts, "perf")
        elif p.err == _errno.ENOENT:
            why, hint = "ENOENT: no such event here", "this kernel lacks the event"
        else:
            why, hint = p.message, "run `hud doctor --json` and report the data"
        return Check("perf", FAIL, f"{names[key]} refused: {why}", hint, data=data)
    opened = ", ".join(names[k] for k in ("cpu_clock", "sched_switch", "stack_copy")
                       if k in got)
    note = ""
    if par is not None and par > 1 and facts.euid == 0:
        note = f" (perf_event_paranoid={par}: no limit for root)"
    elif par is not None:
        note = f" (perf_event_paranoid={par})"
    if "sched_switch" not in got:
        return Check("perf", WARN, f"{opened} open; sched_switch not tried (no tracefs)"
                     f"{note}", "see tracefs", data=data)
    return Check("perf", OK, f"{opened} open{note}", data=data)


def check_max_stack(path: str = "/proc/sys/kernel/perf_event_max_stack") -> Check:
    value = _int(_read(path))
    if value is None:
        return Check("max_stack", WARN, f"{path} unreadable",
                     "kernel.perf_event_max_stack limits kernel-side stacks")
    data = {"perf_event_max_stack": value}
    if value < WANT_MAX_STACK:
        return Check("max_stack", WARN, f"kernel.perf_event_max_stack={value}: kernel "
                     f"frame-pointer stacks stop at {value} frames",
                     f"sysctl -w kernel.perf_event_max_stack={WANT_MAX_STACK}", data=data)
    return Check("max_stack", OK, f"kernel.perf_event_max_stack={value}", data=data)


def check_capstone(arch: str = ARCH) -> Check:
    from hud.unwind import prologue
    if prologue.capstone_available(arch):
        return Check("capstone", OK, "capstone loads: prologue scans tell which modules "
                     "keep frame pointers")
    why = ""
    try:
        import _hud_pyz  # only inside hud.pyz: says how loading the library went
        why = str(_hud_pyz.status().get("capstone", ""))
    except ImportError:
        why = "the capstone module is not installed"
    return Check("capstone", WARN, f"capstone unavailable ({why}): frame pointers are "
                 "never trusted, CFI only", "stacks still unwind through .eh_frame",
                 data={"reason": why})


# -- the decision --------------------------------------------------------------------------

def _blockers(backend: str, by_name: dict) -> list[Check]:
    """The checks `backend` needs that are neither ok nor warn, failures first (a skip
    is only the consequence of one)."""
    bad = [by_name[n] for n in BACKEND_NEEDS[backend]
           if n in by_name and by_name[n].status not in (OK, WARN)]
    return sorted(bad, key=lambda c: c.status != FAIL)


def choose_backend(checks: list[Check]) -> tuple[Optional[str], str]:
    """What `--backend auto` would use, and why, from the host checks (pure)."""
    by_name = {c.name: c for c in checks}
    ebpf = _blockers("ebpf", by_name)
    if not ebpf:
        return "ebpf", "bpf(), ringbuf, cpu-clock and sched_switch links work"
    perf = _blockers("perf", by_name)
    first = ebpf[0]
    if first.status == SKIP:  # say what made it skip
        first = next((c for c in checks if c.status == FAIL), first)
    if not perf:
        return "perf", f"eBPF unusable ({first.name}: {first.summary})"

    def names(bad: list[Check]) -> str:
        return ", ".join(c.name for c in bad if c.status == FAIL) or bad[0].name

    return None, f"eBPF needs {names(ebpf)}; perf needs {names(perf)}"


def check_backend(checks: list[Check]) -> tuple[Check, Optional[str]]:
    backend, why = choose_backend(checks)
    if backend == "ebpf":
        return Check("backend", OK, f"auto -> ebpf: {why}", data={"auto": backend}), backend
    if backend == "perf":
        return Check("backend", WARN, f"auto -> perf: {why}",
                     "the perf backend works; fix the eBPF line above for lower overhead",
                     data={"auto": backend}), backend
    first = next((c for c in checks if c.status == FAIL), None)
    hint = first.hint if first is not None and first.hint else explain.ROOT_HINT
    return Check("backend", FAIL, f"none works: {why}", hint, data={"auto": None}), None


def host_checks() -> tuple[list[Check], Optional[str], HostFacts]:
    """Run every host check in order; (checks, backend auto would use, facts)."""
    facts = gather_facts()
    checks = [check_privileges(facts), check_kernel()]
    b = check_bpf(facts)
    checks.append(b)
    bpf_ok = b.status == OK
    checks.append(check_ringbuf(bpf_ok))
    checks.append(check_btf(bpf_ok))
    tracefs, tp_id = check_tracefs(facts, with_programs=bpf_ok)
    checks.append(tracefs)
    attach = check_bpf_attach(facts, bpf_ok, tp_id)
    checks.append(attach)
    checks.append(check_programs(facts, attach.status == OK, tracefs))
    tracefs.data.pop("programs", None)   # reported on its own line
    checks.append(check_perf(facts, tp_id))
    checks.append(check_max_stack())
    checks.append(check_capstone())
    backend_check, backend = check_backend(checks)
    checks.append(backend_check)
    for c in checks:
        c.scope = HOST
    return checks, backend, facts
