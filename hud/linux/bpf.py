"""The bpf() syscall through ctypes: maps, program load, object info, ids, links, test runs.

`union bpf_attr` is passed as a zeroed 168-byte buffer (its 6.18 size): the kernel accepts
any size from 48 to 4096 as long as the bytes beyond its own union are zero, so older
kernels take it too. Offsets are those of include/uapi/linux/bpf.h (KERNEL-FACTS §7).
Every returned fd is O_CLOEXEC (the kernel sets it for all bpf fds); callers own them.
"""
from __future__ import annotations

import ctypes
import errno as _errno
import struct
from dataclasses import dataclass
from typing import Optional

from hud.errors import HudError, ProgramRejected, from_errno
from hud.linux import procfs
from hud.linux.libc import check, raw_syscall
from kernel import uapi

ATTR_SIZE = 168
LOG_SIZE = 1 << 20        # first retry; a log that does not fit gives ENOSPC
LOG_SIZE_MAX = 1 << 26


def _attr(*fields: tuple[int, str, object]) -> ctypes.Array:
    """A zeroed bpf_attr with (offset, struct format, value) fields filled in."""
    buf = ctypes.create_string_buffer(ATTR_SIZE)
    for off, fmt, value in fields:
        struct.pack_into("<" + fmt, buf, off, value)
    return buf


def sys_bpf(cmd: int, attr: ctypes.Array) -> int:
    """bpf(cmd, attr, size): the result, or -errno (never raises)."""
    return raw_syscall("bpf", cmd, ctypes.addressof(attr), ATTR_SIZE)


def _addr(buf: Optional[ctypes.Array]) -> int:
    return ctypes.addressof(buf) if buf is not None else 0


def _name16(name: str) -> bytes:
    raw = name.encode()
    if len(raw) >= uapi.BPF_OBJ_NAME_LEN:
        raise HudError(f"BPF object name {name!r} is longer than 15 bytes", exit_code=2)
    return raw


# -- maps -----------------------------------------------------------------------------
def map_create(map_type: int, key_size: int, value_size: int, max_entries: int,
               flags: int = 0, name: str = "", map_extra: int = 0) -> int:
    """BPF_MAP_CREATE -> map fd."""
    attr = _attr((0, "I", map_type), (4, "I", key_size), (8, "I", value_size),
                 (12, "I", max_entries), (16, "I", flags), (28, "16s", _name16(name)),
                 (64, "Q", map_extra))
    return check(sys_bpf(uapi.BPF_MAP_CREATE, attr),
                 f"BPF_MAP_CREATE(type={map_type}, key={key_size}, value={value_size}, "
                 f"entries={max_entries}, name={name!r})")


def percpu_value_size(value_size: int, ncpus: Optional[int] = None) -> int:
    """Userspace buffer of a per-CPU value: round_up(value_size, 8) x possible CPUs."""
    n = ncpus if ncpus is not None else len(procfs.possible_cpus())
    return ((value_size + 7) & ~7) * n


def map_lookup(fd: int, key: bytes, value_size: int, flags: int = 0) -> Optional[bytes]:
    """BPF_MAP_LOOKUP_ELEM: the value, or None when the key is absent (ENOENT).

    `value_size` is the full userspace size (percpu_value_size() for per-CPU maps).
    """
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(value_size)
    ret = sys_bpf(uapi.BPF_MAP_LOOKUP_ELEM,
                  _attr((0, "I", fd), (8, "Q", _addr(k)), (16, "Q", _addr(v)), (24, "Q", flags)))
    if ret == -_errno.ENOENT:
        return None
    check(ret, "BPF_MAP_LOOKUP_ELEM")
    return v.raw


def map_update(fd: int, key: bytes, value: bytes, flags: int = uapi.BPF_ANY) -> None:
    """BPF_MAP_UPDATE_ELEM (BPF_NOEXIST on a present key raises with errno EEXIST)."""
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(value, len(value))
    check(sys_bpf(uapi.BPF_MAP_UPDATE_ELEM,
                  _attr((0, "I", fd), (8, "Q", _addr(k)), (16, "Q", _addr(v)),
                        (24, "Q", flags))), "BPF_MAP_UPDATE_ELEM")


