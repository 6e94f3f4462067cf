"""Atomic file output: a temp file in the destination's directory, fsync, then rename.

Renaming replaces the directory entry itself, so an existing symlink at the destination
is replaced, never written through; a reader never sees a half-written file.
"""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from typing import IO

from hud.errors import HudError, PermissionDenied, ResourceExhausted

FILE_MODE = 0o644   # like a file created under the usual umask; exports are for reading


def _error(path: str, exc: OSError) -> HudError:
    msg = f"cannot write {path}: {exc.strerror or exc}"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return PermissionDenied(msg, "choose a writable directory for the output",
                                errno=exc.errno)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EMFILE):
        return ResourceExhausted(msg, "free disk space or write elsewhere", errno=exc.errno)
    return HudError(msg, "check that the directory exists and the name is a file",
                    errno=exc.errno)


def _temp_beside(path: str) -> tuple[str, int, str]:
    """(absolute destination, fd, name) of a new temp file in `path`'s directory; the
    HudError a write of `path` gets when there is none to be had."""
    dest = os.path.abspath(path)
    if os.path.isdir(dest) and not os.path.islink(dest):
        raise HudError(f"cannot write {path}: it is a directory", "give a file name")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".hud-", suffix=".tmp", dir=os.path.dirname(dest))
    except OSError as exc:
        raise _error(path, exc) from None
    return dest, fd, tmp


@contextlib.contextmanager
def atomic_text(path: str) -> Iterator[IO[str]]:
    """Open `path` for writing text atomically; the file appears only on success."""
    dest, fd, tmp = _temp_beside(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            yield f
            f.flush()
            os.fchmod(f.fileno(), FILE_MODE)
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except OSError as exc:
        _unlink(tmp)
        raise _error(path, exc) from None
    except BaseException:
        _unlink(tmp)
        raise


def check_writable(path: str) -> None:
    """Raise the HudError that writing `path` would raise for where it goes (a missing
    or read-only directory, no permission), so a long run can refuse at its start
    instead of failing at its end: a temp file is made and removed, as a write would."""
    _, fd, tmp = _temp_beside(path)
    os.close(fd)
    _unlink(tmp)


def write_text(path: str, text: str) -> None:
    """Write `text` to `path` atomically."""
    with atomic_text(path) as f:
        f.write(text)


def _unlink(tmp: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(tmp)
