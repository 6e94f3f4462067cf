"""aarch64 CFI unwinding matches gdb-multiarch's `bt` on committed qemu snapshots."""
from __future__ import annotations

import pytest
from unwind_support import A64, StaticMaps, a64_capture, a64_vectors

from hud.unwind.unwinder import Unwinder

VECTORS = a64_vectors()


def _unwinder(vec: dict) -> Unwinder:
    return Unwinder(StaticMaps([(str(A64 / vec["binary"]), vec["bias"])]))


def test_vectors_cover_both_builds_libc_and_leaves():
    builds = {v["binary"] for v in VECTORS}
    funcs = {v["function"] for v in VECTORS}
    assert builds == {"bin/deep_nofp", "bin/deep_fp"}
    assert {"leaf", "cmp", "clock_nanosleep"} <= funcs
    assert any(v["bias"] for v in VECTORS), "the static-PIE build gives a non-zero bias"


@pytest.mark.parametrize("vec", VECTORS, ids=lambda v: f"{v['binary']}:{v['function']}")
def test_cfi_matches_gdb(vec):
    res = _unwinder(vec).unwind(a64_capture(vec), mode="cfi")
    assert list(res.ips) == vec["gdb_pcs"]
    assert res.reason == "end"


@pytest.mark.parametrize("vec", [v for v in VECTORS if v["binary"] == "bin/deep_fp"],
                         ids=lambda v: v["function"])
def test_fp_walk_agrees_with_cfi_on_fp_build(vec):
    """A frame-pointer walk sees the same frames, except the caller of a function stopped
    before it stored its frame record (its return address is still only in x30)."""
    uw = _unwinder(vec)
    cap = a64_capture(vec)
    cfi = list(uw.unwind(cap, mode="cfi").ips)
    fp = list(uw.unwind(cap, mode="fp").ips)
    assert fp == cfi or fp == cfi[:1] + cfi[2:]


def test_auto_mode_equals_cfi_when_cfi_completes():
    for vec in VECTORS:
        uw = _unwinder(vec)
        assert uw.unwind(a64_capture(vec)).ips == tuple(vec["gdb_pcs"])


def test_a_wrong_bias_does_not_match():
    """Guard against a vacuous pass: shifting the module breaks the walk."""
    vec = next(v for v in VECTORS if v["function"] == "cmp")
    uw = Unwinder(StaticMaps([(str(A64 / vec["binary"]), vec["bias"] + 0x40)]))
    assert list(uw.unwind(a64_capture(vec), mode="cfi").ips) != vec["gdb_pcs"]
