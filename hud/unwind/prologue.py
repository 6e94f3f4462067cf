"""Decide per module whether frame pointers can be trusted, by looking at its prologues.

A capstone scan of function entries (FDE starts) counts frame-pointer prologues:
x86_64 `push rbp; mov rbp, rsp`, aarch64 `stp x29, x30, [sp, ...]; mov x29, sp` (or
`add x29, sp, #N`). capstone is a native library: it is imported lazily, and when it
cannot load the decision falls back to CFI only (fraction None).
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

STRATEGY_CFI = "cfi"
STRATEGY_FP = "fp"
STRATEGY_BOTH = "both"
STRATEGY_NONE = "none"

FP_TRUST_FRACTION = 0.6   # this share of FP prologues or more: frame pointers are kept
# (not 1.0: compilers leave small leaves without a frame even in FP builds)
MAX_SCANNED = 2000        # functions looked at per module (evenly spread)
_WINDOW = 64              # bytes of each prologue disassembled
_CHECKS = 10              # the early stop is considered at each tenth of the entries
_SURE_AFTER = 200         # entries scanned before the scan may stop early ...
_SURE_MARGIN = 0.15       # ... when the share is this far from FP_TRUST_FRACTION
_MAX_INSNS = 16


@dataclass(frozen=True)
class ModuleStrategy:
    """What hud trusts for one module, and the evidence."""

    path: str
    strategy: str                 # "cfi" | "fp" | "both" | "none"
    has_cfi: bool
    fp_fraction: Optional[float]  # None: not scanned (capstone missing or no functions)
    scanned: int = 0
    reason: str = ""

    @property
    def trusts_fp(self) -> bool:
        return self.strategy in (STRATEGY_FP, STRATEGY_BOTH)

    def describe(self) -> str:
        frac = "n/a" if self.fp_fraction is None else f"{self.fp_fraction:.0%}"
        extra = f" ({self.reason})" if self.reason else ""
        return f"{self.path}: {self.strategy}, FP prologues {frac} of {self.scanned}{extra}"


_capstone_cache: dict[str, Any] = {}


def _disassembler(arch: str) -> Optional[Any]:
    """A capstone Cs for `arch`, or None when capstone cannot be loaded."""
    if arch in _capstone_cache:
        return _capstone_cache[arch]
    md = None
    try:
        import capstone  # native: may fail to load on an odd host
        if arch == "x86_64":
            md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
        elif arch == "aarch64":
            md = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
    except Exception:  # ImportError, OSError from ctypes, CsError: all mean "no capstone"
        md = None
    _capstone_cache[arch] = md
    return md


def capstone_available(arch: str = "x86_64") -> bool:
    return _disassembler(arch) is not None


_STOP = ("ret", "jmp", "b", "br", "retaa", "retab", "hlt", "ud2", "brk")


def _x86_fp(insns: list) -> bool:
    # Shrink-wrapping and scheduling move the frame set-up past early exits and unrelated
    # instructions: look for `push rbp` ... `mov rbp, rsp` anywhere on the straight path.
    pushed = False
    for _addr, _size, mnem, ops in insns:
        if mnem in _STOP:
            return False
        if mnem == "push" and ops == "rbp":
            pushed = True
        elif pushed and mnem == "mov" and ops == "rbp, rsp":
            return True
    return False


def _a64_fp(insns: list) -> bool:
    saved = False
    for _addr, _size, mnem, ops in insns:
        if mnem in _STOP:
            return False
        if mnem == "stp" and ops.startswith("x29, x30, [sp"):
            saved = True
        elif saved and ((mnem == "mov" and ops == "x29, sp")
                        or (mnem == "add" and ops.startswith("x29, sp"))):
            return True
    return False


def has_fp_prologue(arch: str, code: bytes, addr: int) -> Optional[bool]:
    """Whether the code at a function entry sets up a frame pointer (None: no capstone)."""
    md = _disassembler(arch)
    if md is None:
        return None
    insns = list(md.disasm_lite(code[:_WINDOW], addr, _MAX_INSNS))
    return _x86_fp(insns) if arch == "x86_64" else _a64_fp(insns)


def scan(arch: str, text: Sequence[tuple[int, bytes]], entries: Sequence[int]
         ) -> tuple[Optional[float], int]:
    """(fraction of entries with an FP prologue, entries scanned) over code `text`.

    `text` is [(address, bytes)] of executable sections; entries outside them are skipped.
    """
    md = _disassembler(arch)
    if md is None:
        return None, 0
    # Each window ends at the next entry: a short function must not borrow its
    # neighbour's prologue.
    ordered = sorted(set(entries))
    ends = {e: n for e, n in zip(ordered, ordered[1:])}
    if len(ordered) > MAX_SCANNED:
        step = len(ordered) / MAX_SCANNED
        ordered = [ordered[int(i * step)] for i in range(MAX_SCANNED)]
    # Shuffled (the same way every time), so that every prefix is a uniform sample of
    # the whole module, as the early stop below needs; a strided order could alias with
    # regular layouts.
    random.Random(len(ordered)).shuffle(ordered)
    check_at = max(_SURE_AFTER, len(ordered) // _CHECKS)
    scanned = hits = 0
    for n, entry in enumerate(ordered):
        if n >= check_at and n % check_at == 0 and \
                abs(hits / max(scanned, 1) - FP_TRUST_FRACTION) >= _SURE_MARGIN:
            # After 200 entries the share is known to +-0.07 (95%): one 0.15 or more away
            # from the line will not cross it. Most modules are all or nothing (Rust
            # without frame pointers 25-33%, with them ~90%, glibc ~3%), and disassembling
            # 2,000 prologues per module was a tenth of hud's CPU in its first seconds.
            break
        window = min(_WINDOW, ends.get(entry, entry + _WINDOW) - entry)
        for base, data in text:
            off = entry - base
            if 0 <= off < len(data):
                scanned += 1
                if has_fp_prologue(arch, data[off:off + window], entry):
                    hits += 1
                break
    if not scanned:
        return None, 0
    return hits / scanned, scanned


def decide(path: str, has_cfi: bool, fraction: Optional[float], scanned: int,
           reason: str = "") -> ModuleStrategy:
    """The strategy for a module from its CFI presence and FP prologue fraction."""
    fp_ok = fraction is not None and fraction >= FP_TRUST_FRACTION
    if has_cfi:
        strategy = STRATEGY_BOTH if fp_ok else STRATEGY_CFI
    else:
        strategy = STRATEGY_FP if fp_ok else STRATEGY_NONE
    if fraction is None and not reason:
        reason = "prologues not scanned (capstone unavailable)" if not capstone_available() \
            else "no function entries to scan"
    return ModuleStrategy(path, strategy, has_cfi, fraction, scanned, reason)
