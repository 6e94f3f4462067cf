"""Kernel stack addresses to function names, from the text of /proc/kallsyms."""
from __future__ import annotations

import bisect
import threading
import time
from array import array
from collections.abc import Sequence
from typing import Callable, Optional

from hud.errors import HudError
from hud.linux import procfs
from hud.model import CLASS_KERNEL, Frame
from hud.symbolize.kallsyms_core import TEXT_TYPES, SortedCore

KERNEL = "[kernel]"
HIDDEN = "kernel symbol addresses hidden (kernel.kptr_restrict)"
UNREADABLE = "cannot read /proc/kallsyms"
EMPTY = "no kernel symbols"
NO_SYMBOL = "no kernel symbol"

# %px prints an address in full: 16 hex digits (8 on a 32-bit kernel). Holding to that
# width keeps int() from a hostile million-digit line and from most of the other forms it
# takes ("0x10", "1_0", "-1"); it costs nothing, where a check of each digit would add a
# third to the parse time.
_WIDTHS = frozenset((8, 16))
# kallsyms has no sizes: a symbol runs to the next one. The last symbol of the table, and
# the last of a module (the next belongs to another module or to vmlinux), would otherwise
# own everything above it, such as the gap between vmlinux and the modules, so they are
# given at most this much. No kernel function comes near 1 MiB.
_MAX_TAIL = 1 << 20
_MEMO_MAX = 1 << 16


