"""Synthetic but realistic Tokio stacks (innermost first), as symbolization would give them.

Shapes follow Tokio 1.24.2 (bookworm, /usr/share/cargo/registry) and 1.43 (crates.io
registry path, renamed io driver module); see ENV-FACTS.md, last section. Frames are raw:
`cls` is left for hud.classify to decide.
"""
from __future__ import annotations

import zlib
from typing import Optional

from hud.model import Frame

APP = "/usr/src/app/target/release/my-app"
LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"
RUSTC = "/rustc/90b35a6239c3d8bdabc530a6a0816f7ff89a0aaf/library"
T124 = "/usr/share/cargo/registry/tokio-1.24.2/src"
REG = "/root/.cargo/registry/src/index.crates.io-6f17d22bba15001f"
T143 = f"{REG}/tokio-1.43.1/src"
MIO08 = "/usr/share/cargo/registry/mio-0.8.5/src"
MIO10 = f"{REG}/mio-1.0.2/src"
SRC = "/usr/src/app/src"


def fr(function: Optional[str], file: Optional[str] = None, line: Optional[int] = None,
       module: Optional[str] = APP, inlined: bool = False, address: Optional[int] = None,
       reason: Optional[str] = None) -> Frame:
    """One raw frame; the address is derived from the name so equal frames are equal."""
    if address is None:
        key = f"{function}|{file}|{line}".encode()
        address = 0x5555_0000_0000 + (zlib.crc32(key) & 0xFF_FFFF)
    return Frame(address=address, function=function, file=file, line=line,
                 inlined=inlined, module=module, reason=reason)


def libc(name: str) -> Frame:
    return fr(name, module=LIBC)


def thread_start() -> list[Frame]:
    return [
        fr("std::sys_common::backtrace::__rust_begin_short_backtrace",
           f"{RUSTC}/std/src/sys_common/backtrace.rs", 122),
        fr("std::thread::Builder::spawn_unchecked_::{{closure}}::{{closure}}",
           f"{RUSTC}/std/src/thread/mod.rs", 514),
        fr("<core::panic::unwind_safe::AssertUnwindSafe<F> as "
           "core::ops::function::FnOnce<()>>::call_once",
           f"{RUSTC}/core/src/panic/unwind_safe.rs", 271),
        fr("std::panicking::try::do_call", f"{RUSTC}/std/src/panicking.rs", 483),
        fr("std::thread::Builder::spawn_unchecked_::{{closure}}",
           f"{RUSTC}/std/src/thread/mod.rs", 513),
        fr("core::ops::function::FnOnce::call_once{{vtable.shim}}",
           f"{RUSTC}/core/src/ops/function.rs", 248),
        fr("<alloc::boxed::Box<F,A> as core::ops::function::FnOnce<Args>>::call_once",
           f"{RUSTC}/alloc/src/boxed.rs", 1940),
        fr("std::sys::unix::thread::Thread::new::thread_start",
           f"{RUSTC}/std/src/sys/unix/thread.rs", 108),
        libc("start_thread"),
        libc("clone3"),
    ]


def task_poll(t: str = T124) -> list[Frame]:
    """From the future's poll out to the scheduler's run_task (a spawned task)."""
    return [
        fr("tokio::runtime::task::core::Core<T,S>::poll::{{closure}}",
           f"{t}/runtime/task/core.rs", 223),
        fr("tokio::loom::std::unsafe_cell::UnsafeCell<T>::with_mut",
           f"{t}/loom/std/unsafe_cell.rs", 14),
        fr("tokio::runtime::task::core::Core<T,S>::poll", f"{t}/runtime/task/core.rs", 212),
        fr("tokio::runtime::task::harness::poll_future::{{closure}}",
           f"{t}/runtime/task/harness.rs", 476),
        fr("std::panicking::try", f"{RUSTC}/std/src/panicking.rs", 447),
        fr("tokio::runtime::task::harness::poll_future", f"{t}/runtime/task/harness.rs", 464),
        fr("tokio::runtime::task::harness::Harness<T,S>::poll_inner",
           f"{t}/runtime/task/harness.rs", 198),
        fr("tokio::runtime::task::harness::Harness<T,S>::poll",
           f"{t}/runtime/task/harness.rs", 152),
        fr("tokio::runtime::task::raw::poll", f"{t}/runtime/task/raw.rs", 255),
        fr("tokio::runtime::task::LocalNotified<S>::run", f"{t}/runtime/task/mod.rs", 394),
        fr("tokio::runtime::scheduler::multi_thread::worker::Context::run_task::{{closure}}",
           f"{t}/runtime/scheduler/multi_thread/worker.rs", 484),
        fr("tokio::runtime::coop::with_budget", f"{t}/runtime/coop.rs", 102),
        fr("tokio::runtime::scheduler::multi_thread::worker::Context::run_task",
           f"{t}/runtime/scheduler/multi_thread/worker.rs", 459),
    ]


