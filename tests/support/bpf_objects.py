"""Which BPF objects a process holds, and whether they outlived it (leak checks)."""
from __future__ import annotations

import re
import time
from pathlib import Path

from hud.linux import bpf

KINDS = (("link_id", "links"), ("prog_id", "progs"), ("map_id", "maps"))


def held_by(pid: int) -> dict:
    """BPF prog/map/link ids behind the open file descriptors of `pid` (from fdinfo)."""
    found: dict = {"progs": set(), "maps": set(), "links": set()}
    fdinfo = Path(f"/proc/{pid}/fdinfo")
    try:
        entries = list(fdinfo.iterdir())
    except OSError:
        return found
    for entry in entries:
        try:
            text = entry.read_text()
        except OSError:
            continue
        for key, kind in KINDS:
            m = re.search(rf"^{key}:\s*(\d+)", text, re.M)
            if m:
                found[kind].add(int(m.group(1)))
    return found


def still_alive(ids: dict, wait_s: float = 3.0) -> dict:
    """The ids of `ids` that still exist, after waiting up to `wait_s` for the kernel's
    deferred frees (maps are released from a workqueue after their last fd closes)."""
    deadline = time.monotonic() + wait_s
    while True:
        now = {"progs": set(bpf.prog_ids()), "maps": set(bpf.map_ids()),
               "links": set(bpf.link_ids())}
        left = {k: v & now[k] for k, v in ids.items() if v & now[k]}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def wait_held(pid: int, timeout_s: float = 30.0) -> dict:
    """Wait until `pid` holds at least one program and one link (it has attached)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ids = held_by(pid)
        if ids["progs"] and ids["links"]:
            return ids
        time.sleep(0.1)
    raise AssertionError(f"process {pid} attached no BPF program within {timeout_s:g} s")
