"""On-disk cache of resolved inline chains per object file: where it lives and root-safe I/O
(the file format and keys are in diskcache_format)."""
from __future__ import annotations

import fcntl
import os
import secrets
import stat
import time
from collections.abc import Mapping
from typing import Optional

from hud.symbolize.diskcache_format import (  # noqa: F401  (re-exported for callers)
    FORMAT,
    HEX,
    KEY,
    MAX_ENTRIES,
    MAX_LEVELS,
    Levels,
    code_digest,
    content_key,
    decode,
    encode,
)

# A file bigger than this is not ours (20,000 addresses of a 17 MB binary take ~3 MB).
MAX_FILE_BYTES = 64 << 20
# Cache files kept per directory; the least recently written beyond this are removed.
MAX_FILES = 64
ROOT_DEFAULT = "/var/cache/hud/symbols"

_STALE_TMP_S = 3600
# How long a write waits for another process's (a read, a merge and a rename: ~0.1 s).
LOCK_WAIT_S = 2.0
# O_NOFOLLOW on every component: a symlink anywhere is refused, never followed.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO planted under our name must not hang open(); fstat then refuses it.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class Refused(Exception):
    """A path or file failed an ownership, type or mode check."""


def default_cache_dir(environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """The cache directory the CLI and Profiler use, or None when caching is off.

    HUD_NO_CACHE=1 turns it off, HUD_CACHE_DIR overrides it. Root gets a system
    directory: its (possibly sudo-inherited) XDG_CACHE_HOME and HOME are not trusted."""
    env = os.environ if environ is None else environ
    if env.get("HUD_NO_CACHE", "").strip().lower() in ("1", "true", "yes", "on"):
        return None
    override = env.get("HUD_CACHE_DIR", "")
    if override:
        return override
    if os.geteuid() == 0:
        return ROOT_DEFAULT
    xdg = env.get("XDG_CACHE_HOME", "")
    if xdg.startswith("/"):   # the spec says relative values are to be ignored
        return os.path.join(xdg, "hud", "symbols")
    home = env.get("HOME", "")
    return os.path.join(home, ".cache", "hud", "symbols") if home.startswith("/") else None


class SymbolCache:
    """One cache directory. Every failure is quiet (this is an optimization): the
    affected object is just not cached, and `reason` and `stats` say what happened.

    The directory is reached from / one component at a time without following links;
    every component must be owned by root or us and writable by nobody else (a sticky
    /tmp is refused too), and the directory itself must be ours with mode 0700. Files
    are ours, regular, 0600, single-linked and at most MAX_FILE_BYTES; they are
    replaced atomically (O_EXCL temp file, fsync, rename) and never modified in place.
    """

    def __init__(self, directory: str) -> None:
        self.directory = os.path.normpath(os.path.abspath(directory))
        self.reason = ""
        self.disabled = False
        self.stats = {"files_loaded": 0, "entries_loaded": 0, "files_written": 0,
                      "entries_written": 0, "files_ignored": 0, "errors": 0}

    def probe(self) -> tuple[str, str, int]:
        """Read-only health check for `hud doctor`: ("ok", "", files), ("absent", "", 0)
        when the directory is yet to be made, or ("refused", why, 0). Creates nothing."""
        try:
            dfd = self._open_dir(create=False)
        except FileNotFoundError:
            return "absent", "", 0
        except (OSError, Refused) as e:
            return "refused", str(e), 0
        try:
            files = sum(1 for n in os.listdir(dfd) if n.endswith(".json"))
        except OSError as e:
            return "refused", str(e), 0
        finally:
            os.close(dfd)
        return "ok", "", files

    def load(self, build_id: str, key: str) -> dict[int, Levels]:
        """The cached entries of one object, {} when there are none or they are unusable."""
        if self.disabled or not (HEX.match(build_id) and KEY.match(key)):
            return {}
        try:
            dfd = self._open_dir(create=False)
        except FileNotFoundError:
            return {}                  # nothing was ever written
        except (OSError, Refused) as e:
            self._disable(e)
            return {}
        try:
            data = self._read(dfd, _file_name(build_id, key))
        except (OSError, Refused) as e:
            self._note(e)
            return {}
        finally:
            os.close(dfd)
        if data is None:
            return {}
        got = decode(data, build_id, key)
        if got is None:
            self.stats["files_ignored"] += 1
            self.reason = f"{_file_name(build_id, key)}: not a valid cache file, ignored"
            return {}
        self.stats["files_loaded"] += 1
        self.stats["entries_loaded"] += len(got)
        return got

    def store(self, build_id: str, key: str, entries: Mapping[int, Levels]) -> bool:
        """Merge `entries` with what the file holds now and replace it atomically."""
        if self.disabled or not entries or not (HEX.match(build_id) and KEY.match(key)):
            return False
        try:
            dfd = self._open_dir(create=True)
        except (OSError, Refused) as e:
            self._disable(e)
            return False
        name = _file_name(build_id, key)
        try:
            # Read, merge and replace under the directory's lock: two hud processes
            # closing at once would otherwise each rename their own merge over the
            # other's, and the first one's new entries would be lost.
            _lock(dfd)
            merged = dict(entries) if len(entries) <= MAX_ENTRIES else \
                dict(list(entries.items())[:MAX_ENTRIES])
            try:
                # Another process may have written since we loaded: keep its entries too.
                old = self._read(dfd, name)
            except (OSError, Refused):
                old = None   # replaced below: only our own regular files survive anyway
            if old is not None:
                for vaddr, levels in (decode(old, build_id, key) or {}).items():
                    if len(merged) >= MAX_ENTRIES:
                        break
                    merged.setdefault(vaddr, levels)
            data = encode(build_id, key, merged)
            if len(data) > MAX_FILE_BYTES:
                self.reason = f"{name}: {len(data)} bytes is over the limit, not written"
                return False
            self._replace(dfd, name, data)
            self._evict(dfd, name)
            self.stats["files_written"] += 1
            self.stats["entries_written"] += len(merged)
            return True
        except (OSError, ValueError, TypeError) as e:   # ValueError: a name not UTF-8
            self._note(e)
            return False
        finally:
            os.close(dfd)

    # -- the file system --------------------------------------------------------------

    def _open_dir(self, create: bool) -> int:
        return open_private_dir(self.directory, create)

    def _read(self, dfd: int, name: str) -> Optional[bytes]:
        """The bytes of our file `name`, None when it does not exist."""
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=dfd)
        except FileNotFoundError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise Refused(f"{name} is not a regular file")
            if st.st_uid != os.geteuid():
                raise Refused(f"{name} is owned by uid {st.st_uid}")
            if st.st_mode & 0o077 or st.st_nlink != 1:
                raise Refused(f"{name} has mode {stat.S_IMODE(st.st_mode):o} and "
                              f"{st.st_nlink} links: not one of ours")
            if st.st_size > MAX_FILE_BYTES:
                raise Refused(f"{name} is {st.st_size} bytes, over the limit")
            parts, got = [], 0
            while got <= MAX_FILE_BYTES:   # the size may change under us: bound the reads
                chunk = os.read(fd, min(1 << 20, MAX_FILE_BYTES + 1 - got))
                if not chunk:
                    break
                parts.append(chunk)
                got += len(chunk)
            if got > MAX_FILE_BYTES:
                raise Refused(f"{name} grew over the limit")
            return b"".join(parts)
        finally:
            os.close(fd)

    def _replace(self, dfd: int, name: str, data: bytes) -> None:
        tmp = f".tmp-{os.getpid()}-{secrets.token_hex(8)}"
        fd = os.open(tmp, _WRITE_FLAGS, 0o600, dir_fd=dfd)
        try:
            try:
                os.fchmod(fd, 0o600)   # just made by us (O_EXCL): not up to the umask
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                # Durable before the rename: a crash leaves the old file or the new one,
                # never an empty one under the real name.
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=dfd)
            except OSError:
                pass
            raise

    def _evict(self, dfd: int, keep: str) -> None:
        """Keep at most MAX_FILES cache files (least recently written go first) and drop
        temporary files a killed writer left behind."""
        files = sorted((mtime, entry) for mtime, _size, entry in sweep(dfd, ".json")
                       if entry != keep)
        if len(files) >= MAX_FILES:
            for _, entry in files[:len(files) - MAX_FILES + 1]:
                _unlink(entry, dfd)

    def _disable(self, e: BaseException) -> None:
        self.disabled = True
        self._note(e)

    def _note(self, e: BaseException) -> None:
        self.stats["errors"] += 1
        what = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        self.reason = f"symbol cache {self.directory}: {what}"