def pool_base(t: str = T124) -> list[Frame]:
    """A blocking-pool thread from the pool loop out to thread start."""
    return [
        fr("tokio::runtime::blocking::pool::Inner::run", f"{t}/runtime/blocking/pool.rs", 511),
        fr("tokio::runtime::blocking::pool::Spawner::spawn_thread::{{closure}}",
           f"{t}/runtime/blocking/pool.rs", 469),
        *thread_start(),
    ]


def blocking_task(t: str = T124) -> list[Frame]:
    """A spawn_blocking closure's poll, out to the pool loop (exclusive)."""
    return [
        fr("<tokio::runtime::blocking::task::BlockingTask<T> as "
           "core::future::future::Future>::poll", f"{t}/runtime/blocking/task.rs", 42),
        fr("tokio::runtime::task::core::Core<T,S>::poll::{{closure}}",
           f"{t}/runtime/task/core.rs", 223),
        fr("tokio::runtime::task::core::Core<T,S>::poll", f"{t}/runtime/task/core.rs", 212),
        fr("tokio::runtime::task::harness::poll_future", f"{t}/runtime/task/harness.rs", 464),
        fr("tokio::runtime::task::harness::Harness<T,S>::poll",
           f"{t}/runtime/task/harness.rs", 152),
        fr("tokio::runtime::task::raw::poll", f"{t}/runtime/task/raw.rs", 255),
        fr("tokio::runtime::task::UnownedTask<S>::run", f"{t}/runtime/task/mod.rs", 431),
        fr("tokio::runtime::blocking::pool::Task::run", f"{t}/runtime/blocking/pool.rs", 159),
    ]


def worker_loop_124() -> list[Frame]:
    t = T124
    return [
        fr("tokio::runtime::scheduler::multi_thread::worker::Context::run",
           f"{t}/runtime/scheduler/multi_thread/worker.rs", 440),
        fr("tokio::runtime::scheduler::multi_thread::worker::run::{{closure}}",
           f"{t}/runtime/scheduler/multi_thread/worker.rs", 405),
        fr("tokio::macros::scoped_tls::ScopedKey<T>::set", f"{t}/macros/scoped_tls.rs", 61),
        fr("tokio::runtime::scheduler::multi_thread::worker::run",
           f"{t}/runtime/scheduler/multi_thread/worker.rs", 402),
        fr("tokio::runtime::scheduler::multi_thread::worker::Launch::launch::{{closure}}",
           f"{t}/runtime/scheduler/multi_thread/worker.rs", 365),
        *blocking_task(t),
        *pool_base(t),
    ]


def worker_loop_143() -> list[Frame]:
    t = T143
    return [
        fr("tokio::runtime::scheduler::multi_thread::worker::Context::run",
           f"{t}/runtime/scheduler/multi_thread/worker.rs", 560),
        fr("tokio::runtime::scheduler::multi_thread::worker::run::{{closure}}::{{closure}}",
           f"{t}/runtime/scheduler/multi_thread/worker.rs", 513),
        fr("tokio::runtime::context::scoped::Scoped<T>::set", f"{t}/runtime/context/scoped.rs",
           40),
        fr("tokio::runtime::context::set_scheduler::{{closure}}", f"{t}/runtime/context.rs",
           180),
        fr("<std::thread::local::LocalKey<T>>::try_with",
           f"{RUSTC}/std/src/thread/local.rs", 283),
        fr("tokio::runtime::context::set_scheduler", f"{t}/runtime/context.rs", 180),
        fr("tokio::runtime::scheduler::multi_thread::worker::run::{{closure}}",
           f"{t}/runtime/scheduler/multi_thread/worker.rs", 508),
        fr("tokio::runtime::context::runtime::enter_runtime",
           f"{t}/runtime/context/runtime.rs", 65),
        fr("tokio::runtime::scheduler::multi_thread::worker::run",
           f"{t}/runtime/scheduler/multi_thread/worker.rs", 500),
        fr("tokio::runtime::scheduler::multi_thread::worker::Launch::launch::{{closure}}",
           f"{t}/runtime/scheduler/multi_thread/worker.rs", 459),
        *blocking_task(t),
        *pool_base(t),
    ]


