"""Tracepoint ids and `format` files from tracefs (mounted on demand when absent).

tracefs lives at /sys/kernel/tracing, or under debugfs at /sys/kernel/debug/tracing on
older set-ups. Some hosts (this project's VMs among them) boot without it mounted; hud
then mounts tracefs at /sys/kernel/tracing, its standard place, and leaves it there as
a boot-time mount would.
"""
from __future__ import annotations

import ctypes
import os
import re
from dataclasses import dataclass
from typing import Optional

from hud.errors import Unsupported, from_errno

CANDIDATES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
_root_cache: Optional[str] = None


@dataclass(frozen=True)
class Field:
    """One field of a tracepoint record; offsets count from the start of the record."""

    name: str
    decl: str       # the C declaration as printed, e.g. "char prev_comm[16]"
    offset: int
    size: int
    signed: bool

    @property
    def common(self) -> bool:
        """common_* fields (offsets below 8) cannot be read by a TRACEPOINT program."""
        return self.name.startswith("common_")


@dataclass(frozen=True)
class Format:
    """A parsed tracepoint `format` file."""

    name: str
    id: int
    fields: tuple[Field, ...]

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"tracepoint {self.name} has no field {name!r}")

    def offset(self, name: str) -> int:
        return self.field(name).offset


_FIELD = re.compile(r"field:(?P<decl>[^;]*);\s*offset:(?P<off>\d+);\s*size:(?P<size>\d+);"
                    r"(?:\s*signed:(?P<signed>\d+);)?")


def parse_format(text: str) -> Format:
    """Parse the text of events/<category>/<name>/format (pure; lines it does not know
    are skipped)."""
    name, tp_id, fields = "", -1, []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("name:"):
            name = stripped[5:].strip()
        elif stripped.startswith("ID:"):
            tp_id = int(stripped[3:].strip())
        else:
            m = _FIELD.search(stripped)
            if m:
                decl = m.group("decl").strip()
                fields.append(Field(_field_name(decl), decl, int(m.group("off")),
                                    int(m.group("size")), m.group("signed") == "1"))
    return Format(name, tp_id, tuple(fields))


def _field_name(decl: str) -> str:
    last = decl.split()[-1] if decl.split() else decl
    return last.split("[", 1)[0].lstrip("*")


def _mounted(path: str) -> bool:
    return os.path.isdir(os.path.join(path, "events"))


def _mount_tracefs(target: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                           ctypes.c_ulong, ctypes.c_void_p]
    if libc.mount(b"tracefs", target.encode(), b"tracefs", 0, None) != 0:
        raise from_errno(ctypes.get_errno(), f"mount -t tracefs tracefs {target}",
                         "mount tracefs yourself: mount -t tracefs nodev /sys/kernel/tracing")


def tracefs_root(mount: bool = True) -> str:
    """The tracefs directory; mounts tracefs at /sys/kernel/tracing when none is found."""
    global _root_cache
    if _root_cache and _mounted(_root_cache):
        return _root_cache
    for path in CANDIDATES:
        if _mounted(path):
            _root_cache = path
            return path
    if mount and os.path.isdir(CANDIDATES[0]):
        _mount_tracefs(CANDIDATES[0])
        if _mounted(CANDIDATES[0]):
            _root_cache = CANDIDATES[0]
            return _root_cache
    raise Unsupported("tracefs is not available",
                      "mount it: mount -t tracefs nodev /sys/kernel/tracing")


def _event_dir(category: str, name: str) -> str:
    if "/" in category or "/" in name or category.startswith(".") or name.startswith("."):
        raise Unsupported(f"invalid tracepoint name {category}:{name}")
    return os.path.join(tracefs_root(), "events", category, name)


def _read(path: str, what: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        raise Unsupported(f"tracepoint {what} does not exist on this kernel",
                          "check `ls /sys/kernel/tracing/events`") from None
    except OSError as e:
        raise from_errno(e.errno or 5, f"read {path}") from None


def tracepoint_id(category: str, name: str) -> int:
    """The perf config value (PERF_TYPE_TRACEPOINT) of `category:name`."""
    return int(_read(os.path.join(_event_dir(category, name), "id"), f"{category}:{name}"))


def tracepoint_format(category: str, name: str) -> Format:
    """The parsed `format` file of `category:name`."""
    return parse_format(_read(os.path.join(_event_dir(category, name), "format"),
                              f"{category}:{name}"))
