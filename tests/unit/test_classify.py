"""hud.classify: frame classes, name parsing, and Tokio park / worker / pool signatures."""
from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st
from unit.analysis import tokio_shapes as shapes

from hud.classify import (
    Classifier,
    blocking_frame,
    classify_frame,
    classify_stack,
    display_function,
    first_user_frame,
    parse_function,
    stack_info,
)
from hud.model import (
    CLASS_KERNEL,
    CLASS_RUNTIME,
    CLASS_STD,
    CLASS_THIRD_PARTY,
    CLASS_UNKNOWN,
    CLASS_USER,
    Frame,
    with_class,
)

fr = shapes.fr
APP = shapes.APP


def info_of(stack):
    return stack_info(classify_stack(stack, APP))


# --- frame classes --------------------------------------------------------------------------

@pytest.mark.parametrize("frame, cls", [
    (fr("my_app::handlers::load", "/usr/src/app/src/handlers.rs", 42), CLASS_USER),
    (fr("my_app::x", "/home/dev/proj/src/x.rs", 1), CLASS_USER),
    (fr("tokio::runtime::io::Driver::turn",
        "/usr/share/cargo/registry/tokio-1.24.2/src/runtime/io/mod.rs", 1), CLASS_RUNTIME),
    (fr("tokio::runtime::io::Driver::turn",
        f"{shapes.T143}/runtime/io/driver.rs", 1), CLASS_RUNTIME),
    # a generic from a crate, monomorphized in the app: the path decides
    (fr("my_app::Thing::go", "/usr/share/cargo/registry/serde-1.0.1/src/de.rs", 3),
     CLASS_THIRD_PARTY),
    (fr("mio::poll::Poll::poll", f"{shapes.REG}/mio-1.0.2/src/poll.rs", 1), CLASS_THIRD_PARTY),
    (fr("x::y", "/home/u/.cargo/git/checkouts/somelib-abc/1234/src/a.rs", 1),
     CLASS_THIRD_PARTY),
    (fr("x::y", "/usr/src/app/vendor/serde/src/a.rs", 1), CLASS_THIRD_PARTY),
    (fr("std::thread::sleep", f"{shapes.RUSTC}/std/src/thread/mod.rs", 872), CLASS_STD),
    # inlined std code into a user function: the location is std's
    (fr("my_app::f", f"{shapes.RUSTC}/core/src/num/mod.rs", 1, inlined=True), CLASS_STD),
    (fr("alloc::vec::Vec<T>::push",
        "/root/.rustup/toolchains/stable-x86_64-unknown-linux-gnu/lib/rustlib/src/rust/"
        "library/alloc/src/vec/mod.rs", 1), CLASS_STD),
    (fr("std::io::stdio::_print", "/usr/src/rustc-1.63.0/library/std/src/io/stdio.rs", 1),
     CLASS_STD),
    # no file: crate prefix decides
    (fr("tokio::runtime::task::raw::poll"), CLASS_RUNTIME),
    (fr("core::ptr::drop_in_place<my_app::Foo>"), CLASS_STD),
    (fr("<alloc::boxed::Box<F,A> as core::ops::function::FnOnce<Args>>::call_once"),
     CLASS_STD),
    (fr("<tokio::runtime::blocking::task::BlockingTask<T> as "
        "core::future::future::Future>::poll"), CLASS_RUNTIME),
    (fr("<my_app::Svc as tower_service::Service<R>>::call"), CLASS_USER),
    (fr("<&mut F as core::future::future::Future>::poll"), CLASS_STD),
    (fr("parking_lot_core::parking_lot::park"), CLASS_THIRD_PARTY),
    (fr("futures_util::future::future::FutureExt::poll_unpin"), CLASS_THIRD_PARTY),
    # C runtime
    (fr("epoll_wait", module="/lib/x86_64-linux-gnu/libc.so.6"), CLASS_STD),
    (fr("getaddrinfo", module="/usr/lib/x86_64-linux-gnu/libc.so.6"), CLASS_STD),
    (fr("_dl_runtime_resolve", module="/lib64/ld-linux-x86-64.so.2"), CLASS_STD),
    (fr("__vdso_clock_gettime", module="[vdso]"), CLASS_STD),
    (fr(None, module="/lib/x86_64-linux-gnu/libc.so.6", reason="no symbol"), CLASS_STD),
    (fr("_start"), CLASS_STD),
    (fr("main"), CLASS_STD),
    (fr("__libc_start_main", module=None), CLASS_STD),
    # module decides
    (fr("SSL_read", module="/usr/lib/x86_64-linux-gnu/libssl.so.3"), CLASS_THIRD_PARTY),
    (fr("my_app::handlers::load"), CLASS_USER),          # main module, no debug info
    (fr("somelib::f", module="/opt/lib/libsome.so"), CLASS_THIRD_PARTY),
    (fr("my_c_helper"), CLASS_USER),                      # a C function of the app itself
    (fr("my_c_helper", "src/helper.c", 7), CLASS_USER),   # ... with its DWARF
    # C without DWARF, named by its STT_FILE: musl's helpers in a static musl binary
    (fr("name_from_dns", "lookup_name.lo"), CLASS_THIRD_PARTY),
    (fr("sift", "qsort.lo"), CLASS_THIRD_PARTY),
    (fr("__syscall_cp_c", "__syscall_cp.lo"), CLASS_STD),
    (fr("my_app::f", "my_app.a1b2c3d4e5f60718-cgu.0"), CLASS_USER),  # Rust, no DWARF
    # C++ of a -sys crate linked in without DWARF (RocksDB, gRPC): its names are paths
    (fr("rocksdb::port::Mutex::Lock()", "port_posix.cc"), CLASS_THIRD_PARTY),
    (fr("rocksdb::DBImpl::Write(rocksdb::WriteOptions const&, rocksdb::WriteBatch*)",
        "db_impl_write.cc"), CLASS_THIRD_PARTY),
    (fr("std::mutex::lock()", "mutex.cc"), CLASS_STD),    # C++'s std, as Rust's
    (fr("app::store::Db::put(int)", "/home/dev/app/cpp/store.cc", 12), CLASS_USER),
    # kernel and unresolved
    (fr("do_syscall_64", module="[kernel.kallsyms]"), CLASS_KERNEL),
    (Frame(address=0xFFFFFFFF81000000, function="schedule"), CLASS_KERNEL),
    (fr(None, reason="no mapping"), CLASS_UNKNOWN),
    (fr(None, module=None, reason="unwind stopped"), CLASS_UNKNOWN),
])
def test_frame_classes(frame, cls):
    assert classify_frame(frame, APP) == cls


