"""On-disk cache of resolved inline chains per object file: data-only JSON, root-safe I/O."""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import secrets
import stat
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, Optional, Protocol

from hud import __version__

# Bump when the file layout or the meaning of a field changes: old files are then misses.
FORMAT = "hud-symcache/1"
# A file bigger than this is not ours (20,000 addresses of a 17 MB binary take ~3 MB).
MAX_FILE_BYTES = 64 << 20
# Addresses per object: the in-memory caches are bounded the same way.
MAX_ENTRIES = 1 << 18
# Inline levels per address (real chains are tens deep).
MAX_LEVELS = 256
# Cache files kept per directory; the least recently written beyond this are removed.
MAX_FILES = 64
ROOT_DEFAULT = "/var/cache/hud/symbols"

_MAX_U32 = 1 << 32
_MAX_U64 = 1 << 64
_STALE_TMP_S = 3600
_SHT_NOBITS = 8
_SHF_EXECINSTR = 0x4
_HEX = re.compile(r"[0-9a-f]{2,128}\Z")
_KEY = re.compile(r"[0-9a-f]{64}\Z")
# Without 3.11's limit on int digits, converting a long digit string takes quadratic
# time: then such numbers are refused before parsing (a name with 21+ digits after a
# comma only makes the file a miss).
_LONG_NUMBER = re.compile(rb"[\[,:]\s*-?[0-9]{21}")
_SLOW_INTS = sys.version_info < (3, 11) or sys.get_int_max_str_digits() == 0
# O_NOFOLLOW on every component: a symlink anywhere is refused, never followed.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO planted under our name must not hang open(); fstat then refuses it.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

# (function, file, line, column, callers, why): what ObjectSymbols._levels returns.
Levels = tuple


class Refused(Exception):
    """A path or file failed an ownership, type or mode check."""


class _Bad(Exception):
    """A cache file's content is not what we write: the whole file is ignored."""


class ElfLike(Protocol):
    size: int
    sections: tuple
    segments: tuple

    def read(self, offset: int, size: int) -> bytes: ...


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


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """Digest of the symbolizer's own sources: answers cached by other code are misses."""
    h = hashlib.sha256(f"{FORMAT}\0{__version__}\0".encode())
    try:
        # importlib.resources, not __file__: inside the zipapp there is no path on disk.
        # Imported here: 17 ms that only a process using the cache should pay.
        import importlib.resources
        pkg = importlib.resources.files("hud.symbolize")
        for entry in sorted(pkg.iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".py"):
                h.update(entry.name.encode() + b"\0" + entry.read_bytes() + b"\0")
    except (OSError, ValueError, TypeError, AttributeError, ImportError):
        h.update(b"\0sources unreadable")   # the version alone then tells code apart
    return h.hexdigest()


def content_key(files: Sequence[Optional[ElfLike]]) -> str:
    """What the answers depend on besides the address: the object file, its debug file
    (or None) and the symbolizer's code.

    A build-id alone is not enough: the stripped and unstripped builds share one, a
    separate debug file may or may not be found, and a hostile binary can claim anyone's.
    So every byte of every non-code section (symbols, DWARF, headers) is hashed; code
    (SHF_EXECINSTR) is never read by the symbolizer and is skipped (most of a binary)."""
    h = hashlib.sha256(code_digest().encode())
    for f in files:
        if f is None:
            h.update(b"\0none")
            continue
        h.update(repr((f.size, f.segments, f.sections)).encode("utf-8", "replace"))
        spans = sorted((s.offset, min(s.offset + s.size, f.size)) for s in f.sections
                       if s.type != _SHT_NOBITS and not s.flags & _SHF_EXECINSTR
                       and 0 <= s.offset < f.size and s.size > 0)
        # Merged first: overlapping sections (hostile headers) never hash a byte twice.
        pos = 0
        for start, end in spans:
            start = max(start, pos)
            while start < end:
                chunk = f.read(start, min(1 << 20, end - start))
                h.update(chunk)
                start += len(chunk)
            pos = max(pos, end)
    return h.hexdigest()


