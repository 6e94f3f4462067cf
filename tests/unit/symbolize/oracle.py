"""Differential testing against binutils `addr2line -f -i -C`: address picking, running the
oracle, parsing its output, and comparing frame by frame."""
from __future__ import annotations

import random
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

Level = tuple[str, str, str]          # (function, file, line) as addr2line prints them


def function_symbols(symbol_file: Path) -> list[tuple[int, int, str]]:
    """(start, size, name) of sized function symbols, via nm (independent of our reader)."""
    out = subprocess.run(["nm", "-S", "--defined-only", str(symbol_file)],
                         capture_output=True, text=True, check=True).stdout
    funcs = {}
    for line in out.splitlines():
        p = line.split()
        if len(p) == 4 and p[2] in "tTwWiI":
            start, size = int(p[0], 16), int(p[1], 16)
            if size > 0 and start:
                funcs.setdefault(start, (start, size, p[3]))
    return sorted(funcs.values())


_RUST_HASH = re.compile(r"::h[0-9a-f]{16}$")


def demangled_names(binary: Path, types: str = "tT") -> dict[int, tuple[int, set]]:
    """start -> (end, names) of the code symbols of `types` nm -C lists, the Rust hash
    suffix dropped; several names where identical code was folded, the largest end."""
    out = subprocess.run(["nm", "-C", "-S", "--defined-only", str(binary)],
                         capture_output=True, text=True, check=True).stdout
    table: dict[int, tuple[int, set]] = {}
    for line in out.splitlines():
        p = line.split(None, 2)       # "start [size] type name", names may hold spaces
        if len(p) < 3:
            continue
        if len(p[1]) == 1:
            kind, name, size = p[1], p[2], 0
        else:
            kind, _, name = p[2].partition(" ")
            size = int(p[1], 16)
        if kind in types:
            start = int(p[0], 16)
            end, names = table.get(start, (start, set()))
            names.add(_RUST_HASH.sub("", name))
            table[start] = (max(end, start + size), names)
    return table


def pick_addresses(symbol_file: Path, n: int, seed: int = 1) -> list[int]:
    """`n` distinct addresses spread over all functions: every function gets its entry
    or an interior address before any function gets a second one."""
    funcs = function_symbols(symbol_file)
    rng = random.Random(seed)
    picked: set = set()
    rounds = 0
    while len(picked) < n and rounds < 64:
        order = list(funcs)
        rng.shuffle(order)
        for start, size, _ in order:
            if len(picked) >= n:
                break
            a = start if rounds == 0 and rng.random() < 0.2 else start + rng.randrange(size)
            picked.add(a)
        rounds += 1
    return sorted(picked)


def addr2line(binary: Path, addrs: list[int], tool: str = "addr2line",
              flags: tuple = ("-a", "-f", "-i", "-C")) -> list[list[Level]]:
    """binutils' answer per address: inline levels, innermost first (or another tool's
    that prints addr2line's text, given the `flags` that make it do so)."""
    text = subprocess.run([tool, *flags, "-e", str(binary)],
                          input="\n".join(hex(a) for a in addrs) + "\n",
                          capture_output=True, text=True, check=True).stdout
    return parse_blocks(text)


def parse_blocks(text: str) -> list[list[Level]]:
    """Split `addr2line -a -f` output into per-address lists of (function, file, line)."""
    blocks: list[list[Level]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("0x"):
            blocks.append([])
            i += 1
            continue
        fn = lines[i]
        loc = lines[i + 1] if i + 1 < len(lines) else "??:0"
        i += 2
        loc = loc.split(" (discriminator")[0]
        file, _, line = loc.rpartition(":")
        blocks[-1].append((fn, file, line))
    return blocks


def ours(frames: tuple) -> list[Level]:
    """Our frames in addr2line's text conventions."""
    if len(frames) == 1 and frames[0].function is None and frames[0].file is None:
        return [("??", "??", "0")]
    return [(f.function or "??", f.file or "??", str(f.line) if f.line else "?")
            for f in frames]


def eu_addr2line(binary: Path, addrs: list[int]) -> list[tuple[str, str]]:
    """elfutils' (file, line) of the innermost level per address (no names: eu-addr2line
    names symbols, not DWARF functions, so only its line lookup is comparable)."""
    text = subprocess.run(["eu-addr2line", "-a", "-e", str(binary)],
                          input="\n".join(hex(a) for a in addrs) + "\n",
                          capture_output=True, text=True, check=True).stdout
    out: list[tuple[str, str]] = []
    for line in text.splitlines():
        if line.startswith("0x"):
            out.append(("??", "0"))
            continue
        if out and out[-1] == ("??", "0"):
            parts = line.split(":")
            # file:line or file:line:column
            if len(parts) >= 3 and parts[-1].isdigit() and parts[-2].isdigit():
                out[-1] = (":".join(parts[:-2]), parts[-2])
            elif len(parts) >= 2:
                out[-1] = (":".join(parts[:-1]), parts[-1])
    return out


@dataclass
class Comparison:
    total: int = 0
    agree: int = 0
    agree_eu: int = 0              # binutils differs, elfutils agrees with us
    disagreements: list = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return (self.agree + self.agree_eu) / self.total if self.total else 0.0

    def report(self, limit: int = 40) -> str:
        out = [f"{self.agree + self.agree_eu}/{self.total} agree ({100 * self.ratio:.2f}%; "
               f"{self.agree_eu} of them only with eu-addr2line's line)"]
        for addr, got, exp in self.disagreements[:limit]:
            out.append(f"  {addr:#x}")
            out.append(f"    hud:       {got}")
            out.append(f"    addr2line: {exp}")
        return "\n".join(out)


def compare(addrs: list[int], got: list[list[Level]], exp: list[list[Level]],
            binary: Optional[Path] = None) -> Comparison:
    """Function, file and line of every inline level must agree with binutils; where
    only the innermost file:line differs, elfutils' line lookup may settle it (binutils
    2.40 picks the unit's file for some GCC .cold ranges that elfutils and LLVM do not)."""
    c = Comparison()
    maybe = []
    for a, g, e in zip(addrs, got, exp):
        c.total += 1
        if g == e:
            c.agree += 1
        elif (binary is not None and len(g) == len(e) and g[1:] == e[1:]
              and all(x[0] == y[0] for x, y in zip(g, e))):
            maybe.append((a, g, e))
        else:
            c.disagreements.append((a, g, e))
    if maybe:
        eu = eu_addr2line(binary, [m[0] for m in maybe])
        for (a, g, e), (file, line) in zip(maybe, eu):
            if (g[0][1], g[0][2]) == (file, line):
                c.agree_eu += 1
            else:
                c.disagreements.append((a, g, e))
    return c
