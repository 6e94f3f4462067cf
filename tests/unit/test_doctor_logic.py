"""hud doctor's pure logic on synthetic inputs: causes of refusals, the backend decision,
verdicts and exit codes, text and JSON rendering, Tokio evidence in symbol tables."""
from __future__ import annotations

import errno
import json
import socket
import struct
from typing import Optional

import pytest
from support.debuginfod import serve

from hud.doctor import explain
from hud.doctor.debug_advice import DEBUG_HINT, MAX_ASKED, advise
from hud.doctor.explain import (
    CAP_BPF,
    CAP_CHECKPOINT_RESTORE,
    CAP_PERFMON,
    CAP_SYS_ADMIN,
    CAP_SYS_PTRACE,
    ROOT_HINT,
    HostFacts,
)
from hud.doctor.host import (
    check_backend,
    check_kernel,
    check_privileges,
    choose_backend,
)
from hud.doctor.model import (
    FAIL,
    HOST,
    OK,
    SKIP,
    TARGET,
    WARN,
    Check,
    Report,
    format_report,
)
from hud.doctor.probes import tracefs_mounts
from hud.doctor.target import tokio_evidence
from hud.symbolize.elf import ElfFile

ALL_CAPS = (1 << 41) - 1


def caps(*bits: int) -> int:
    return sum(1 << b for b in bits)


# -- explain --------------------------------------------------------------------------------

def test_parsers():
    assert explain.parse_caps("000001ffffffffff") == (1 << 41) - 1
    assert explain.parse_caps(None) == 0 and explain.parse_caps("zz") == 0
    assert explain.parse_lockdown("none [integrity] confidentiality\n") == "integrity"
    assert explain.parse_lockdown("[none] integrity confidentiality") == "none"
    assert explain.parse_lockdown(None) is None
    assert not explain.in_user_namespace("         0          0 4294967295\n")
    assert explain.in_user_namespace("         0       1000          1\n")
    assert explain.kernel_version("6.18.44-fc-v657") == (6, 18, 44)
    assert explain.kernel_version("5.15.0-91-generic") == (5, 15, 0)
    assert explain.kernel_version("6.1") == (6, 1, 0)
    assert explain.kernel_version("4.19.0+") == (4, 19, 0)


def test_capabilities_needed_per_kernel_generation():
    f = HostFacts(euid=1000, caps=caps(CAP_BPF, CAP_PERFMON))
    assert f.can("bpf") and f.can("perf") and not f.can("ptrace")
    assert f.missing("ptrace") == ["CAP_SYS_PTRACE"]
    # CAP_BPF alone is not enough for tracing programs: CAP_PERFMON too.
    assert not HostFacts(euid=1000, caps=caps(CAP_BPF)).can("bpf")
    # Before 5.8 CAP_BPF/CAP_PERFMON do not exist: CAP_SYS_ADMIN is what counts.
    old = HostFacts(euid=1000, caps=caps(CAP_BPF, CAP_PERFMON), cap_last=37)
    assert not old.can("bpf") and old.missing("bpf") == ["CAP_SYS_ADMIN"]
    assert HostFacts(euid=0, caps=caps(CAP_SYS_ADMIN), cap_last=37).can("perf")
    assert HostFacts(caps=caps(CAP_CHECKPOINT_RESTORE)).can("map_files")