def open_private_dir(directory: str, create: bool) -> int:
    """A descriptor of `directory` (absolute), reached from / one component at a time
    without following links, every parent owned by root or us and writable by nobody
    else, the directory itself ours with mode 0700; made so when missing and `create`.
    Raises Refused or OSError (FileNotFoundError when missing and not `create`)."""
    euid = os.geteuid()
    parts = [p for p in directory.split("/") if p]
    if not parts:
        raise Refused("/ cannot be a private directory")
    fd = os.open("/", _DIR_FLAGS)
    try:
        _check_dir(os.fstat(fd), "/", euid, leaf=False)
        for i, part in enumerate(parts):
            made = False
            try:
                nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(part, 0o700, dir_fd=fd)
                    made = True
                except FileExistsError:
                    pass   # raced with another hud: checked below like any other
                nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nfd
            st = os.fstat(fd)
            if made and st.st_uid == euid and stat.S_IMODE(st.st_mode) != 0o700:
                os.fchmod(fd, 0o700)   # ours, just made: the umask must not decide
                st = os.fstat(fd)
            where = "/" + "/".join(parts[:i + 1])
            _check_dir(st, where, euid, leaf=i == len(parts) - 1)
        return fd
    except BaseException:
        os.close(fd)
        raise


def sweep(dfd: int, suffix: str) -> list[tuple[float, int, str]]:
    """(mtime, size, name) of the regular files ending in `suffix` in the directory,
    after removing temporary files (".tmp-*") a killed writer left over an hour ago."""
    now = time.time()
    files = []
    for entry in os.listdir(dfd):
        try:
            st = os.stat(entry, dir_fd=dfd, follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        if entry.startswith(".tmp-"):
            if now - st.st_mtime > _STALE_TMP_S:
                _unlink(entry, dfd)
        elif entry.endswith(suffix):
            files.append((st.st_mtime, st.st_size, entry))
    return files


def _check_dir(st: os.stat_result, where: str, euid: int, leaf: bool) -> None:
    if not stat.S_ISDIR(st.st_mode):
        raise Refused(f"{where} is not a directory")
    if leaf:
        if st.st_uid != euid or stat.S_IMODE(st.st_mode) != 0o700:
            raise Refused(f"{where} must be owned by uid {euid} with mode 700 (it is uid "
                          f"{st.st_uid}, mode {stat.S_IMODE(st.st_mode):o})")
    elif st.st_uid not in (0, euid) or st.st_mode & 0o022:
        # Whoever can write a parent can swap the directory under us: sticky or not.
        raise Refused(f"{where} is owned by uid {st.st_uid} with mode "
                      f"{stat.S_IMODE(st.st_mode):o}: only root or uid {euid} may write it")


def _file_name(build_id: str, key: str) -> str:
    # The key in the name: the stripped and unstripped builds of one build-id coexist.
    return f"{build_id}-{key[:16]}.json"


def _unlink(name: str, dfd: int) -> None:
    try:
        os.unlink(name, dir_fd=dfd)
    except OSError:
        pass


def _lock(dfd: int) -> None:
    """flock the cache directory, waiting up to LOCK_WAIT_S for another hud to finish
    its write; after that, go on unlocked (a lost merge costs entries, a hang a user)."""
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(dfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return
            time.sleep(0.02)
        except OSError:
            return   # no locks here (ENOLCK): as before, the last rename wins
