"""kernel/uapi.py against the running kernel's own BTF: every constant hud writes out by
hand must have the value the kernel was built with (catches the bpf_cmd off-by-one)."""
from __future__ import annotations

import os
import re

import pytest

from hud.linux import btf
from kernel import uapi


def test_every_uapi_enumerator_matches_vmlinux_btf():
    kernel = btf.vmlinux().enumerators()
    ours = {k: v for k, v in vars(uapi).items()
            if k.isupper() and isinstance(v, int) and not isinstance(v, bool)}
    checked = {k for k in ours if k in kernel}
    # Values that are #defines in bpf.h, not enumerators, have no BTF record.
    assert len(checked) >= 100, sorted(set(ours) - checked)
    wrong = {k: (ours[k], kernel[k]) for k in checked if ours[k] & 0xFFFFFFFFFFFFFFFF
             != kernel[k] & 0xFFFFFFFFFFFFFFFF}
    assert not wrong
    for name in ("BPF_LINK_CREATE", "BPF_ENABLE_STATS", "BPF_PROG_GET_NEXT_ID",
                 "BPF_MAP_TYPE_RINGBUF", "BPF_PROG_TYPE_TRACING", "BPF_PERF_EVENT",
                 "BPF_F_USER_STACK", "BPF_F_CURRENT_CPU", "BPF_NOEXIST"):
        assert name in checked, name


def test_helper_ids_match_enum_bpf_func_id():
    funcs = btf.vmlinux().enum("bpf_func_id")
    kernel = {k[len("BPF_FUNC_"):]: v for k, v in funcs.items() if k.startswith("BPF_FUNC_")}
    missing = set(uapi.HELPERS) - set(kernel)
    assert not missing
    assert {k: uapi.HELPERS[k] for k in uapi.HELPERS} == {k: kernel[k] for k in uapi.HELPERS}


def test_btf_finds_what_tp_btf_and_probe_reads_need():
    b = btf.vmlinux()
    tid = b.find("btf_trace_sched_switch", btf.BTF_KIND_TYPEDEF)
    assert b.name(tid) == "btf_trace_sched_switch"
    assert b.kind(b.resolve(tid)) == btf.BTF_KIND_PTR
    pid, tgid = (b.member_offset("task_struct", m) for m in ("pid", "tgid"))
    assert tgid == pid + 4          # declared next to each other: pid_t pid; pid_t tgid;
    assert b.size(b.find("task_struct", btf.BTF_KIND_STRUCT)) > tgid


def test_defines_match_the_installed_uapi_header():
    """#defines have no BTF record: compare them with /usr/include/linux/bpf.h (6.1 here)."""
    path = "/usr/include/linux/bpf.h"
    if not os.path.exists(path):
        pytest.skip("linux-libc-dev is not installed")
    rx = re.compile(r"#define\s+(BPF_\w+)\s+\(?\s*(\d+)U?\s*(?:<<\s*(\d+))?\s*\)?\s*(?:/\*.*)?$")
    header = {}
    with open(path) as f:
        for line in f:
            m = rx.match(line.strip())
            if m:
                header[m.group(1)] = int(m.group(2)) << int(m.group(3) or 0)
    names = ["BPF_F_ANY_ALIGNMENT", "BPF_F_SLEEPABLE", "BPF_F_STRICT_ALIGNMENT",
             "BPF_F_TEST_RND_HI32", "BPF_F_TEST_RUN_ON_CPU", "BPF_F_TEST_STATE_FREQ",
             "BPF_OBJ_NAME_LEN", "BPF_PSEUDO_BTF_ID", "BPF_PSEUDO_CALL", "BPF_PSEUDO_FUNC",
             "BPF_PSEUDO_KFUNC_CALL", "BPF_PSEUDO_MAP_FD", "BPF_PSEUDO_MAP_IDX",
             "BPF_PSEUDO_MAP_IDX_VALUE", "BPF_PSEUDO_MAP_VALUE", "BPF_TAG_SIZE"]
    assert {n: getattr(uapi, n) for n in names} == {n: header.get(n) for n in names}