@pytest.mark.parametrize("facts, err, what, expect, hint", [
    (HostFacts(euid=65534, caps=0, unprivileged_bpf_disabled=2), errno.EPERM, "bpf",
     "not root without CAP_BPF + CAP_PERFMON (unprivileged_bpf_disabled=2)", ROOT_HINT),
    (HostFacts(euid=65534, caps=0, perf_event_paranoid=2), errno.EACCES, "perf",
     "not root without CAP_PERFMON (perf_event_paranoid=2)", ROOT_HINT),
    (HostFacts(euid=0, caps=ALL_CAPS, userns=True), errno.EPERM, "bpf",
     "user namespace", "host"),
    (HostFacts(euid=0, caps=ALL_CAPS, lockdown="confidentiality"), errno.EPERM, "bpf",
     "lockdown", "lockdown=integrity"),
    (HostFacts(euid=0, caps=ALL_CAPS, lockdown="confidentiality"), errno.EACCES,
     "tracefs_read", "lockdown", "lockdown=integrity"),
    (HostFacts(euid=0, caps=ALL_CAPS, seccomp=2), errno.EPERM, "bpf", "seccomp",
     "seccomp=unconfined"),
    (HostFacts(euid=0, caps=ALL_CAPS), errno.EPERM, "bpf", "LSM", "audit log"),
    (HostFacts(euid=0, caps=ALL_CAPS), errno.ENOSYS, "bpf", "CONFIG_BPF_SYSCALL",
     "--backend perf"),
    (HostFacts(euid=0, caps=caps(CAP_BPF, CAP_PERFMON)), errno.EPERM, "ptrace",
     "root, but without CAP_SYS_PTRACE", ROOT_HINT),
    (HostFacts(euid=0, caps=ALL_CAPS, yama_ptrace_scope=3), errno.EACCES, "ptrace",
     "Yama ptrace_scope=3", "reboot"),
])
def test_denied_names_the_visible_cause(facts, err, what, expect, hint):
    why, got_hint = explain.denied(err, facts, what)
    assert expect in why
    assert hint in got_hint


def test_denied_rejects_an_unknown_kind():
    with pytest.raises(ValueError):
        explain.denied(errno.EPERM, HostFacts(), "nonsense")


# -- host checks on synthetic facts --------------------------------------------------------

def test_privileges():
    assert check_privileges(HostFacts(euid=0, caps=ALL_CAPS)).status == OK
    nobody = check_privileges(HostFacts(euid=65534, caps=0))
    assert nobody.status == FAIL and "root" in nobody.hint
    partial = check_privileges(HostFacts(euid=1000, caps=caps(CAP_BPF, CAP_PERFMON)))
    assert partial.status == WARN and "CAP_SYS_PTRACE" in partial.summary
    assert check_privileges(HostFacts(euid=0, caps=ALL_CAPS, userns=True)).status == FAIL
    # root without CAP_SYS_PTRACE (a trimmed container) is told what it loses
    trimmed = check_privileges(HostFacts(euid=0, caps=ALL_CAPS & ~(1 << CAP_SYS_PTRACE)))
    assert trimmed.status == WARN and "/proc/PID/mem" in trimmed.summary


@pytest.mark.parametrize("release, arch, status", [
    ("6.18.44", "x86_64", OK), ("6.1.0-18-amd64", "aarch64", OK),
    ("5.15.0", "x86_64", OK), ("5.10.0-28-amd64", "x86_64", WARN),
    ("4.14.0", "x86_64", FAIL), ("6.6.0", "riscv64", FAIL),
])
def test_kernel(release, arch, status):
    assert check_kernel(release, arch).status == status


def test_tracefs_mounts_come_from_the_mount_table():
    table = ("sysfs /sys sysfs rw 0 0\n"
             "nodev /mnt/my\\040trace tracefs rw 0 0\n"
             "tracefs /sys/kernel/tracing tracefs rw,relatime 0 0\n")
    assert tracefs_mounts(table) == ["/sys/kernel/tracing", "/mnt/my trace"]
    assert tracefs_mounts("") == [] and tracefs_mounts(None) == []


def _host(**status: str) -> list[Check]:
    names = ("privileges", "kernel", "bpf", "ringbuf", "btf", "tracefs", "bpf_attach",
             "programs", "perf", "max_stack", "capstone")
    return [Check(n, status.get(n, OK), f"{n} summary", f"{n} hint" if
                  status.get(n, OK) != OK else "") for n in names]


def test_backend_auto_prefers_ebpf():
    assert choose_backend(_host())[0] == "ebpf"
    # warnings do not disqualify
    assert choose_backend(_host(btf=WARN, max_stack=WARN, programs=WARN))[0] == "ebpf"


