"""The public unwinder: captured regs + stack copy -> instruction pointers, innermost first.

CFI first, frame by frame across modules; where a module has no CFI for a pc but keeps
frame pointers (decided by its prologue scan), one frame-pointer step; on x86_64 code
with neither (musl's libc), a stack scan for the return address into its caller
(hud.unwind.scan); where the walk still stops early, the kernel's own FP chain
(StackCapture.fp_ips) is appended from the last frame both agree on, as far as it runs
through modules that keep frame pointers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from hud.model import StackCapture
from hud.symbolize.symtab import SymbolTable
from hud.unwind.arch import ARCHES, Arch
from hud.unwind.dwarf import cfi_step, value
from hud.unwind.fp import END, MAX_DEPTH, NO_PROGRESS, fp_step, fp_walk
from hud.unwind.memory import RecordingMemory, StackMemory, same_reads
from hud.unwind.prologue import ModuleStrategy
from hud.unwind.scan import Code, scan_step
from hud.unwind.sources import ModuleInfo, opener_for

NO_MODULE = "no_module"        # the pc is not in any mapped module (JIT, garbage)
NO_CFI = "no_cfi"              # the module has no CFI for the pc and no frame pointers
NO_REGS = "no_regs"            # the capture has no registers or no stack copy
UNSUPPORTED_ARCH = "unsupported_arch"
REASONS = (END, MAX_DEPTH, NO_PROGRESS, NO_MODULE, NO_CFI, NO_REGS, UNSUPPORTED_ARCH,
           "stack_exhausted", "unknown_register", "bad_expression")

METHOD_CFI = "cfi"
METHOD_FP = "fp"
METHOD_MIXED = "cfi+fp"
METHOD_SCAN = "cfi+scan"     # a stack scan found at least one return address
_USED_FP, _USED_SCAN = 1, 2
_METHODS = {0: METHOD_CFI, _USED_FP: METHOD_MIXED, _USED_SCAN: METHOD_SCAN,
            _USED_FP | _USED_SCAN: "cfi+fp+scan"}
METHOD_NONE = "none"

_CACHE_LIMIT = 1 << 19
_MEMO_LIMIT = 8192


@dataclass(frozen=True)
class UnwindResult:
    """ips innermost first: ips[0] is the exact pc, the rest are return addresses."""

    ips: tuple[int, ...]
    reason: str    # why the walk stopped: "end" is a complete stack
    method: str    # "cfi" | "fp" | "cfi+fp" | "cfi+scan" | "cfi+fp+scan" | "none"
    # The stack pointer in each frame the walk itself recovered (sps[0] is the captured
    # sp; sps[k] is frame k-1's CFA), so frame k's own stack bytes are [sps[k], sps[k+1]).
    # Frames spliced from the kernel's FP chain have none.
    sps: tuple[int, ...] = field(default=(), compare=False)

    @property
    def complete(self) -> bool:
        return self.reason == END


class Unwinder:
    """Unwinds captures of one process; `maps` is a hud.symbolize ProcessMaps (or any object
    with `find(addr) -> Module` and, for the vdso, `read_vdso(module) -> bytes`)."""

    def __init__(self, maps: Any, debug_file_for: Optional[Callable[[Any], Optional[str]]] = None,
                 use_fp: bool = True,
                 symbols_for: Optional[Callable[[Any], Optional[SymbolTable]]] = None) -> None:
        # symbols_for(module): its function symbols when the caller has them read already
        # (stack scans need them); otherwise a module's are read on its first scan.
        self.maps = maps
        self.use_fp = use_fp
        self._debug_file_for = debug_file_for
        self._symbols_for = symbols_for
        self._infos: dict[tuple, Optional[ModuleInfo]] = {}
        self._pc: dict[int, tuple] = {}
        self._memo: dict = {}
        self.memo_hits = 0
        self.scans = 0             # frames found by stack scanning
        # Stack words are looked up among the modules already known: a miss must not
        # make ProcessMaps re-read /proc/PID/maps, as an unknown pc does.
        self._find_known = getattr(maps, "find_known", maps.find)
        is_code = getattr(maps, "is_code", None)
        if is_code is None:
            def is_code(addr: int) -> bool:
                return self._find_known(addr) is not None
        self._code = Code(is_code, self._code_read, self._function)

    # -- module and pc resolution -------------------------------------------------------

    def add_module_info(self, info: ModuleInfo) -> None:
        """Use `info` for its module instead of reading the module's file."""
        m = info.module
        self._infos[(m.path, m.start, m.end, m.bias)] = info
        self._pc.clear()

    def _info(self, module: Any) -> Optional[ModuleInfo]:
        key = (module.path, module.start, module.end, module.bias)
        if key in self._infos:
            return self._infos[key]
        debug = None
        if self._debug_file_for is not None:
            try:
                debug = self._debug_file_for(module)
            except Exception:
                debug = None
        symbols = None
        if self._symbols_for is not None:
            def symbols() -> Optional[SymbolTable]:
                return self._symbols_for(module)
        info = ModuleInfo(module, opener_for(module, self.maps), debug, symbols)
        self._infos[key] = info
        return info

    def _resolve(self, pc: int) -> tuple:
        module = self.maps.find(pc)
        if module is None:
            entry: tuple = (None, None)
        else:
            info = self._info(module)
            row = info.table.lookup(pc - info.bias) if info is not None else None
            entry = (info, row)
        if len(self._pc) >= _CACHE_LIMIT:
            self._pc.clear()
        self._pc[pc] = entry
        return entry

    def cfi_row(self, pc: int) -> Optional[Any]:
        """The CFI row (hud.unwind.table.CfiRow) that applies at runtime address pc."""
        entry = self._pc.get(pc)
        if entry is None:
            entry = self._resolve(pc)
        return entry[1]

    def _module_info(self, addr: int) -> Optional[ModuleInfo]:
        module = self._find_known(addr)
        return self._info(module) if module is not None else None

    def _code_read(self, addr: int, size: int) -> Optional[bytes]:
        info = self._module_info(addr)
        return info.code(addr - info.bias, size) if info is not None else None

    def _function(self, addr: int) -> Optional[tuple[int, tuple[str, ...]]]:
        info = self._module_info(addr)
        if info is None:
            return None
        span = info.function_span(addr - info.bias)
        return (span[0] + info.bias, span[1]) if span is not None else None

    def invalidate(self) -> None:
        """Forget cached modules and rows (after the target's maps changed)."""
        self._infos.clear()
        self._pc.clear()
        self._memo.clear()
        self._code.sizes.clear()

    def strategies(self) -> list[ModuleStrategy]:
        """The FP/CFI strategy of every module seen so far (scans their prologues)."""
        return [i.strategy() for i in self._infos.values() if i is not None]

    def strategy_of(self, module: Any) -> Optional[ModuleStrategy]:
        info = self._info(module)
        return info.strategy() if info is not None else None

    # -- walking ----------------------------------------------------------------------

    def unwind_memo(self, capture: StackCapture, max_frames: int = 128) -> UnwindResult:
        """`unwind` (mode "auto") with a memo: a thread leaving the CPU at the same place
        again has the same registers, and if the stack bytes its last walk read are
        unchanged, the walk is too. Verifying is a few slice compares instead of a walk."""
        regs = capture.regs
        if regs is None or not capture.stack:
            return self.unwind(capture, max_frames)
        key = (regs, max_frames)
        hit = self._memo.get(key)
        if hit is not None:
            fingerprint, fp_ips, result = hit
            if (fp_ips is None or fp_ips == capture.fp_ips) \
                    and same_reads(fingerprint, capture.stack):
                self.memo_hits += 1
                return result
        mem = RecordingMemory(regs.sp, capture.stack)
        result = self.unwind(capture, max_frames, memory=mem)
        if len(self._memo) >= _MEMO_LIMIT:
            self._memo.pop(next(iter(self._memo)))
        spliced = result.method == METHOD_MIXED or result.reason == NO_REGS
        self._memo[key] = (mem.fingerprint(), capture.fp_ips if spliced else None, result)
        return result

    def unwind(self, capture: StackCapture, max_frames: int = 128,
               mode: str = "auto", memory: Optional[StackMemory] = None) -> UnwindResult:
        """Unwind one capture. mode: "auto" (CFI, FP where trusted, stack scans of x86_64
        code without either, kernel FP splice), "cfi" (CFI only) or "fp" (frame pointers
        only)."""
        regs = capture.regs
        max_frames = max(1, max_frames)
        if regs is None or not capture.stack:
            if capture.fp_ips and mode != "cfi":
                return UnwindResult(tuple(capture.fp_ips[:max_frames]), NO_REGS, METHOD_FP)
            return UnwindResult((regs.ip,) if regs else (), NO_REGS, METHOD_NONE)
        arch = ARCHES.get(regs.arch)
        if arch is None:
            return UnwindResult((regs.ip,), UNSUPPORTED_ARCH, METHOD_NONE)
        mem = memory if memory is not None else StackMemory(regs.sp, capture.stack)
        if mode == "fp":
            ips, reason = fp_walk(arch, regs.ip, regs.sp, regs.fp, mem, max_frames)
            return UnwindResult(ips, reason, METHOD_FP)
        sps = [regs.sp]
        ips, reason, used = self._walk(arch, regs.ip, arch.initial(regs), mem, max_frames,
                                       mode == "auto" and self.use_fp, sps,
                                       allow_scan=mode == "auto")
        method = _METHODS[used]
        if reason != END and mode == "auto" and self.use_fp and capture.fp_ips:
            spliced = self._splice(ips, capture.fp_ips, max_frames)
            if spliced is not None:
                return UnwindResult(spliced, reason, METHOD_MIXED, tuple(sps))
        return UnwindResult(tuple(ips), reason, method, tuple(sps))

    def _walk(self, arch: Arch, pc: int, state: dict[int, int], mem: StackMemory,
              max_frames: int, allow_fp: bool, sps: Optional[list] = None,
              allow_scan: bool = False) -> tuple[list[int], str, int]:
        ips = [pc]
        exact = True          # the innermost pc (and one after a signal frame) is exact
        same_sp = 0
        used = 0
        cache = self._pc
        sp_reg = arch.sp
        while len(ips) < max_frames:
            key = pc if exact else pc - 1
            entry = cache.get(key)
            if entry is None:
                entry = self._resolve(key)
            info, crow = entry
            if info is None:
                return ips, NO_MODULE, used
            if crow is not None and (info.arch == arch.name):
                if not crow.ra_saved and len(ips) > 1 and not exact:
                    # Only the innermost frame may still hold its RA in the link register.
                    return ips, NO_PROGRESS, used
                new, ra, why = cfi_step(arch, crow, state, mem)
                signal = crow.signal_frame
            elif len(ips) == 1 and arch.lr >= 0 and value(state, arch.lr, mem):
                # aarch64 code without CFI (PLT stubs, hand-written leaves): the caller's
                # address is still in the link register and sp has not moved.
                new = dict(state)
                ra = (value(state, arch.lr, mem) or 0) & arch.ra_mask
                why = ""
                signal = False
            elif allow_fp and info.strategy().trusts_fp:
                new, ra, why = fp_step(arch, state, mem)
                used |= _USED_FP
                signal = False
            elif allow_scan and arch.name == "x86_64" and info.arch == arch.name:
                found = scan_step(key, state.get(sp_reg, 0), mem, self._code, exact)
                if found is None:
                    return ips, NO_CFI, used
                ra, slot, saves = found
                if ra == 0:
                    return ips, END, used            # a libc entry point: nothing above
                new = dict(state)
                for reg, addr in saves:
                    new[reg] = (addr,)              # read lazily, as CFI restores are
                new[sp_reg] = slot + 8
                new[arch.ip] = ra
                why = ""
                signal = False
                used |= _USED_SCAN
                self.scans += 1
            else:
                return ips, NO_CFI, used
            if new is None:
                return ips, why, used
            if ra == 0:
                return ips, END, used
            sp = state.get(sp_reg, 0)
            new_sp = new[sp_reg]
            if new_sp < sp:
                return ips, NO_PROGRESS, used
            if new_sp == sp:
                same_sp += 1
                if same_sp > 1 or ra == pc:
                    return ips, NO_PROGRESS, used
            else:
                same_sp = 0
            ips.append(ra)
            if sps is not None:
                sps.append(new_sp)
            state = new
            pc = ra
            exact = signal
        return ips, MAX_DEPTH, used

    def _splice(self, ips: list[int], fp_ips: tuple[int, ...], max_frames: int
                ) -> Optional[tuple[int, ...]]:
        """ips + the kernel's FP chain after the last ip both contain, kept only while
        each frame that produced the next link lies in a module that keeps frame pointers."""
        last = ips[-1]
        if len(ips) == 1:
            j = 0 if fp_ips and fp_ips[0] == last else -1
        else:
            j = next((k for k in range(1, len(fp_ips)) if fp_ips[k] == last), -1)
        if j < 0:
            return None
        out = list(ips)
        for k in range(j, len(fp_ips) - 1):
            if len(out) >= max_frames:
                break
            ip = fp_ips[k]
            entry = self._pc.get(ip if k == 0 else ip - 1)
            if entry is None:
                entry = self._resolve(ip if k == 0 else ip - 1)
            info = entry[0]
            if info is None or not info.strategy().trusts_fp:
                break
            out.append(fp_ips[k + 1])
        return tuple(out) if len(out) > len(ips) else None
