"""Prologue scan (capstone) and the strategy decision, including without capstone."""
from __future__ import annotations

import pytest

from hud.unwind import prologue

X86_FP = bytes.fromhex("554889e54883ec10")                 # push rbp; mov rbp,rsp; sub
X86_CET = bytes.fromhex("f30f1efa554889e5")                # endbr64; push rbp; mov rbp,rsp
X86_SCHED = bytes.fromhex("48b90101010101010101" "55" "89f8" "4889e5")  # movabs; push; mov
X86_NOFP = bytes.fromhex("534883ec20")                     # push rbx; sub rsp,32
X86_RET = bytes.fromhex("c3554889e5")                      # ret before any frame set-up
A64_FP = bytes.fromhex("fd7bbea9fd030091")                 # stp x29,x30,[sp,#-32]!; mov x29,sp
A64_PAC = bytes.fromhex("3f2303d5fd7bbfa9fd030091")         # paciasp; stp; mov
A64_NOFP = bytes.fromhex("ff4300d1e00f00b9")               # sub sp,sp,#16; str w0,[sp,#12]


@pytest.fixture
def capstone():
    if not prologue.capstone_available("x86_64"):
        pytest.fail("capstone is a pinned dependency and must load here")


@pytest.mark.parametrize("code,want", [(X86_FP, True), (X86_CET, True), (X86_SCHED, True),
                                       (X86_NOFP, False), (X86_RET, False)])
def test_x86_prologues(capstone, code, want):
    assert prologue.has_fp_prologue("x86_64", code, 0x1000) is want


@pytest.mark.parametrize("code,want", [(A64_FP, True), (A64_PAC, True), (A64_NOFP, False)])
def test_aarch64_prologues(capstone, code, want):
    assert prologue.has_fp_prologue("aarch64", code, 0x1000) is want


def test_scan_fraction_and_decision(capstone):
    text = [(0x1000, X86_FP + X86_NOFP + X86_CET + b"\x90" * 16)]
    entries = [0x1000, 0x1008, 0x100D, 0x5000]  # the last is outside .text: skipped
    frac, scanned = prologue.scan("x86_64", text, entries)
    assert scanned == 3 and frac == pytest.approx(2 / 3)
    assert prologue.decide("m", True, frac, scanned).strategy == "both"
    assert prologue.decide("m", True, 0.1, 9).strategy == "cfi"
    assert prologue.decide("m", False, 0.9, 9).strategy == "fp"
    assert prologue.decide("m", False, 0.1, 9).strategy == "none"
    assert "FP prologues 67% of 3" in prologue.decide("m", True, frac, scanned).describe()


def test_without_capstone_decisions_default_to_cfi(monkeypatch):
    monkeypatch.setattr(prologue, "_capstone_cache", {"x86_64": None, "aarch64": None})
    assert prologue.has_fp_prologue("x86_64", X86_FP, 0) is None
    assert prologue.scan("x86_64", [(0, X86_FP)], [0]) == (None, 0)
    s = prologue.decide("m", True, None, 0)
    assert s.strategy == "cfi" and not s.trusts_fp and "capstone" in s.reason


def test_capstone_import_failure_is_caught(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def fail(name, *a, **kw):
        if name == "capstone":
            raise OSError("libcapstone.so: cannot open shared object file")
        return real_import(name, *a, **kw)
    monkeypatch.setattr(prologue, "_capstone_cache", {})
    monkeypatch.setattr(builtins, "__import__", fail)
    assert not prologue.capstone_available("x86_64")


def _module(pattern: str, n: int = 3000) -> tuple[list, list]:
    """A .text of `n` 16-byte functions, FP prologues where `pattern` (cycled) says 1."""
    code = b"".join((X86_FP if pattern[i % len(pattern)] == "1" else X86_NOFP).ljust(16,
                    b"\x90") for i in range(n))
    return [(0x10000, code)], [0x10000 + 16 * i for i in range(n)]


@pytest.mark.parametrize("pattern,stops", [
    ("1", True), ("0", True), ("1111111110", True), ("10000", True),  # 100, 0, 90, 20%
    ("10", False), ("11100", False),                                  # 50, 60%: too close
])
def test_scan_stops_once_the_answer_is_plain(capstone, pattern, stops):
    """A share far from the line (60%) is settled by the first tenth of the entries, a
    sample of the whole module; one near it needs them all."""
    text, entries = _module(pattern)
    frac, scanned = prologue.scan("x86_64", text, entries)
    assert scanned == (200 if stops else prologue.MAX_SCANNED)
    # A sample of 200 is good to ~+-0.03 (one standard deviation); the decision is what
    # counts, and it is the full scan's.
    share = pattern.count("1") / len(pattern)
    assert frac == pytest.approx(share, abs=0.09 if stops else 0.03)
    if stops:
        assert (frac >= prologue.FP_TRUST_FRACTION) == (share >= prologue.FP_TRUST_FRACTION)


def test_an_early_stop_samples_the_whole_module(capstone):
    # FP prologues in the module's first half only: 50%, which needs the full scan; an
    # early look at the lowest addresses alone would have said 100% and stopped.
    half = 1500
    text, entries = _module("1" * half + "0" * half)
    frac, scanned = prologue.scan("x86_64", text, entries)
    assert scanned == prologue.MAX_SCANNED and frac == pytest.approx(0.5, abs=0.01)
