"""Which unwinding strategy hud trusts per module, for showing to the user."""
from __future__ import annotations

from hud.symbolize.elf import ElfFile
from hud.symbolize.normalize import KIND_ELF, Module
from hud.unwind.prologue import ModuleStrategy
from hud.unwind.sources import ModuleInfo


def module_strategy(path: str) -> ModuleStrategy:
    """The strategy ("cfi" / "fp" / "both" / "none") for the ELF file at `path`, with the
    fraction of its functions that set up a frame pointer."""
    module = Module(path=path, open_path=path, start=0, end=0, bias=0, build_id=None,
                    kind=KIND_ELF)
    return ModuleInfo(module, lambda: ElfFile.open(path)).strategy()


def format_strategies(strategies: list[ModuleStrategy]) -> str:
    """A small table: module, strategy, FP prologue share, functions scanned."""
    lines = [f"{'strategy':8}  {'fp prologues':>12}  {'scanned':>7}  module"]
    for s in sorted(strategies, key=lambda s: s.path):
        frac = "n/a" if s.fp_fraction is None else f"{s.fp_fraction:.0%}"
        note = f"  ({s.reason})" if s.reason else ""
        lines.append(f"{s.strategy:8}  {frac:>12}  {s.scanned:>7}  {s.path}{note}")
    return "\n".join(lines)