class KernelSymbols:
    """Kernel text addresses -> function names, from /proc/kallsyms."""

    __slots__ = ("_addrs", "_core", "_memo", "_modnames", "_mods", "_names", "reason")

    def __init__(self, addrs: array, names: list[str], mods: array, modnames: list[str],
                 reason: str, core: Optional[SortedCore] = None) -> None:
        self.reason = reason         # "" when usable; else why every lookup is unknown
        self._core = core            # vmlinux's symbols, looked up in place (or None)
        self._addrs = addrs          # array('Q'), sorted, one entry per distinct address
        self._names = names          # parallel to _addrs
        self._mods = mods            # array('I') of indexes into _modnames
        self._modnames = modnames    # "[kernel]", "[ext4]", "[bpf]" ...
        # (address, return address?) -> its Frame: stacks share most of their kernel
        # frames (schedule, the system call entry), and a lookup in place splits a line.
        self._memo: dict[int, Frame] = {}

    @classmethod
    def unusable(cls, reason: str) -> KernelSymbols:
        """A table that resolves nothing, each frame saying `reason`."""
        return cls(array("Q"), [], array("I"), [KERNEL], reason)

    @classmethod
    def parse(cls, text: str, in_place: bool = True) -> KernelSymbols:
        """Build the table from kallsyms text ("ADDR TYPE NAME[\\t[MODULE]]" lines).

        vmlinux's lines, which the kernel lists first and sorted, are looked up in place
        (hud.symbolize.kallsyms_core); the modules' and BPF programs' lines after them,
        or all lines when they do not have that shape (a vmlinux line among the modules',
        a module inside vmlinux's span, or `in_place` False), are parsed one by one:
        both ways answer alike, which a differential test holds them to. Malformed lines
        are skipped, never fatal. Measured on a 6.18 x86_64 kernel (122k lines, 5.4 MB)
        with CPython 3.11 on an idle 2-CPU VM: 0.04-0.05 s in place (13 MB kept, the
        lines), 0.12-0.2 s parsing each line (11.4 MB kept, mostly the name strings),
        29 MB at the peak either way; reading the file adds 0.06-0.09 s.
        """
        if in_place:
            cut = text.find("\t[")
            cut = len(text) if cut < 0 else text.rfind("\n", 0, cut) + 1
            core = SortedCore.build(text[:cut]) if cut > 0 else None
            if core is not None:
                rest = cls._parse_lines(text[cut:])
                if rest.reason == EMPTY or rest.reason == HIDDEN:
                    rest = cls.unusable("")
                # Two tables answer as one only when the rest is modules' and programs'
                # code outside vmlinux's span (as the kernel lays them out): a vmlinux
                # line after the cut, or a module inside the span, would end a vmlinux
                # function early, as the line-by-line parse has it.
                lo, hi = core.span()
                if 0 not in rest._mods and not any(lo <= a < hi + _MAX_TAIL
                                                   for a in rest._addrs):
                    rest._core = core
                    return rest
        return cls._parse_lines(text)

    @classmethod
    def _parse_lines(cls, text: str) -> KernelSymbols:
        # One pass of split() per line is the fastest shape measured: a regex findall
        # over the whole text, stricter, took a fifth longer and half again the peak memory.
        addrs: list[int] = []
        names: list[str] = []
        mods: list[int] = []
        modindex = {KERNEL: 0}     # one string per module, shared by its symbols
        zeros = 0
        for line in text.splitlines():
            parts = line.split()
            n = len(parts)
            if n < 3 or n > 4 or parts[1] not in TEXT_TYPES or len(parts[0]) not in _WIDTHS:
                continue
            try:
                addr = int(parts[0], 16)
            except ValueError:
                continue
            if addr <= 0:
                # All zeros is kptr_restrict; a lone zero is no place for kernel text.
                zeros += addr == 0
                continue
            mod = 0
            if n == 4:
                # "\t[ext4]": a module; "\t[bpf]": a BPF program.
                tag = parts[3]
                if len(tag) < 3 or tag[0] != "[" or tag[-1] != "]":
                    continue
                mod = modindex.setdefault(tag, len(modindex))
            addrs.append(addr)
            names.append(parts[2])
            mods.append(mod)
        if not addrs:
            return cls.unusable(HIDDEN if zeros else EMPTY)
        # Modules and BPF programs follow vmlinux in file order, not in address order.
        # The sort is stable, so symbols at one address keep their file order.
        order = sorted(range(len(addrs)), key=addrs.__getitem__)
        ordered = [addrs[i] for i in order]
        # Aliases (one address, several names: __do_sys_sync, __ia32_sys_sync,
        # __x64_sys_sync) keep the last in file order, the name perf shows, so hud's
        # kernel frames read the same as perf's.
        keep = [i for i, a, b in zip(order, ordered, ordered[1:]) if a != b]
        keep.append(order[-1])
        out_addrs = array("Q", [addrs[i] for i in keep])
        out_names = [names[i] for i in keep]
        out_mods = array("I", [mods[i] for i in keep])
        return cls(out_addrs, out_names, out_mods, list(modindex), "")

    def _entry(self, pc: int) -> Optional[tuple[int, str, str]]:
        """(start, name, module) of the text symbol holding `pc`, or None."""
        core = self._core
        best = None
        lo = -1
        if core is not None:
            got = core.entry(pc, _MAX_TAIL)
            if got is not None:
                best = (got[0], got[1], KERNEL)
            lo = core.span()[0]
        addrs = self._addrs
        i = bisect.bisect_right(addrs, pc) - 1
        if i < 0 or (best is not None and addrs[i] < best[0]):
            return best
        start = addrs[i]
        if start < lo <= pc:
            return best      # vmlinux's functions lie between: the symbol ends before
        nxt = addrs[i + 1] if i + 1 < len(addrs) else None
        # The last of its module, or the last before vmlinux's own (modules are kept
        # outside vmlinux's span, see parse): it gets at most _MAX_TAIL.
        last = nxt is None or self._mods[i + 1] != self._mods[i] or start < lo <= nxt
        if last and pc - start >= _MAX_TAIL:
            return best
        return start, self._names[i], self._modnames[self._mods[i]]

    def frame(self, address: int, return_address: bool = False) -> Frame:
        """The frame of one kernel address; a return address is looked up at address - 1,
        inside the call, since a call that ends a function returns past its end."""
        key = address << 1 | bool(return_address)
        got = self._memo.get(key)
        if got is not None:
            return got
        if self.reason:
            got = Frame(address=address, module=KERNEL, cls=CLASS_KERNEL, reason=self.reason)
        else:
            entry = self._entry(address - 1 if return_address else address)
            if entry is None:
                got = Frame(address=address, module=KERNEL, cls=CLASS_KERNEL,
                            reason=NO_SYMBOL)
            else:
                got = Frame(address=address, function=entry[1], module=entry[2],
                            cls=CLASS_KERNEL)
        if len(self._memo) >= _MEMO_MAX:
            self._memo.clear()
        self._memo[key] = got
        return got

    def frames(self, ips: Sequence[int]) -> tuple[Frame, ...]:
        """Innermost first: the first ip is where the thread is, the others are return
        addresses (looked up at ip - 1)."""
        return tuple(self.frame(ip, n > 0) for n, ip in enumerate(ips))

    def __len__(self) -> int:
        """How many distinct addresses have a function name."""
        return len(self._addrs) + (self._core.count() if self._core is not None else 0)


