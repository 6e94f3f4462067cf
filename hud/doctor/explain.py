"""Why a kernel call was refused, in one line, and what to do: pure, from host facts.

EPERM from bpf() means different things as a plain user, as root inside a rootless
container, under kernel lockdown, or behind a container's seccomp profile; the fix differs
each time, so the doctor names the cause it can see rather than the errno alone.
"""
from __future__ import annotations

import errno as _errno
from dataclasses import dataclass
from typing import Optional

# include/uapi/linux/capability.h
CAP_DAC_OVERRIDE = 1
CAP_DAC_READ_SEARCH = 2
CAP_IPC_LOCK = 14
CAP_SYS_PTRACE = 19
CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39
CAP_CHECKPOINT_RESTORE = 40
CAP_NAMES = {CAP_DAC_OVERRIDE: "CAP_DAC_OVERRIDE", CAP_DAC_READ_SEARCH: "CAP_DAC_READ_SEARCH",
             CAP_IPC_LOCK: "CAP_IPC_LOCK", CAP_SYS_PTRACE: "CAP_SYS_PTRACE",
             CAP_SYS_ADMIN: "CAP_SYS_ADMIN", CAP_PERFMON: "CAP_PERFMON", CAP_BPF: "CAP_BPF",
             CAP_CHECKPOINT_RESTORE: "CAP_CHECKPOINT_RESTORE"}

ROOT_HINT = "run hud as root (sudo), or grant CAP_BPF, CAP_PERFMON and CAP_SYS_PTRACE"
ENOTSUPP = 524

# What each kind of kernel access needs, as alternatives (any one set suffices).
NEEDS = {
    "bpf": ((CAP_BPF, CAP_PERFMON), (CAP_SYS_ADMIN,)),
    "perf": ((CAP_PERFMON,), (CAP_SYS_ADMIN,)),
    "ptrace": ((CAP_SYS_PTRACE,),),
    "map_files": ((CAP_CHECKPOINT_RESTORE,), (CAP_SYS_ADMIN,)),
    "mount": ((CAP_SYS_ADMIN,),),
    "tracefs_read": ((CAP_DAC_OVERRIDE,), (CAP_DAC_READ_SEARCH,)),   # a 0700 root dir
}


@dataclass(frozen=True)
class HostFacts:
    """What the doctor read about its own privileges and the kernel's policies."""

    euid: int = 0
    caps: int = 0                      # CapEff
    cap_last: int = 40                 # /proc/sys/kernel/cap_last_cap
    seccomp: int = 0                   # 0 off, 1 strict, 2 filter
    userns: bool = False               # in a user namespace other than the initial one
    lockdown: Optional[str] = None     # none | integrity | confidentiality; None: unknown
    unprivileged_bpf_disabled: Optional[int] = None
    perf_event_paranoid: Optional[int] = None
    yama_ptrace_scope: Optional[int] = None  # 3: no process may ptrace any other

    def has(self, cap: int) -> bool:
        return bool(self.caps >> cap & 1)

    def can(self, what: str) -> bool:
        """Whether the effective capabilities allow `what` (a key of NEEDS). Before 5.8
        (cap_last_cap < 39) CAP_BPF and CAP_PERFMON do not exist: CAP_SYS_ADMIN it is."""
        for alt in NEEDS[what]:
            if any(c > self.cap_last for c in alt):
                continue
            if all(self.has(c) for c in alt):
                return True
        return False

    def missing(self, what: str) -> list[str]:
        """The capabilities of the first usable alternative that are not held."""
        for alt in NEEDS[what]:
            if all(c <= self.cap_last for c in alt):
                return [CAP_NAMES[c] for c in alt if not self.has(c)]
        return []


def parse_caps(text: Optional[str]) -> int:
    """CapEff from /proc/PID/status ("000001ffffffffff") as an int (0 when unreadable)."""
    try:
        return int((text or "0").strip(), 16)
    except ValueError:
        return 0