def test_backend_falls_back_to_perf_and_says_why():
    backend, why = choose_backend(_host(bpf=FAIL, ringbuf=SKIP, bpf_attach=SKIP,
                                        programs=SKIP))
    assert backend == "perf" and "bpf: bpf summary" in why
    backend, why = choose_backend(_host(programs=FAIL))
    assert backend == "perf" and "programs" in why
    # a skip is explained by the failure that caused it
    backend, why = choose_backend(_host(ringbuf=SKIP, bpf=FAIL))
    assert "bpf summary" in why


def test_no_backend_when_tracefs_or_perf_fail():
    backend, why = choose_backend(_host(tracefs=FAIL, bpf_attach=SKIP))
    assert backend is None and "tracefs" in why
    check, got = check_backend(_host(perf=FAIL))
    assert got is None and check.status == FAIL and check.hint == "perf hint"


# -- verdict, exit code, rendering ---------------------------------------------------------

def _target(**status: str) -> list[Check]:
    names = ("target", "access", "threads", "tokio", "debug_info", "unwind", "files",
             "binary")
    return [Check(n, status.get(n, OK), f"{n} is fine", f"fix {n}", TARGET) for n in names]


def test_exit_codes():
    assert Report(_host(), "ebpf").exit_code == 0
    assert Report(_host(max_stack=WARN), "ebpf").exit_code == 0
    assert Report(_host(bpf=FAIL), "perf").exit_code == 0       # a fallback works
    assert Report(_host(bpf=FAIL, perf=FAIL), None).exit_code == 5
    assert Report(_host() + _target(), "ebpf", target_found=True).exit_code == 0
    assert Report(_host() + _target(tokio=WARN), "ebpf", target_found=True).exit_code == 0
    assert Report(_host() + _target(access=FAIL), "ebpf", target_found=True).exit_code == 5
    missing = [Check("target", FAIL, "no process named 'x'", "check pgrep", TARGET)]
    assert Report(_host() + missing, "ebpf", target_found=False).exit_code == 4
    # a host that cannot work is the deeper problem than a typo in the name
    assert Report(_host(perf=FAIL) + missing, None, target_found=False).exit_code == 5


def test_verdict_and_fix():
    r = Report(_host(max_stack=WARN), "ebpf")
    assert r.can_profile and "backend ebpf" in r.verdict and "1 warning" in r.verdict
    assert r.fix == ""
    r = Report(_host(privileges=FAIL, bpf=FAIL, perf=FAIL), None)
    assert not r.can_profile and "cannot profile on this host" in r.verdict
    assert r.fix == "privileges hint"
    r = Report(_host() + _target(access=FAIL), "ebpf", target_found=True)
    assert "this target" in r.verdict and "access" in r.verdict and r.fix == "fix access"
    ambiguous = Check("target", FAIL, "3 processes are named 'app'", "--pid N", TARGET)
    r = Report([*_host(), ambiguous], "ebpf", target_found=False)
    assert "3 processes" in r.verdict and r.fix == "--pid N"


def test_text_fits_80_columns_and_shows_hints_once():
    long = "x" * 30 + " " + "word " * 40
    checks = [Check("bpf", FAIL, long, ROOT_HINT), Check("perf", FAIL, long, ROOT_HINT),
              Check("ringbuf", SKIP, "not tried: bpf() does not work"),
              Check("bpf_attach", SKIP, "not tried: bpf() does not work"),
              Check("kernel", OK, "6.18 x86_64", "unused hint", details=["d " * 60])]
    text = format_report(Report(checks, None, version="9.9"))
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    assert text.count(ROOT_HINT.split(",")[0]) <= 2     # once as hint, once as fix
    assert sum("-> run hud as root" in line for line in lines) == 1
    assert "skip  ringbuf, bpf_attach" in text          # one line for both skips
    assert "unused hint" not in text                   # ok lines carry no hint
    assert lines[0].startswith("hud doctor 9.9")
    assert lines[-1].startswith("fix: run hud as root")
    assert any(line.startswith("  FAIL  bpf") for line in lines)


