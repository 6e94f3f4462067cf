"""Bare closure and async-body names (line-tables-only DWARF) take their path from the
function they are inlined into, only when that function's name spells exactly one type
of the same kind and index. The end-to-end check against llvm-symbolizer on a real
line-tables-only build is tests/e2e/test_symbolize_addr2line.py."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hud.symbolize.closure_names import qualify

SPAWN = "__rust_begin_short_backtrace<blockers::scenarios::start_mutex_holder::{closure_env#0}, ()>"


def test_a_bare_closure_takes_the_path_its_caller_spells():
    assert qualify("{closure#0}", SPAWN) == "blockers::scenarios::start_mutex_holder::{closure#0}"
    assert qualify("{async_block#6}", "poll<&mut blockers::main::{async_block_env#6}>") \
        == "blockers::main::{async_block#6}"
    assert qualify("{async_fn#0}", "poll<blockers::scenarios::cpu_loop::{async_fn_env#0}>") \
        == "blockers::scenarios::cpu_loop::{async_fn#0}"
    # Paths that start with an impl, and generic arguments inside the owner's path.
    assert qualify("{closure#1}", "call_once<<a::S<u8> as a::T>::run::{closure_env#1}>") \
        == "<a::S<u8> as a::T>::run::{closure#1}"
    assert qualify("{closure#0}", "f<fn() -> u8, x::{impl#1}::new::{closure_env#0}>") \
        == "x::{impl#1}::new::{closure#0}"
    assert qualify("{closure#0}", "f<&[a::b::{closure_env#0}]>") == "a::b::{closure#0}"


def test_anything_less_than_one_clear_match_leaves_the_name_bare():
    # Another index, another kind, or none at all.
    assert qualify("{closure#1}", SPAWN) == "{closure#1}"
    assert qualify("{async_fn#0}", SPAWN) == "{async_fn#0}"
    assert qualify("{closure#0}", "main") == "{closure#0}"
    assert qualify("{closure#0}", "") == "{closure#0}"
    # Two candidates: a map over a closure that calls another closure.
    two = "fold<core::iter::adapters::map::map_fold::{closure_env#0}<a::{closure_env#0}>>"
    assert qualify("{closure#0}", two) == "{closure#0}"
    # A closure of a generic function names its own arguments: never rewritten.
    assert qualify("{closure#0}<a::{closure_env#0}, ()>", SPAWN) == \
        "{closure#0}<a::{closure_env#0}, ()>"
    # Not a closure name, or an unbalanced owner: unchanged.
    assert qualify("poll", SPAWN) == "poll"
    assert qualify("{closure#0}", "f<a>>::b::{closure_env#0}>") == "{closure#0}"
    assert qualify("{closure#0}", "::{closure_env#0}") == "{closure#0}"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="<>,:(){}#0&*[]; ab_-", max_size=60))
def test_any_caller_text_gives_the_name_or_a_path_ending_in_it(caller):
    got = qualify("{closure#0}", caller)
    assert got == "{closure#0}" or (got.endswith("::{closure#0}")
                                   and got[:-len("::{closure#0}")] in caller)
