"""/proc readers: processes, threads, names, memory maps. Contents are treated as hostile."""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Optional

PROC = "/proc"


@dataclass(frozen=True)
class MapEntry:
    """One line of /proc/PID/maps."""

    start: int
    end: int
    perms: str        # e.g. "r-xp"
    offset: int       # file offset of `start`
    dev: str
    inode: int
    path: str         # "" for anonymous; "[vdso]", "[stack]", "/usr/lib/... (deleted)" ...

    @property
    def executable(self) -> bool:
        return "x" in self.perms

    @property
    def deleted(self) -> bool:
        return self.path.endswith(" (deleted)")

    @property
    def file_backed(self) -> bool:
        return self.inode != 0 and self.path.startswith("/")


def parse_maps(text: str) -> list[MapEntry]:
    """Parse the text of a maps file; malformed lines are skipped, never fatal."""
    out = []
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 5:
            continue
        try:
            lo, hi = parts[0].split("-", 1)
            start, end = int(lo, 16), int(hi, 16)
            offset = int(parts[2], 16)
            inode = int(parts[4])
        except ValueError:
            continue
        if end <= start:
            continue
        out.append(MapEntry(start, end, parts[1], offset, parts[3], inode,
                            parts[5].strip() if len(parts) > 5 else ""))
    return out


def _read(path: str, limit: int = 1 << 24) -> Optional[bytes]:
    # Read in page-sized chunks: /proc/sys handlers allocate the caller's whole count and
    # fail with ENOMEM on a large one, and seq_file reads are per page anyway.
    try:
        with open(path, "rb", buffering=0) as f:
            parts = []
            total = 0
            while total < limit:
                chunk = f.read(min(65536, limit - total))
                if not chunk:
                    break
                parts.append(chunk)
                total += len(chunk)
            return b"".join(parts)
    except OSError:
        return None


def read_text(path: str) -> Optional[str]:
    """A /proc (or sysfs) file as text, or None when it cannot be read."""
    data = _read(path)
    return None if data is None else data.decode("utf-8", "replace")


def perf_max_sample_rate() -> Optional[int]:
    """kernel.perf_event_max_sample_rate (Hz; the kernel lowers it when sampling
    interrupts run long), or None when unreadable."""
    text = read_text("/proc/sys/kernel/perf_event_max_sample_rate")
    return int(text) if text and text.strip().isdigit() else None


def read_maps(pid: int) -> list[MapEntry]:
    """The memory maps of `pid` ([] when the process is gone or unreadable)."""
    text = read_text(f"{PROC}/{pid}/maps")
    return parse_maps(text) if text else []


def list_pids() -> list[int]:
    """All process ids visible in /proc."""
    try:
        return sorted(int(n) for n in os.listdir(PROC) if n.isdigit())
    except OSError:
        return []


def list_tids(pid: int) -> list[int]:
    """Thread ids of `pid` ([] when it is gone)."""
    try:
        return sorted(int(n) for n in os.listdir(f"{PROC}/{pid}/task") if n.isdigit())
    except OSError:
        return []


def comm(pid: int, tid: Optional[int] = None) -> Optional[str]:
    """The 15-character name of a process or thread, or None when it is gone."""
    path = f"{PROC}/{pid}/comm" if tid is None else f"{PROC}/{pid}/task/{tid}/comm"
    data = _read(path, 64)
    return None if data is None else data.decode("utf-8", "replace").rstrip("\n")


def cmdline(pid: int) -> list[str]:
    data = _read(f"{PROC}/{pid}/cmdline", 1 << 16)
    if not data:
        return []
    return [a.decode("utf-8", "replace") for a in data.rstrip(b"\0").split(b"\0")]


def exe(pid: int) -> Optional[str]:
    """Path of the executable as the target sees it (may end in ' (deleted)')."""
    try:
        return os.readlink(f"{PROC}/{pid}/exe")
    except OSError:
        return None


def status(pid: int, tid: Optional[int] = None) -> dict[str, str]:
    """/proc/PID/status as a dict of raw strings ({} when gone)."""
    path = f"{PROC}/{pid}/status" if tid is None else f"{PROC}/{pid}/task/{tid}/status"
    text = read_text(path) or ""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def thread_state(pid: int, tid: int) -> Optional[str]:
    """One-letter scheduler state (R, S, D, ...) of a thread, from its stat file."""
    data = _read(f"{PROC}/{pid}/task/{tid}/stat", 4096)
    if not data:
        return None
    # comm may contain spaces and parentheses: the state follows the *last* ')'.
    close = data.rfind(b")")
    if close < 0 or close + 2 >= len(data):
        return None
    return chr(data[close + 2])