def _park_to_context(t: str, io_mod: str, worker_line: int) -> list[Frame]:
    io_file = f"{t}/runtime/io/driver.rs" if io_mod else f"{t}/runtime/io/mod.rs"
    return [
        fr(f"tokio::runtime::io::{io_mod}Driver::turn", io_file, 162),
        fr(f"tokio::runtime::io::{io_mod}Driver::park", io_file, 137, inlined=True),
        fr("tokio::runtime::signal::Driver::park", f"{t}/runtime/signal/mod.rs", 92),
        fr("tokio::runtime::process::Driver::park", f"{t}/runtime/process.rs", 32),
        fr("tokio::runtime::driver::IoStack::park", f"{t}/runtime/driver.rs", 175),
        fr("tokio::runtime::time::Driver::park_internal", f"{t}/runtime/time/mod.rs", 198),
        fr("tokio::runtime::time::Driver::park", f"{t}/runtime/time/mod.rs", 152),
        fr("tokio::runtime::driver::TimeDriver::park", f"{t}/runtime/driver.rs", 292),
        fr("tokio::runtime::driver::Driver::park", f"{t}/runtime/driver.rs", 63),
        fr("tokio::runtime::scheduler::multi_thread::park::Inner::park_driver",
           f"{t}/runtime/scheduler/multi_thread/park.rs", 198),
        fr("tokio::runtime::scheduler::multi_thread::park::Inner::park",
           f"{t}/runtime/scheduler/multi_thread/park.rs", 119),
        fr("tokio::runtime::scheduler::multi_thread::park::Parker::park",
           f"{t}/runtime/scheduler/multi_thread/park.rs", 68),
        fr("tokio::runtime::scheduler::multi_thread::worker::Context::park_timeout",
           f"{t}/runtime/scheduler/multi_thread/worker.rs", worker_line),
        fr("tokio::runtime::scheduler::multi_thread::worker::Context::park",
           f"{t}/runtime/scheduler/multi_thread/worker.rs", worker_line - 28),
    ]


def park_epoll_124() -> tuple[Frame, ...]:
    """A 1.24 worker idle in the I/O driver's epoll_wait."""
    return (
        libc("epoll_wait"),
        fr("mio::sys::unix::selector::epoll::Selector::select",
           f"{MIO08}/sys/unix/selector/epoll.rs", 68),
        fr("mio::poll::Poll::poll", f"{MIO08}/poll.rs", 400),
        *_park_to_context(T124, "", 560),
        *worker_loop_124(),
    )


def park_epoll_143() -> tuple[Frame, ...]:
    """A 1.43 worker idle in epoll_wait (io driver moved to io::driver)."""
    return (
        libc("epoll_wait"),
        fr("mio::sys::unix::selector::Selector::select",
           f"{MIO10}/sys/unix/selector/mod.rs", 86),
        fr("mio::poll::Poll::poll", f"{MIO10}/poll.rs", 435),
        *_park_to_context(T143, "driver::", 750),
        *worker_loop_143(),
    )


def park_condvar_124() -> tuple[Frame, ...]:
    """A 1.24 worker idle on the park condvar (another worker owns the driver)."""
    t = T124
    return (
        libc("syscall"),
        fr("std::sys::unix::futex::futex_wait", f"{RUSTC}/std/src/sys/unix/futex.rs", 62),
        fr("std::sys::unix::locks::futex_condvar::Condvar::wait_optional_timeout",
           f"{RUSTC}/std/src/sys/unix/locks/futex_condvar.rs", 49),
        fr("std::sync::condvar::Condvar::wait", f"{RUSTC}/std/src/sync/condvar.rs", 191),
        fr("tokio::loom::std::mutex::Mutex<T>::lock", f"{t}/loom/std/mutex.rs", 30,
           inlined=True),
        fr("tokio::runtime::scheduler::multi_thread::park::Inner::park_condvar",
           f"{t}/runtime/scheduler/multi_thread/park.rs", 148),
        fr("tokio::runtime::scheduler::multi_thread::park::Inner::park",
           f"{t}/runtime/scheduler/multi_thread/park.rs", 121),
        fr("tokio::runtime::scheduler::multi_thread::park::Parker::park",
           f"{t}/runtime/scheduler/multi_thread/park.rs", 68),
        fr("tokio::runtime::scheduler::multi_thread::worker::Context::park_timeout",
           f"{t}/runtime/scheduler/multi_thread/worker.rs", 560),
        fr("tokio::runtime::scheduler::multi_thread::worker::Context::park",
           f"{t}/runtime/scheduler/multi_thread/worker.rs", 532),
        *worker_loop_124(),
    )


