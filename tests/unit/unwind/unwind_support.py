"""Shared helpers of the unwinding tests: static module maps, vector loading, gdb snapshots."""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Optional

from hud.model import StackCapture, UserRegs
from hud.symbolize.elf import ElfFile
from hud.symbolize.normalize import KIND_ELF, Module

ROOT = Path(__file__).resolve().parents[3]
A64 = ROOT / "tests" / "data" / "unwind" / "aarch64"


class StaticMaps:
    """A ProcessMaps stand-in for ELF files loaded at known biases (no process needed)."""

    def __init__(self, files: list[tuple[str, int]]) -> None:
        self.modules = []
        for path, bias in files:
            with ElfFile.open(path) as elf:
                segs = elf.load_segments
            lo = min(s.vaddr for s in segs) & ~0xFFF
            hi = max(s.vaddr + s.memsz for s in segs)
            self.modules.append(Module(path, path, lo + bias, hi + bias, bias, None, KIND_ELF))

    def find(self, addr: int) -> Optional[Module]:
        for m in self.modules:
            if m.start <= addr < m.end:
                return m
        return None


def a64_vectors() -> list[dict]:
    return json.loads((A64 / "vectors.json").read_text())


def a64_capture(vec: dict) -> StackCapture:
    r = vec["regs"]
    regs = UserRegs("aarch64", ip=r["pc"], sp=r["sp"], fp=r["x29"], lr=r["x30"],
                    extra=tuple((i, r[f"x{i}"]) for i in range(29)))
    return StackCapture(regs=regs, stack=bytes.fromhex(vec["stack"]))


# gdb's own Python: registers, the stack from sp up (as far as it is readable) and the real
# frames of `bt` (inline and tail-call frames are gdb's reconstruction, not stack frames).
GDB_SNAPSHOT = r'''
import gdb, json, os
gdb.execute("set backtrace past-main on")
gdb.execute("set backtrace past-entry on")
gdb.execute("set backtrace limit 300")
names = ["rax", "rdx", "rcx", "rbx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11",
         "r12", "r13", "r14", "r15", "rip"]
inf = gdb.selected_inferior()
out = []
for th in inf.threads():
    th.switch()
    f = gdb.newest_frame()
    regs = {n: int(f.read_register(n)) & 0xFFFFFFFFFFFFFFFF for n in names}
    sp = regs["rsp"]
    size = int(os.environ["SNAP_STACK"])
    mem = b""
    while size > 0:
        try:
            mem = bytes(inf.read_memory(sp, size))
            break
        except gdb.MemoryError:
            size = ((sp + size - 1) & ~4095) - sp
    pcs = []
    sps = []   # each real frame's stack pointer as gdb unwinds it (the younger frame's CFA)
    g = f
    while g is not None and len(pcs) < 300:
        if g.type() not in (gdb.INLINE_FRAME, gdb.TAILCALL_FRAME):
            pcs.append(int(g.pc()))
            try:
                sps.append(int(g.read_register("rsp")) & 0xFFFFFFFFFFFFFFFF)
            except gdb.error:
                sps.append(-1)
        g = g.older()
    out.append({"tid": th.ptid[1], "regs": regs, "stack": mem.hex(), "pcs": pcs,
                "sps": sps})
json.dump(out, open(os.environ["SNAP_OUT"], "w"))
'''

_X86_ORDER = ("rax", "rdx", "rcx", "rbx", "rsi", "rdi")


def gdb_snapshot(pid: int, workdir: Path, stack_bytes: int = 65536) -> list[dict]:
    """Attach gdb to `pid` (which the caller has stopped) and dump every thread."""
    script = workdir / "snap.py"
    script.write_text(GDB_SNAPSHOT)
    out = workdir / "snap.json"
    if out.exists():
        out.unlink()
    env = dict(os.environ, SNAP_OUT=str(out), SNAP_STACK=str(stack_bytes))
    subprocess.run(["gdb", "-q", "-batch", "-nx", "-p", str(pid), "-x", str(script)],
                   env=env, capture_output=True, timeout=120, check=False)
    return json.loads(out.read_text()) if out.exists() else []


def x86_capture(snap: dict) -> StackCapture:
    r = snap["regs"]
    regs = UserRegs("x86_64", ip=r["rip"], sp=r["rsp"], fp=r["rbp"],
                    extra=tuple((i, r[n]) for i, n in enumerate(_X86_ORDER)))
    return StackCapture(regs=regs, stack=bytes.fromhex(snap["stack"]))


def eu_stack(pid: int) -> dict[int, list[int]]:
    """{tid: [pc, return addresses...]} from elfutils' eu-stack (a second, independent oracle)."""
    text = subprocess.run(["eu-stack", "-p", str(pid)], capture_output=True, text=True,
                          timeout=120, check=False).stdout
    out: dict[int, list[int]] = {}
    cur: Optional[list[int]] = None
    for line in text.splitlines():
        m = re.match(r"TID (\d+):", line)
        if m:
            cur = out.setdefault(int(m.group(1)), [])
            continue
        m = re.match(r"#\d+\s+0x([0-9a-f]+)", line)
        if m and cur is not None:
            cur.append(int(m.group(1), 16))
    return out