def map_delete(fd: int, key: bytes) -> bool:
    """BPF_MAP_DELETE_ELEM: True if deleted, False if the key was absent."""
    k = ctypes.create_string_buffer(key, len(key))
    ret = sys_bpf(uapi.BPF_MAP_DELETE_ELEM, _attr((0, "I", fd), (8, "Q", _addr(k))))
    if ret == -_errno.ENOENT:
        return False
    check(ret, "BPF_MAP_DELETE_ELEM")
    return True


def map_get_next_key(fd: int, key: Optional[bytes], key_size: int) -> Optional[bytes]:
    """BPF_MAP_GET_NEXT_KEY: the key after `key` (the first when None or absent), or None."""
    k = ctypes.create_string_buffer(key, len(key)) if key is not None else None
    nxt = ctypes.create_string_buffer(key_size)
    ret = sys_bpf(uapi.BPF_MAP_GET_NEXT_KEY,
                  _attr((0, "I", fd), (8, "Q", _addr(k)), (16, "Q", _addr(nxt))))
    if ret == -_errno.ENOENT:
        return None
    check(ret, "BPF_MAP_GET_NEXT_KEY")
    return nxt.raw


# -- programs -------------------------------------------------------------------------
def _load(image: bytes, prog_type: int, license: str, name: str, expected_attach_type: int,
          attach_btf_id: int, prog_flags: int, log: Optional[ctypes.Array],
          log_level: int) -> int:
    insns = ctypes.create_string_buffer(image, len(image))
    lic = ctypes.create_string_buffer(license.encode())
    attr = _attr((0, "I", prog_type), (4, "I", len(image) // 8), (8, "Q", _addr(insns)),
                 (16, "Q", _addr(lic)), (24, "I", log_level),
                 (28, "I", len(log) if log is not None else 0), (32, "Q", _addr(log)),
                 (44, "I", prog_flags), (48, "16s", _name16(name)),
                 (68, "I", expected_attach_type), (108, "I", attach_btf_id))
    return sys_bpf(uapi.BPF_PROG_LOAD, attr)


def prog_load(image: bytes, prog_type: int, *, name: str = "", license: str = "GPL",
              expected_attach_type: int = 0, attach_btf_id: int = 0,
              prog_flags: int = 0, log_level: int = 0) -> tuple[int, str]:
    """BPF_PROG_LOAD -> (prog fd, verifier log).

    Loads with no log first: a log buffer that is too small makes even a valid program
    fail with ENOSPC. On failure it loads again with a 1 MiB log (growing on ENOSPC) and
    raises ProgramRejected carrying the verifier's text. `log_level` > 0 asks for the log
    of a successful load too (1: errors and states, 2: every instruction).
    """
    log = ctypes.create_string_buffer(LOG_SIZE) if log_level else None
    ret = _load(image, prog_type, license, name, expected_attach_type, attach_btf_id,
                prog_flags, log, log_level)
    if ret >= 0:
        return ret, _text(log)
    first = -ret
    if first in (_errno.EPERM, _errno.E2BIG, _errno.ENOMEM):
        raise from_errno(first, f"BPF_PROG_LOAD({name or 'prog'})")
    size, level = LOG_SIZE, max(log_level, 1)
    while True:
        log = ctypes.create_string_buffer(size)
        ret = _load(image, prog_type, license, name, expected_attach_type, attach_btf_id,
                    prog_flags, log, level)
        if ret >= 0:  # loaded with a log although it failed without: keep it, say nothing
            return ret, _text(log)
        if -ret == _errno.ENOSPC and size < LOG_SIZE_MAX:
            size *= 4
            continue
        break
    text = _text(log)
    err = -ret
    if not text.strip():
        raise from_errno(err, f"BPF_PROG_LOAD({name or 'prog'})")
    reason = _reason(text)
    raise ProgramRejected(
        f"the verifier rejected BPF program {name or '?'}: {reason}",
        "this kernel refuses hud's program; run `hud doctor`, or try --backend perf",
        log=text, errno=err)


def _text(log: Optional[ctypes.Array]) -> str:
    return log.value.decode("utf-8", "replace") if log is not None else ""


def _reason(log: str) -> str:
    """The line of a verifier log that says why (the last one before the summary)."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if not ln.startswith(("processed ", "verification time", "stack depth", "mark_precise",
                              "max_states_per_insn")):
            return ln
    return lines[-1] if lines else "no log"


# -- object info ----------------------------------------------------------------------
def obj_get_info(fd: int, size: int, preset: bytes = b"") -> bytes:
    """BPF_OBJ_GET_INFO_BY_FD into a `size`-byte struct (optionally pre-filled)."""
    info = ctypes.create_string_buffer(preset.ljust(size, b"\0"), size)
    attr = _attr((0, "I", fd), (4, "I", size), (8, "Q", _addr(info)))
    check(sys_bpf(uapi.BPF_OBJ_GET_INFO_BY_FD, attr), "BPF_OBJ_GET_INFO_BY_FD")
    return info.raw


@dataclass(frozen=True)
class ProgInfo:
    """What the kernel says about a loaded program (struct bpf_prog_info)."""

    type: int
    id: int
    name: str
    xlated_len: int
    jited_len: int
    map_ids: tuple[int, ...]
    run_time_ns: int
    run_cnt: int
    recursion_misses: int
    verified_insns: int


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def prog_info(fd: int, with_xlated: bool = False) -> tuple[ProgInfo, bytes]:
    """(ProgInfo, xlated instructions) of a program fd (xlated only when asked)."""
    base = obj_get_info(fd, 232)
    nr_maps = struct.unpack_from("<I", base, 52)[0]
    xlen = struct.unpack_from("<I", base, 20)[0]
    maps = ctypes.create_string_buffer(4 * max(nr_maps, 1))
    xl = ctypes.create_string_buffer(max(xlen, 8)) if with_xlated else None
    pre = bytearray(232)
    struct.pack_into("<IQ", pre, 52, nr_maps, _addr(maps))
    if xl is not None:
        struct.pack_into("<I", pre, 20, xlen)
        struct.pack_into("<Q", pre, 32, _addr(xl))
    raw = obj_get_info(fd, 232, bytes(pre))
    ptype, pid = struct.unpack_from("<II", raw, 0)
    jited, xlated = struct.unpack_from("<II", raw, 16)
    run_ns, run_cnt, misses = struct.unpack_from("<QQQ", raw, 192)
    verified = struct.unpack_from("<I", raw, 216)[0]
    ids = struct.unpack_from(f"<{nr_maps}I", maps.raw) if nr_maps else ()
    info = ProgInfo(ptype, pid, _cstr(raw[64:80]), xlated, jited, tuple(ids), run_ns,
                    run_cnt, misses, verified)
    return info, (xl.raw[:xlen] if xl is not None else b"")


@dataclass(frozen=True)
class MapInfo:
    type: int
    id: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    name: str


def map_info(fd: int) -> MapInfo:
    raw = obj_get_info(fd, 104)
    t, i, k, v, n, f = struct.unpack_from("<6I", raw, 0)
    return MapInfo(t, i, k, v, n, f, _cstr(raw[24:40]))


@dataclass(frozen=True)
class LinkInfo:
    type: int
    id: int
    prog_id: int


def link_info(fd: int) -> LinkInfo:
    raw = obj_get_info(fd, 64)
    return LinkInfo(*struct.unpack_from("<III", raw, 0))


# -- ids ------------------------------------------------------------------------------
def _next_id(cmd: int, start: int) -> Optional[int]:
    attr = _attr((0, "I", start))
    ret = sys_bpf(cmd, attr)
    if ret == -_errno.ENOENT:
        return None
    check(ret, f"bpf GET_NEXT_ID({cmd})")
    return struct.unpack_from("<I", attr, 4)[0]


def _all_ids(cmd: int) -> list[int]:
    out, cur = [], 0
    while True:
        nxt = _next_id(cmd, cur)
        if nxt is None:
            return out
        out.append(nxt)
        cur = nxt


def prog_ids() -> list[int]:
    """Ids of every BPF program loaded in the system (BPF_PROG_GET_NEXT_ID)."""
    return _all_ids(uapi.BPF_PROG_GET_NEXT_ID)


def map_ids() -> list[int]:
    return _all_ids(uapi.BPF_MAP_GET_NEXT_ID)


def link_ids() -> list[int]:
    return _all_ids(uapi.BPF_LINK_GET_NEXT_ID)


def fd_by_id(kind: str, obj_id: int) -> Optional[int]:
    """An fd for the prog/map/link with this id, or None if it went away meanwhile."""
    cmd = {"prog": uapi.BPF_PROG_GET_FD_BY_ID, "map": uapi.BPF_MAP_GET_FD_BY_ID,
           "link": uapi.BPF_LINK_GET_FD_BY_ID}[kind]
    ret = sys_bpf(cmd, _attr((0, "I", obj_id)))
    if ret == -_errno.ENOENT:
        return None
    return check(ret, f"BPF_{kind.upper()}_GET_FD_BY_ID")


# -- attachment, stats, test runs -----------------------------------------------------
def link_create(prog_fd: int, target_fd: int, attach_type: int, flags: int = 0,
                cookie: int = 0) -> int:
    """BPF_LINK_CREATE -> link fd (BPF_PERF_EVENT with a perf fd; BPF_TRACE_RAW_TP, 0 for
    tp_btf). Closing the link fd detaches."""
    attr = _attr((0, "I", prog_fd), (4, "I", target_fd), (8, "I", attach_type),
                 (12, "I", flags), (16, "Q", cookie))
    return check(sys_bpf(uapi.BPF_LINK_CREATE, attr),
                 f"BPF_LINK_CREATE(attach_type={attach_type})")


def raw_tracepoint_open(name: Optional[str], prog_fd: int) -> int:
    """BPF_RAW_TRACEPOINT_OPEN -> link fd. `name` None for tp_btf (the BTF id says where)."""
    buf = ctypes.create_string_buffer(name.encode()) if name is not None else None
    attr = _attr((0, "Q", _addr(buf)), (8, "I", prog_fd))
    return check(sys_bpf(uapi.BPF_RAW_TRACEPOINT_OPEN, attr),
                 f"BPF_RAW_TRACEPOINT_OPEN({name or 'btf'})")


def link_detach(link_fd: int) -> None:
    check(sys_bpf(uapi.BPF_LINK_DETACH, _attr((0, "I", link_fd))), "BPF_LINK_DETACH")


def enable_stats(stats_type: int = uapi.BPF_STATS_RUN_TIME) -> int:
    """BPF_ENABLE_STATS -> fd; run_time_ns/run_cnt are kept while it is open."""
    return check(sys_bpf(uapi.BPF_ENABLE_STATS, _attr((0, "I", stats_type))),
                 "BPF_ENABLE_STATS")


@dataclass(frozen=True)
class TestRun:
    retval: int
    duration_ns: int
    data_out: bytes
    ctx_out: bytes


def prog_test_run(prog_fd: int, ctx_in: bytes = b"", data_in: bytes = b"", *,
                  repeat: int = 0, flags: int = 0, cpu: int = 0, data_out_size: int = 0,
                  ctx_out_size: int = 0) -> TestRun:
    """BPF_PROG_TEST_RUN. raw_tracepoint ctx is the u64 args; `repeat` must be 0 for
    raw_tracepoint and syscall programs (else EINVAL)."""
    ci = ctypes.create_string_buffer(ctx_in, len(ctx_in)) if ctx_in else None
    di = ctypes.create_string_buffer(data_in, len(data_in)) if data_in else None
    do = ctypes.create_string_buffer(data_out_size) if data_out_size else None
    co = ctypes.create_string_buffer(ctx_out_size) if ctx_out_size else None
    attr = _attr((0, "I", prog_fd), (8, "I", len(data_in)), (12, "I", data_out_size),
                 (16, "Q", _addr(di)), (24, "Q", _addr(do)), (32, "I", repeat),
                 (40, "I", len(ctx_in)), (44, "I", ctx_out_size), (48, "Q", _addr(ci)),
                 (56, "Q", _addr(co)), (64, "I", flags), (68, "I", cpu))
    check(sys_bpf(uapi.BPF_PROG_TEST_RUN, attr), "BPF_PROG_TEST_RUN")
    retval = struct.unpack_from("<I", attr, 4)[0]
    dsize = struct.unpack_from("<I", attr, 12)[0]
    duration = struct.unpack_from("<I", attr, 36)[0]
    csize = struct.unpack_from("<I", attr, 44)[0]
    return TestRun(retval, duration, do.raw[:dsize] if do is not None else b"",
                   co.raw[:csize] if co is not None else b"")
