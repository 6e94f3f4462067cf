"""Host checks: privileges, kernel, bpf(), ringbuf, attach, BTF, tracefs, perf, backend.

Each check turns the outcome of a real probe (hud.doctor.probes) and the host's facts
(privileges, lockdown, sysctls) into one line and a hint; `choose_backend` decides what
`--backend auto` would use from the lines alone, so that decision is tested without root.
"""
from __future__ import annotations

import errno as _errno
import os
import platform
from typing import TYPE_CHECKING, Any, Optional

from hud.doctor import explain, probes
from hud.doctor.explain import HostFacts, denied
from hud.doctor.model import FAIL, HOST, OK, SKIP, WARN, Check
from hud.doctor.probes import RINGBUF_BYTES, TRACEFS_DIRS, Probe
from hud.linux import procfs
from hud.linux.libc import ARCH

if TYPE_CHECKING:   # imported where used: the doctor starts without the symbolizer
    from hud.symbolize.kallsyms import KernelSymbols

MIN_EBPF = (5, 15)      # bpf_task_pt_regs, BPF links on perf events
MIN_KERNEL = (4, 18)    # below: no bpf_get_stack, and perf's stack copies are shaky
ARCHES = ("x86_64", "aarch64")
WANT_MAX_STACK = 127    # the kernel default; hud asks for up to 127 frame-pointer frames
SWITCH_FIELDS = ("prev_pid", "prev_state", "next_pid")

# What each backend needs to be usable (checks that must be ok or warn).
BACKEND_NEEDS = {
    "ebpf": ("kernel", "bpf", "ringbuf", "bpf_attach", "programs", "tracefs", "perf"),
    "perf": ("kernel", "tracefs", "perf"),
}


def gather_facts() -> HostFacts:
    """Privileges and policies of this process and host."""
    st = procfs.status(os.getpid())
    read, num = probes.read_small, probes.to_int

    def sysctl(name: str) -> Optional[int]:
        return num(read(f"/proc/sys/kernel/{name}"))

    return HostFacts(
        euid=os.geteuid(), caps=explain.parse_caps(st.get("CapEff")),
        cap_last=sysctl("cap_last_cap") or 40, seccomp=num(st.get("Seccomp")) or 0,
        userns=explain.in_user_namespace(read("/proc/self/uid_map")),
        lockdown=explain.parse_lockdown(read("/sys/kernel/security/lockdown")),
        unprivileged_bpf_disabled=sysctl("unprivileged_bpf_disabled"),
        perf_event_paranoid=sysctl("perf_event_paranoid"),
        yama_ptrace_scope=sysctl("yama/ptrace_scope"))


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


def check_bpf(facts: HostFacts, got: Optional[tuple[Probe, Probe]] = None) -> Check:
    mp, pp = got if got is not None else probes.probe_bpf()
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
    p = probes.probe_ringbuf()
    if p.ok:
        return Check("ringbuf", OK, "a BPF ringbuf is created and mapped",
                     data={"bytes": RINGBUF_BYTES})
    return Check("ringbuf", FAIL, f"BPF ringbuf: {p.message}",
                 "needs Linux 5.8+; hud falls back to the perf backend",
                 data={"errno": explain.errno_name(p.err), "error": p.message})


def check_bpf_attach(facts: HostFacts, bpf_ok: bool, tp_id: Optional[int],
                     got: Optional[tuple[Probe, Probe]] = None) -> Check:
    if not bpf_ok:
        return Check("bpf_attach", SKIP, "not tried: bpf() does not work")
    if tp_id is None:
        return Check("bpf_attach", SKIP, "not tried: no sched_switch tracepoint id "
                     "(tracefs)")
    sp, wp = got if got is not None else probes.probe_attach(tp_id)
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


def check_programs(facts: HostFacts, attach_ok: bool, tracefs: Check,
                   probe: Optional[Probe] = None) -> Check:
    """hud's real programs, loaded and attached by its collector for an instant."""
    if not attach_ok:
        return Check("programs", SKIP, "not tried: the bpf_attach probes failed")
    if not probes.has_collector():
        return Check("programs", SKIP, "not tried: this build has no eBPF collector")
    if probe is None:
        child = tracefs.data.get("programs")
        if isinstance(child, dict):   # tried where the tracefs probe mounted it
            probe = Probe(bool(child.get("ok")), child.get("err"),
                          str(child.get("message", "")), dict(child.get("data") or {}))
        elif tracefs.data.get("mounted") is None:
            return Check("programs", SKIP, "not tried: tracefs cannot be mounted")
        else:
            probe = probes.probe_programs()
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
    p = probe if probe is not None else probes.probe_tp_btf()
    data["tp_btf"] = p.ok
    if p.ok:
        return Check("btf", OK, "vmlinux BTF present; a tp_btf program attaches to "
                     "sched_switch", data=data)
    data["error"] = p.message
    return Check("btf", WARN, f"vmlinux BTF present, but tp_btf fails: {p.message}",
                 "hud's programs use the sched_switch tracepoint; this costs nothing yet",
                 data=data)