def cpu_times(pid: int, tid: Optional[int] = None) -> Optional[tuple[int, int]]:
    """(utime, stime) in clock ticks from the stat file, or None."""
    path = f"{PROC}/{pid}/stat" if tid is None else f"{PROC}/{pid}/task/{tid}/stat"
    data = _read(path, 4096)
    if not data:
        return None
    close = data.rfind(b")")
    fields = data[close + 2:].split()
    try:
        return int(fields[11]), int(fields[12])
    except (IndexError, ValueError):
        return None


def alive(pid: int) -> bool:
    return os.path.exists(f"{PROC}/{pid}/stat")


def find_pids_by_name(name: str) -> list[int]:
    """Processes whose comm, exe basename or argv[0] basename equals `name`."""
    me = os.getpid()
    found = []
    for pid in list_pids():
        if pid == me:
            continue
        names = set()
        c = comm(pid)
        if c:
            names.add(c)
        e = exe(pid)
        if e:
            names.add(os.path.basename(e.removesuffix(" (deleted)")))
        argv = cmdline(pid)
        if argv:
            names.add(os.path.basename(argv[0]))
        # comm is cut to 15 chars: a longer name matches its prefix there.
        if name in names or (len(name) > 15 and c == name[:15]):
            found.append(pid)
    return found


def root_path(pid: int, path: str) -> str:
    """`path` as seen from the target's root (works across mount namespaces)."""
    return f"{PROC}/{pid}/root{path}"


def map_files_path(pid: int, entry: MapEntry) -> str:
    """The /proc/PID/map_files link of a mapping: opens the very file that is mapped,
    also when it was deleted or replaced, or lives in another mount namespace."""
    return f"{PROC}/{pid}/map_files/{entry.start:x}-{entry.end:x}"


def iter_threads(pid: int) -> Iterator[tuple[int, str]]:
    """(tid, comm) of each live thread of `pid`."""
    for tid in list_tids(pid):
        name = comm(pid, tid)
        if name is not None:
            yield tid, name


def possible_cpus() -> list[int]:
    """CPUs in /sys/devices/system/cpu/possible (per-CPU map values are sized by these)."""
    return _cpu_list("/sys/devices/system/cpu/possible")


def online_cpus() -> list[int]:
    return _cpu_list("/sys/devices/system/cpu/online")


def _cpu_list(path: str) -> list[int]:
    text = (read_text(path) or "0").strip()
    cpus = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        try:
            cpus.extend(range(int(lo), int(hi or lo) + 1))
        except ValueError:
            continue
    return cpus or [0]


def syscall_site(pid: int, tid: int) -> Optional[tuple[int, int, int]]:
    """(syscall number, user sp, user pc) of a thread blocked in a syscall, from
    /proc/PID/task/TID/syscall; None when it is running, gone, or not in a syscall."""
    data = _read(f"{PROC}/{pid}/task/{tid}/syscall", 512)
    if not data:
        return None
    fields = data.split()
    # "nr a0 a1 a2 a3 a4 a5 sp pc" while blocked; "running" or "-1 sp pc" otherwise.
    if len(fields) != 9:
        return None
    try:
        nr = int(fields[0])
        return nr, int(fields[7], 16), int(fields[8], 16)
    except ValueError:
        return None


def read_memory(pid: int, addr: int, size: int) -> bytes:
    """Up to `size` bytes of the target's memory at `addr` (b"" when unreadable).

    /proc/PID/mem reads as root without stopping the target; the caller bounds `size`
    to one mapping, since a read that crosses into an unmapped page fails as a whole.
    """
    if size <= 0 or addr < 0:
        return b""
    try:
        fd = os.open(f"{PROC}/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return b""
    try:
        return os.pread(fd, size, addr)
    except (OSError, OverflowError):
        return b""
    finally:
        os.close(fd)


def read_kallsyms() -> Optional[str]:
    """The text of /proc/kallsyms, or None when it cannot be read."""
    # ~120k lines / ~5 MB on a distribution kernel; 64 MiB leaves room for many modules
    # and BPF programs while still bounding a hostile or runaway file.
    data = _read(f"{PROC}/kallsyms", 64 << 20)
    return None if data is None else data.decode("utf-8", "replace")