def test_json_is_an_object_of_checks():
    r = Report(_host(btf=WARN) + _target(), "ebpf", target_found=True,
               target={"pid": 42, "comm": "app"}, version="1.0")
    doc = json.loads(json.dumps(r.to_json()))
    assert doc["schema"] == "hud-doctor/1" and doc["exit_code"] == 0
    assert doc["backend"] == "ebpf" and doc["can_profile"] is True
    assert doc["target"] == {"pid": 42, "comm": "app"}
    assert doc["checks"]["btf"] == {"scope": HOST, "status": "warn",
                                    "summary": "btf summary", "hint": "btf hint"}
    assert doc["checks"]["unwind"]["scope"] == TARGET
    assert list(doc["checks"])[:2] == ["privileges", "kernel"]


def test_unknown_status_is_refused():
    with pytest.raises(ValueError):
        Check("x", "FAIL", "upper case is a rendering, not a status")


# -- Tokio evidence ---------------------------------------------------------------------------

def _elf_with_symbols(names: list[bytes], extra: Optional[dict] = None) -> bytes:
    """A minimal ELF64 with .symtab/.strtab naming `names` (and extra sections by name)."""
    strtab = b"\0" + b"".join(n + b"\0" for n in names)
    syms = b"\0" * 24
    off = 1
    for i, n in enumerate(names):
        syms += struct.pack("<IBBHQQ", off, 0x12, 0, 1, 0x1000 + 16 * i, 16)
        off += len(n) + 1
    sections = [(".strtab", 3, strtab), (".symtab", 2, syms)]
    for name, data in (extra or {}).items():
        sections.append((name, 1, data))
    shstr = b"\0" + b"".join(s[0].encode() + b"\0" for s in sections) + b".shstrtab\0"
    body = b""
    offsets = []
    pos = 64
    for _name, _t, data in sections:
        offsets.append(pos + len(body))
        body += data
    shstr_off = pos + len(body)
    body += shstr
    shoff = pos + len(body)
    shdrs = b"\0" * 64
    name_off = 1
    for (name, typ, data), o in zip(sections, offsets):
        link_ix = 1 if typ == 2 else 0   # .symtab links to section 1 (.strtab)
        shdrs += struct.pack("<IIQQQQIIQQ", name_off, typ, 0, 0, o, len(data), link_ix,
                             1 if typ == 2 else 0, 1, 24 if typ == 2 else 0)
        name_off += len(name) + 1
    shdrs += struct.pack("<IIQQQQIIQQ", name_off, 3, 0, 0, shstr_off, len(shstr), 0, 0, 1, 0)
    nsec = len(sections) + 2
    ident = b"\x7fELF" + bytes([2, 1, 1]) + b"\0" * 9
    hdr = ident + struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, 0, 0, shoff, 0, 64, 56, 0, 64,
                              nsec, nsec - 1)
    return hdr + body + shdrs


def test_tokio_symbols_legacy_and_v0_are_counted():
    elf = ElfFile.from_bytes(_elf_with_symbols([
        b"_ZN5tokio7runtime4park6Parker4park17h0123456789abcdefE",
        b"_RNvNtNtNtCs1234_5tokio7runtime9scheduler12multi_thread3run",
        b"_ZN3std6thread5sleep17h0123456789abcdefE",
    ], {".debug_line_str": b"/usr/share/cargo/registry/tokio-1.24.2/src\0"}))
    ev = tokio_evidence([elf])
    assert ev["symbols"] == 2 and ev["flavors"] == ["multi_thread"]
    assert ev["version"] == "1.24.2" and ev["version_from"] == "dwarf" and ev["has_symtab"]


def test_a_stripped_binary_still_names_tokio_in_its_panic_locations():
    rodata = b"JoinHandle polled\0/usr/share/cargo/registry/tokio-1.35.1/src/runtime/x.rs"
    ev = tokio_evidence([ElfFile.from_bytes(_elf_with_symbols([], {".rodata": rodata}))])
    assert ev["symbols"] == 0 and not ev["has_symtab"]
    assert ev["version"] == "1.35.1" and ev["version_from"] == "rodata"
    # other crates named tokio-* are not Tokio
    other = b"/registry/tokio-util-0.7.4/src/codec.rs\0tokio-stream-0.1.2/src"
    ev = tokio_evidence([ElfFile.from_bytes(_elf_with_symbols([], {".rodata": other}))])
    assert ev["version"] is None


