"""Target checks: the process, its threads and workers, Tokio, debug info, unwinding,
containers and replaced binaries.

Everything here only reads: /proc, and the target's ELF files as data through
/proc/PID/map_files or /proc/PID/root (never by their bare path, which across a
container boundary may name another file). Nothing of the target's is ever executed.
"""
from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from hud.doctor import explain
from hud.doctor.debug_advice import DEBUG_HINT, advise
from hud.doctor.explain import HostFacts
from hud.doctor.model import FAIL, OK, SKIP, TARGET, WARN, Check
from hud.doctor.probes import open_errno
from hud.errors import HudError
from hud.linux import procfs
from hud.symbolize.elf import SHT_DYNSYM, SHT_SYMTAB, ElfFile

TOKIO_MARK = b"5tokio7runtime"          # tokio::runtime in legacy and v0 mangling alike
FLAVORS = ((b"12multi_thread", "multi_thread"), (b"14current_thread", "current_thread"))
_TOKIO_VERSION = re.compile(rb"tokio-(\d+\.\d+\.\d+)(?:[/\\]|\0)")
# Small places first: .debug_str can be hundreds of MiB in a big debug build.
_VERSION_PLACES = (((".debug_line_str",), "dwarf"), ((".rodata",), "rodata"),
                   ((".debug_line",), "dwarf"))
_MAX_VERSION_SCAN = 64 << 20
MAX_LISTED = 8
BUDGET_S = 3.0          # per module scan (unwind strategies, Tokio in libraries)


@dataclass
class TargetInfo:
    """The resolved target and what the checks share: its maps and main ELF."""

    pid: int
    comm: str = ""
    exe: str = ""                   # as the target sees it, without " (deleted)"
    deleted: bool = False
    maps: Any = None                # hud.symbolize.ProcessMaps
    main: Any = None                # hud.symbolize.Module of the executable
    code: list = field(default_factory=list)   # modules mapped executable (not data files)
    elf: Optional[ElfFile] = None
    debug: Optional[ElfFile] = None
    debug_path: str = ""
    debug_via: str = ""
    extra: dict = field(default_factory=dict)

    def close(self) -> None:
        for f in (self.elf, self.debug):
            if f is not None:
                f.close()
        self.elf = self.debug = None

    @property
    def root(self) -> str:
        return f"/proc/{self.pid}/root"


# -- finding it ----------------------------------------------------------------------------

def _describe_pid(pid: int, width: int = 44) -> str:
    """`pid N: prog args` in one short line (argv[0] as its base name)."""
    argv = procfs.cmdline(pid)
    if argv:
        argv[0] = os.path.basename(argv[0])
    text = " ".join(argv) or procfs.comm(pid) or "?"
    if len(text) > width:
        text = text[:width - 3] + "..."
    return f"pid {pid}: {text}"


def find_target(query: Optional[str], pid: Optional[int]) -> tuple[Check, Optional[int]]:
    """The `target` check and the pid, or None when nothing (or several) matched."""
    if pid is None and query is not None and query.isdigit():
        pid = int(query)
    if pid is not None:
        if not procfs.alive(pid):
            return Check("target", FAIL, f"no process with pid {pid}",
                         "check the pid with `ps -p`", TARGET, data={"pid": pid}), None
        return _found(pid), pid
    assert query is not None
    pids = procfs.find_pids_by_name(query)
    # Our own ancestors (sudo, a shell running `hud doctor my-app`) never are the target.
    pids = [p for p in pids if p not in _ancestors()]
    if not pids:
        return Check("target", FAIL, f"no process named {query!r}",
                     "check `pgrep -l` for the name, or pass --pid N", TARGET,
                     data={"query": query}), None
    if len(pids) > 1:
        shown = [_describe_pid(p) for p in pids[:MAX_LISTED]]
        if len(pids) > MAX_LISTED:
            shown.append(f"... and {len(pids) - MAX_LISTED} more")
        return Check("target", FAIL, f"{len(pids)} processes are named {query!r}",
                     "pick one: hud doctor --pid N", TARGET, details=shown,
                     data={"query": query, "pids": pids}), None
    return _found(pids[0]), pids[0]