def encode(build_id: str, key: str, entries: Mapping[int, Levels]) -> bytes:
    """The file for `entries`, in columns of integers (checked on load by a few C-speed
    passes over each column, not per field). Names and paths, caller levels and caller
    chains each go to a table once: addresses of one inline context share them."""
    strings: list[str] = []
    string_ix: dict[Optional[str], int] = {None: 0}     # 0 is None; string i is i + 1
    lv: dict[str, list] = {"name": [], "file": [], "line": [], "col": []}
    level_ix: dict[tuple, int] = {}
    chains: list[list[int]] = []
    chain_ix: dict[tuple, int] = {}
    col: dict[str, list] = {"vaddr": [], "name": [], "file": [], "line": [], "col": [],
                            "why": [], "chain": []}

    def ref(s: Optional[str]) -> int:
        i = string_ix.get(s)
        if i is None:
            strings.append(s)
            i = string_ix[s] = len(strings)
        return i

    def chain_ref(callers: tuple) -> int:
        i = chain_ix.get(callers)
        if i is None:
            ids = []
            for level in callers:
                j = level_ix.get(level)
                if j is None:
                    j = level_ix[level] = len(lv["name"])
                    n, f, ln, c = level
                    lv["name"].append(ref(n))
                    lv["file"].append(ref(f))
                    lv["line"].append(-1 if ln is None else ln)
                    lv["col"].append(-1 if c is None else c)
                ids.append(j)
            i = chain_ix[callers] = len(chains)
            chains.append(ids)
        return i

    for vaddr, (name, file, line, column, callers, why) in entries.items():
        if len(col["vaddr"]) >= MAX_ENTRIES:
            break
        callers = tuple(callers)
        if not (_uint(vaddr, _MAX_U64) and _opt_uint(line) and _opt_uint(column)
                and len(callers) <= MAX_LEVELS
                and all(_opt_uint(c[2]) and _opt_uint(c[3]) for c in callers)):
            continue   # what the loader would refuse is not written
        col["vaddr"].append(vaddr)
        col["name"].append(ref(name))
        col["file"].append(ref(file))
        col["line"].append(-1 if line is None else line)
        col["col"].append(-1 if column is None else column)
        col["why"].append(ref(why or None))
        col["chain"].append(chain_ref(callers))
    doc = {"format": FORMAT, "build_id": build_id, "key": key, "strings": strings,
           "levels": lv, "chains": chains, "entries": col}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"),
                      allow_nan=False).encode("utf-8")


def decode(data: bytes, build_id: str, key: str) -> Optional[dict[int, Levels]]:
    """The entries of a cache file, or None when anything in it is not what `encode`
    writes for this build-id and key (the file is then ignored as a whole)."""
    if _SLOW_INTS and _LONG_NUMBER.search(data):
        return None
    try:
        doc = json.loads(data.decode("utf-8"))
        return _entries(doc, build_id, key)
    # ValueError covers bad UTF-8 and bad JSON; RecursionError deep nesting; MemoryError
    # a bomb of tiny objects; TypeError whatever a check above forgot.
    except (ValueError, TypeError, RecursionError, MemoryError, _Bad):
        return None


def _uint(v: Any, bound: int) -> bool:
    return type(v) is int and 0 <= v < bound    # `type is`: bools are ints too


def _opt_uint(v: Any) -> bool:
    return v is None or (type(v) is int and 0 <= v < _MAX_U32)


def _ints(col: Any, low: int, high: int, length: int = -1) -> list[int]:
    """`col` if it is a list of `length` ints in [low, high), else _Bad."""
    if type(col) is not list or (length >= 0 and len(col) != length):
        raise _Bad
    # set(map(type)) is exact (a bool is not an int here) and runs at C speed.
    if col and (set(map(type, col)) != {int} or min(col) < low or max(col) >= high):
        raise _Bad
    return col


