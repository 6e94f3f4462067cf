"""Register tables per architecture in DWARF numbering (x86-64 psABI §3.6.2, AAPCS64 DWARF).

Only what unwinding needs: which DWARF numbers are the stack pointer, the frame pointer,
the return address and (aarch64) the link register, and how UserRegs maps onto them.
"""
from __future__ import annotations

from dataclasses import dataclass

from hud.model import UserRegs

_X86_64_NAMES = ("rax", "rdx", "rcx", "rbx", "rsi", "rdi", "rbp", "rsp",
                 "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip")
_AARCH64_NAMES = (*(f"x{i}" for i in range(29)), "x29", "x30", "sp")


@dataclass(frozen=True)
class Arch:
    """DWARF register numbering of one architecture."""

    name: str
    sp: int            # DWARF number of the stack pointer
    fp: int            # frame pointer (rbp / x29)
    ra: int            # default return-address column (rip pseudo-register / x30)
    lr: int            # link register holding the RA in a leaf (aarch64), -1 on x86_64
    ip: int            # pseudo-register holding the pc, for CFA expressions (x86_64 rip=16)
    names: tuple[str, ...]
    # Return addresses carry pointer-authentication bits on aarch64: keep the VA bits.
    ra_mask: int = (1 << 64) - 1

    def reg_name(self, regno: int) -> str:
        return self.names[regno] if 0 <= regno < len(self.names) else f"r{regno}"

    def initial(self, regs: UserRegs) -> dict[int, int]:
        """The DWARF register file of the innermost frame from captured UserRegs."""
        out = dict(regs.extra)
        out[self.sp] = regs.sp
        out[self.fp] = regs.fp
        if self.lr >= 0:
            out[self.lr] = regs.lr
        if self.ip >= 0:
            out[self.ip] = regs.ip
        return out


X86_64 = Arch("x86_64", sp=7, fp=6, ra=16, lr=-1, ip=16, names=_X86_64_NAMES)
AARCH64 = Arch("aarch64", sp=31, fp=29, ra=30, lr=30, ip=-1, names=_AARCH64_NAMES,
               ra_mask=(1 << 48) - 1)

ARCHES = {"x86_64": X86_64, "aarch64": AARCH64}


def arch_of(name: str) -> Arch:
    """The Arch for 'x86_64' / 'aarch64' (KeyError otherwise)."""
    return ARCHES[name]