def park_condvar_parking_lot_143() -> tuple[Frame, ...]:
    """1.43 with the parking_lot feature, v0-demangled names (`<Type>::method`)."""
    t = T143
    return (
        libc("syscall"),
        fr("parking_lot_core::thread_parker::imp::ThreadParker::futex_wait",
           f"{REG}/parking_lot_core-0.9.9/src/thread_parker/linux.rs", 112),
        fr("parking_lot_core::parking_lot::park",
           f"{REG}/parking_lot_core-0.9.9/src/parking_lot.rs", 635),
        fr("parking_lot::condvar::Condvar::wait_until_internal",
           f"{REG}/parking_lot-0.12.1/src/condvar.rs", 333),
        fr("tokio::loom::std::parking_lot::Condvar::wait", f"{t}/loom/std/parking_lot.rs", 149),
        fr("<tokio::runtime::scheduler::multi_thread::park::Inner>::park_condvar",
           f"{t}/runtime/scheduler/multi_thread/park.rs", 164),
        fr("<tokio::runtime::scheduler::multi_thread::park::Inner>::park",
           f"{t}/runtime/scheduler/multi_thread/park.rs", 117),
        fr("<tokio::runtime::scheduler::multi_thread::park::Parker>::park",
           f"{t}/runtime/scheduler/multi_thread/park.rs", 70),
        fr("<tokio::runtime::scheduler::multi_thread::worker::Context>::park_timeout",
           f"{t}/runtime/scheduler/multi_thread/worker.rs", 750),
        fr("<tokio::runtime::scheduler::multi_thread::worker::Context>::park",
           f"{t}/runtime/scheduler/multi_thread/worker.rs", 722),
        *worker_loop_143(),
    )


def current_thread_park() -> tuple[Frame, ...]:
    """A current_thread runtime's block_on thread idle in epoll_wait."""
    t = T124
    return (
        libc("epoll_wait"),
        fr("mio::poll::Poll::poll", f"{MIO08}/poll.rs", 400),
        fr("tokio::runtime::io::Driver::turn", f"{t}/runtime/io/mod.rs", 162),
        fr("tokio::runtime::time::Driver::park_internal", f"{t}/runtime/time/mod.rs", 198),
        fr("tokio::runtime::driver::Driver::park", f"{t}/runtime/driver.rs", 63),
        fr("tokio::runtime::scheduler::current_thread::Context::park::{{closure}}",
           f"{t}/runtime/scheduler/current_thread.rs", 315),
        fr("tokio::runtime::scheduler::current_thread::Context::enter",
           f"{t}/runtime/scheduler/current_thread.rs", 353),
        fr("tokio::runtime::scheduler::current_thread::Context::park",
           f"{t}/runtime/scheduler/current_thread.rs", 314),
        fr("tokio::runtime::scheduler::current_thread::CoreGuard::block_on::{{closure}}",
           f"{t}/runtime/scheduler/current_thread.rs", 569),
        fr("tokio::runtime::scheduler::current_thread::CoreGuard::enter",
           f"{t}/runtime/scheduler/current_thread.rs", 595),
        fr("tokio::runtime::scheduler::current_thread::CoreGuard::block_on",
           f"{t}/runtime/scheduler/current_thread.rs", 529),
        fr("tokio::runtime::scheduler::current_thread::CurrentThread::block_on",
           f"{t}/runtime/scheduler/current_thread.rs", 154),
        fr("tokio::runtime::runtime::Runtime::block_on", f"{t}/runtime/runtime.rs", 279),
        fr("my_app::main", f"{SRC}/main.rs", 12),
        fr("core::ops::function::FnOnce::call_once", f"{RUSTC}/core/src/ops/function.rs", 248),
        fr("std::rt::lang_start_internal", f"{RUSTC}/std/src/rt.rs", 148),
        fr("main"),
        libc("__libc_start_call_main"),
        libc("__libc_start_main"),
        fr("_start"),
    )


