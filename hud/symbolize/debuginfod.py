"""Debug files fetched by build-id from debuginfod servers, kept in a private cache.

Where a team strips its binaries and publishes their debug files to a debuginfod server
(and where distributions run one for their packages), `DEBUGINFOD_URLS` or `--debuginfod
URL` lets hud fetch `/buildid/<id>/debuginfo` for an object that has no DWARF and no
local debug file (and a dwz file by its build-id). A download goes to an O_EXCL temporary
file in a 0700 directory of ours, is kept only when it is an ELF file carrying the
build-id asked for, then renamed into place: what the server sends is hostile input
like any other file, read as data and never run. Per-item failures are notes.
"""
from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Callable, Optional

from hud.errors import BadInput
from hud.symbolize.diskcache import Refused, open_private_dir, sweep
from hud.symbolize.elf import ElfFile

ENV = "DEBUGINFOD_URLS"
# A debug file bigger than this is refused (a big Rust service's is ~1 GB).
MAX_BYTES = 2 << 30
TIMEOUT_S = 15.0          # per connection attempt and per read
# The cache keeps at most this much; the least recently fetched files go first.
KEEP_BYTES = 4 << 30
# A download taking longer than this is dropped (a server trickling bytes would hold
# the attach forever: each read has its own timeout only).
DEADLINE_S = 600.0
# After every server said 404, the build-id is not asked for again this long.
MISS_S = 600.0
# A download stops rather than leave the file system with less free space than this:
# hud runs on hosts in trouble, and a full disk is another outage.
FREE_FLOOR = 1 << 30
_CHUNK = 1 << 20
# elfutils' profile script turns the server lists here into DEBUGINFOD_URLS for login
# shells (Ubuntu, Fedora, Debian ship one); `sudo` resets the environment and drops it.
HOST_URLS_DIR = "/etc/debuginfod"
_MAX_URLS_FILE = 1 << 16
_HEX = re.compile(r"[0-9a-f]{8,128}")
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def urls_from(option: Sequence[str], environ: Optional[Mapping[str, str]] = None) -> list:
    """The servers to ask: those given (--debuginfod), else DEBUGINFOD_URLS (space
    separated, as elfutils reads it). Only http and https URLs are kept."""
    env = os.environ if environ is None else environ
    raw = list(option) if option else env.get(ENV, "").split()
    out = []
    for url in raw:
        if urllib.parse.urlsplit(url).scheme in ("http", "https") and url not in out:
            out.append(url.rstrip("/"))
    return out


def host_listed(directory: str = HOST_URLS_DIR) -> list:
    """The servers this host lists in `directory`/*.urls, as elfutils' profile script
    reads them: for a hint. hud asks none of them unless told to (flag or variable)."""
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".urls"))
    except OSError:
        return []
    raw: list = []
    for name in names[:64]:
        try:
            with open(os.path.join(directory, name), "rb") as f:
                raw.extend(f.read(_MAX_URLS_FILE).decode("utf-8", "replace").split())
        except OSError:
            continue
    return urls_from(raw, {}) if raw else []


