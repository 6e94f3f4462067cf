"""hud.pyz's bootstrap (`_hud_pyz` in the zip): a hermetic sys.path and capstone's native library.

hud runs as root. This module makes the zip hermetic and loads the one native library it
carries without ever executing bytes a non-root user could have written:

- (in the `__main__` stub, scripts/pyz/zip_main.py) a run without `-I` re-executes itself
  with `-I` before importing anything, so PYTHON* variables and a user's site directory
  (HOME survives `sudo -E`) play no part in what hud imports;
- site-packages directories leave sys.path: what runs is the zip and the standard library;
- `import capstone` is intercepted. The library for this machine is read from the zip into
  a sealed memfd (reached through `/proc/self/fd/N`), or, where that fails, into a file
  created with O_EXCL|O_NOFOLLOW in a fresh 0700 directory under a root-owned parent that
  is not mounted noexec. Its SHA-256 is checked on what was written, before dlopen;
  LIBCAPSTONE_PATH is set for capstone's own lookup only during its import (an inherited
  value is ignored); the file and directory are removed right after loading. When nothing
  works, `import capstone` raises ImportError with the reasons (the unwinder then degrades
  to CFI only) and `status()` says why.

Standard library only, Python >= 3.9; what it imports beyond `os` and `sys` it imports
late, so `hud --help` pays for none of it.
"""
from __future__ import annotations

import os
import sys

# Parents for the private directory, in order. Each must be a real directory owned by root
# (or by us) that others cannot write, or that has the sticky bit; /run is root-only.
_PARENTS = ("/run", "/dev/shm", "/tmp", "/var/tmp")
_ARCH_ALIASES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}
_MFD_EXEC = 0x0010            # linux >= 6.3: say explicitly that this memfd may be mapped exec
_STRATEGIES = ("memfd", "file")

_status: dict = {}


def status() -> dict:
    """What happened to capstone's library in this process: {"capstone": "memfd" | ...}."""
    return dict(_status)


def main() -> None:
    """Run hud's CLI from the zip (the `__main__` stub has already made the run isolated)."""
    install(_archive())
    sys.excepthook = excepthook
    from hud.cli import main as cli_main
    cli_main()


def _archive() -> str:
    """The path of the zip this module was imported from ('' when not from a zip)."""
    loader = globals().get("__loader__")
    return getattr(loader, "archive", "") or ""


def install(archive: str = "", strategies: tuple = _STRATEGIES,
            parents: tuple = _PARENTS) -> None:
    """Drop site-packages from sys.path and put the capstone hook in front of the finders.

    `strategies` and `parents` are for tests: how the library may be placed ("memfd",
    "file") and under which directories its private directory may be made.
    """
    archive = archive or _archive()
    sys.path[:] = [p for p in sys.path if p == archive or not _is_site_dir(p)]
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _CapstoneFinder)]
    sys.meta_path.insert(0, _CapstoneFinder(archive, strategies, parents))


def excepthook(etype, value, tb) -> None:
    """Print tracebacks with the zip's own source lines.

    The interpreter's C printer looks a frame's file up on disk and, not finding
    `hud.pyz/hud/cli/profile.py`, searches sys.path for `profile.py` and shows the standard
    library's line instead (the same for click/types.py, textual/signal.py, ...). The
    traceback module asks the module's loader, which reads the zip.
    """
    import traceback
    traceback.print_exception(etype, value, tb)


def _is_site_dir(path: str) -> bool:
    return os.path.basename(path.rstrip("/")) in ("site-packages", "dist-packages")


def machine() -> str:
    """This host's architecture under the names the zip uses ('' when it carries none)."""
    return _ARCH_ALIASES.get(os.uname().machine, "")


class _CapstoneFinder:
    """Finds `capstone` in the zip only, and wraps its loader to provide the library first."""

    def __init__(self, archive: str, strategies: tuple, parents: tuple) -> None:
        self.archive = archive
        self.strategies = strategies
        self.parents = parents

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "capstone":
            return None
        from importlib.machinery import PathFinder
        spec = PathFinder.find_spec(fullname, path)
        if spec is None or not self.archive or not str(spec.origin or "").startswith(
                self.archive + os.sep):
            _status["capstone"] = "unavailable: capstone is not in hud.pyz"
            raise ImportError("hud.pyz: capstone must come from the zip itself")
        spec.loader = _CapstoneLoader(spec.loader, self.archive, self.strategies, self.parents)
        return spec


class _CapstoneLoader:
    """Delegates to the zip's loader; runs capstone's __init__ with its library in place."""

    def __init__(self, inner, archive: str, strategies: tuple, parents: tuple) -> None:
        self._inner = inner
        self._archive = archive
        self._strategies = strategies
        self._parents = parents

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def create_module(self, spec):
        return None

    def exec_module(self, module) -> None:
        from _hud_pyz_native import NATIVE  # written by scripts/build-pyz
        arch = machine()
        entry = NATIVE.get(arch)
        if entry is None:
            why = (f"hud.pyz carries libcapstone for {', '.join(sorted(NATIVE))}, "
                   f"not for {os.uname().machine}")
            _status["capstone"] = f"unavailable: {why}"
            raise ImportError(why)
        member, sha256 = entry
        data = self._inner.get_data(os.path.join(self._archive, member))
        with NativeLoad(data, sha256, "libcapstone.so", mode=_deepbind(),
                        strategies=self._strategies, parents=self._parents) as lib:
            _status["capstone"] = lib.how
            code = self._inner.get_code(module.__name__)
            saved = os.environ.get("LIBCAPSTONE_PATH")
            os.environ["LIBCAPSTONE_PATH"] = lib.directory
            try:
                exec(code, module.__dict__)
            finally:
                if saved is None:
                    os.environ.pop("LIBCAPSTONE_PATH", None)
                else:
                    os.environ["LIBCAPSTONE_PATH"] = saved


