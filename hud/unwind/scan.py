"""x86_64 stack scanning: the caller of code that has no CFI, found by its call instruction.

musl is built without unwind tables (`-fno-asynchronous-unwind-tables`): in a static musl
binary (Rust's x86_64-unknown-linux-musl links one by default) or with a shared libc.musl
(Alpine), a thread blocked in a system call sits in libc code no CFI covers, and a
CFI-only walk ends at its first frame. Such functions keep no frame pointer either. What
they do keep is the call contract: the return address into their caller is a word on
the stack above sp, and the bytes before it are a call instruction.

A word above sp is taken as the frame's return address when the call before it is
confirmed, in this order:
- by the frame size: decoding the function from its entry (its symbol's start or,
  without a symbol, the direct call's target) along its branches to the pc gives how
  far rsp sits below the return address; only the word in exactly that slot is taken,
  whatever call precedes it (a PLT entry, the GOT, a register). This covers hidden and
  stripped functions and dynamic linking;
- failing that (no path decoded), by the call's target: a `call rel32` of the function's
  symbol, or of a stub that jumps there within its first bytes (musl's
  `__syscall_cp: jmp __syscall_cp_c`, `qsort: mov; lea; jmp __qsort_r`).
Stale return addresses of earlier calls sit below sp or in frames that called something
else; both checks keep them out, and a function with neither a symbol nor a decodable
path is not scanned. The callee-saved registers the function's prologue pushed are
restored from right below the return address (code with CFI above may find its CFA
through rbp, which musl uses as a general register); the others are taken as unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Optional

from hud.unwind import prologue
from hud.unwind.arch import X86_64
from hud.unwind.memory import StackMemory

SCAN_WORDS = 1024          # 8 KiB above sp: musl's deepest frames (getaddrinfo) fit
_STUB_BYTES = 32           # how far into a call target a tail jump is looked for
_CALL_LONGEST = 6          # bytes before a return address looked at: call [rip + disp32]
_MAX_FUNCTION = 8192       # bytes decoded from a function's entry to find its frame size
_CHUNK = 16                # words read at a time
_SIZES_KEPT = 8192         # frame sizes remembered per unwinder
_MASK = (1 << 64) - 1
_ENDBR64 = b"\xf3\x0f\x1e\xfa"


def call_target(code: bytes, ra: int) -> Optional[int]:
    """Where the `call rel32` that returns to `ra` goes, from the `code` bytes that end
    right before it; None when they are no such call."""
    n = len(code)
    if n >= 5 and code[n - 5] == 0xE8:
        return (ra + int.from_bytes(code[n - 4:], "little", signed=True)) & _MASK
    return None


def is_indirect_call(code: bytes) -> bool:
    """Whether the `code` bytes end with an indirect call: `call [rip + disp32]` (the GOT,
    as rustc calls another module), `call reg`, `call [reg + disp8]`. Its destination is
    not in the stack copy: only a frame size can confirm such a return address."""
    n = len(code)
    if n >= 6 and code[n - 6] == 0xFF and code[n - 5] == 0x15:
        return True
    if n >= 2 and code[n - 2] == 0xFF and 0xD0 <= code[n - 1] <= 0xD7:
        return True
    if n >= 3 and code[n - 3] == 0xFF and 0x50 <= code[n - 2] <= 0x57 and code[n - 2] != 0x54:
        return True
    return False


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
    # (entry, boundary) -> frame_size: the same call sites come back walk after walk.
    # Runtime addresses: its owner clears it when the process's maps change.
    sizes: dict = field(default_factory=dict, compare=False)


# x86 register numbers (opcode order, REX.B adds 8) to DWARF's (psABI 3.6.2).
_X86_TO_DWARF = (0, 2, 1, 3, 7, 6, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15)
_DWARF_OF = {name: n for n, name in enumerate(X86_64.names[:16])}
_PROLOGUE_BYTES = 48       # endbr64, six pushes and the moves scheduled between them
_PROLOGUE_INSNS = 16
_ENDS = ("call", "ret", "jmp", "hlt", "ud2", "int3", "syscall", "leave", "enter")
_PATH_ENDS = ("ret", "hlt", "ud2", "int3", "leave", "enter", "pushfq", "popfq")
_MAX_PATH_INSNS = 2000


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


def frame_size(code: bytes, at: int, boundary: int) -> Optional[int]:
    """How far rsp sits below the return address's slot at `boundary`, in the function
    entered at `at` whose `code` this is: pushes, pops and `sub`/`add rsp, imm` added up
    along a path of the function's branches from the entry to `boundary` (a compiler
    keeps rsp the same on every path to a place). None when no path gets there, or rsp
    is set in a way not followed (from a register, `and`, `leave`): then nothing is
    claimed. Needs capstone."""
    md = prologue._disassembler("x86_64")
    if md is None or not at <= boundary < at + len(code):
        return None
    # One linear decode of the whole window: functions are contiguous instructions
    # (padding included), so branch targets land on these boundaries.
    insns = {a: (n, mnem, ops) for a, n, mnem, ops in md.disasm_lite(code, at)}
    work = [(at, 0)]
    seen: set[int] = set()
    while work:
        addr, size = work.pop()
        while addr not in seen:
            if addr == boundary:
                return size
            seen.add(addr)
            insn = insns.get(addr)
            if insn is None or len(seen) > _MAX_PATH_INSNS:
                break
            n, mnem, ops = insn
            if mnem == "push":
                size += 8
            elif mnem == "pop":
                size -= 8
            elif ops.startswith("rsp") and mnem != "cmp" and mnem != "test":
                imm = ops[5:]
                if mnem not in ("sub", "add") or not (imm.startswith("0x") or imm.isdigit()):
                    return None                        # and/mov/lea rsp: not followed
                size += int(imm, 0) if mnem == "sub" else -int(imm, 0)
            elif mnem in _PATH_ENDS:
                break
            elif mnem.startswith("j"):
                dest = int(ops, 0) if ops.startswith("0x") else None
                if mnem == "jmp":
                    if dest is None:
                        break                          # a computed jump or a tail call
                    addr = dest
                    continue
                if dest is not None:
                    work.append((dest, size))
            addr += n
    return None


def scan_step(pc: int, sp: int, mem: StackMemory, code: Code, exact: bool = True
              ) -> Optional[tuple[int, int, list[tuple[int, int]]]]:
    """(return address, its slot, saved registers) of the function holding `pc`, found
    above `sp`, or None; (0, 0, []) when that function is an ENTRY_POINTS one (the stack
    ends there). The saved registers are (DWARF register, stack address) of the
    callee-saved registers its prologue pushed, to be restored for the caller: code with
    CFI above may compute its CFA from rbp (a frame with a variable-length array).

    `pc` is the frame's own address: exact for the innermost frame, its return address
    - 1 for a caller (`exact` False). A word is taken when the call before it goes to the
    function's symbol (or a stub jumping there), or when the function's frame size at
    `pc` puts the return address in exactly that slot: the function's symbol start or,
    without one, the direct call's target is its entry. The latter covers hidden and
    stripped functions and calls through a PLT entry or the GOT.
    """
    function = code.function(pc)
    start, names = function if function is not None else (None, ())
    if not ENTRY_POINTS.isdisjoint(names):
        return 0, 0, []
    boundary = pc if exact else pc + 1
    sized = _frame_size_at(code, start, boundary) if start is not None else None
    for first in range(0, SCAN_WORDS, _CHUNK):
        # Read in chunks, not the whole window: the walk's memo compares exactly the
        # bytes a walk read, and the words past the return address are no business of it.
        words = mem.words(sp + 8 * first, _CHUNK)
        for k, ra in enumerate(words):
            if ra < _CALL_LONGEST or not code.in_code(ra):
                continue
            slot = sp + 8 * (first + k)
            entry = _entry_if_caller(code, ra, slot - sp, start, sized, boundary)
            if entry is None:
                continue
            head = code.read(entry, _PROLOGUE_BYTES)
            saves = prologue_saves(head, entry, pc) if head is not None else ()
            return ra, slot, [(reg, slot - off) for reg, off in saves]
        if len(words) < _CHUNK:
            return None                                # the copy ends
    return None


def _frame_size_at(code: Code, entry: int, boundary: int) -> Optional[int]:
    if not 0 <= boundary - entry < _MAX_FUNCTION:
        return None
    key = (entry, boundary)
    if key in code.sizes:
        return code.sizes[key]
    # The paths to `boundary` may run past it (a loop entered at its bottom).
    body = code.read(entry, _MAX_FUNCTION) or code.read(entry, boundary - entry + 16)
    size = frame_size(body, entry, boundary) if body is not None else None
    if len(code.sizes) >= _SIZES_KEPT:
        code.sizes.clear()
    code.sizes[key] = size
    return size


def _entry_if_caller(code: Code, ra: int, depth: int, start: Optional[int],
                     sized: Optional[int], boundary: int) -> Optional[int]:
    """The entry of the function holding the frame, if `ra` (found `depth` bytes above
    sp) is its return address; None if it is not."""
    before = code.read(ra - _CALL_LONGEST, _CALL_LONGEST)
    if before is None:
        return None
    target = call_target(before, ra)
    if target is None and not is_indirect_call(before):
        return None
    if start is not None:
        if sized is not None:
            # The frame size says where the return address is: no other slot, however
            # good its call looks (a stale one of an earlier call would).
            return start if sized == depth else None
        if target == start:
            return start
        if target is not None:
            stub = code.read(target, _STUB_BYTES)
            if stub is not None and jumps_to(stub, target, start):
                return start
        return None
    # No symbol: the direct call's target is the entry if the frame size agrees.
    if target is not None and _frame_size_at(code, target, boundary) == depth:
        return target
    return None
