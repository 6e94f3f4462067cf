"""A small pure-Python reader of kernel BTF (/sys/kernel/btf/vmlinux): type ids by name,
struct member offsets, enum values. Enough for tp_btf attach ids and probe_read offsets.

Layout (include/uapi/linux/btf.h): a header (magic 0xeB9F), then a type section of
`struct btf_type {u32 name_off; u32 info; u32 size_or_type}` records, each followed by
kind-specific data, with ids counting from 1, and a string section. Parsing the ~127k
types of a 6.18 vmlinux takes about half a second; `vmlinux()` caches the result.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Optional

from hud.errors import BadInput, Unsupported

VMLINUX = "/sys/kernel/btf/vmlinux"
BTF_MAGIC = 0xEB9F

# enum btf_kind
BTF_KIND_INT, BTF_KIND_PTR, BTF_KIND_ARRAY, BTF_KIND_STRUCT, BTF_KIND_UNION = 1, 2, 3, 4, 5
BTF_KIND_ENUM, BTF_KIND_FWD, BTF_KIND_TYPEDEF, BTF_KIND_VOLATILE, BTF_KIND_CONST = 6, 7, 8, 9, 10
BTF_KIND_RESTRICT, BTF_KIND_FUNC, BTF_KIND_FUNC_PROTO, BTF_KIND_VAR = 11, 12, 13, 14
BTF_KIND_DATASEC, BTF_KIND_FLOAT, BTF_KIND_DECL_TAG, BTF_KIND_TYPE_TAG = 15, 16, 17, 18
BTF_KIND_ENUM64 = 19

# Bytes of kind-specific data after the 12-byte btf_type: (fixed, per vlen entry).
_TRAILER = {BTF_KIND_INT: (4, 0), BTF_KIND_ARRAY: (12, 0), BTF_KIND_STRUCT: (0, 12),
            BTF_KIND_UNION: (0, 12), BTF_KIND_ENUM: (0, 8), BTF_KIND_FUNC_PROTO: (0, 8),
            BTF_KIND_VAR: (4, 0), BTF_KIND_DATASEC: (0, 12), BTF_KIND_DECL_TAG: (4, 0),
            BTF_KIND_ENUM64: (0, 12)}
_MODIFIERS = {BTF_KIND_TYPEDEF, BTF_KIND_VOLATILE, BTF_KIND_CONST, BTF_KIND_RESTRICT,
              BTF_KIND_TYPE_TAG}


@dataclass(frozen=True)
class Member:
    """A struct/union member: `bit_offset` from the start of its parent."""

    name: str
    type_id: int
    bit_offset: int
    bitfield_size: int = 0

    @property
    def offset(self) -> int:
        return self.bit_offset // 8


class Btf:
    """Parsed BTF: look types up by name and kind, read members and enums."""

    def __init__(self, data: bytes) -> None:
        if len(data) < 24:
            raise BadInput("BTF data is truncated")
        magic, _ver, _flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
        if magic != BTF_MAGIC:
            raise BadInput(f"not BTF (magic {magic:#x})", "expected /sys/kernel/btf/vmlinux")
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", data, 8)
        self._data = data
        self._types = hdr_len + type_off
        self._strs = hdr_len + str_off
        self._str_end = self._strs + str_len
        end = self._types + type_len
        if end > len(data) or self._str_end > len(data):
            raise BadInput("BTF sections run past the end of the data")
        # _pos[id] = byte offset of that btf_type (id 0 is "void").
        self._pos = [0]
        self._by_name: dict[str, list[int]] = {}
        unpack = struct.Struct("<III").unpack_from
        pos = self._types
        tid = 0
        while pos < end:
            name_off, info, _ = unpack(data, pos)
            tid += 1
            self._pos.append(pos)
            kind = (info >> 24) & 0x1F
            fixed, per = _TRAILER.get(kind, (0, 0))
            pos += 12 + fixed + per * (info & 0xFFFF)
            if name_off:
                self._by_name.setdefault(self._str(name_off), []).append(tid)

    def _str(self, off: int) -> str:
        start = self._strs + off
        stop = self._data.index(b"\0", start, self._str_end)
        return self._data[start:stop].decode("utf-8", "replace")

    def __len__(self) -> int:
        return len(self._pos) - 1

    def _header(self, tid: int) -> tuple[int, int, int, int]:
        if not 0 < tid < len(self._pos):
            raise KeyError(f"no BTF type id {tid}")
        name_off, info, size_or_type = struct.unpack_from("<III", self._data, self._pos[tid])
        return name_off, (info >> 24) & 0x1F, info, size_or_type

    def kind(self, tid: int) -> int:
        return self._header(tid)[1]

    def name(self, tid: int) -> str:
        name_off = self._header(tid)[0]
        return self._str(name_off) if name_off else ""

    def find(self, name: str, kind: Optional[int] = None) -> int:
        """The id of the type called `name` (of `kind` when given); KeyError if none."""
        for tid in self._by_name.get(name, ()):
            if kind is None or self.kind(tid) == kind:
                return tid
        raise KeyError(f"no BTF type {name!r}" + (f" of kind {kind}" if kind else ""))

    def resolve(self, tid: int) -> int:
        """Follow typedefs and qualifiers to the underlying type id."""
        while tid and self.kind(tid) in _MODIFIERS:
            tid = self._header(tid)[3]
        return tid

    def size(self, tid: int) -> int:
        """Byte size of a struct, union, int, enum or pointer (after resolve())."""
        tid = self.resolve(tid)
        _, kind, _, size = self._header(tid)
        if kind == BTF_KIND_PTR:
            return 8
        if kind == BTF_KIND_ARRAY:
            elem, _index, nelems = struct.unpack_from("<III", self._data, self._pos[tid] + 12)
            return self.size(elem) * nelems
        return size

    def members(self, tid: int) -> list[Member]:
        """Members of a struct or union (anonymous ones have name "")."""
        tid = self.resolve(tid)
        _, kind, info, _ = self._header(tid)
        if kind not in (BTF_KIND_STRUCT, BTF_KIND_UNION):
            raise KeyError(f"BTF type {tid} is not a struct or union")
        kflag = info >> 31
        out = []
        base = self._pos[tid] + 12
        for i in range(info & 0xFFFF):
            name_off, mtype, moff = struct.unpack_from("<III", self._data, base + 12 * i)
            if kflag:  # bitfield size in the top 8 bits, bit offset in the low 24
                out.append(Member(self._str(name_off) if name_off else "", mtype,
                                  moff & 0xFFFFFF, moff >> 24))
            else:
                out.append(Member(self._str(name_off) if name_off else "", mtype, moff))
        return out

    def member_offset(self, struct_name: str, path: str) -> int:
        """Byte offset of `path` ("pid", "se.sum_exec_runtime") inside struct `struct_name`,
        looking through anonymous struct/union members as C does."""
        tid = self.find(struct_name, BTF_KIND_STRUCT)
        total = 0
        for part in path.split("."):
            found = self._find_member(tid, part)
            if found is None:
                raise KeyError(f"struct {struct_name} has no member {path!r}")
            bits, tid = found
            total += bits
        return total // 8

    def _find_member(self, tid: int, name: str) -> Optional[tuple[int, int]]:
        for m in self.members(tid):
            if m.name == name:
                return m.bit_offset, m.type_id
            if not m.name and self.kind(self.resolve(m.type_id)) in (BTF_KIND_STRUCT,
                                                                      BTF_KIND_UNION):
                inner = self._find_member(m.type_id, name)
                if inner is not None:
                    return m.bit_offset + inner[0], inner[1]
        return None

    def enumerators(self) -> dict[str, int]:
        """Every enumerator of every enum, anonymous ones included (the kernel's #define-like
        flags such as BPF_F_USER_STACK live in anonymous enums); first definition wins."""
        out: dict[str, int] = {}
        for tid in range(1, len(self._pos)):
            if self.kind(tid) in (BTF_KIND_ENUM, BTF_KIND_ENUM64):
                for k, v in self._enum_values(tid).items():
                    out.setdefault(k, v)
        return out

    def enum(self, name: str) -> dict[str, int]:
        """Values of enum `name` (ENUM or ENUM64)."""
        for tid in self._by_name.get(name, ()):
            if self.kind(tid) in (BTF_KIND_ENUM, BTF_KIND_ENUM64):
                return self._enum_values(tid)
        raise KeyError(f"no BTF enum {name!r}")

    def _enum_values(self, tid: int) -> dict[str, int]:
        _, kind, info, _ = self._header(tid)
        signed = (info >> 31) & 1
        base = self._pos[tid] + 12
        out = {}
        if kind == BTF_KIND_ENUM:
            fmt = "<Ii" if signed else "<II"
            for i in range(info & 0xFFFF):
                n, v = struct.unpack_from(fmt, self._data, base + 8 * i)
                out[self._str(n)] = v
        else:
            for i in range(info & 0xFFFF):
                n, lo, hi = struct.unpack_from("<III", self._data, base + 12 * i)
                v = (hi << 32) | lo
                out[self._str(n)] = v - (1 << 64) if signed and v >> 63 else v
        return out


_cache: dict[str, Btf] = {}


def load(path: str = VMLINUX) -> Btf:
    """Parse a BTF file (cached per path)."""
    if path not in _cache:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise Unsupported(f"{path} is missing: this kernel has no BTF",
                              "needs CONFIG_DEBUG_INFO_BTF; use the tracepoint programs") from None
        except OSError as e:
            raise BadInput(f"cannot read {path}: {e.strerror}") from None
        _cache[path] = Btf(data)
    return _cache[path]


def vmlinux() -> Btf:
    """The running kernel's BTF."""
    return load(VMLINUX)