def _deepbind() -> int:
    # capstone opens its library with RTLD_DEEPBIND; the first dlopen decides the flags.
    return getattr(os, "RTLD_DEEPBIND", 0)


class Loaded:
    """A library loaded from a private directory: .directory holds .name, .how says how."""

    def __init__(self, directory: str, how: str, handle) -> None:
        self.directory = directory
        self.how = how
        self.handle = handle


class NativeLoad:
    """Verify and dlopen `data` under `name`; yield a Loaded; remove every trace on exit.

    The dlopen'ed mapping outlives the file: nothing is left on disk once the block ends.
    Raises ImportError (with the reason of every strategy tried) when nothing worked.
    """

    def __init__(self, data: bytes, sha256: str, name: str, mode: int = 0,
                 strategies=_STRATEGIES, parents=_PARENTS) -> None:
        self.data, self.sha256, self.name, self.mode = data, sha256, name, mode
        self.strategies, self.parents = strategies, parents
        self._cleanup: list = []

    def __enter__(self) -> Loaded:
        import hashlib
        if hashlib.sha256(self.data).hexdigest() != self.sha256:
            _status["capstone"] = "unavailable: hash mismatch in the zip"
            raise ImportError(f"hud.pyz: {self.name} in the zip does not match its SHA-256")
        reasons = []
        for how in self.strategies:
            try:
                return getattr(self, f"_via_{how}")()
            except OSError as e:
                reasons.append(f"{how}: {e}")
                self._clean()
        why = f"cannot load {self.name} ({'; '.join(reasons)})"
        _status["capstone"] = f"unavailable: {why}"
        raise ImportError(f"hud.pyz: {why}")

    def __exit__(self, *exc) -> None:
        self._clean()

    def _clean(self) -> None:
        while self._cleanup:
            undo = self._cleanup.pop()
            try:
                undo()
            except OSError:
                pass

    def _via_memfd(self) -> Loaded:
        import fcntl
        flags = os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING
        try:
            fd = os.memfd_create(self.name, flags | _MFD_EXEC)
        except OSError:   # EINVAL before 6.3, which knows no MFD_EXEC
            fd = os.memfd_create(self.name, flags)
        self._cleanup.append(lambda: os.close(fd))
        _write_all(fd, self.data)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW
                    | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL)
        self._verify(fd)
        directory = self._private_dir(need_exec=False)
        link = os.path.join(directory, self.name)
        os.symlink(f"/proc/self/fd/{fd}", link)
        self._cleanup.append(lambda: os.unlink(link))
        return Loaded(directory, "memfd", self._dlopen(link))

    def _via_file(self) -> Loaded:
        directory = self._private_dir(need_exec=True)
        path = os.path.join(directory, self.name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o500)
        self._cleanup.append(lambda: os.unlink(path))
        try:
            _write_all(fd, self.data)
        finally:
            os.close(fd)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if st.st_uid != os.geteuid() or st.st_nlink != 1:
                raise OSError(f"{path} changed hands")
            self._verify(fd)
        finally:
            os.close(fd)
        return Loaded(directory, f"file in {os.path.dirname(directory)}", self._dlopen(path))

    def _verify(self, fd: int) -> None:
        """Hash what the kernel will map, read back through the descriptor."""
        import hashlib
        h = hashlib.sha256()
        offset = 0
        while True:
            chunk = os.pread(fd, 1 << 20, offset)
            if not chunk:
                break
            h.update(chunk)
            offset += len(chunk)
        if h.hexdigest() != self.sha256:
            raise OSError(f"{self.name} as written does not match its SHA-256")

    def _private_dir(self, need_exec: bool) -> str:
        """A fresh 0700 directory of ours under the first parent that is safe to use."""
        import stat
        import tempfile
        euid = os.geteuid()
        skipped = []
        for parent in self.parents:
            try:
                st = os.lstat(parent)
            except OSError:
                continue
            if not _safe_parent(st, euid):
                skipped.append(f"{parent} unsafe")
                continue
            if need_exec and os.statvfs(parent).f_flag & os.ST_NOEXEC:
                skipped.append(f"{parent} noexec")
                continue
            try:
                directory = tempfile.mkdtemp(prefix="hud-", dir=parent)
            except OSError:
                skipped.append(f"{parent} not writable")
                continue
            self._cleanup.append(lambda d=directory: os.rmdir(d))
            st = os.lstat(directory)
            if (not stat.S_ISDIR(st.st_mode) or st.st_uid != euid
                    or stat.S_IMODE(st.st_mode) != 0o700):
                raise OSError(f"{directory} is not a private directory")
            return directory
        raise OSError(f"no private directory ({', '.join(skipped) or 'no parent'})")

    def _dlopen(self, path: str):
        import ctypes
        return ctypes.CDLL(path, mode=self.mode)


def _safe_parent(st, euid: int) -> bool:
    """A directory owned by root or us that others cannot write, or one with the sticky bit.

    Anything else would let another user rename our directory away and put theirs in its
    place between our check and dlopen.
    """
    import stat
    if not stat.S_ISDIR(st.st_mode) or st.st_uid not in (0, euid):
        return False
    return not (st.st_mode & 0o022) or bool(st.st_mode & stat.S_ISVTX)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
