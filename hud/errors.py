"""HudError and its subclasses: one clear line, a hint, a distinct exit code."""
from __future__ import annotations

import errno as _errno
from typing import Optional


class HudError(Exception):
    """An error meant for the user: `message` and `hint` are one line each.

    The CLI prints `hud: <message>` and `hint: <hint>` and exits with `exit_code`;
    nothing that raises HudError should ever surface as a traceback.
    """

    exit_code = 1

    def __init__(self, message: str, hint: str = "", exit_code: Optional[int] = None,
                 errno: Optional[int] = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.errno = errno
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class UsageError(HudError):
    """Bad options or arguments."""

    exit_code = 2


class PermissionDenied(HudError):
    """EPERM/EACCES from bpf(), perf_event_open() or /proc."""

    exit_code = 3


class TargetNotFound(HudError):
    """No process (or several) matched what the user asked for."""

    exit_code = 4


class Unsupported(HudError):
    """The kernel or host lacks a feature hud needs (and no fallback is left)."""

    exit_code = 5


class ProgramRejected(HudError):
    """The verifier refused a BPF program; `log` carries the verifier's text."""

    exit_code = 6

    def __init__(self, message: str, hint: str = "", log: str = "",
                 errno: Optional[int] = None) -> None:
        super().__init__(message, hint, errno=errno)
        self.log = log


class ResourceExhausted(HudError):
    """ENOMEM, EMFILE, E2BIG and friends: the host ran out of something."""

    exit_code = 7


class BadInput(HudError):
    """A file or record hud had to read is truncated, corrupt or not what it claims."""

    exit_code = 8


class TargetExited(HudError):
    """The target process went away before hud could attach."""

    exit_code = 9


class KernelError(HudError):
    """Any other errno from a kernel call, named with the call that failed."""

    exit_code = 10


class NoRuntime(HudError):
    """The target showed no Tokio worker thread for the whole run: no finding means
    nothing was measured, not a healthy runtime."""

    exit_code = 11


_PERMISSION = {_errno.EPERM, _errno.EACCES}
_RESOURCE = {_errno.ENOMEM, _errno.EMFILE, _errno.ENFILE, _errno.E2BIG, _errno.ENOSPC}
_UNSUPPORTED = {_errno.ENOENT, _errno.EOPNOTSUPP, _errno.ENOSYS, 524}  # 524: ENOTSUPP (kernel-internal)


def from_errno(err: int, what: str, hint: str = "") -> HudError:
    """Translate an errno from a kernel call named `what` into the right HudError.

    This is the only place errno values turn into user-facing errors.
    """
    name = _errno.errorcode.get(err, "ENOTSUPP" if err == 524 else f"errno {err}")
    message = f"{what} failed: {name} ({_strerror(err)})"
    if err in _PERMISSION:
        return PermissionDenied(
            message,
            hint or "run as root, or grant CAP_BPF + CAP_PERFMON (and CAP_SYS_PTRACE for /proc)",
            errno=err)
    if err in _RESOURCE:
        return ResourceExhausted(message, hint or "raise the limit or free memory, then retry",
                                 errno=err)
    if err in _UNSUPPORTED:
        return Unsupported(message, hint or "this kernel lacks the feature; try --backend perf",
                           errno=err)
    if err == _errno.ESRCH:
        return TargetExited(message, hint or "the target process exited", errno=err)
    return KernelError(message, hint or "run `hud doctor` to check this host", errno=err)


def _strerror(err: int) -> str:
    if err == 524:
        return "operation not supported by this program or attach type"
    import os
    return os.strerror(err)
