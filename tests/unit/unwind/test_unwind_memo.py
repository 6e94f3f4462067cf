"""The unwinder's memo gives exactly what a fresh walk gives, and notices changed bytes."""
from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from unwind_support import A64, StaticMaps, a64_capture, a64_vectors

from hud.model import StackCapture
from hud.unwind.unwinder import Unwinder

VECTORS = a64_vectors()


def _unwinder(vec: dict) -> Unwinder:
    return Unwinder(StaticMaps([(str(A64 / vec["binary"]), vec["bias"])]))


@pytest.mark.parametrize("vec", VECTORS[:6], ids=lambda v: f"{v['binary']}:{v['function']}")
def test_a_repeated_capture_hits_and_equals_a_fresh_walk(vec):
    uw = _unwinder(vec)
    cap = a64_capture(vec)
    first = uw.unwind_memo(cap)
    again = uw.unwind_memo(StackCapture(regs=cap.regs, stack=bytes(cap.stack)))
    assert uw.memo_hits == 1
    assert again == first == uw.unwind(cap)
    assert list(first.ips) == vec["gdb_pcs"]


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_changed_bytes_never_give_a_stale_result(data):
    vec = data.draw(st.sampled_from(VECTORS))
    uw = _unwinder(vec)
    cap = a64_capture(vec)
    uw.unwind_memo(cap)
    stack = bytearray(cap.stack)
    # Flip a few bytes anywhere, and sometimes cut the copy short.
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(stack) - 1))
        stack[i] ^= data.draw(st.integers(1, 255))
    if data.draw(st.booleans()):
        stack = stack[: data.draw(st.integers(0, len(stack)))]
    changed = dataclasses.replace(cap, stack=bytes(stack))
    fresh = _unwinder(vec).unwind(changed)
    assert uw.unwind_memo(changed) == fresh