def test_no_tokio_is_told_apart_from_no_symbols():
    plain = ElfFile.from_bytes(_elf_with_symbols([b"main", b"_ZN3std2io5stdio6_print17h0E"]))
    ev = tokio_evidence([plain])
    assert ev["symbols"] == 0 and ev["has_symtab"] and ev["version"] is None
    stripped = ElfFile.from_bytes(_elf_with_symbols([]))
    assert not tokio_evidence([stripped])["has_symtab"]


def test_kernel_symbols_check_says_whether_kernel_frames_get_names():
    from hud.doctor.host import check_kernel_symbols
    from hud.symbolize.kallsyms import KernelSymbols
    ok = check_kernel_symbols(KernelSymbols.parse(
        "ffffffff81000000 T _stext\nffffffff81000100 t do_nanosleep\n"))
    assert ok.status == OK and "2 kernel functions" in ok.summary
    hidden = check_kernel_symbols(KernelSymbols.parse(
        "0000000000000000 T _stext\n0000000000000000 t do_nanosleep\n"))
    assert hidden.status == WARN and "kptr_restrict" in hidden.summary
    assert "kptr_restrict" in hidden.hint


def test_the_debug_info_advice_asks_the_servers_a_profile_would_use():
    """Real servers on loopback: one that has the build-id, one that does not."""
    bid = "ab12" * 10
    with serve({f"/buildid/{bid}/debuginfo": b"x" * 2_500_000}) as (has, asked_has), \
            serve({}) as (lacks, asked_lacks):
        # DEBUGINFOD_URLS names both: the first that has it is where a profile fetches.
        got = advise(bid, environ={"DEBUGINFOD_URLS": f"{lacks} {has}"}, listed=[])
        assert got.fetched_from == has and got.size == 2_500_000 and not got.hint
        assert [a["state"] for a in got.answers] == ["missing", "has"]
        assert "has its debug file (2.5 MB): a profile fetches it" in got.summary("svc")
        # --debuginfod replaces the variable; a 404 everywhere says so, and what to do.
        got = advise(bid, [lacks], environ={"DEBUGINFOD_URLS": has}, listed=[])
        assert not got.fetched_from and "HTTP 404" in got.hint
        assert got.hint.startswith(f"no debuginfod server has build-id {bid[:12]}")
        assert "--debug-file" in got.hint
        # Set on the host but not in hud's environment (sudo resets it): say what to
        # pass, once the listed server said it has the file.
        got = advise(bid, environ={}, listed=[has])
        assert not got.fetched_from and got.hint.startswith(f"pass --debuginfod {has}: it "
                                                            "has the debug file (2.5 MB)")
        assert "sudo" in got.hint
        got = advise(bid, environ={}, listed=[lacks])
        assert "no debuginfod server has" in got.hint and "--debuginfod" not in got.hint
        n_has, n_lacks = len(asked_has), len(asked_lacks)
        # Without a build-id no server can find the file: none is asked or suggested.
        got = advise(None, environ={"DEBUGINFOD_URLS": has}, listed=[lacks])
        assert got.hint == DEBUG_HINT and got.answers == []
        assert (len(asked_has), len(asked_lacks)) == (n_has, n_lacks)
        # A server that cannot be reached is not said to lack the file.
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            down = f"http://127.0.0.1:{closed.getsockname()[1]}"
        got = advise(bid, [down], listed=[])
        assert got.hint.startswith("no debuginfod server could be asked for build-id")
        assert "Connection refused" in got.hint
        got = advise(bid, [down, lacks], listed=[])
        assert got.hint.startswith("no debuginfod server that answered has build-id")
        # At most MAX_ASKED servers: each may take seconds when unreachable.
        got = advise(bid, [lacks] * 2 + [f"{lacks}/x{i}" for i in range(5)], listed=[])
        assert len(got.answers) == MAX_ASKED