def current_thread_blocking(fn: str = "my_app::handlers::load", line: int = 42
                            ) -> tuple[Frame, ...]:
    """The main future of a current_thread runtime sleeping (blocks the only worker)."""
    t = T124
    return (
        libc("clock_nanosleep"),
        fr("std::thread::sleep", f"{RUSTC}/std/src/thread/mod.rs", 872),
        fr(f"{fn}::{{{{closure}}}}", f"{SRC}/handlers.rs", line),
        fr("my_app::main::{{closure}}", f"{SRC}/main.rs", 14),
        fr("tokio::runtime::scheduler::current_thread::CoreGuard::block_on::{{closure}}",
           f"{t}/runtime/scheduler/current_thread.rs", 541),
        fr("tokio::runtime::scheduler::current_thread::CoreGuard::block_on",
           f"{t}/runtime/scheduler/current_thread.rs", 529),
        fr("tokio::runtime::runtime::Runtime::block_on", f"{t}/runtime/runtime.rs", 279),
        fr("my_app::main", f"{SRC}/main.rs", 12),
        fr("main"),
        libc("__libc_start_main"),
    )


def in_task(inner: list[Frame], task_fn: str = "my_app::serve", task_line: int = 30,
            version: str = "1.24") -> tuple[Frame, ...]:
    """`inner` frames running inside a spawned task (`task_fn`) on a worker."""
    if version == "1.24":
        t, loop = T124, worker_loop_124()
        wrap = [fr("<core::future::from_generator::GenFuture<T> as "
                   "core::future::future::Future>::poll", f"{RUSTC}/core/src/future/mod.rs", 91)]
    else:
        t, loop = T143, worker_loop_143()
        wrap = []
    return (*inner, *wrap, fr(f"{task_fn}::{{{{closure}}}}", f"{SRC}/main.rs", task_line),
            *wrap, *task_poll(t), *loop)


def sleep_blocker(fn: str = "my_app::handlers::load", line: int = 42, version: str = "1.24",
                  task_fn: str = "my_app::serve") -> tuple[Frame, ...]:
    """std::thread::sleep called from an async fn body on a worker."""
    return in_task([
        libc("clock_nanosleep"),
        libc("__nanosleep"),
        fr("std::sys::unix::thread::Thread::sleep", f"{RUSTC}/std/src/sys/unix/thread.rs", 241),
        fr("std::thread::sleep", f"{RUSTC}/std/src/thread/mod.rs", 872),
        fr(f"{fn}::{{{{closure}}}}", f"{SRC}/handlers.rs", line),
    ], task_fn=task_fn, version=version)


def mutex_blocker(version: str = "1.24") -> tuple[Frame, ...]:
    """A std::sync::Mutex contended inside a task."""
    return in_task([
        libc("syscall"),
        fr("std::sys::unix::futex::futex_wait", f"{RUSTC}/std/src/sys/unix/futex.rs", 62),
        fr("std::sys::unix::locks::futex_mutex::Mutex::lock_contended",
           f"{RUSTC}/std/src/sys/unix/locks/futex_mutex.rs", 56),
        fr("std::sync::mutex::Mutex<T>::lock", f"{RUSTC}/std/src/sync/mutex.rs", 267,
           inlined=True),
        fr("my_app::state::Cache::get", f"{SRC}/state.rs", 19),
        fr("my_app::handlers::lookup::{{closure}}", f"{SRC}/handlers.rs", 61),
    ], version=version)


def blocking_lock_in_task() -> tuple[Frame, ...]:
    """A Tokio park reached from user code (blocking_lock): blocks the worker."""
    t = T124
    return in_task([
        libc("syscall"),
        fr("std::sys::unix::futex::futex_wait", f"{RUSTC}/std/src/sys/unix/futex.rs", 62),
        fr("std::sync::condvar::Condvar::wait", f"{RUSTC}/std/src/sync/condvar.rs", 191),
        fr("tokio::runtime::park::Inner::park", f"{t}/runtime/park.rs", 112),
        fr("tokio::runtime::park::CachedParkThread::park", f"{t}/runtime/park.rs", 60),
        fr("tokio::runtime::park::CachedParkThread::block_on", f"{t}/runtime/park.rs", 285),
        fr("tokio::future::block_on::block_on", f"{t}/future/block_on.rs", 6),
        fr("tokio::sync::mutex::Mutex<T>::blocking_lock", f"{t}/sync/mutex.rs", 458),
        fr("my_app::handlers::locky::{{closure}}", f"{SRC}/handlers.rs", 88),
    ])