# -- tracefs -------------------------------------------------------------------------------


def check_tracefs(facts: HostFacts, with_programs: bool = False
                  ) -> tuple[Check, Optional[int]]:
    """The tracefs check and the sched_switch tracepoint id (None when unknown). When
    tracefs is not mounted, hud's programs are tried in the probe's private mount
    namespace (`with_programs`), their result left in data["programs"]."""
    root = probes.mounted_tracefs()
    mounted = root is not None
    data: dict[str, Any] = {"mounted": root}
    if root is None:
        if not probes.supports_tracefs():
            return Check("tracefs", FAIL, "this kernel has no tracefs (no tracepoints)",
                         "needs CONFIG_TRACING / CONFIG_FTRACE", data=data), None
        got = probes.probe_mount_tracefs(with_programs and probes.has_collector())
        if "errno" in got:
            why, hint = denied(got["errno"], facts, "tracefs")
            data["error"] = f"{got.get('step')}: {explain.errno_name(got['errno'])}"
            return Check("tracefs", FAIL, f"not mounted, and mounting it fails: {why}",
                         hint if why.startswith(("EPERM", "EACCES")) else
                         "mount it: mount -t tracefs nodev /sys/kernel/tracing",
                         data=data), None
    else:
        try:
            got = probes.read_switch(root)
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


def check_perf(facts: HostFacts, tp_id: Optional[int],
               results: Optional[dict[str, Probe]] = None) -> Check:
    got = results if results is not None else probes.probe_perf(tp_id)
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
    if par is not None and par > 1 and facts.can("perf"):
        note = f" (perf_event_paranoid={par}: no limit with CAP_PERFMON)"
    elif par is not None:
        note = f" (perf_event_paranoid={par})"
    if "sched_switch" not in got:
        return Check("perf", WARN, f"{opened} open; sched_switch not tried (no tracefs)"
                     f"{note}", "see tracefs", data=data)
    return Check("perf", OK, f"{opened} open{note}", data=data)


def check_max_stack(path: str = "/proc/sys/kernel/perf_event_max_stack") -> Check:
    value = probes.to_int(probes.read_small(path))
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


def check_kernel_symbols(table: Optional[KernelSymbols] = None) -> Check:
    """Whether kernel frames get names: /proc/kallsyms as this process reads it."""
    from hud.symbolize.kallsyms import kernel_symbols
    syms = table if table is not None else kernel_symbols()
    reason = syms.reason
    data = {"functions": len(syms), "reason": reason}
    if reason:
        return Check("kallsyms", WARN, f"kernel frames will be [unknown]: {reason}",
                     "run as root with sysctl kernel.kptr_restrict=1 or 0 (2 hides kernel "
                     "addresses from root too)", data=data)
    return Check("kallsyms", OK, f"/proc/kallsyms: {len(syms):,} kernel functions "
                 "name kernel frames", data=data)


def check_symbol_cache(directory: Optional[str] = None, off: bool = False) -> Check:
    """Where resolved symbols are kept between runs, and whether hud may use it."""
    from hud.symbolize.diskcache import SymbolCache, default_cache_dir
    directory = None if off else (directory or default_cache_dir())
    if directory is None:
        return Check("sym_cache", OK, "off (HUD_NO_CACHE or no home directory): every "
                     "run symbolizes from scratch", data={"dir": None})
    state, why, files = SymbolCache(directory).probe()
    data = {"dir": directory, "state": state, "files": files}
    if state == "ok":
        return Check("sym_cache", OK, f"{directory}: {files} file(s)", data=data)
    if state == "absent":
        return Check("sym_cache", OK, f"{directory}: made (0700) at the first run",
                     data=data)
    data["reason"] = why
    return Check("sym_cache", WARN, f"not used: {why}",
                 "fix the directory's owner and mode, set HUD_CACHE_DIR, or run with "
                 "--no-symbol-cache", data=data)


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
    checks.append(check_kernel_symbols())
    checks.append(check_symbol_cache())
    backend_check, backend = check_backend(checks)
    checks.append(backend_check)
    for c in checks:
        c.scope = HOST
    return checks, backend, facts