def _ancestors() -> set:
    out, pid = set(), os.getppid()
    while pid > 1 and pid not in out:
        out.add(pid)
        ppid = procfs.status(pid).get("PPid")
        pid = int(ppid) if ppid and ppid.isdigit() else 0
    return out


def _found(pid: int) -> Check:
    exe = procfs.exe(pid)
    comm = procfs.comm(pid) or "?"
    st = procfs.status(pid)
    uid = (st.get("Uid") or "?").split()[0]
    data = {"pid": pid, "comm": comm, "exe": exe, "uid": uid}
    if exe is None and not procfs.read_maps(pid):
        if st.get("Kthread") == "1" or not procfs.cmdline(pid):
            return Check("target", FAIL, f"pid {pid} ({comm}) is a kernel thread",
                         "name a user-space Tokio process", TARGET, data=data)
        return Check("target", OK, f"pid {pid} ({comm}), uid {uid}; its executable "
                     "cannot be read from here", scope=TARGET, data=data)
    return Check("target", OK, f"pid {pid} ({comm}), uid {uid}", scope=TARGET,
                 details=[exe] if exe else [], data=data)


# -- access --------------------------------------------------------------------------------

def check_access(info: TargetInfo, facts: HostFacts) -> Check:
    """/proc/PID/maps (without it nothing symbolizes) and /proc/PID/mem (the vdso)."""
    pid = info.pid
    maps_err = open_errno(f"/proc/{pid}/maps")
    data: dict[str, Any] = {"maps": maps_err is None}
    if maps_err is not None:
        why, hint = explain.denied(maps_err, facts, "ptrace")
        data["errno"] = explain.errno_name(maps_err)
        return Check("access", FAIL, f"/proc/{pid}/maps unreadable: {why}", hint, TARGET,
                     data=data)
    mem_err = open_errno(f"/proc/{pid}/mem")
    data["mem"] = mem_err is None
    if mem_err is not None:
        why, hint = explain.denied(mem_err, facts, "ptrace")
        return Check("access", WARN, f"/proc/{pid}/mem unreadable ({why}): vdso frames "
                     "stay unnamed", hint, TARGET, data=data)
    return Check("access", OK, f"/proc/{pid}/maps and mem readable", scope=TARGET,
                 data=data)


def load_modules(info: TargetInfo) -> None:
    """Read the target's maps and open its executable's ELF (through map_files or root)."""
    from hud.symbolize import ProcessMaps
    from hud.symbolize.normalize import KIND_ELF
    raw = procfs.exe(info.pid) or ""
    info.deleted = raw.endswith(" (deleted)")
    info.exe = raw[:-len(" (deleted)")] if info.deleted else raw
    info.comm = procfs.comm(info.pid) or ""
    info.maps = ProcessMaps(info.pid)
    # Data files mapped by the program (databases, shared memory) are no business of ours.
    exec_paths = {e.path for e in procfs.read_maps(info.pid) if e.executable}
    info.code = [m for m in info.maps.modules()
                 if m.path in exec_paths and m.path.startswith("/")]
    for m in info.code:
        if m.file_path == info.exe:
            info.main = m
            break
    if info.main is not None and info.main.kind == KIND_ELF and info.main.open_path:
        try:
            info.elf = ElfFile.open(info.main.open_path)
        except HudError:
            info.elf = None


# -- threads -------------------------------------------------------------------------------

