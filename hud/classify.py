"""Frame classes and Tokio stack signatures (park / worker / blocking pool), table-driven.

Frame classes (DESIGN.md §3), first rule that decides wins:

1. kernel: a kernel module name (``[kernel.kallsyms]``, ``vmlinux``) or a kernel address.
2. system libraries (libc, libpthread, ld.so, libgcc_s, the vdso ...) are ``std``: they are
   the C runtime under Rust's std, never the code a user should look at. The model has no
   separate "system" class and a blocker is never chosen among them, so ``std`` is right.
3. unresolved frames (function None) are ``unknown``.
4. path patterns of the frame's source file: cargo registries, git checkouts and vendored
   crates are third-party (``tokio`` there is the runtime); ``/rustc/<hash>/library``,
   rustup toolchains and distro rustc sources are std.
5. crate prefix of the demangled name (``tokio::`` runtime, ``std::``/``core::``/``alloc::``
   std, ``mio::``, ``parking_lot::``, ``futures::`` ... third-party); for a qualified name
   ``<A as B>::m`` the crate of ``A`` counts (the trait's when ``A`` is not a path).
6. a well-known C runtime symbol (``_start``, ``main``, ``__libc_*``, ``pthread_*`` ...) is std.
7. a C function (not a Rust path), or a C++ one whose file is a C/C++/assembly source,
   whose file has no line is third-party: the file is an ELF STT_FILE name, so this is a
   library linked in without DWARF (musl's internal helpers in a static musl build, a
   -sys crate's C++). Any other source file that matched no pattern above is user code
   (``/usr/src/app``, ``/home``...).
8. the module: the main binary is user code, any other shared library third-party; a Rust
   path with no module at all is user code.

Stack signatures (``StackInfo``) are structural so they survive Tokio's renames between
1.24 and 1.5x: a *park* is a stack whose innermost Tokio park/driver frame
(``park``/``park_timeout``/``park_condvar``/``park_driver``/``park_internal``/``turn``...)
has no user frame inside it and no user frame between it and the scheduler entry
(``worker::run``, a runtime ``block_on``, the blocking pool's ``Inner::run``); a
``blocking_lock``-style park called from user code is therefore *not* a park.
``Classifier`` caches both per stack.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from hud.model import (
    CLASS_KERNEL,
    CLASS_RUNTIME,
    CLASS_STD,
    CLASS_THIRD_PARTY,
    CLASS_UNKNOWN,
    CLASS_USER,
    Frame,
    Stack,
    with_class,
)
from hud.symbolize.demangle import split_top

# --- frame class tables -----------------------------------------------------------------

KERNEL_MODULES = ("[kernel.kallsyms]", "[kernel]", "vmlinux", "[guest.kernel.kallsyms]")
# The lowest canonical kernel address on x86_64 and aarch64 (48-bit VA and up).
KERNEL_ADDRESS_MIN = 0xFFFF_0000_0000_0000

SYSTEM_LIB = re.compile(
    r"^(?:\[vdso\]|\[vsyscall\]|linux-vdso\.so\.\d+|linux-gate\.so\.\d+"
    r"|ld-linux[\w.-]*\.so[\d.]*|ld-musl[\w.-]*\.so[\d.]*|ld\.so[\d.]*"
    r"|(?:libc|libpthread|libm|libdl|librt|libresolv|libutil|libgcc_s|libnss_\w+|libanl)"
    r"(?:[-.][\w.]*)?\.so[\d.]*)$")
SHARED_LIB = re.compile(r"\.so(?:\.\d+)*$")

# Source path patterns, tried in order. A registry path names its crate directory
# ("tokio-1.24.2"): the crate decides between runtime and third-party.
_REGISTRY = re.compile(
    r"(?:/\.cargo/registry/src/[^/]+/|/usr/share/cargo/registry/|/\.cargo/git/checkouts/"
    r"|/vendor/)(?P<crate>[A-Za-z0-9_.-]+?)(?:-\d+\.\d+\.\d+[^/]*)?/")
STD_PATHS = (
    re.compile(r"(?:^|/)rustc/[0-9a-f]{7,64}/library/"),
    re.compile(r"/\.rustup/toolchains/"),
    re.compile(r"/lib/rustlib/src/rust/library/"),
    re.compile(r"/rustc-\d+\.\d+\.\d+(?:-src)?/library/"),
)

# An ELF STT_FILE name of C, C++ or assembly source: what a frame of code compiled
# without DWARF carries as its file (Rust objects' are codegen units, "app.1a2b-cgu.03").
NATIVE_SOURCE = re.compile(r"\.(?:c|cc|cp|cpp|cxx|c\+\+|C|s|S|asm)$")

RUNTIME_CRATES = frozenset({"tokio"})
STD_CRATES = frozenset({
    "std", "core", "alloc", "proc_macro", "panic_unwind", "panic_abort",
    "compiler_builtins", "std_detect", "__rust_begin_short_backtrace",
})
THIRD_PARTY_CRATES = frozenset({
    "mio", "parking_lot", "parking_lot_core", "lock_api", "futures", "futures_util",
    "futures_core", "futures_channel", "futures_executor", "futures_io", "hyper", "hyper_util",
    "h2", "http", "http_body", "http_body_util", "httparse", "httpdate", "tower", "tower_http",
    "tower_service", "tower_layer", "axum", "axum_core", "matchit", "tracing", "tracing_core",
    "tracing_subscriber", "tracing_log", "tracing_futures", "bytes", "serde", "serde_json",
    "reqwest", "rustls", "ring", "openssl", "native_tls", "tokio_util", "tokio_stream",
    "tokio_rustls", "tokio_native_tls", "socket2", "pin_project", "pin_project_lite",
    "crossbeam", "crossbeam_channel", "crossbeam_epoch", "crossbeam_deque", "crossbeam_utils",
    "slab", "log", "env_logger", "regex", "regex_automata", "regex_syntax", "rand", "rand_core",
    "hashbrown", "indexmap", "smallvec", "once_cell", "lazy_static", "anyhow", "thiserror",
    "tonic", "prost", "sqlx", "sqlx_core", "diesel", "redis", "deadpool", "bb8",
    "tokio_postgres", "postgres", "mysql_async", "dashmap", "memchr", "aho_corasick",
    "chrono", "uuid", "flate2", "miniz_oxide", "want", "itoa", "ryu", "signal_hook",
    "signal_hook_registry", "libc", "nix", "async_trait", "trust_dns_resolver",
    "trust_dns_proto", "hickory_resolver", "hickory_proto", "percent_encoding", "url", "idna",
    "form_urlencoded", "sharded_slab", "thread_local", "num_cpus", "backtrace", "gimli",
    "addr2line", "object", "rustc_demangle", "async_std", "async_io", "polling", "rayon",
    "rayon_core", "sha2", "digest", "base64", "encoding_rs", "mime", "headers", "cookie",
    "time", "jemallocator", "tikv_jemallocator", "mimalloc",
})

# C runtime symbols that can sit in the main binary (static builds, Rust's own `main` shim).
C_RUNTIME_NAMES = frozenset({
    "_start", "main", "start_thread", "clone", "clone3", "syscall", "epoll_wait",
    "epoll_pwait", "nanosleep", "clock_nanosleep", "poll", "ppoll", "select", "pselect",
    "read", "write", "pread64", "pwrite64", "readv", "writev", "fsync", "fdatasync", "open",
    "open64", "openat", "close", "recv", "recvfrom", "recvmsg", "send", "sendto", "sendmsg",
    "connect", "accept", "accept4", "sleep", "usleep", "getaddrinfo", "malloc", "free",
    "realloc", "calloc", "memcpy", "memmove", "memset", "sched_yield", "futex",
})
C_RUNTIME_PREFIXES = ("__", "_dl_", "_IO_", "pthread_", "sem_", "epoll_", "mem", "str")


# --- demangled-name parsing ---------------------------------------------------------------

_HASH = re.compile(r"::h[0-9a-f]{16}$")
_CLOSURE = re.compile(r"^(?:\{\{closure\}\}|\{closure#\d+\}|\{\{vtable\.shim\}\}"
                      r"|\{shim:[^}]*\}|\{\{constant\}\}|\{constant#\d+\})$")


def _strip_generics(segment: str) -> str:
    cut = segment.find("<")
    return segment[:cut] if cut > 0 else segment


@dataclass(frozen=True)
class FuncPath:
    """A demangled Rust function name reduced to its path segments, generics removed.

    `crate` is the crate the code belongs to (the self type's crate for `<A as B>::m`).
    """

    segments: tuple[str, ...]
    crate: str

    @property
    def method(self) -> str:
        """The last segment that is not a closure/shim marker."""
        for seg in reversed(self.segments):
            if not _CLOSURE.match(seg):
                return seg
        return ""

    def owner(self) -> str:
        """The segment before `method` (the type or module it belongs to)."""
        segs = [s for s in self.segments if not _CLOSURE.match(s)]
        return segs[-2] if len(segs) >= 2 else ""


def _path_segments(text: str) -> tuple[list[str], str]:
    """Segments of one path and the crate it belongs to."""
    text = text.strip()
    segs: list[str] = []
    crate = ""
    for i, part in enumerate(split_top(text, "::")):
        part = part.strip()
        if part.startswith("<") and part.endswith(">"):
            inner = part[1:-1]
            halves = split_top(inner, " as ")
            self_ty = halves[0].strip()
            for prefix in ("&mut ", "&", "*const ", "*mut ", "dyn ", "impl "):
                if self_ty.startswith(prefix):
                    self_ty = self_ty[len(prefix):].strip()
            sub, sub_crate = ([], "")
            if "::" in self_ty and not self_ty.startswith(("[", "(")):
                sub, sub_crate = _path_segments(self_ty)
            elif len(halves) > 1:
                sub, sub_crate = _path_segments(halves[1])
            segs.extend(sub)
            if i == 0:
                crate = sub_crate
            continue
        seg = _strip_generics(part)
        if i == 0:
            crate = seg
        if seg:
            segs.append(seg)
    return segs, crate


_PATH_CACHE: dict = {}


def parse_function(name: str) -> FuncPath:
    """Parse a demangled name (`<tokio::..::Core<T,S>>::poll`, `my_app::f::{{closure}}`)."""
    hit = _PATH_CACHE.get(name)
    if hit is not None:
        return hit
    segs, crate = _path_segments(_HASH.sub("", name))
    fp = FuncPath(tuple(segs), crate)
    if len(_PATH_CACHE) > 100_000:   # bounded: names come from a live, long-running target
        _PATH_CACHE.clear()
    _PATH_CACHE[name] = fp
    return fp


_DISPLAY_CACHE: dict = {}


def display_function(name: Optional[str]) -> str:
    """The name shown for a finding: hash and trailing closure markers removed.

    An async fn body is the `{{closure}}` (generator) of the fn: users know it by the fn.
    """
    if name is None:
        return "[unknown]"
    hit = _DISPLAY_CACHE.get(name)
    if hit is not None:
        return hit
    out = _HASH.sub("", name)
    while True:
        head, sep, tail = out.rpartition("::")
        if not (sep and _CLOSURE.match(tail)):
            break
        out = head
    if len(_DISPLAY_CACHE) > 100_000:
        _DISPLAY_CACHE.clear()
    _DISPLAY_CACHE[name] = out
    return out


# --- frame classification -----------------------------------------------------------------

# What a Rust object's symbol table gives as its "file" (an STT_FILE symbol): the codegen
# unit, "<crate>.<16 hex>-cgu.<n>". binutils prints it as the file of a symbol without
# DWARF, and so does `hud addr2line`; on screen it is no source location.
_CODEGEN_UNIT = re.compile(r"^[A-Za-z0-9_]+\.[0-9a-f]{16}-cgu\.\d+$")


def source_known(file: Optional[str], line: Optional[int]) -> bool:
    """Is (file, line) a place in the source? False for no file and for a codegen-unit
    name without a line (a binary without DWARF line tables)."""
    if not file:
        return False
    return bool(line) or not _CODEGEN_UNIT.match(file)


def _basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _crate_class(crate: str) -> Optional[str]:
    if crate in RUNTIME_CRATES:
        return CLASS_RUNTIME
    if crate in STD_CRATES:
        return CLASS_STD
    if crate in THIRD_PARTY_CRATES:
        return CLASS_THIRD_PARTY
    return None


def _is_c_runtime(name: str) -> bool:
    bare = name.split("@", 1)[0]
    return bare in C_RUNTIME_NAMES or bare.startswith(C_RUNTIME_PREFIXES)


def classify_frame(frame: Frame, main_module: Optional[str] = None) -> str:
    """The class of one frame (see the module docstring for the rule order)."""
    module = frame.module or ""
    base = _basename(module) if module else ""
    if module in KERNEL_MODULES or base in KERNEL_MODULES or frame.address >= KERNEL_ADDRESS_MIN:
        return CLASS_KERNEL
    if base and SYSTEM_LIB.match(base):
        return CLASS_STD
    if frame.function is None:
        return CLASS_UNKNOWN
    if frame.file:
        m = _REGISTRY.search(frame.file)
        if m:
            crate = m.group("crate").replace("-", "_")
            return CLASS_RUNTIME if crate in RUNTIME_CRATES else CLASS_THIRD_PARTY
        if any(p.search(frame.file) for p in STD_PATHS):
            return CLASS_STD
    is_rust_path = "::" in frame.function
    if is_rust_path:
        cls = _crate_class(parse_function(frame.function).crate)
        if cls is not None:
            return cls
    elif _is_c_runtime(frame.function):
        return CLASS_STD
    if frame.file and not frame.line and (not is_rust_path or NATIVE_SOURCE.search(
            frame.file)):
        # C or C++ code without DWARF, its file an ELF STT_FILE name: a library linked
        # into the binary (musl's own helpers in a static musl build: qsort's sift, DNS's
        # name_from_dns; a -sys crate's C++, now that its names demangle to paths), not
        # the service's code.
        return CLASS_THIRD_PARTY
    if frame.file:
        return CLASS_USER
    if module:
        if main_module and (module == main_module or base == _basename(main_module)):
            return CLASS_USER
        if main_module is None and not SHARED_LIB.search(base):
            return CLASS_USER
        return CLASS_THIRD_PARTY
    return CLASS_USER if is_rust_path else CLASS_UNKNOWN


def classify_stack(stack: Stack, main_module: Optional[str] = None) -> Stack:
    """New frames with `cls` set; frames already of the right class are reused."""
    out = []
    for f in stack:
        cls = classify_frame(f, main_module)
        out.append(f if f.cls == cls else with_class(f, cls))
    return tuple(out)


# --- stack signatures -------------------------------------------------------------------

PARK_METHODS = frozenset({
    "park", "park_timeout", "park_internal", "park_condvar", "park_driver", "turn",
    "park_thread_timeout", "park_yield",
})
WORKER_MODULES = frozenset({"multi_thread", "multi_thread_alt", "thread_pool"})
BLOCK_ON_OWNERS = frozenset({"CoreGuard", "CurrentThread", "MultiThread", "Runtime", "Handle",
                             "MultiThreadAlt"})
TASK_POLL_METHODS = frozenset({"poll", "poll_future", "poll_inner"})
TASK_POLL_OWNERS = frozenset({"Core", "Harness", "RawTask", "raw", "harness", "LocalNotified",
                              "Notified", "UnownedTask"})


def _tokio_path(frame: Frame) -> Optional[FuncPath]:
    if frame.cls != CLASS_RUNTIME or frame.function is None:
        return None
    return parse_function(frame.function)


def _is_park(fp: FuncPath) -> bool:
    return fp.method in PARK_METHODS and ("runtime" in fp.segments or "park" in fp.segments)


def _is_worker_entry(fp: FuncPath) -> bool:
    """A scheduler loop: multi_thread `worker::run`, or current_thread's `block_on`.

    A multi_thread runtime's `Runtime::block_on` runs on the caller's thread, which is not
    a worker, so only current_thread's `block_on` counts here.
    """
    segs = set(fp.segments)
    if "worker" in segs and segs & WORKER_MODULES and fp.method in ("run", "launch"):
        return True
    return fp.method == "block_on" and "current_thread" in segs


def _is_block_on_entry(fp: FuncPath) -> bool:
    """Any runtime `block_on` a thread idles under (not `CachedParkThread::block_on`, which
    `blocking_lock` and friends call from user code)."""
    return fp.method == "block_on" and (
        "current_thread" in fp.segments or fp.owner() in BLOCK_ON_OWNERS)


def _is_pool_entry(fp: FuncPath) -> bool:
    return fp.method == "run" and "blocking" in fp.segments and "pool" in fp.segments


def _is_task_poll(fp: FuncPath) -> bool:
    return ("task" in fp.segments and fp.method in TASK_POLL_METHODS
            and (fp.owner() in TASK_POLL_OWNERS or "harness" in fp.segments))


@dataclass(frozen=True)
class StackInfo:
    """What a classified stack says about its thread at capture time.

    `park`: idle in Tokio's park (never a finding). `worker`: runs a scheduler loop.
    `pool`: a blocking-pool thread not running a worker (`block_in_place` counts: the
    worker gave its core away). `pool_idle`: a pool thread waiting for work. `blocker`:
    the blocking function (see `blocking_frame`). `task`: which task poll is running, for
    cpu stretches (None between polls, in a park, or when the stack says nothing).
    `task_frame`: the index of the frame `task` names; `harness_frame`: the outermost
    frame of Tokio's task harness (`Harness::poll`, `Core::poll`, ...) around it, whose
    stack holds the polled task's Waker (-1 when unknown; see hud.task_identity).
    `poll_frames`: the machine frames (0 = the innermost ip; inlined frames share their
    caller's) of those two, computed once per distinct stack.
    """

    park: bool = False
    worker: bool = False
    pool: bool = False
    pool_idle: bool = False
    block_in_place: bool = False
    blocker: Optional[Frame] = None
    task: Optional[str] = None
    task_frame: int = -1
    harness_frame: int = -1
    poll_frames: tuple[int, int] = (-1, -1)


def first_user_frame(stack: Stack) -> Optional[Frame]:
    """The innermost frame of class user, or None."""
    for f in stack:
        if f.cls == CLASS_USER:
            return f
    return None


def blocking_frame(stack: Stack) -> Optional[Frame]:
    """The frame that explains a stack: first user frame, else first third-party frame,
    else the innermost resolved non-kernel frame, else the innermost resolved frame."""
    hit = first_user_frame(stack)
    if hit is not None:
        return hit
    for f in stack:
        if f.cls == CLASS_THIRD_PARTY and f.resolved:
            return f
    for f in stack:
        if f.resolved and f.cls != CLASS_KERNEL:
            return f
    for f in stack:
        if f.resolved:
            return f
    return stack[0] if stack else None


def _task_of(stack: Stack, boundary: int) -> int:
    """The task's future: walking inward from the scheduler boundary, the first frame
    that is user or third-party code (its function, so every sample of a poll agrees);
    its index, or -1."""
    for i in range(boundary - 1, -1, -1):
        f = stack[i]
        if f.cls in (CLASS_USER, CLASS_THIRD_PARTY) and f.function is not None:
            return i
    return -1


def machine_frame(stack: Stack, index: int) -> int:
    """The user machine frame (0 = innermost user ip) of symbolized frame `index`:
    frames inlined into the next one share its machine frame; kernel frames, which come
    before the user ones, are not in the user stack the index is for."""
    return sum(1 for f in stack[:index] if not f.inlined and f.cls != CLASS_KERNEL)


def _is_harness(fp: FuncPath) -> bool:
    """Tokio's per-task poll code (`Harness::poll`, `poll_inner`, `poll_future`,
    `Core::poll`): where the polled task's Waker lives. `RawTask::poll` and
    `LocalNotified::run` are not: they are inlined into the scheduler's own frame."""
    segs = fp.segments
    return "task" in segs and ("harness" in segs or fp.owner() in ("Harness", "Core"))


def stack_info(stack: Stack) -> StackInfo:
    """Signature of a classified stack (frames innermost first, `cls` set)."""
    park_at = -1
    user_inside = False
    worker_at = pool_at = task_poll_at = entry_at = -1
    harness_at = bip_at = -1
    for i, f in enumerate(stack):
        fp = _tokio_path(f)
        if fp is None:
            if f.cls == CLASS_USER and park_at < 0:
                user_inside = True
            continue
        if park_at < 0 and not user_inside and _is_park(fp):
            park_at = i
        if worker_at < 0 and _is_worker_entry(fp):
            worker_at = i
        if pool_at < 0 and _is_pool_entry(fp):
            pool_at = i
        if entry_at < 0 and (_is_worker_entry(fp) or _is_pool_entry(fp)
                             or _is_block_on_entry(fp)):
            entry_at = i
        if task_poll_at < 0 and _is_task_poll(fp):
            task_poll_at = i
        if worker_at < 0 and _is_harness(fp):
            harness_at = i      # the outermost one inside the worker loop
        if bip_at < 0 and "block_in_place" in fp.segments:
            bip_at = i
    entry = entry_at if entry_at >= 0 else len(stack)
    # Work inside block_in_place runs between the leaf and the worker loop that polled
    # its task. The worker that block_in_place starts to take over the core runs its
    # loop inside a closure of block_in_place (`spawn_blocking(move || run(worker))`):
    # that frame is outside the loop, and the thread is a worker like any other.
    bip = bip_at >= 0 and (worker_at < 0 or bip_at < worker_at)
    park = park_at >= 0 and not any(
        f.cls == CLASS_USER for f in stack[park_at + 1:entry])
    worker = worker_at >= 0
    pool = (pool_at >= 0 and not worker) or bip
    pool_idle = pool and pool_at >= 0 and not bip and not any(
        f.cls == CLASS_USER for f in stack[:pool_at])
    task = None
    task_at = -1
    if worker and not park:
        boundary = task_poll_at if 0 <= task_poll_at < worker_at else worker_at
        task_at = _task_of(stack, boundary)
        task = display_function(stack[task_at].function) if task_at >= 0 else None
    elif not park and worker_at < 0 and pool_at < 0:
        # A truncated stack: the outermost user frame is the best task identity left.
        users = [f for f in stack if f.cls == CLASS_USER]
        task = display_function(users[-1].function) if users else None
    poll_frames = (-1, -1)
    if 0 <= task_at < harness_at:
        poll_frames = (machine_frame(stack, task_at), machine_frame(stack, harness_at))
    else:
        harness_at = -1
    return StackInfo(park=park, worker=worker, pool=pool, pool_idle=pool_idle,
                     block_in_place=bip, blocker=blocking_frame(stack), task=task,
                     task_frame=task_at, harness_frame=harness_at, poll_frames=poll_frames)


# --- cached classifier --------------------------------------------------------------------

class Classifier:
    """Classifies frames and stacks, caching per stack (frames are the key).

    The cache is bounded (cleared when full): a long-running target has a bounded set of
    distinct stacks in practice, and a flood of unique ones must not grow memory forever.
    """

    def __init__(self, main_module: Optional[str] = None, max_cached: int = 50_000) -> None:
        self.main_module = main_module
        self.max_cached = max_cached
        self._cache: dict = {}
        # Resolvers that cache hand back the same tuple for the same stack: an identity
        # hit skips hashing every frame. The entry keeps the tuple alive, so its id
        # cannot be reused by another object while the entry exists.
        self._by_id: dict = {}
        self.hits = 0
        self.misses = 0

    def classify(self, stack: Stack) -> tuple[Stack, StackInfo]:
        """The classified stack and its signature (cached)."""
        entry = self._by_id.get(id(stack))
        if entry is not None and entry[0] is stack:
            self.hits += 1
            return entry[1]
        key = tuple(stack)
        value = self._cache.get(key)
        if value is not None:
            self.hits += 1
        else:
            self.misses += 1
            frames = classify_stack(key, self.main_module)
            value = (frames, stack_info(frames))
            if len(self._cache) >= self.max_cached:
                self._cache.clear()
            self._cache[key] = value
        if len(self._by_id) >= self.max_cached:
            self._by_id.clear()
        self._by_id[id(stack)] = (stack, value)
        return value