# A re-read costs ~0.15 s of CPU (read and parse); looking for a change, microseconds.
# A table is kept at least KEEP_FOR seconds, whatever changes: a host where programs come
# and go all the time (bpftrace runs, systemd's per-unit cgroup programs) costs hud at
# most ~0.5% of a CPU in re-reads.
CHECK_EVERY = 5.0     # seconds between looks at /proc/modules and the BPF program ids
KEEP_FOR = 30.0


def modules_fingerprint(text: Optional[str]) -> Optional[tuple]:
    """What identifies the loaded modules in /proc/modules text: (name, size, address)
    per line. The use counts and dependants columns move all the time and name no code."""
    if text is None:
        return None
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            out.append((parts[0], parts[1], parts[5] if len(parts) > 5 else ""))
    return tuple(out)


def _host_fingerprint() -> tuple:
    """(modules, BPF program ids): what changes when kernel code comes or goes. Either is
    None when it cannot be seen (no module support, bpf() refused)."""
    # Imported here: ctypes and libc are not needed to name kernel addresses.
    from hud.linux import bpf
    try:
        progs: Optional[tuple] = tuple(bpf.prog_ids())
    except (OSError, HudError):
        progs = None
    return modules_fingerprint(procfs.read_text(f"{procfs.PROC}/modules")), progs


class SharedKernelSymbols:
    """The host's table, read on first use and read again when kernel code came or went.

    Modules and BPF programs loaded after a read are not in the table: their addresses
    would be unnamed, or worse, named after the last function laid out before them (a
    new BPF program lands right after the others in the JIT's shared pages). So
    `refresh()`, called as stacks are resolved, looks every CHECK_EVERY seconds at the
    loaded modules and BPF program ids and re-reads when they changed, as it does for
    an address no symbol names; a table is kept at least KEEP_FOR seconds. `generation`
    counts the tables read, so callers know when frames they kept may be stale.
    """

    def __init__(self, read: Callable[[], Optional[str]] = procfs.read_kallsyms,
                 fingerprint: Callable[[], object] = _host_fingerprint,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._read = read
        self._fingerprint = fingerprint
        self._clock = clock
        self._lock = threading.Lock()
        self._table: Optional[KernelSymbols] = None
        self._seen: object = None         # the fingerprint that went with the table
        self._read_at = self._checked_at = 0.0
        self.generation = 0

    def table(self) -> KernelSymbols:
        """The current table (read now if never read)."""
        with self._lock:
            if self._table is None:
                self._load()
            return self._table  # type: ignore[return-value]

    def refresh(self, missed: bool = False) -> bool:
        """Re-read the table if kernel code came or went (looked at no more often than
        every CHECK_EVERY seconds) or, with `missed`, because an address had no symbol;
        either only once the table is KEEP_FOR seconds old. True when it was replaced."""
        now = self._clock()
        if self._table is not None and (now - self._read_at < KEEP_FOR or (
                not missed and now - self._checked_at < CHECK_EVERY)):
            return False     # the common case: no lock, no system call
        with self._lock:
            if self._table is not None:
                if now - self._read_at < KEEP_FOR:
                    return False     # another thread read it meanwhile
                if not missed:
                    if now - self._checked_at < CHECK_EVERY:
                        return False
                    self._checked_at = now
                    if self._fingerprint() == self._seen:
                        return False
            self._load()
            return True

    def _load(self) -> None:
        # The fingerprint first: code loaded while the file is read shows up as a change
        # at the next look, never as a table that seems to include it.
        self._seen = self._fingerprint()
        text = self._read()
        self._table = (KernelSymbols.unusable(UNREADABLE) if text is None
                       else KernelSymbols.parse(text))
        self._read_at = self._checked_at = self._clock()
        self.generation += 1


_shared = SharedKernelSymbols()


def shared_kernel_symbols() -> SharedKernelSymbols:
    """The process-wide SharedKernelSymbols."""
    return _shared


def kernel_symbols() -> KernelSymbols:
    """The host's current table, read on first use and shared by the process."""
    return _shared.table()
