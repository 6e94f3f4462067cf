"""StackCapture -> frames: CFI unwinding of the copied user stack, then symbolization; the
kernel's frames (from /proc/kallsyms) come first when the capture has them."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Optional

from hud import task_identity
from hud.classify import StackInfo
from hud.linux import procfs
from hud.model import CLASS_KERNEL, Frame, Stack, StackCapture
from hud.symbolize import Symbolizer
from hud.symbolize.kallsyms import NO_SYMBOL, SharedKernelSymbols, shared_kernel_symbols
from hud.symbolize.normalize import KIND_ELF
from hud.symbolize.symtab import SymbolTable
from hud.unwind.snapshot import blocked_capture, unwind_blocked
from hud.unwind.unwinder import Unwinder, UnwindResult

if TYPE_CHECKING:
    from hud.symbolize.debuginfod import Debuginfod

_RESOLVE_CACHE = 4096


class StackResolver:
    """StackCapture -> frames: CFI unwinding of the copied stack, then symbolization.

    A thread leaving the CPU at the same place again costs a few byte compares (the
    unwinder's memo), and each distinct walk is symbolized once (cached by its ips).
    """

    def __init__(self, pid: int, debug_dirs: tuple = (), debug_files: tuple = (),
                 cache_dir: Optional[str] = None, kernel_frames: bool = True,
                 kernel_symbols: Optional[SharedKernelSymbols] = None,
                 debuginfod: Optional[Debuginfod] = None) -> None:
        # cache_dir: resolved addresses kept on disk per build-id (None: nothing kept);
        # kernel_frames False drops a capture's kernel ips (perf samples carry them);
        # kernel_symbols names them (the process-wide table when None).
        self.symbolizer = Symbolizer(debug_dirs=debug_dirs, debug_files=debug_files,
                                     cache_dir=cache_dir, debuginfod=debuginfod)
        self.process = self.symbolizer.for_process(pid)
        # CFI of code whose .eh_frame was stripped may live in the separate debug file
        # the symbolizer already found (.debug_frame): share it with the unwinder.
        self.unwinder = Unwinder(self.process.maps, debug_file_for=self._debug_file_for,
                                 symbols_for=self._symbols_for)
        self.kernel_frames = kernel_frames
        self._by_ips: dict = {}     # one Stack object per distinct walk: classified once
        self.counts = {"resolved": 0, "incomplete": 0}
        self.methods: dict = {}
        self._last: tuple = (None, None)       # (capture, its UnwindResult)
        self._kernel = (kernel_symbols if kernel_symbols is not None
                        else shared_kernel_symbols())
        self._kernel_generation = 0            # the kernel table _by_ips was named with

    def __call__(self, pid: int, capture: StackCapture) -> Stack:
        ips: tuple = ()
        if capture.regs is not None and capture.stack:
            res = self.unwinder.unwind_memo(capture)
            self._last = (capture, res)
            ips = res.ips
            self.methods[res.method] = self.methods.get(res.method, 0) + 1
            if not res.complete:
                self.counts["incomplete"] += 1
        if not ips:
            ips = capture.fp_ips
        kips = capture.kernel_ips if self.kernel_frames else ()
        if kips:
            self._kernel.refresh()
            self._follow_kernel_table()
        key = (ips, kips) if kips else ips
        stack = self._by_ips.get(key)
        if stack is None:
            # Innermost first: where the thread is in the kernel, then the user code
            # that entered it.
            frames: list[Frame] = []
            keep = True
            if kips:
                kframes = self._kernel.table().frames(kips)
                if any(f.reason == NO_SYMBOL for f in kframes):
                    # Code loaded since the table was read, maybe: read it again (the
                    # table says how often it may), and keep nothing unnamed meanwhile.
                    self._kernel.refresh(missed=True)
                    if self._follow_kernel_table():
                        kframes = self._kernel.table().frames(kips)
                    keep = not any(f.reason == NO_SYMBOL for f in kframes)
                frames.extend(kframes)
            for chain in self.process.symbolize(list(ips)):
                frames.extend(chain)
            stack = tuple(frames)
            if keep:
                if len(self._by_ips) >= _RESOLVE_CACHE:
                    self._by_ips.pop(next(iter(self._by_ips)))
                self._by_ips[key] = stack
        self.counts["resolved"] += 1
        return stack

    def _follow_kernel_table(self) -> bool:
        """On a new kernel table (another resolver may have had it read), drop the
        stacks named with an older one; True when there was one."""
        if self._kernel.generation == self._kernel_generation:
            return False
        self._kernel_generation = self._kernel.generation
        self._by_ips = {k: v for k, v in self._by_ips.items()
                        if not (v and v[0].cls == CLASS_KERNEL)}
        return True

    def poll_identity(self, pid: int, capture: StackCapture, stack: Stack,
                      info: StackInfo) -> Optional[int]:
        """Which task poll a worker's sample is in (see hud.task_identity), or None when
        its copied stack cannot tell."""
        if info.poll_frames[0] < 0 or capture.regs is None or not capture.stack:
            return None
        res: Optional[UnwindResult] = self._last[1] if self._last[0] is capture else None
        if res is None:
            res = self.unwinder.unwind_memo(capture)
        return task_identity.poll_identity(stack, info, res.sps, capture.regs.sp,
                                           capture.stack)

    def unnamed_executable(self, exe: str) -> str:
        """The file name of the target's executable `exe` when nothing names its
        functions (no symbol table, DWARF or MiniDebugInfo, in it or in a debug file
        found for it), else "". Then Tokio's idle parks look like any other wait."""
        for mod in self.process.maps.modules():
            if mod.kind != KIND_ELF or mod.file_path != exe:
                continue
            obj, _ = self.process._object(mod)
            # Unreadable (obj None): its frames carry that reason.
            return "" if obj is None or obj.names_functions else os.path.basename(exe)
        return ""

    def _debug_file_for(self, module: object) -> Optional[str]:
        obj, _ = self.process._object(module)
        debug = getattr(obj, "debug", None)
        return getattr(debug, "name", None) if debug is not None else None

    def _symbols_for(self, module: object) -> Optional[SymbolTable]:
        obj, _ = self.process._object(module)
        return obj.symtab if obj is not None else None

    def blocked_stack(self, pid: int, tid: int) -> Optional[tuple[Stack, bool]]:
        """(frames, complete) of a thread blocked in a syscall, read at attach time
        without stopping it; None when it is running or unreadable."""
        capture = blocked_capture(pid, tid, procfs.read_maps(pid))
        if capture is None:
            return None
        maps = self.process.maps
        _, res = unwind_blocked(self.unwinder, capture, lambda a: maps.find(a) is not None)
        frames: list[Frame] = []
        for chain in self.process.symbolize(list(res.ips)):
            frames.extend(chain)
        return tuple(frames), res.complete

    def close(self) -> None:
        """Write the symbol cache (if any) and release the symbolizer's files."""
        self.symbolizer.close()