class Debuginfod:
    """Fetch and cache debug files by build-id. `progress(text)` hears about downloads."""

    def __init__(self, urls: Sequence[str], directory: str,
                 progress: Optional[Callable[[str], None]] = None,
                 timeout: float = TIMEOUT_S, max_bytes: int = MAX_BYTES,
                 cancel: Optional[Callable[[], bool]] = None) -> None:
        self.urls = list(urls)
        self.directory = os.path.normpath(os.path.abspath(directory))
        self.progress = progress
        self.timeout = timeout
        self.max_bytes = max_bytes
        # Asked between chunks: Ctrl-C while attaching must not wait for a download.
        self.cancel = cancel or (lambda: False)
        self._failed: dict[str, str] = {}     # build-id -> why, for this process
        self.stats = {"fetched": 0, "bytes": 0, "cached": 0, "failed": 0}

    def fetch(self, build_id: str) -> tuple[Optional[str], str]:
        """The path of a verified debug file of `build_id` (from the cache, or
        downloaded now) and where it came from; (None, why) when no server has it."""
        build_id = build_id.lower()
        if not _HEX.fullmatch(build_id) or not self.urls:
            return None, ""
        if build_id in self._failed:
            return None, self._failed[build_id]
        try:
            dfd = open_private_dir(self.directory, create=True)
        except (OSError, Refused) as e:
            why = f"debuginfod cache {self.directory}: {getattr(e, 'strerror', None) or e}"
            self._failed[build_id] = why
            return None, why
        name = f"{build_id}.debug"
        miss = f"{build_id}.miss"
        try:
            if _ours(dfd, name):
                self.stats["cached"] += 1
                return os.path.join(self.directory, name), "debuginfod cache"
            if _ours(dfd, miss, MISS_S):
                why = "debuginfod: no server had it (asked less than 10 minutes ago)"
            else:
                whys, missing = [], True
                for url in self.urls:
                    if self.cancel():
                        whys.append("cancelled")
                        missing = False
                        break
                    got, why = self._download(dfd, url, build_id, name)
                    if got:
                        self.stats["fetched"] += 1
                        _unlink(dfd, miss)
                        _evict(dfd, name)
                        return os.path.join(self.directory, name), f"debuginfod {url}"
                    whys.append(why)
                    missing = missing and why.endswith("HTTP 404")
                why = "debuginfod: " + "; ".join(whys)
                if missing:
                    # As elfutils does: every server said 404; do not ask again for a while.
                    _touch(dfd, miss)
        finally:
            os.close(dfd)
        self.stats["failed"] += 1
        self._failed[build_id] = why
        return None, why

    def _download(self, dfd: int, url: str, build_id: str, name: str) -> tuple[bool, str]:
        import urllib.request  # here: http.client and ssl cost every start ~30 ms
        host = host_of(url)
        req = _request(url, build_id)
        tmp = f".tmp-{os.getpid()}-{secrets.token_hex(8)}"
        fd = -1
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                size = int(resp.headers.get("Content-Length") or 0)
                if size > self.max_bytes:
                    return False, f"{host}: {size >> 20} MB is over the limit"
                if _free(dfd) - size < FREE_FLOOR:
                    return False, f"{host}: not enough free space in {self.directory}"
                fd = os.open(tmp, _WRITE_FLAGS, 0o600, dir_fd=dfd)
                os.fchmod(fd, 0o600)
                self._say(f"fetching debug info {build_id[:12]} from {host}"
                          + (f" ({size / 1e6:.1f} MB)" if size else ""))
                got, last = 0, time.monotonic()
                deadline = last + DEADLINE_S
                while True:
                    chunk = resp.read(_CHUNK)
                    if not chunk:
                        break
                    if self.cancel():
                        return False, "cancelled"
                    if time.monotonic() > deadline:
                        return False, f"{host}: slower than {DEADLINE_S:.0f} s, dropped"
                    got += len(chunk)
                    if got > self.max_bytes:
                        return False, f"{host}: over {self.max_bytes >> 20} MB, dropped"
                    if not got % (64 * _CHUNK) and _free(dfd) < FREE_FLOOR:
                        return False, f"{host}: free space ran low, dropped"
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
                    if time.monotonic() - last > 2:
                        last = time.monotonic()
                        self._say(f"  {got / 1e6:.1f} MB" + (f" of {size / 1e6:.1f}"
                                                              if size else ""))
                self.stats["bytes"] += got
            os.fsync(fd)
            if not _build_id_is(dfd, tmp, build_id, host):
                return False, f"{host} sent a file that is not {build_id[:12]}'s debug file"
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
            tmp = ""
            return True, ""
        except (OSError, ValueError) as e:   # URL errors and timeouts are OSErrors too
            return False, _failure(host, e)
        finally:
            if fd >= 0:
                os.close(fd)
            if tmp:
                try:
                    os.unlink(tmp, dir_fd=dfd)
                except OSError:
                    pass

    def _say(self, text: str) -> None:
        if self.progress is not None:
            self.progress(text)


def _build_id_is(dfd: int, name: str, build_id: str, host: str) -> bool:
    """Is the file `name` (just written) an ELF file with that build-id? (A dwz file
    may hold nothing but strings: the build-id is the whole test.)"""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    except OSError:
        return False
    try:
        elf = ElfFile(f"<debuginfod {host}>", fd=fd, size=os.fstat(fd).st_size)
    except (BadInput, OSError):
        os.close(fd)
        return False
    try:
        return elf.build_id == build_id
    except BadInput:
        return False
    finally:
        elf.close()


def _ours(dfd: int, name: str, younger_than: float = 0.0) -> bool:
    """Is `name` a file this cache wrote (ours, regular, 0600, one link), and when
    `younger_than` is given, written less than that many seconds ago?"""
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except OSError:
        return False
    if younger_than and not 0 <= time.time() - st.st_mtime < younger_than:
        return False
    return (stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid()
            and not st.st_mode & 0o077 and st.st_nlink == 1)