def test_main_module_matches_by_basename_and_defaults_to_non_library():
    f = fr("my_c_helper", module="/proc/1/root/usr/src/app/target/release/my-app")
    assert classify_frame(f, APP) == CLASS_USER
    assert classify_frame(fr("my_c_helper", module="/other/bin"), APP) == CLASS_THIRD_PARTY
    assert classify_frame(fr("my_c_helper", module="/other/bin"), None) == CLASS_USER
    assert classify_frame(fr("my_c_helper", module="/x/libfoo.so.1"), None) == CLASS_THIRD_PARTY


def test_classify_stack_sets_cls_and_keeps_everything_else():
    raw = shapes.sleep_blocker()
    out = classify_stack(raw, APP)
    assert len(out) == len(raw)
    for a, b in zip(raw, out):
        assert (a.address, a.function, a.file, a.line, a.inlined) == \
            (b.address, b.function, b.file, b.line, b.inlined)
    assert {f.cls for f in out} == {CLASS_USER, CLASS_STD, CLASS_RUNTIME}


# --- names ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, crate, method", [
    ("tokio::runtime::task::core::Core<T,S>::poll", "tokio", "poll"),
    ("<tokio::runtime::task::core::Core<F, alloc::sync::Arc<S>>>::poll", "tokio", "poll"),
    ("<tokio::x::Parker as tokio::park::Park>::park", "tokio", "park"),
    ("my_app::main::{{closure}}", "my_app", "main"),
    ("my_app::main::{closure#0}", "my_app", "main"),
    ("<[u8; 4] as core::fmt::Debug>::fmt", "core", "fmt"),
    ("<fn() -> u8 as core::ops::Fn<()>>::call", "core", "call"),
    ("std::thread::sleep::h0123456789abcdef", "std", "sleep"),
])
def test_parse_function(name, crate, method):
    fp = parse_function(name)
    assert fp.crate == crate
    assert fp.method == method


