"""unwind layer: CFI (x86_64, aarch64) and frame-pointer unwinding of copied user stacks.

Entry point: `Unwinder(maps).unwind(capture) -> UnwindResult(ips, reason, method)`.
Submodules import hud.symbolize, so this package imports them lazily.
"""
from __future__ import annotations

from typing import Any

__all__ = ["UnwindResult", "Unwinder", "module_strategy"]


def __getattr__(name: str) -> Any:
    if name in ("Unwinder", "UnwindResult"):
        from hud.unwind import unwinder
        return getattr(unwinder, name)
    if name == "module_strategy":
        from hud.unwind.report import module_strategy
        return module_strategy
    raise AttributeError(name)