def _touch(dfd: int, name: str) -> None:
    _unlink(dfd, name)
    try:
        os.close(os.open(name, _WRITE_FLAGS, 0o600, dir_fd=dfd))
    except OSError:
        pass


def _unlink(dfd: int, name: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name, dir_fd=dfd)


def _free(dfd: int) -> int:
    try:
        st = os.statvfs(f"/proc/self/fd/{dfd}")
    except OSError:
        return 1 << 62   # unknown: the size limit still holds
    return st.f_bavail * st.f_frsize


def _evict(dfd: int, keep: str) -> None:
    """Keep at most KEEP_BYTES of debug files (least recently fetched go first) and
    drop temporary files a killed download left behind."""
    files = sweep(dfd, ".debug")
    total = sum(size for _t, size, _e in files)
    for _t, size, entry in sorted(files):
        if total <= KEEP_BYTES:
            break
        if entry != keep:
            _unlink(dfd, entry)
            total -= size


# `hud doctor` asks each server this long at most: it must answer in seconds.
PROBE_TIMEOUT_S = 3.0
HAS, MISSING, UNREACHABLE = "has", "missing", "unreachable"


def probe(url: str, build_id: str, timeout: float = PROBE_TIMEOUT_S) -> tuple[str, int, str]:
    """Does the server at `url` have the debug file of `build_id`? (HAS, its size in
    bytes or 0 when not said, "") or (MISSING | UNREACHABLE, 0, why). Reads the answer's
    status and headers only: a GET that is closed before its body (debuginfod servers
    need not answer HEAD)."""
    import urllib.error
    import urllib.request
    host = host_of(url)
    build_id = build_id.lower()
    if not _HEX.fullmatch(build_id):
        return MISSING, 0, f"{host}: not asked (no usable build-id)"
    try:
        with urllib.request.urlopen(_request(url, build_id), timeout=timeout) as resp:
            size = resp.headers.get("Content-Length") or ""
            return HAS, int(size) if size.isdigit() else 0, ""
    except (OSError, ValueError) as e:   # URL errors and timeouts are OSErrors too
        missing = False
        if isinstance(e, urllib.error.HTTPError):
            e.close()
            missing = e.code == 404
        return (MISSING if missing else UNREACHABLE), 0, _failure(host, e)


def host_of(url: str) -> str:
    """A server URL's host[:port], as notes name it."""
    return urllib.parse.urlsplit(url).netloc or url


def _request(url: str, build_id: str):
    import urllib.request
    return urllib.request.Request(f"{url.rstrip('/')}/buildid/{build_id}/debuginfo",
                                  headers={"User-Agent": "hud"})


def _failure(host: str, e: Exception) -> str:
    """Why a request failed, in words: the HTTP status, "Connection refused" (not
    "[Errno 111] ..."), "timed out", or the local error (disk, bad URL)."""
    import urllib.error
    if isinstance(e, urllib.error.HTTPError):
        return f"{host}: HTTP {e.code}"
    if isinstance(e, urllib.error.URLError):
        return f"{host}: {getattr(e.reason, 'strerror', None) or e.reason}"
    return f"{host}: {getattr(e, 'strerror', None) or e}"


def default_directory(environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """Where fetched debug files are kept: beside the symbol cache (…/hud/debuginfod;
    /var/cache/hud/debuginfod as root), HUD_DEBUGINFOD_CACHE overriding. Kept even when
    the symbol cache is off: a download needs a private place to land."""
    from hud.symbolize.diskcache import default_cache_dir
    env = dict(os.environ if environ is None else environ)
    if env.get("HUD_DEBUGINFOD_CACHE"):
        return env["HUD_DEBUGINFOD_CACHE"]
    env.pop("HUD_NO_CACHE", None)
    env.pop("HUD_CACHE_DIR", None)
    symbols = default_cache_dir(env)
    return os.path.join(os.path.dirname(symbols), "debuginfod") if symbols else None


def configured(urls: Sequence[str] = (), progress: Optional[Callable[[str], None]] = None,
               environ: Optional[Mapping[str, str]] = None,
               cancel: Optional[Callable[[], bool]] = None) -> Optional[Debuginfod]:
    """A Debuginfod for the servers given (else DEBUGINFOD_URLS), or None when there are
    none or nowhere to keep what they send."""
    servers = urls_from(urls, environ)
    directory = default_directory(environ) if servers else None
    return Debuginfod(servers, directory, progress, cancel=cancel) if directory else None