def parse_lockdown(text: Optional[str]) -> Optional[str]:
    """The active mode of /sys/kernel/security/lockdown ("none [integrity] confidentiality")."""
    if not text:
        return None
    for word in text.split():
        if word.startswith("[") and word.endswith("]"):
            return word[1:-1]
    return None


def in_user_namespace(uid_map: Optional[str]) -> bool:
    """True unless /proc/self/uid_map is the initial namespace's identity map."""
    if uid_map is None:
        return False
    rows = [line.split() for line in uid_map.splitlines() if line.strip()]
    return rows != [["0", "0", "4294967295"]]


def kernel_version(release: str) -> tuple[int, int, int]:
    """(major, minor, patch) of a uname release like "6.18.44-amd64" (zeros if odd)."""
    nums = []
    for part in release.split("-", 1)[0].split(".")[:3]:
        digits = ""
        for ch in part:
            if not ch.isdigit():
                break
            digits += ch
        nums.append(int(digits) if digits else 0)
    while len(nums) < 3:
        nums.append(0)
    return nums[0], nums[1], nums[2]


def errno_name(err: Optional[int]) -> str:
    if err is None:
        return "error"
    if err == ENOTSUPP:
        return "ENOTSUPP"
    return _errno.errorcode.get(err, f"errno {err}")


def denied(err: Optional[int], facts: HostFacts, what: str) -> tuple[str, str]:
    """(why, hint) for a refused `what` ("bpf", "perf", "ptrace", "map_files", "mount",
    "tracefs"), naming the most likely cause visible from `facts`."""
    name = errno_name(err)
    if err == _errno.ENOSYS:
        if what == "bpf":
            return ("bpf() does not exist in this kernel (ENOSYS: CONFIG_BPF_SYSCALL off)",
                    "use --backend perf, or a kernel built with CONFIG_BPF_SYSCALL")
        return (f"{what}: ENOSYS (not built into this kernel)", "use a kernel that has it")
    if err not in (_errno.EPERM, _errno.EACCES):
        return (f"{name}", "run `hud doctor --json` and report the data")
    cap_what = "mount" if what == "tracefs" else what
    if cap_what not in NEEDS:
        raise ValueError(f"unknown access kind {what!r}")
    if facts.userns:
        return (f"{name}: root in a user namespace (rootless container) is not root "
                "for the kernel",
                "run hud on the host, or in a container sharing the host's user namespace")
    if not facts.can(cap_what):
        lacking = " + ".join(facts.missing(cap_what)) or "the privileges"
        who = "not root" if facts.euid != 0 else "root, but"
        extra = ""
        if what == "bpf" and facts.unprivileged_bpf_disabled:
            extra = f" (unprivileged_bpf_disabled={facts.unprivileged_bpf_disabled})"
        if what == "perf" and facts.perf_event_paranoid is not None:
            extra = f" (perf_event_paranoid={facts.perf_event_paranoid})"
        return f"{name}: {who} without {lacking}{extra}", ROOT_HINT
    if what == "ptrace" and facts.yama_ptrace_scope == 3:
        return (f"{name}: Yama ptrace_scope=3 forbids reading other processes",
                "kernel.yama.ptrace_scope=3 can only be lowered by a reboot")
    if facts.lockdown == "confidentiality" and what in ("bpf", "perf", "tracefs",
                                                        "tracefs_read"):
        return (f"{name}: kernel lockdown is in confidentiality mode",
                "boot with lockdown=integrity (or none); Secure Boot may enforce it")
    if facts.seccomp == 2:
        return (f"{name}: a seccomp filter refuses it (a container's default profile?)",
                "run the container with --security-opt seccomp=unconfined or --privileged")
    return (f"{name} although privileged: an LSM (SELinux, AppArmor) or policy refuses it",
            "look for the denial in dmesg or the audit log")