def check_threads(info: TargetInfo, workers_prefix: Optional[str] = None) -> Check:
    from hud.discovery import Discovery
    from hud.model import ROLE_WORKER
    d = Discovery(info.pid, workers_prefix)
    d.scan()
    threads = sorted(d.threads.values(), key=lambda t: t.tid)
    workers = [t for t in threads if t.role == ROLE_WORKER]
    data = {"threads": len(threads), "rule": d.rule, "workers": [t.tid for t in workers]}
    if not threads:
        return Check("threads", FAIL, "no threads readable (the process exited?)",
                     "check the process is still running", TARGET, data=data)
    details = _group_names(workers)
    n = len(threads)
    head = f"{n} thread{'s' if n != 1 else ''}"
    if d.rule == "stacks":
        if n == 1:
            return Check("threads", OK, f"{head}: a current_thread runtime, if any, runs "
                         "on it (found from stacks)", scope=TARGET, data=data)
        return Check("threads", WARN, f"{head}; no name marks the workers: found from "
                     "stacks once they run", _workers_hint(threads, info.comm), TARGET,
                     details=_group_names(threads), data=data)
    if not workers:
        return Check("threads", WARN, f"{head}; none matches {d.describe()}",
                     "check --workers PREFIX against the names below", TARGET,
                     details=_group_names(threads), data=data)
    note = ""
    if d.rule == "default-names":
        note = " (the blocking pool shares the name; stacks tell them apart)"
    return Check("threads", OK, f"{head}; {len(workers)} worker candidates by "
                 f"{d.describe()}{note}", scope=TARGET, details=details, data=data)


def _workers_hint(threads: Sequence[Any], main_name: str) -> str:
    """Suggest --workers for the largest group of same-named threads (a runtime built
    with Builder::thread_name names all its workers alike, without a number)."""
    counts: dict[str, int] = {}
    for t in threads:
        if t.name != main_name:
            counts[t.name] = counts.get(t.name, 0) + 1
    best = max(counts.items(), key=lambda kv: kv[1], default=("", 0))
    if best[1] >= 2:
        return f"if the {best[1]} {best[0]!r} threads are the workers: --workers {best[0]}"
    return ("pass --workers PREFIX if the runtime names its threads; a current_thread "
            "runtime's worker is the thread that calls block_on")


def _group_names(threads: Sequence[Any]) -> list[str]:
    groups: dict[str, list[int]] = {}
    for t in threads:
        groups.setdefault(t.name, []).append(t.tid)
    out = []
    for name, tids in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        shown = " ".join(str(t) for t in tids[:MAX_LISTED])
        more = f" +{len(tids) - MAX_LISTED}" if len(tids) > MAX_LISTED else ""
        out.append(f"{name}: {shown}{more}")
    return out[:MAX_LISTED]


# -- Tokio ---------------------------------------------------------------------------------

def symbol_strings(elf: ElfFile) -> list[bytes]:
    """The string tables of .symtab and .dynsym (names as raw, mangled bytes)."""
    out = []
    for sec in elf.sections:
        if sec.type in (SHT_SYMTAB, SHT_DYNSYM) and 0 < sec.link < len(elf.sections):
            try:
                out.append(elf.section_data(elf.sections[sec.link]))
            except HudError:
                continue
    return out


def tokio_evidence(elves: Sequence[ElfFile]) -> dict:
    """What says Tokio is in these files (a binary and its debug file): tokio::runtime
    symbols and the runtime flavours they name, and the Tokio version from paths like
    …/tokio-1.24.2/src/… in DWARF or, in a stripped binary, in .rodata (the file names
    of panic locations)."""
    count = 0
    flavors: list[str] = []
    has_symtab = False
    for elf in elves:
        has_symtab = has_symtab or any(s.type == SHT_SYMTAB and s.size > 24
                                       for s in elf.sections)
        for tab in symbol_strings(elf):
            count += tab.count(TOKIO_MARK)
            for mark, name in FLAVORS:
                if name not in flavors and mark in tab and TOKIO_MARK in tab:
                    flavors.append(name)
    version, source = None, None
    for names, what in _VERSION_PLACES:
        for elf in elves:
            version = _search(elf, names, _TOKIO_VERSION)
            if version:
                source = what
                break
        if version:
            break
    return {"symbols": count, "flavors": flavors, "version": version,
            "version_from": source, "has_symtab": has_symtab}


