"""Our CFI row tables equal binutils' `readelf -wF` (an independent decoder) on real ELFs."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from hud.symbolize.elf import ElfFile
from hud.unwind.rows import (
    RULE_EXPR,
    RULE_OFFSET,
    RULE_REGISTER,
    RULE_SAME,
    RULE_UNDEF,
    RULE_VAL_EXPR,
    RULE_VAL_OFFSET,
)
from hud.unwind.sources import tables_from_elf

NAMES = {"rax": 0, "rdx": 1, "rcx": 2, "rbx": 3, "rsi": 4, "rdi": 5, "rbp": 6, "rsp": 7,
         **{f"r{i}": i for i in range(8, 16)}, "ra": 16}
_TOKEN = re.compile(r"r\d+ \(\w+\)|\S+")
_FDE = re.compile(r"^[0-9a-f]+ [0-9a-f]+ [0-9a-f]+ FDE cie=[0-9a-f]+ pc=([0-9a-f]+)\.\.([0-9a-f]+)")

CANDIDATES = ["/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2",
              "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/usr/bin/gdb"]
FILES = [p for p in CANDIDATES if os.path.exists(p)]


def _readelf_rows(path: str):
    """{fde_start: [(loc, cfa_text, {regno: rule_text})]} from `readelf -wF`."""
    # readelf exits 1 over unrelated warnings (e.g. a missing separate debug file).
    text = subprocess.run(["readelf", "-wF", path], capture_output=True, text=True,
                          check=False).stdout
    out = {}
    cols: list[str] = []
    cur = None
    for line in text.splitlines():
        m = _FDE.match(line)
        if m:
            cur = out.setdefault(int(m.group(1), 16), [])
            cols = []
            continue
        if cur is None:
            continue
        if line.strip().startswith("LOC"):
            cols = line.split()[2:]
            continue
        toks = _TOKEN.findall(line)
        if len(toks) >= 2 and re.fullmatch(r"[0-9a-f]{8,16}", toks[0]) and cols:
            rules = dict(zip((NAMES.get(c, -1) for c in cols), toks[2:]))
            cur.append((int(toks[0], 16), toks[1], rules))
        elif not line.strip():
            cur = None
    return out


def _cfa_text(row) -> str:
    reg, off, expr, _ = row
    if expr is not None:
        return "exp"
    name = next(n for n, v in NAMES.items() if v == reg)
    return f"{name}{off:+d}"


def _rule_text(kind: int, arg) -> str:
    if kind == RULE_OFFSET:
        return f"c{arg:+d}"
    if kind == RULE_VAL_OFFSET:
        return f"v{arg:+d}"
    if kind == RULE_SAME:
        return "s"
    if kind == RULE_UNDEF:
        return "u"
    if kind == RULE_REGISTER:
        name = next((n for n, v in NAMES.items() if v == arg), f"r{arg}")
        return f"r{arg} ({name})"
    if kind == RULE_EXPR:
        return "exp"
    if kind == RULE_VAL_EXPR:
        return "vexp"
    return "?"


@pytest.mark.skipif(not FILES or shutil.which("readelf") is None, reason="no x86_64 ELFs")
@pytest.mark.parametrize("path", FILES)
def test_rows_equal_readelf(path):
    with ElfFile.open(path) as elf:
        if elf.machine != "x86_64":
            pytest.skip("not x86_64")
        table = tables_from_elf(elf)
    expected = _readelf_rows(path)
    assert len(expected) > 100
    starts = sorted(expected)
    step = max(1, len(starts) // 800)   # bounded test time on big files
    compared = 0
    for start in starts[::step]:
        for loc, cfa, rules in expected[start]:
            got = table.lookup(loc)
            assert got is not None, f"{path}: no row at {loc:#x}"
            assert got.fde_start == start
            assert _cfa_text(got.row) == cfa, f"{path}: CFA at {loc:#x}"
            ours = {r: _rule_text(k, a) for r, k, a in got.row[3]}
            for reg, text in rules.items():
                assert ours.get(reg, "u") == text, f"{path}: reg {reg} at {loc:#x}"
            compared += 1
    assert compared > 500