def block_in_place_sleep() -> tuple[Frame, ...]:
    """Work inside tokio::task::block_in_place: the worker gave its core away."""
    t = T124
    return in_task([
        libc("clock_nanosleep"),
        fr("std::thread::sleep", f"{RUSTC}/std/src/thread/mod.rs", 872),
        fr("my_app::handlers::bip::{{closure}}::{{closure}}", f"{SRC}/handlers.rs", 101),
        fr("tokio::runtime::scheduler::multi_thread::worker::block_in_place",
           f"{t}/runtime/scheduler/multi_thread/worker.rs", 340),
        fr("tokio::task::blocking::block_in_place", f"{t}/task/blocking.rs", 78),
        fr("my_app::handlers::bip::{{closure}}", f"{SRC}/handlers.rs", 100),
    ])


def replacement_worker(stack: tuple[Frame, ...]) -> tuple[Frame, ...]:
    """`stack` (a 1.24 worker's) on the thread block_in_place started to take over the
    worker's core: its loop runs inside block_in_place's spawn_blocking closure."""
    t = T124
    launch = "tokio::runtime::scheduler::multi_thread::worker::Launch::launch::{{closure}}"
    i = next(k for k, f in enumerate(stack) if f.function == launch)
    spawned = fr("tokio::runtime::scheduler::multi_thread::worker::block_in_place::"
                 "{{closure}}::{{closure}}", f"{t}/runtime/scheduler/multi_thread/worker.rs",
                 360)
    return (*stack[:i], spawned, *stack[i + 1:])


def cpu_hog(line: int = 120, helper: Optional[str] = None, version: str = "1.24"
            ) -> tuple[Frame, ...]:
    """A CPU-bound loop in a task `my_app::handlers::hog` (sampled at `line`)."""
    inner = [fr("my_app::handlers::hog::{{closure}}", f"{SRC}/handlers.rs", line)]
    if helper:
        inner.insert(0, fr(helper, f"{SRC}/cpu.rs", 7))
    return in_task(inner, task_fn="my_app::handlers::hog", task_line=118, version=version)


def scheduler_between_polls() -> tuple[Frame, ...]:
    """A worker sampled in the scheduler itself, between two task polls."""
    t = T124
    return (
        fr("tokio::runtime::scheduler::multi_thread::queue::Local<T>::pop",
           f"{t}/runtime/scheduler/multi_thread/queue.rs", 220),
        fr("tokio::runtime::scheduler::multi_thread::worker::Core::next_task",
           f"{t}/runtime/scheduler/multi_thread/worker.rs", 602),
        *worker_loop_124(),
    )


def pool_idle(version: str = "1.24") -> tuple[Frame, ...]:
    """An idle blocking-pool thread waiting for work (Condvar::wait_timeout)."""
    t = T124 if version == "1.24" else T143
    return (
        libc("syscall"),
        fr("std::sys::unix::futex::futex_wait", f"{RUSTC}/std/src/sys/unix/futex.rs", 62),
        fr("std::sys::unix::locks::futex_condvar::Condvar::wait_optional_timeout",
           f"{RUSTC}/std/src/sys/unix/locks/futex_condvar.rs", 49),
        fr("std::sync::condvar::Condvar::wait_timeout", f"{RUSTC}/std/src/sync/condvar.rs", 348),
        fr("tokio::loom::std::mutex::Mutex<T>::lock", f"{t}/loom/std/mutex.rs", 30,
           inlined=True),
        *pool_base(t),
    )


def pool_busy(fn: str = "my_app::handlers::save_blocking", line: int = 77,
              version: str = "1.24") -> tuple[Frame, ...]:
    """spawn_blocking work (fsync) running on a pool thread."""
    t = T124 if version == "1.24" else T143
    return (
        libc("fsync"),
        fr("std::fs::File::sync_all", f"{RUSTC}/std/src/fs.rs", 477),
        fr(fn, f"{SRC}/handlers.rs", line),
        fr("my_app::handlers::save::{{closure}}::{{closure}}", f"{SRC}/handlers.rs", 70),
        *blocking_task(t),
        *pool_base(t),
    )


def truncated(frames: tuple[Frame, ...], depth: int) -> tuple[Frame, ...]:
    """The innermost `depth` frames: what a frame-pointer walk that stopped early gives."""
    return frames[:depth]