def _search(elf: ElfFile, names: Sequence[str], pattern: re.Pattern) -> Optional[str]:
    for name in names:
        sec = elf.section_header(name)
        if sec is None or sec.size > _MAX_VERSION_SCAN:
            continue
        try:
            got = elf.section(name)
        except HudError:
            continue
        m = pattern.search(got[1]) if got else None
        if m:
            return m.group(1).decode()
    return None


def check_tokio(info: TargetInfo) -> Check:
    if info.elf is None:
        return Check("tokio", SKIP, "not checked: the executable cannot be read",
                     scope=TARGET)
    elves = [e for e in (info.debug, info.elf) if e is not None]
    ev = tokio_evidence(elves)
    where = os.path.basename(info.exe)
    if not ev["symbols"]:
        lib = _tokio_in_libraries(info)
        if lib:
            ev = dict(lib[1], module=lib[0])
            where = os.path.basename(lib[0])
    data = dict(ev)
    if ev["symbols"]:
        what = "Tokio" + (f" {ev['version']}" if ev["version"] else "")
        flav = f", {'/'.join(ev['flavors'])}" if ev["flavors"] else ""
        return Check("tokio", OK, f"{what} in {where} ({ev['symbols']} tokio::runtime "
                     f"symbols{flav})", scope=TARGET, data=data)
    if ev["version"]:
        what = "DWARF paths" if ev["version_from"] == "dwarf" else \
            "panic locations in .rodata"
        return Check("tokio", OK, f"Tokio {ev['version']} in {where} (from {what}; no "
                     "symbols)", scope=TARGET, data=data)
    if not ev["has_symtab"]:
        return Check("tokio", WARN, f"cannot tell: {where} has no symbols (stripped)",
                     "pass its debug file with --debug-file, or check it is a Tokio program",
                     TARGET, data=data)
    return Check("tokio", WARN, f"no tokio::runtime symbols in {where}: not a Tokio "
                 "program?", "check the pid: hud explains Tokio workers only", TARGET,
                 data=data)


def _tokio_in_libraries(info: TargetInfo) -> Optional[tuple[str, dict]]:
    """A shared object holding Tokio (a Rust extension of a Python process, say)."""
    from hud.symbolize.normalize import KIND_ELF
    deadline = time.monotonic() + BUDGET_S
    for m in _by_interest(info):
        if m.kind != KIND_ELF or not m.open_path or m is info.main:
            continue
        if time.monotonic() > deadline:
            break
        try:
            with ElfFile.open(m.open_path) as elf:
                ev = tokio_evidence([elf])
        except HudError:
            continue
        if ev["symbols"]:
            return m.file_path, ev
    return None


# -- debug info ----------------------------------------------------------------------------

def _dwarf_sections(elf: ElfFile) -> list[str]:
    return [s for s in (".debug_info", ".debug_line") if elf.has_section(s)]


def find_debug(info: TargetInfo, debug_dirs: Sequence[str] = (),
               debug_files: Sequence[str] = ()) -> None:
    """Look for a separate debug file of the executable, as the symbolizer would."""
    from hud.symbolize.debugfile import find_debug_file
    if info.elf is None:
        return
    if info.elf.has_section(".debug_info"):
        _find_alt(info, info.elf, info.root + info.exe, debug_dirs)
    try:
        got, where = find_debug_file(info.elf, info.exe, info.root, debug_dirs, debug_files)
    except HudError as e:
        info.extra["debug_error"] = e.message
        return
    if got is None:
        info.extra["debug_note"] = where
        from hud.symbolize.minidebug import symbol_files
        # Fedora-family builds keep the symbols .dynsym lacks in .gnu_debugdata: the
        # symbolizer's own choice, a MiniDebugInfo put in front of the binary.
        files, why = symbol_files([info.elf], info.elf)
        if files[0] is not info.elf:
            info.debug, info.debug_via = files[0], "minidebuginfo"
        elif why:
            info.extra["debug_note"] = why
        return
    info.debug = got
    info.debug_path = where
    _find_alt(info, got, where, debug_dirs)
    if where in debug_files:
        info.debug_via = "--debug-file"
    elif "/.build-id/" in where:
        info.debug_via = "build-id"
    else:
        info.debug_via = "debuglink"


