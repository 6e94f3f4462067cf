"""`Closing`: the context-manager and finalizer boilerplate of objects owning kernel fds."""
from __future__ import annotations

import os
from typing import Any, TypeVar

T = TypeVar("T", bound="Closing")


class Closing:
    """Subclasses define an idempotent `close()`; `with` and garbage collection call it.

    The finalizer is a last resort (interpreter shutdown, a forgotten object): every owner
    of fds in hud is closed explicitly, but a leaked BPF link would keep a program
    attached to the whole host, so nothing relies on the caller alone.
    """

    def close(self) -> None:  # pragma: no cover - always overridden
        raise NotImplementedError

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # never raise from a finalizer
            pass


def close_fd(obj: Any, attr: str = "fd") -> None:
    """Close the fd held in `obj.<attr>` once, leaving -1 behind (idempotent)."""
    fd = getattr(obj, attr, -1)
    if fd is not None and fd >= 0:
        setattr(obj, attr, -1)
        os.close(fd)