def _columns(group: Any, names: tuple[str, ...]) -> list[list]:
    if type(group) is not dict:
        raise _Bad
    return [group.get(n) for n in names]


def _entries(doc: Any, build_id: str, key: str) -> dict[int, Levels]:
    if (type(doc) is not dict or doc.get("format") != FORMAT
            or doc.get("build_id") != build_id or doc.get("key") != key):
        raise _Bad
    strings, raw_chains = doc.get("strings"), doc.get("chains")
    if type(strings) is not list or type(raw_chains) is not list \
            or len(raw_chains) > MAX_ENTRIES or any(type(x) is not str for x in strings):
        raise _Bad
    # JSON escapes can smuggle lone surrogates, which would fail later when printed.
    "\0".join(strings).encode("utf-8")          # UnicodeEncodeError is a ValueError
    table = [None, *strings]
    text = table.__getitem__
    nstr = len(table)

    def opt(col: list[int]) -> list[Optional[int]]:
        return [None if x < 0 else x for x in col]

    name, file, line, column = _columns(doc.get("levels"), ("name", "file", "line", "col"))
    n = len(_ints(name, 0, nstr))
    if n > MAX_ENTRIES * MAX_LEVELS:
        raise _Bad
    levels = list(zip(map(text, name), map(text, _ints(file, 0, nstr, n)),
                      opt(_ints(line, -1, _MAX_U32, n)), opt(_ints(column, -1, _MAX_U32, n))))
    # Callers are shared between addresses, as they were in memory (never modified).
    chains = []
    for ids in raw_chains:
        if type(ids) is not list or len(ids) > MAX_LEVELS:
            raise _Bad
        chains.append(tuple(map(levels.__getitem__, _ints(ids, 0, n))))
    vaddr, name, file, line, column, why, chain = _columns(
        doc.get("entries"), ("vaddr", "name", "file", "line", "col", "why", "chain"))
    m = len(_ints(vaddr, 0, _MAX_U64))
    if m > MAX_ENTRIES:
        raise _Bad
    rows = zip(map(text, _ints(name, 0, nstr, m)), map(text, _ints(file, 0, nstr, m)),
               opt(_ints(line, -1, _MAX_U32, m)), opt(_ints(column, -1, _MAX_U32, m)),
               map(chains.__getitem__, _ints(chain, 0, len(chains), m)),
               [text(i) or "" for i in _ints(why, 0, nstr, m)])
    return dict(zip(vaddr, rows))


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

    def load(self, build_id: str, key: str) -> dict[int, Levels]:
        """The cached entries of one object, {} when there are none or they are unusable."""
        if self.disabled or not (_HEX.match(build_id) and _KEY.match(key)):
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
        if self.disabled or not entries or not (_HEX.match(build_id) and _KEY.match(key)):
            return False
        try:
            dfd = self._open_dir(create=True)
        except (OSError, Refused) as e:
            self._disable(e)
            return False
        name = _file_name(build_id, key)
        try:
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
        """A descriptor of the directory, every component checked (Refused, OSError)."""
        euid = os.geteuid()
        parts = [p for p in self.directory.split("/") if p]
        if not parts:
            raise Refused("/ cannot be the cache directory")
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
            elif entry.endswith(".json") and entry != keep:
                files.append((st.st_mtime, entry))
        if len(files) >= MAX_FILES:
            files.sort()
            for _, entry in files[:len(files) - MAX_FILES + 1]:
                _unlink(entry, dfd)

    def _disable(self, e: BaseException) -> None:
        self.disabled = True
        self._note(e)

    def _note(self, e: BaseException) -> None:
        self.stats["errors"] += 1
        what = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        self.reason = f"symbol cache {self.directory}: {what}"


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