def _find_alt(info: TargetInfo, holder: ElfFile, path: str,
              debug_dirs: Sequence[str]) -> None:
    """Whether the DWARF's dwz supplementary file (if it needs one) is there."""
    from hud.symbolize.altfile import alt_link, find_alt_file
    if alt_link(holder) is None:
        return
    try:
        alt, where = find_alt_file(holder, path, info.root, debug_dirs)
    except HudError as e:
        alt, where = None, e.message
    if alt is not None:
        alt.close()
        info.extra["dwz_file"] = where
    else:
        info.extra["dwz_missing"] = where


def _split_dwarf(info: TargetInfo, data: dict) -> Optional[Check]:
    """For a binary whose units are split DWARF skeletons: where their DIEs are."""
    from hud.symbolize.splitdwarf import survey
    skeletons, missing, dwp = survey(info.elf, info.root + info.exe, info.root)
    if not skeletons:
        return None
    data.update(split_units=skeletons, dwo_missing=missing, dwp=dwp or None)
    name = os.path.basename(info.exe)
    if dwp:
        return Check("debug_info", OK, f"split DWARF in {name}, DIEs in "
                     f"{os.path.basename(dwp)}", scope=TARGET, data=data)
    if not missing:
        return Check("debug_info", OK, f"split DWARF in {name}, DIEs in {skeletons} .dwo "
                     "file(s)", scope=TARGET, data=data)
    return Check("debug_info", WARN, f"split DWARF: {missing} of {skeletons} .dwo files "
                 "missing: no inline frames there", "keep the .dwo files where the build "
                 "left them or beside the binary, or pack them: llvm-dwp -e BINARY -o "
                 "BINARY.dwp", TARGET, data=data)


def _shown(path: str, info: TargetInfo) -> str:
    # /proc/PID/root/x is /x inside the target's filesystem: say so, shorter.
    return path[len(info.root):] if path.startswith(info.root + "/") else path


