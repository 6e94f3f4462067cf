"""BTF reader on a hand-built blob and tracepoint format parsing (pure, no root)."""
from __future__ import annotations

import struct

import pytest

from hud.errors import BadInput
from hud.linux import btf
from hud.linux.tracefs import parse_format


def _blob() -> bytes:
    names = ["", "int", "task", "pid", "tgid", "inner", "my_t", "E", "A", "B", "flags"]
    strs = b""
    off = {}
    for n in names:
        off[n] = len(strs)
        strs += n.encode() + b"\0"

    def t(name, kind, vlen, size_or_type, kflag=0):
        info = (kflag << 31) | (kind << 24) | vlen
        return struct.pack("<III", off[name], info, size_or_type)

    types = b""
    types += t("int", btf.BTF_KIND_INT, 0, 4) + struct.pack("<I", 32)                    # 1
    types += t("task", btf.BTF_KIND_STRUCT, 4, 16, kflag=1)                               # 2
    types += struct.pack("<III", off["pid"], 1, 0)
    types += struct.pack("<III", 0, 3, 64)                       # anonymous union at byte 8
    types += struct.pack("<III", off["tgid"], 1, 96)
    types += struct.pack("<III", off["flags"], 1, (3 << 24) | 100)   # 3-bit field at bit 100
    types += t("", btf.BTF_KIND_UNION, 1, 4) + struct.pack("<III", off["inner"], 1, 0)    # 3
    types += t("my_t", btf.BTF_KIND_TYPEDEF, 0, 2)                                        # 4
    types += t("E", btf.BTF_KIND_ENUM, 2, 4, kflag=1)                                     # 5
    types += struct.pack("<Ii", off["A"], 1) + struct.pack("<Ii", off["B"], -2)
    types += t("", btf.BTF_KIND_PTR, 0, 2)                                                # 6
    hdr = struct.pack("<HBBIIIII", btf.BTF_MAGIC, 1, 0, 24, 0, len(types), len(types),
                      len(strs))
    return hdr + types + strs


def test_btf_lookups_on_a_known_blob():
    b = btf.Btf(_blob())
    assert len(b) == 6
    assert b.find("my_t") == 4 and b.find("task", btf.BTF_KIND_STRUCT) == 2
    with pytest.raises(KeyError):
        b.find("task", btf.BTF_KIND_UNION)
    assert b.resolve(4) == 2 and b.size(4) == 16 and b.size(6) == 8
    assert b.member_offset("task", "pid") == 0
    assert b.member_offset("task", "inner") == 8          # through the anonymous union
    assert b.member_offset("task", "tgid") == 12
    flags = next(m for m in b.members(2) if m.name == "flags")
    assert (flags.bit_offset, flags.bitfield_size) == (100, 3)
    assert b.enum("E") == {"A": 1, "B": -2}
    assert b.enumerators()["B"] == -2
    with pytest.raises(KeyError):
        b.member_offset("task", "nope")


def test_btf_rejects_garbage():
    with pytest.raises(BadInput):
        btf.Btf(b"\0" * 64)
    blob = bytearray(_blob())
    struct.pack_into("<I", blob, 12, 1 << 20)                  # type_len past the end
    with pytest.raises(BadInput):
        btf.Btf(bytes(blob))


FORMAT = """name: sched_switch
ID: 372
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:char prev_comm[16];\toffset:8;\tsize:16;\tsigned:0;
\tfield:pid_t prev_pid;\toffset:24;\tsize:4;\tsigned:1;
\tfield:__data_loc char[] name;\toffset:64;\tsize:4;\tsigned:0;
\tfield:const char * ptr;\toffset:72;\tsize:8;\tsigned:0;

print fmt: "prev_comm=%s prev_pid=%d", REC->prev_comm, REC->prev_pid
"""


def test_parse_format():
    f = parse_format(FORMAT)
    assert (f.name, f.id) == ("sched_switch", 372)
    assert [x.name for x in f.fields] == ["common_type", "common_pid", "prev_comm", "prev_pid",
                                         "name", "ptr"]
    assert f.offset("prev_pid") == 24 and f.field("prev_pid").signed
    assert f.field("prev_comm").size == 16 and f.field("common_pid").common
    assert not f.field("prev_pid").common
    with pytest.raises(KeyError):
        f.field("next_pid")
