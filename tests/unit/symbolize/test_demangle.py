"""Demangling: every Rust symbol of a real binary against `c++filt -i` (binutils'
non-verbose demangler, what addr2line -C prints), plus hand-made v0 grammar cases.
C++ is tested in test_demangle_cpp."""
from __future__ import annotations

import subprocess

import pytest

from hud.symbolize.demangle import demangle, demangle_rust_legacy, strip_rust_hash
from hud.symbolize.demangle_v0 import demangle_v0


def _cxxfilt(names: list) -> list:
    out = subprocess.run(["c++filt", "-i"], input="\n".join(names) + "\n",
                         capture_output=True, text=True, check=True).stdout
    return out.splitlines()


def test_rust_binary_symbols_match_cxxfilt(build):
    exe = build.rust()
    nm = subprocess.run(["nm", "-a", str(exe)], capture_output=True, text=True,
                        check=True).stdout
    names = sorted({ln.split()[-1] for ln in nm.splitlines()
                    if ln.split() and ln.split()[-1].startswith(("_R", "_ZN"))})
    v0 = [n for n in names if n.startswith("_R")]
    legacy = [n for n in names if n.startswith("_ZN")]
    assert len(v0) > 100 and len(legacy) > 5   # both manglings are really exercised
    expected = _cxxfilt(names)
    bad = [(n, demangle(n), e) for n, e in zip(names, expected) if demangle(n) != e]
    assert not bad, "\n".join(f"{n}\n  hud: {g}\n  c++filt: {e}" for n, g, e in bad[:20])


@pytest.mark.parametrize("mangled", [
    "_ZN1a4work17h0f4f2cc6631d2a1fE",
    "_ZN4core3ops8function6FnOnce40call_once$u7b$$u7b$vtable.shim$u7d$$u7d$17h818d26540a9886bbE",
    "_ZN9hashbrown3raw21RawTable$LT$T$C$A$GT$14reserve_rehash17hfcb1ff683a746b13E"
    ".llvm.9972615901574176112",
    "_ZN42_$LT$$RF$T$u20$as$u20$core..fmt..Debug$GT$3fmt17hec7a83ef8e6b7d25E",
    "_ZN8num_cpus5linux12CGROUPS_CPUS17ha54f428a076fe49bE.0",
    "_ZN3foo$BAD$bar17h0f4f2cc6631d2a1fE",
    "_RNvCsfLfy6EI15iL_7___rustc12___rust_alloc",
    "_RINvMNtCsgEmfK2I1SDS_4core3stre18trim_start_matchesReECsgY6Mt91CT9J_14rustc_demangle",
    "_RNvNtCs1234_7mycrate3foo3bar",
    "_RNCNvCs1234_7mycrate4main0B3_",             # closure
    "_RNSNvCs1234_7mycrate4main4shim",            # shim with a name
    "_RINvCs1234_7mycrate4takeAhj10_E",           # [u8; 16]
    "_RINvCs1234_7mycrate4takeKj2a_E",            # const generic usize 42
    "_RINvCs1234_7mycrate4takeKanb_E",            # negative i8 const
    "_RINvCs1234_7mycrate4takeKb1_E",             # bool const
    "_RINvCs1234_7mycrate4takeKc61_E",            # char const 'a'
    "_RINvCs1234_7mycrate4takeFUKCEuE",           # unsafe extern "C" fn()
    "_RINvCs1234_7mycrate4takeFRL_hEuE",          # fn(&u8)
    "_RINvCs1234_7mycrate4takeFG0_RL0_hEuE",      # for<'a> fn(&'a u8)
    "_RINvCs1234_7mycrate4takeDNtCs1234_7mycrate5TraitEL_E",   # dyn Trait
    "_RINvCs1234_7mycrate4takeTjhEE",             # (usize, u8)
    "_RINvCs1234_7mycrate4takeThEE",              # (u8,)
    "_RINvCs1234_7mycrate4takePQhE",              # *const &mut u8
    "_RNvCs1234_7mycrateu7gdel_5qa6c",            # punycode identifier
    "_RNvMs_NtCs1234_7mycrate3fooNtB4_3Bar3new",  # inherent impl with backref
    "_RNvXs_NtCs1234_7mycrate3fooNtB4_3BarNtNtCs5678_4core3fmt7Display3fmt",
])
def test_cases_match_cxxfilt(mangled):
    assert demangle(mangled) == _cxxfilt([mangled])[0]


def test_invalid_symbols_come_back_unchanged():
    for raw in ("main", "_R", "_Rx", "_RNvC", "_ZN3fooE", "_ZNE", "_ZN99fooE", "_RNvCs_"):
        assert demangle(raw) == raw or demangle(raw) == _cxxfilt([raw])[0]
    assert demangle_v0("_RNvC3foo3bar.llvm.123") == "foo::bar"
    assert demangle_rust_legacy("_ZN3foo3barE") is None


def test_strip_rust_hash():
    assert strip_rust_hash("a::work::h0f4f2cc6631d2a1f") == "a::work"
    assert strip_rust_hash("a::work") == "a::work"
