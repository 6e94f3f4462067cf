"""LEB128 and DW_EH_PE pointer decoding (DWARF 5 §7.6 examples, LSB pointer encodings)."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hud.unwind.encoding import CfiError, pointer, sleb, uleb


def _uleb_enc(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _sleb_enc(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        done = (v == 0 and not b & 0x40) or (v == -1 and b & 0x40)
        out.append(b | (0 if done else 0x80))
        if done:
            return bytes(out)


@pytest.mark.parametrize("value,enc", [(2, b"\x02"), (127, b"\x7f"), (128, b"\x80\x01"),
                                       (129, b"\x81\x01"), (130, b"\x82\x01"),
                                       (12857, b"\xb9\x64")])
def test_uleb_spec_examples(value, enc):
    assert uleb(enc, 0) == (value, len(enc))


@pytest.mark.parametrize("value,enc", [(2, b"\x02"), (-2, b"\x7e"), (127, b"\xff\x00"),
                                       (-127, b"\x81\x7f"), (128, b"\x80\x01"),
                                       (-128, b"\x80\x7f"), (129, b"\x81\x01"),
                                       (-129, b"\xff\x7e")])
def test_sleb_spec_examples(value, enc):
    assert sleb(enc, 0) == (value, len(enc))


@given(st.integers(0, (1 << 64) - 1), st.binary(max_size=4))
def test_uleb_roundtrip(v, tail):
    enc = _uleb_enc(v)
    assert uleb(enc + tail, 0) == (v, len(enc))


@given(st.integers(-(1 << 63), (1 << 63) - 1))
def test_sleb_roundtrip(v):
    enc = _sleb_enc(v)
    assert sleb(enc, 0) == (v, len(enc))


@pytest.mark.parametrize("data", [b"", b"\x80", b"\xff" * 11])
def test_truncated_or_overlong_leb_fails_cleanly(data):
    with pytest.raises(CfiError):
        uleb(data, 0)
    with pytest.raises(CfiError):
        sleb(data, 0)


def test_pointer_encodings():
    sec = 0x1000
    data = b"\x00" * 4 + struct.pack("<i", -0x10)
    # pcrel|sdata4: relative to the field's own address (0x1004).
    assert pointer(data, 4, 0x1B, sec) == (0x1004 - 0x10, 8)
    # datarel|sdata4: relative to the data base.
    assert pointer(data, 4, 0x3B, sec, data_base=0x5000) == (0x5000 - 0x10, 8)
    # udata2, udata4, absptr, sdata8, uleb128, sleb128
    assert pointer(struct.pack("<H", 0xBEEF), 0, 0x02, sec) == (0xBEEF, 2)
    assert pointer(struct.pack("<I", 0xDEADBEEF), 0, 0x03, sec) == (0xDEADBEEF, 4)
    assert pointer(struct.pack("<Q", 1 << 40), 0, 0x00, sec) == (1 << 40, 8)
    assert pointer(struct.pack("<q", -1), 0, 0x0C, sec) == ((1 << 64) - 1, 8)
    assert pointer(b"\x80\x01", 0, 0x01, sec) == (128, 2)
    assert pointer(b"\x7e", 0, 0x09, sec) == ((1 << 64) - 2, 1)
    # omit reads nothing; value-only decoding ignores the application.
    assert pointer(b"", 0, 0xFF, sec) == (0, 0)
    assert pointer(data, 4, 0x1B, sec, relative=False) == ((1 << 64) - 0x10, 8)


def test_aligned_pointer_skips_padding():
    data = b"\xaa" * 3 + b"\x00" * 5 + struct.pack("<Q", 0x1234)
    assert pointer(data, 3, 0x50, 0x2000) == (0x1234, 16)


@pytest.mark.parametrize("enc", [0x05, 0x06, 0x0D, 0x23])
def test_unknown_or_unsupported_encodings_fail_cleanly(enc):
    with pytest.raises(CfiError):
        pointer(b"\x00" * 16, 0, enc, 0)


def test_truncated_pointer_fails_cleanly():
    with pytest.raises(CfiError):
        pointer(b"\x00\x00", 0, 0x1B, 0)