def check_debug_info(info: TargetInfo, debuginfod_urls: Sequence[str] = ()) -> Check:
    if info.elf is None:
        return Check("debug_info", SKIP, "not checked: the executable cannot be read",
                     scope=TARGET)
    name = os.path.basename(info.exe)
    inside = _dwarf_sections(info.elf)
    data: dict[str, Any] = {"in_binary": inside, "build_id": info.elf.build_id,
                            "debuglink": info.elf.debuglink[0] if info.elf.debuglink
                            else None}
    for key in ("dwz_file", "dwz_missing"):
        if key in info.extra:
            data[key] = info.extra[key]
    missing = info.extra.get("dwz_missing")
    if missing and (".debug_info" in inside or info.debug is not None):
        return Check("debug_info", WARN, f"{missing}", _DWZ_HINT, TARGET, data=data)
    if ".debug_info" in inside and ".debug_line" in inside:
        split = _split_dwarf(info, data)
        if split:
            return split
        return Check("debug_info", OK, f"DWARF in {name}: functions, inlines and "
                     "file:line", scope=TARGET, data=data)
    if info.debug is not None and info.debug_via != "minidebuginfo":
        sep = _dwarf_sections(info.debug)
        data.update(debug_file=info.debug_path, via=info.debug_via, in_debug_file=sep)
        shown = _shown(info.debug_path, info)
        if ".debug_line" in sep:
            return Check("debug_info", OK, f"separate debug file via {info.debug_via}: "
                         f"{shown}", scope=TARGET, data=data)
        # A local debug file was found: a profile asks no debuginfod server.
        return Check("debug_info", WARN, f"debug file {shown} has no line table: "
                     "functions only, no file:line", DEBUG_HINT, TARGET, data=data)
    # No DWARF and no local debug file: a profile would ask debuginfod servers; so does
    # this (seconds at most; reads /etc/debuginfod: not for the OK answers above).
    advice = advise(info.elf.build_id, debuginfod_urls)
    if advice.answers:
        data["debuginfod"] = advice.answers
    if advice.fetched_from:
        return Check("debug_info", OK, advice.summary(name), scope=TARGET, data=data)
    hint = advice.hint
    if info.debug_via == "minidebuginfo" and info.debug is not None:
        data.update(via="minidebuginfo", symbols=sum(
            s.size // (24 if info.debug.is64 else 16) for s in info.debug.sections
            if s.type == SHT_SYMTAB))
        return Check("debug_info", WARN, f"{name} is stripped: function names from its "
                     "MiniDebugInfo (.gnu_debugdata), no file:line", hint, TARGET,
                     data=data)
    has_symtab = any(s.type == SHT_SYMTAB for s in info.elf.sections)
    data["symtab"] = has_symtab
    data["note"] = info.extra.get("debug_note") or info.extra.get("debug_error", "")
    if has_symtab:
        return Check("debug_info", WARN, f"no DWARF for {name}: function names only, no "
                     "file:line", hint, TARGET, data=data)
    return Check("debug_info", WARN, f"{name} is stripped and no debug file was found: "
                 "Rust frames will have no names, and idle workers may show as blocked",
                 hint, TARGET, data=data)


_DWZ_HINT = ("install the debug package's common dwz file (it names the path), or pass "
             "--debug-dir DIR holding .dwz/")


# -- unwinding -----------------------------------------------------------------------------

_HOW = {"cfi": "CFI", "fp": "frame pointers", "both": "CFI + frame pointers",
        "none": "nothing: stack scans only (x86_64), else stacks stop here"}


_SYSTEM_DIRS = ("/lib/", "/lib64/", "/usr/lib/", "/usr/lib64/", "/usr/libexec/")


def _by_interest(info: TargetInfo) -> list:
    """Code modules, the executable first, then the program's own libraries, then the
    distribution's (libc and friends are CFI-only and rarely the question)."""
    return sorted(info.code, key=lambda m: (m is not info.main,
                                            m.file_path.startswith(_SYSTEM_DIRS)))


def module_strategies(info: TargetInfo) -> tuple[list[tuple[Any, Any, bool]], int]:
    """(module, ModuleStrategy, has .eh_frame) of the code modules, most interesting
    first, and how many were left out when the time budget ran out (a process with
    hundreds of libraries must not keep an SRE waiting)."""
    from hud.symbolize.normalize import KIND_ELF
    from hud.unwind.sources import ModuleInfo, opener_for
    out = []
    todo = [m for m in _by_interest(info) if m.kind == KIND_ELF and m.open_path]
    deadline = time.monotonic() + BUDGET_S
    for i, m in enumerate(todo):
        if i and time.monotonic() > deadline:
            return out, len(todo) - i
        try:
            with ElfFile.open(m.open_path) as elf:
                if not any(s.executable for s in elf.load_segments):
                    continue
                eh = elf.has_section(".eh_frame")
        except HudError:
            continue
        strategy = ModuleInfo(m, opener_for(m, info.maps)).strategy()
        out.append((m, strategy, eh))
    return out, 0


def _strategy_text(s: Any, eh: bool) -> str:
    frac = "" if s.fp_fraction is None else f", {s.fp_fraction:.0%} FP prologues"
    return f"{s.strategy} ({'.eh_frame' if eh else 'no .eh_frame'}{frac})"


