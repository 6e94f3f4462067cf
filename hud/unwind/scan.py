"""x86_64 stack scanning: the caller of code that has no CFI, found by its call instruction.

musl is built without unwind tables (`-fno-asynchronous-unwind-tables`): in a static musl
binary (Rust's x86_64-unknown-linux-musl links one by default) a thread blocked in a
system call sits in libc code no CFI covers, and a CFI-only walk ends at its first frame.
Such functions keep no frame pointer either. What they do keep is the call contract: the
return address into their caller is a word on the stack above sp, and the bytes before
it are a call instruction.

A scan takes the first word above sp that is a return address whose `call rel32` goes to
the function the walk is in, by its symbol, or to a stub that jumps there within its first
bytes (musl's `__syscall_cp: jmp __syscall_cp_c`, `qsort: mov; lea; jmp __qsort_r`).
Stale return addresses of earlier calls sit below sp or in frames that called something
else, so the call-target check is what keeps them out; it needs the function's symbol,
so a stripped binary is not scanned, and neither are calls through a PLT entry or the
GOT (a dynamically linked musl, as on Alpine): their destination is not in the stack
copy. The callee-saved registers the function's prologue pushed are restored from right
below the return address (code with CFI above may find its CFA through rbp, which musl
uses as a general register); the others are taken as unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Optional

from hud.unwind import prologue
from hud.unwind.arch import X86_64
from hud.unwind.memory import StackMemory

SCAN_WORDS = 1024          # 8 KiB above sp: musl's deepest frames (getaddrinfo) fit
_STUB_BYTES = 32           # how far into a call target a tail jump is looked for
_CALL_BEFORE = 5           # call rel32
_CHUNK = 16                # words read at a time
_MASK = (1 << 64) - 1
_ENDBR64 = b"\xf3\x0f\x1e\xfa"


def call_target(code: bytes, ra: int) -> Optional[int]:
    """Where the `call rel32` that returns to `ra` goes, from the `code` bytes that end
    right before it; None when they are no such call.

    Indirect calls (through a register, memory, the GOT or a PLT entry) are not taken:
    their destination is not in the stack copy, so nothing would tell a stale return
    address from a live one.
    """
    n = len(code)
    if n >= 5 and code[n - 5] == 0xE8:
        return (ra + int.from_bytes(code[n - 4:], "little", signed=True)) & _MASK
    return None


def jumps_to(code: bytes, at: int, dest: int) -> bool:
    """Whether the `code` at `at` holds a direct jump (`jmp rel32` or `jmp rel8`) to `dest`:
    a stub that sets arguments up and tail-calls (musl's `qsort: ...; jmp __qsort_r`).
    Searched byte by byte rather than decoded: a false match needs the exact displacement
    of `dest` at that spot."""
    for i in range(len(code) - 1):
        op = code[i]
        if op == 0xE9 and i + 5 <= len(code):
            if (at + i + 5 + int.from_bytes(code[i + 1:i + 5], "little", signed=True)) \
                    & _MASK == dest:
                return True
        elif op == 0xEB:
            if at + i + 2 + int.from_bytes(code[i + 1:i + 2], "little", signed=True) == dest:
                return True
    return False


# Where a thread's stack begins in a libc without CFI: musl's process and thread entry
# points (its crt's _start, _start_c and __libc_start_main, which calls main from
# libc_start_main_stage2; pthread_create's start / start_c, called from __clone). glibc's
# equivalents say so in their CFI (the return address undefined); these can only be
# known by name. Without it the walk would scan to the end of the copy for a caller
# that does not exist.
ENTRY_POINTS = frozenset({"_start", "_start_c", "__libc_start_main", "libc_start_main_stage2",
                          "start", "start_c", "__clone"})


@dataclass(frozen=True)
class Code:
    """What a scan may ask of the modules around it, in runtime addresses.

    `in_code(addr)` is a cheap first test of a stack word (most are data): does an
    executable mapping hold it;
    `read(addr, size)` gives module bytes (None outside a module's loaded bytes);
    `function(addr)` the (start, names) of the function symbol holding addr (None when
    no symbol does).
    """

    in_code: Callable[[int], bool]
    read: Callable[[int, int], Optional[bytes]]
    function: Callable[[int], Optional[tuple[int, tuple[str, ...]]]]


# x86 register numbers (opcode order, REX.B adds 8) to DWARF's (psABI 3.6.2).
_X86_TO_DWARF = (0, 2, 1, 3, 7, 6, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15)
_DWARF_OF = {name: n for n, name in enumerate(X86_64.names[:16])}
_PROLOGUE_BYTES = 48       # endbr64, six pushes and the moves scheduled between them
_PROLOGUE_INSNS = 16
_ENDS = ("call", "ret", "jmp", "hlt", "ud2", "int3", "syscall", "leave", "enter")


@lru_cache(maxsize=4096)
def prologue_saves(code: bytes, at: int, pc: int) -> tuple[tuple[int, int], ...]:
    """(DWARF register, slot offset below the return address) of the pushes that open the
    function at `at` and ran before `pc`: the first push sits right below the return
    address, the next below it. gcc and clang save callee-saved registers this way
    before any other change of rsp, with unrelated moves scheduled in between; the
    first other change of rsp or branch ends the prologue. Without capstone, only pushes
    back to back are read."""
    md = prologue._disassembler("x86_64")
    if md is None:
        return tuple(_pushes_only(code, at, pc))
    out: list[tuple[int, int]] = []
    pushed = 0
    seen: set[int] = set()
    for addr, _size, mnem, ops in md.disasm_lite(code, at, _PROLOGUE_INSNS):
        if addr >= pc or mnem in _ENDS or mnem.startswith("j") or mnem.startswith("pop"):
            break
        if mnem == "push":
            pushed += 1
            reg = _DWARF_OF.get(ops)
            if reg is not None and reg not in seen:    # the first save holds the caller's
                seen.add(reg)
                out.append((reg, 8 * pushed))
        elif ops.startswith("rsp") or ops.startswith("esp"):
            break                                      # sub/and/mov/lea rsp: frame set up
    return tuple(out)


def _pushes_only(code: bytes, at: int, pc: int) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    i = 4 if code[:4] == _ENDBR64 else 0
    while i < len(code) and at + i < pc:
        op = code[i]
        if 0x50 <= op <= 0x57:
            reg, size = op - 0x50, 1
        elif op == 0x41 and i + 1 < len(code) and 0x50 <= code[i + 1] <= 0x57:
            reg, size = 8 + code[i + 1] - 0x50, 2
        else:
            break
        out.append((_X86_TO_DWARF[reg], 8 * (len(out) + 1)))
        i += size
    return out


def scan_step(pc: int, sp: int, mem: StackMemory, code: Code
              ) -> Optional[tuple[int, int, list[tuple[int, int]]]]:
    """(return address, its slot, saved registers) of the function holding `pc`, found
    above `sp`, or None; (0, 0, []) when that function is an ENTRY_POINTS one (the stack
    ends there). The saved registers are (DWARF register, stack address) of the
    callee-saved registers its prologue pushed, to be restored for the caller: code with
    CFI above may compute its CFA from rbp (a frame with a variable-length array).

    `pc` is the frame's own address (for a caller frame, its return address - 1).
    """
    function = code.function(pc)
    if function is None:
        return None       # no symbol: any call nearby would pass for its caller's
    start, names = function
    if not ENTRY_POINTS.isdisjoint(names):
        return 0, 0, []
    for first in range(0, SCAN_WORDS, _CHUNK):
        # Read in chunks, not the whole window: the walk's memo compares exactly the
        # bytes a walk read, and the words past the return address are no business of it.
        words = mem.words(sp + 8 * first, _CHUNK)
        for k, ra in enumerate(words):
            if ra < _CALL_BEFORE or not code.in_code(ra):
                continue
            before = code.read(ra - _CALL_BEFORE, _CALL_BEFORE)
            target = call_target(before, ra) if before is not None else None
            if target is None:
                continue
            if target != start:
                stub = code.read(target, _STUB_BYTES)
                if stub is None or not jumps_to(stub, target, start):
                    continue
            slot = sp + 8 * (first + k)
            head = code.read(start, _PROLOGUE_BYTES)
            saves = prologue_saves(head, start, pc) if head is not None else []
            return ra, slot, [(reg, slot - off) for reg, off in saves]
        if len(words) < _CHUNK:
            return None                                # the copy ends
    return None
