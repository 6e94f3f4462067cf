"""BPF maps as Python objects: create from a MapSpec, read and write by bytes, close once."""
from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Optional

from hud.errors import UsageError
from hud.linux import bpf, procfs
from hud.linux.closing import Closing, close_fd
from kernel import uapi
from kernel.abi import MapSpec


class Map(Closing):
    """One BPF map fd (a context manager). Keys and values are bytes.

    For per-CPU maps `lookup` returns the whole userspace buffer (one 8-byte-aligned slot
    per possible CPU); `lookup_percpu` splits it. Failures of the kernel calls raise
    HudError subclasses; an absent key is None/False, never an exception.
    """

    def __init__(self, spec: MapSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.map_type = spec.map_type
        self.key_size = spec.key_size
        self.value_size = spec.value_size
        self.ncpus = len(procfs.possible_cpus())
        entries = spec.max_entries
        if spec.map_type == uapi.BPF_MAP_TYPE_PERF_EVENT_ARRAY and entries == 0:
            entries = self.ncpus
        self.max_entries = entries
        self.percpu = spec.map_type in uapi.PERCPU_MAP_TYPES
        self.fd = bpf.map_create(spec.map_type, spec.key_size, spec.value_size, entries,
                                 spec.flags, spec.name, spec.map_extra)
        self._id: Optional[int] = None

    @classmethod
    def create(cls, name: str, map_type: int, key_size: int, value_size: int,
               max_entries: int, flags: int = 0) -> Map:
        """Create a map without writing a MapSpec first."""
        return cls(MapSpec(name, map_type, key_size, value_size, max_entries, flags))

    @property
    def id(self) -> int:
        """The kernel's id of this map (as bpftool and GET_NEXT_ID show it)."""
        if self._id is None:
            self._id = bpf.map_info(self._live()).id
        return self._id

    @property
    def user_value_size(self) -> int:
        """Bytes a lookup returns: value_size, or the per-CPU buffer size."""
        if self.percpu:
            return bpf.percpu_value_size(self.value_size, self.ncpus)
        return self.value_size

    def _live(self) -> int:
        if self.fd < 0:
            raise UsageError(f"map {self.name} used after close")
        return self.fd

    def _key(self, key: bytes) -> bytes:
        if len(key) != self.key_size:
            raise UsageError(f"map {self.name}: key of {len(key)} bytes, expected "
                             f"{self.key_size}")
        return key

    def lookup(self, key: bytes) -> Optional[bytes]:
        return bpf.map_lookup(self._live(), self._key(key), self.user_value_size)

    def lookup_percpu(self, key: bytes) -> Optional[list[bytes]]:
        """One value per possible CPU (each trimmed to value_size), or None."""
        raw = self.lookup(key)
        if raw is None:
            return None
        step = (self.value_size + 7) & ~7
        return [raw[i * step:i * step + self.value_size] for i in range(self.ncpus)]

    def update(self, key: bytes, value: bytes, flags: int = uapi.BPF_ANY) -> None:
        if len(value) != self.user_value_size:
            raise UsageError(f"map {self.name}: value of {len(value)} bytes, expected "
                             f"{self.user_value_size}")
        bpf.map_update(self._live(), self._key(key), value, flags)

    def update_percpu(self, key: bytes, values: list[bytes], flags: int = uapi.BPF_ANY) -> None:
        """Set each CPU's value of a per-CPU map (one entry per possible CPU)."""
        if len(values) != self.ncpus:
            raise UsageError(f"map {self.name}: {len(values)} per-CPU values for "
                             f"{self.ncpus} possible CPUs")
        step = (self.value_size + 7) & ~7
        self.update(key, b"".join(v.ljust(step, b"\0") for v in values), flags)

    def delete(self, key: bytes) -> bool:
        return bpf.map_delete(self._live(), self._key(key))

    def keys(self) -> Iterator[bytes]:
        """Every key, by BPF_MAP_GET_NEXT_KEY (a live map may change while iterating)."""
        key = None
        while True:
            key = bpf.map_get_next_key(self._live(), key, self.key_size)
            if key is None:
                return
            yield key

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        for key in self.keys():
            value = self.lookup(key)
            if value is not None:
                yield key, value

    # Conveniences for the common u32 keys and u64 values.
    def set_u32(self, index: int, value: int) -> None:
        """key u32 `index` = u32 `value` (e.g. a perf fd into a PERF_EVENT_ARRAY)."""
        self.update(struct.pack("<I", index), struct.pack("<I", value))

    def close(self) -> None:
        """Close the fd; the kernel frees the map when no program or fd holds it."""
        close_fd(self)

    def __repr__(self) -> str:
        return f"Map({self.name!r}, type={self.map_type}, fd={self.fd})"