def _by_strategy(rows: list) -> str:
    """"3 cfi (a, b, c); 12 cfi" style counts per strategy, naming the modules of a
    strategy when they are few (the odd ones out are what a reader looks for)."""
    groups: dict[str, list[str]] = {}
    for m, s, _ in rows:
        groups.setdefault(s.strategy, []).append(os.path.basename(m.file_path))
    parts = []
    for strategy, names in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        named = f" ({', '.join(names)})" if len(names) <= 4 else ""
        parts.append(f"{len(names)} {strategy}{named}")
    return "; ".join(parts)


def check_unwind(info: TargetInfo) -> Check:
    rows, left = module_strategies(info)
    if not rows:
        return Check("unwind", SKIP, "not checked: no module of the target can be read",
                     scope=TARGET)
    data = {m.file_path: {"strategy": s.strategy, "eh_frame": eh,
                          "fp_fraction": s.fp_fraction, "scanned": s.scanned}
            for m, s, eh in rows}
    main = next((r for r in rows if r[0] is info.main), rows[0])
    others = [r for r in rows if r is not main]
    details = []
    if others:
        details.append("others: " + _by_strategy(others))
    if left:
        details.append(f"{left} more modules not scanned (time budget)")
        data["not_scanned"] = left
    none = [os.path.basename(m.file_path) for m, s, _ in rows if s.strategy == "none"]
    m, s, eh = main
    summary = f"{os.path.basename(m.file_path)}: {_strategy_text(s, eh)}"
    if none:
        return Check("unwind", WARN, f"{summary}; no CFI and no frame pointers in "
                     f"{', '.join(none)}", "stacks stop in those modules, or on x86_64 cross them "
                     "by stack scans where a symbol or frame size confirms each caller; "
                     "rebuild them with -C force-frame-pointers=yes or keep .eh_frame",
                     TARGET,
                     details=details, data=data)
    return Check("unwind", OK, summary, scope=TARGET, details=details, data=data)


# -- files: containers, deleted and replaced binaries --------------------------------------

def _ns(pid: object, kind: str) -> Optional[int]:
    try:
        return os.stat(f"/proc/{pid}/ns/{kind}").st_ino
    except OSError:
        return None


def check_files(info: TargetInfo, facts: HostFacts) -> Check:
    """Other mount/pid namespace (a container), and whether its files are reachable."""
    from hud.symbolize.normalize import KIND_UNKNOWN
    pid = info.pid
    mnt_other = _ns(pid, "mnt") not in (None, _ns("self", "mnt"))
    nspid = (procfs.status(pid).get("NSpid") or "").split()
    data: dict[str, Any] = {"other_mount_ns": mnt_other, "nspid": nspid}
    where = "in another mount namespace (a container)" if mnt_other else \
        "in our mount namespace"
    if len(nspid) > 1:
        where += f", pid {nspid[-1]} inside its pid namespace"
    files = info.code
    unread = [m for m in files if m.kind == KIND_UNKNOWN]
    via_mf = [m for m in files if m.open_path.startswith(f"/proc/{pid}/map_files/")]
    via_root = [m for m in files if m.open_path.startswith(f"/proc/{pid}/root/")]
    data.update(modules=len(files), map_files=len(via_mf), root=len(via_root),
                unreadable={m.file_path: m.reason for m in unread})
    if unread:
        names = ", ".join(os.path.basename(m.file_path) for m in unread[:4])
        mf = "" if facts.can("map_files") else \
            f" (map_files needs {', '.join(facts.missing('map_files'))})"
        return Check("files", WARN, f"{where}; {len(unread)} of {len(files)} code files "
                     f"unreadable: {names}{mf}", "their frames will have no names; run "
                     "hud as root on the host", TARGET, data=data)
    how = "map_files" if not via_root else \
        "/proc/PID/root" if not via_mf else "map_files and /proc/PID/root"
    return Check("files", OK, f"{where}; {len(files)} code files read via {how}",
                 scope=TARGET, data=data)