def test_display_function_strips_closures_and_hash():
    assert display_function("my_app::handlers::load::{{closure}}") == "my_app::handlers::load"
    assert display_function("my_app::f::{closure#0}::{closure#1}") == "my_app::f"
    assert display_function("my_app::f::h0123456789abcdef") == "my_app::f"
    assert display_function(None) == "[unknown]"


# --- park / worker / pool signatures ------------------------------------------------------------

PARKS = [shapes.park_epoll_124, shapes.park_epoll_143, shapes.park_condvar_124,
         shapes.park_condvar_parking_lot_143]


@pytest.mark.parametrize("make", PARKS)
def test_worker_parks_are_parks(make):
    info = info_of(make())
    assert info.park and info.worker and not info.pool
    assert info.task is None


def test_current_thread_block_on_park_is_a_worker_park():
    info = info_of(shapes.current_thread_park())
    assert info.park and info.worker


def test_current_thread_main_future_blocking_is_not_a_park():
    info = info_of(shapes.current_thread_blocking())
    assert not info.park and info.worker
    assert info.blocker.function == "my_app::handlers::load::{{closure}}"
    assert info.task == "my_app::main"


@pytest.mark.parametrize("version", ["1.24", "1.43"])
def test_sleep_in_a_task_is_a_blocker_not_a_park(version):
    info = info_of(shapes.sleep_blocker(version=version))
    assert not info.park and info.worker and not info.pool
    assert info.blocker.function == "my_app::handlers::load::{{closure}}"
    assert info.blocker.line == 42
    assert info.task == "my_app::serve"


def test_mutex_blocker_is_the_innermost_user_frame():
    info = info_of(shapes.mutex_blocker())
    assert not info.park
    assert info.blocker.function == "my_app::state::Cache::get"


def test_a_tokio_park_called_from_user_code_is_blocking():
    info = info_of(shapes.blocking_lock_in_task())
    assert not info.park and info.worker
    assert info.blocker.function == "my_app::handlers::locky::{{closure}}"


def test_block_in_place_counts_as_pool_work():
    info = info_of(shapes.block_in_place_sleep())
    assert info.block_in_place and info.pool and not info.park


def test_the_worker_block_in_place_starts_is_a_worker():
    # block_in_place hands the core to a thread that runs the worker loop inside one of
    # block_in_place's closures; that thread's blockers block the runtime like any
    # worker's (seen live: every later sleep of the blockers fixture filed as pool work).
    blocker = info_of(shapes.replacement_worker(shapes.sleep_blocker()))
    assert blocker.worker and not blocker.pool and not blocker.block_in_place
    assert blocker.blocker.function == "my_app::handlers::load::{{closure}}"
    park = info_of(shapes.replacement_worker(shapes.park_epoll_124()))
    assert park.park and park.worker and not park.pool
    # ... and work inside block_in_place on such a thread is still block_in_place work.
    nested = info_of(shapes.replacement_worker(shapes.block_in_place_sleep()))
    assert nested.block_in_place and nested.pool


@pytest.mark.parametrize("version", ["1.24", "1.43"])
def test_pool_idle_and_busy(version):
    idle = info_of(shapes.pool_idle(version))
    assert idle.pool and idle.pool_idle and not idle.worker and not idle.park
    busy = info_of(shapes.pool_busy(version=version))
    assert busy.pool and not busy.pool_idle and not busy.worker
    assert busy.blocker.function == "my_app::handlers::save_blocking"


