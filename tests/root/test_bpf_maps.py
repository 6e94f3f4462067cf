"""Map semantics against the real kernel: hash, array, per-CPU, errors, ids, lifetime."""
from __future__ import annotations

import errno
import struct

import pytest

from hud.bpf.maps import Map
from hud.errors import HudError, KernelError, UsageError
from hud.linux import bpf, procfs
from kernel import uapi
from kernel.abi import MapSpec

U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")


def test_hash_update_lookup_delete_and_errors():
    with Map.create("hud_t_hash", uapi.BPF_MAP_TYPE_HASH, 4, 8, 16) as m:
        assert m.lookup(U32.pack(1)) is None
        assert m.delete(U32.pack(1)) is False
        m.update(U32.pack(1), U64.pack(0xC0FFEE))
        assert m.lookup(U32.pack(1)) == U64.pack(0xC0FFEE)
        with pytest.raises(HudError) as exc:
            m.update(U32.pack(1), U64.pack(2), uapi.BPF_NOEXIST)
        assert exc.value.errno == errno.EEXIST
        with pytest.raises(HudError) as exc:
            m.update(U32.pack(9), U64.pack(2), uapi.BPF_EXIST)
        assert exc.value.errno == errno.ENOENT
        m.update(U32.pack(1), U64.pack(3), uapi.BPF_EXIST)
        assert m.lookup(U32.pack(1)) == U64.pack(3)
        assert m.delete(U32.pack(1)) is True
        assert m.lookup(U32.pack(1)) is None
        with pytest.raises(UsageError):
            m.lookup(b"\0" * 8)


def test_get_next_key_walks_every_key_and_restarts_from_an_absent_one():
    with Map.create("hud_t_keys", uapi.BPF_MAP_TYPE_HASH, 4, 4, 64) as m:
        want = {U32.pack(k) for k in (3, 17, 42, 1000)}
        for k in want:
            m.update(k, k)
        assert set(m.keys()) == want
        assert dict(m.items()) == {k: k for k in want}
        first = bpf.map_get_next_key(m.fd, None, 4)
        assert bpf.map_get_next_key(m.fd, U32.pack(999999), 4) == first


def test_array_semantics():
    with Map.create("hud_t_arr", uapi.BPF_MAP_TYPE_ARRAY, 4, 8, 4) as m:
        assert m.lookup(U32.pack(3)) == b"\0" * 8       # never-set slots read as zero
        assert m.lookup(U32.pack(4)) is None            # out of range: ENOENT
        m.update(U32.pack(2), U64.pack(7))
        assert m.lookup(U32.pack(2)) == U64.pack(7)
        with pytest.raises(KernelError) as exc:          # arrays cannot delete
            m.delete(U32.pack(2))
        assert exc.value.errno == errno.EINVAL
        assert list(m.keys()) == [U32.pack(i) for i in range(4)]


@pytest.mark.parametrize("map_type", [uapi.BPF_MAP_TYPE_PERCPU_ARRAY,
                                      uapi.BPF_MAP_TYPE_PERCPU_HASH])
def test_percpu_values_take_one_aligned_slot_per_possible_cpu(map_type):
    ncpu = len(procfs.possible_cpus())
    with Map.create("hud_t_pcpu", map_type, 4, 12, 4) as m:
        assert m.percpu and m.user_value_size == 16 * ncpu
        vals = [bytes([i + 1]) * 12 for i in range(ncpu)]
        m.update_percpu(U32.pack(1), vals)
        assert m.lookup_percpu(U32.pack(1)) == vals
        raw = m.lookup(U32.pack(1))
        assert len(raw) == 16 * ncpu and raw[12:16] == b"\0" * 4
        # A buffer sized for one CPU is refused before it reaches the kernel.
        with pytest.raises(UsageError):
            m.update(U32.pack(1), vals[0])


def test_special_maps_and_their_rules():
    ncpu = len(procfs.possible_cpus())
    with Map(MapSpec("hud_t_pea", uapi.BPF_MAP_TYPE_PERF_EVENT_ARRAY, 4, 4, 0)) as m:
        assert m.max_entries == ncpu == bpf.map_info(m.fd).max_entries
    with Map(MapSpec("hud_t_rb", uapi.BPF_MAP_TYPE_RINGBUF, 0, 0, 1 << 16)) as m:
        with pytest.raises(KernelError):                # only readable through mmap
            bpf.map_lookup(m.fd, b"", 0)
    with pytest.raises(ValueError):                     # caught before the kernel says EINVAL
        MapSpec("hud_t_rb", uapi.BPF_MAP_TYPE_RINGBUF, 0, 0, 3 << 20)
    with pytest.raises(HudError) as exc:                # deeper than perf_event_max_stack
        Map.create("hud_t_stk", uapi.BPF_MAP_TYPE_STACK_TRACE, 4, 128 * 8, 16)
    assert exc.value.errno == errno.EINVAL
    with Map.create("hud_t_stk", uapi.BPF_MAP_TYPE_STACK_TRACE, 4, 127 * 8, 16) as m:
        assert bpf.map_info(m.fd).value_size == 127 * 8


def test_map_info_ids_and_freeing_on_close():
    m = Map.create("hud_t_info", uapi.BPF_MAP_TYPE_HASH, 8, 16, 32)
    info = bpf.map_info(m.fd)
    assert (info.type, info.key_size, info.value_size, info.max_entries, info.name) == \
        (uapi.BPF_MAP_TYPE_HASH, 8, 16, 32, "hud_t_info")
    assert m.id == info.id and info.id in bpf.map_ids()
    m.close()
    m.close()
    assert info.id not in bpf.map_ids()
    with pytest.raises(UsageError):
        m.lookup(b"\0" * 8)


def test_bad_names_are_refused():
    with pytest.raises(HudError):
        Map.create("bad-name", uapi.BPF_MAP_TYPE_HASH, 4, 4, 4)
    with pytest.raises(HudError):
        Map.create("x" * 16, uapi.BPF_MAP_TYPE_HASH, 4, 4, 4)