def check_binary(info: TargetInfo) -> Check:
    """The executable deleted or replaced on disk since the process started."""
    from hud.symbolize.normalize import KIND_ELF
    data: dict[str, Any] = {"exe": info.exe, "deleted": info.deleted}
    gone_libs = [m.file_path for m in info.code if m.deleted and m is not info.main]
    data["deleted_libraries"] = gone_libs
    libs = ""
    if gone_libs:
        libs = f"; {len(gone_libs)} librar{'ies' if len(gone_libs) > 1 else 'y'} " \
               "deleted too (upgraded)"
    readable = info.main is not None and info.main.kind == KIND_ELF
    if not info.deleted:
        if gone_libs:
            return Check("binary", OK, f"{os.path.basename(info.exe)} unchanged{libs}; "
                         "the mapped copies are read", scope=TARGET, data=data)
        return Check("binary", OK, f"{os.path.basename(info.exe)} on disk is the file "
                     "that runs", scope=TARGET, data=data)
    now = _root_file(info)
    data["replaced"] = now is not None
    if now is not None:
        same = info.elf is not None and now == info.elf.build_id and now is not None
        data["same_build"] = same
        what = "replaced since start" + (" (same build-id)" if same else
                                         " by a different build")
    else:
        what = "deleted since start"
    if readable:
        return Check("binary", OK if now is None or data.get("same_build") else WARN,
                     f"{what}; hud reads the running copy via map_files{libs}",
                     "" if data.get("same_build") or now is None else
                     "do not pass the new file as --target/--debug-file: its symbols "
                     "would be wrong", TARGET, data=data)
    return Check("binary", WARN, f"{what}, and the running copy is unreadable{libs}",
                 "run hud as root (map_files needs CAP_SYS_ADMIN); or pass the "
                 "original build's debug file with --debug-file", TARGET, data=data)


def _root_file(info: TargetInfo) -> Optional[str]:
    """The build-id ("" if none) of the file now at the executable's path, or None."""
    path = info.root + info.exe
    if not os.path.isfile(path):
        return None
    try:
        with ElfFile.open(path) as elf:
            return elf.build_id or ""
    except HudError:
        return ""


def target_checks(query: Optional[str], pid: Optional[int], facts: HostFacts, *,
                  workers: Optional[str] = None, debug_dirs: Sequence[str] = (),
                  debug_files: Sequence[str] = (), debuginfod_urls: Sequence[str] = ()
                  ) -> tuple[list[Check], dict, bool]:
    """(checks, target description, found) for a process name or pid; `debuginfod_urls`
    as `hud --debuginfod` takes them (DEBUGINFOD_URLS when none)."""
    found, tpid = find_target(query, pid)
    desc: dict[str, Any] = {"query": query} if query else {}
    if tpid is None:
        return [found], {**desc, **found.data}, False
    desc.update(pid=tpid, comm=procfs.comm(tpid) or "", exe=found.data.get("exe"))
    checks = [found]
    if found.status == FAIL:
        return checks, desc, True
    access = check_access(TargetInfo(tpid), facts)
    checks.append(access)
    info = TargetInfo(tpid)
    try:
        if access.status != FAIL:
            load_modules(info)
            find_debug(info, debug_dirs, debug_files)
        checks.append(check_threads(info, workers))
        if access.status == FAIL:
            for name in ("tokio", "debug_info", "unwind", "files", "binary"):
                checks.append(Check(name, SKIP, "not checked: /proc/PID/maps unreadable",
                                    scope=TARGET))
        else:
            checks += [check_tokio(info), check_debug_info(info, debuginfod_urls),
                       check_unwind(info),
                       check_files(info, facts), check_binary(info)]
    finally:
        info.close()
    return checks, desc, True