def test_workers_are_recognised_through_the_pool_frames_they_run_under():
    # every worker also has blocking::pool::Inner::run underneath: it must not be "pool"
    for make in (shapes.park_epoll_124, shapes.park_epoll_143, shapes.sleep_blocker):
        info = info_of(make())
        assert info.worker and not info.pool


def test_cpu_task_identity_is_stable_across_samples():
    a = info_of(shapes.cpu_hog(line=120))
    b = info_of(shapes.cpu_hog(line=123, helper="my_app::cpu::mix"))
    assert a.task == b.task == "my_app::handlers::hog"
    assert b.blocker.function == "my_app::cpu::mix"


def test_between_polls_has_no_task():
    info = info_of(shapes.scheduler_between_polls())
    assert info.worker and not info.park and info.task is None


def test_truncated_stacks_fall_back():
    # only libc + std: no user frame, no Tokio frame
    info = info_of(shapes.truncated(shapes.sleep_blocker(), 4))
    assert not info.park and not info.worker and not info.pool
    assert info.blocker.function == "clock_nanosleep"   # innermost resolved
    # an epoll_wait with nothing above it is not provably a park
    assert not info_of(shapes.truncated(shapes.park_epoll_124(), 3)).park
    # deep enough to reach the driver: a park even without the scheduler frames
    assert info_of(shapes.truncated(shapes.park_epoll_124(), 6)).park
    # a truncated user stack: the task is the outermost user frame seen
    info = info_of(shapes.truncated(shapes.sleep_blocker(), 7))
    assert info.task == "my_app::serve"


def test_blocking_frame_fallbacks():
    s = classify_stack((fr("epoll_wait", module=shapes.LIBC),
                        fr("mio::poll::Poll::poll"), fr("tokio::x::y")), APP)
    assert first_user_frame(s) is None
    assert blocking_frame(s).function == "mio::poll::Poll::poll"
    s = classify_stack((fr("do_sys_poll", module="[kernel.kallsyms]"),
                        fr("epoll_wait", module=shapes.LIBC)), APP)
    assert blocking_frame(s).function == "epoll_wait"
    s = classify_stack((fr(None, reason="r1"), fr(None, reason="r2")), APP)
    assert blocking_frame(s) is s[0]
    assert blocking_frame(()) is None


def test_empty_stack_signature():
    info = stack_info(())
    assert not (info.park or info.worker or info.pool) and info.blocker is None


# --- cache ------------------------------------------------------------------------------------

def test_classifier_caches_per_stack_and_is_bounded():
    c = Classifier(APP, max_cached=3)
    a = shapes.sleep_blocker()
    s1, i1 = c.classify(a)
    s2, i2 = c.classify(tuple(a))
    assert s1 is s2 and i1 is i2
    assert (c.hits, c.misses) == (1, 1)
    # a different line is a different stack
    _, i3 = c.classify(shapes.sleep_blocker(line=43))
    assert i3.blocker.line == 43
    for n in range(10):
        c.classify(shapes.sleep_blocker(line=100 + n))
    assert len(c._cache) <= 3


@given(st.builds(Frame, address=st.integers(0, 1 << 64), function=st.none() | st.text(),
                 file=st.none() | st.text(), line=st.none() | st.integers(0, 1 << 20),
                 inlined=st.booleans(), module=st.none() | st.text(),
                 reason=st.none() | st.text()),
       st.sampled_from(["user", "std", "runtime", "kernel", "unknown", "third-party"]))
def test_with_class_is_dataclasses_replace(frame, cls):
    got, want = with_class(frame, cls), dataclasses.replace(frame, cls=cls)
    assert got == want and hash(got) == hash(want) and repr(got) == repr(want)
    assert frame.cls == Frame(address=0).cls      # the original is untouched
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.cls = "user"
