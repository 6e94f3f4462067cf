"""Task poll identities: which frames classify marks, what the identity reads, and how the
episode builder uses it to tell back-to-back polls of one async fn apart."""
from __future__ import annotations

import dataclasses
import os

import pytest
from unit.analysis import tokio_shapes as shapes
from unit.analysis.helpers import MS, StackTable, sample

from hud.analysis.episodes import EpisodeBuilder
from hud.classify import Classifier, StackInfo, machine_frame
from hud.model import KIND_CPU, ROLE_WORKER, Frame
from hud.task_identity import poll_identity

W = 11
SP = 0x7FFF_0000_1000


# --- classify: the frames the identity is read between -------------------------------------

@pytest.mark.parametrize("version", ["1.24", "1.43"])
def test_task_and_outermost_harness_frames_are_marked(version):
    stack, info = Classifier(shapes.APP).classify(shapes.cpu_hog(version=version))
    assert stack[info.task_frame].function == "my_app::handlers::hog::{{closure}}"
    assert stack[info.harness_frame].function == "tokio::runtime::task::harness::Harness<T,S>::poll"
    # Outermost inside the worker: nothing further out is harness code of this task.
    assert info.task_frame < info.harness_frame
    assert info.poll_frames == (machine_frame(stack, info.task_frame),
                                machine_frame(stack, info.harness_frame))


@pytest.mark.parametrize("make", [shapes.cpu_hog, shapes.sleep_blocker, shapes.park_epoll_124,
                                  shapes.pool_busy])
def test_kernel_frames_before_the_user_ones_change_no_signature(make):
    # The resolver puts a capture's kernel frames first: the machine frames the poll
    # identity reads are user ones, and what the stack says about its thread is the same.
    kernel = tuple(Frame(address=0xFFFF_FFFF_8100_0000 + 16 * i, function=n, module="[kernel]")
                   for i, n in enumerate(("__schedule", "schedule", "futex_do_wait",
                                          "do_futex", "do_syscall_64")))
    _, plain = Classifier(shapes.APP).classify(make())
    stack, info = Classifier(shapes.APP).classify(kernel + make())
    assert info.poll_frames == plain.poll_frames
    assert (info.park, info.worker, info.pool, info.pool_idle, info.task) == \
        (plain.park, plain.worker, plain.pool, plain.pool_idle, plain.task)
    assert info.blocker == plain.blocker
    assert stack[info.task_frame].function == make()[plain.task_frame].function \
        if plain.task_frame >= 0 else info.task_frame == -1

def test_a_future_inlined_into_the_harness_gives_no_poll_frames_to_read_apart():
    # Mark every frame from the task's out to Harness::poll as inlined into the next:
    # one machine frame, which runs the task's code itself.
    raw = list(shapes.cpu_hog())
    names = [f.function for f in raw]
    task = names.index("my_app::handlers::hog::{{closure}}")
    harness = names.index("tokio::runtime::task::harness::Harness<T,S>::poll")
    for i in range(task, harness):
        raw[i] = dataclasses.replace(raw[i], inlined=True)
    _, info = Classifier(shapes.APP).classify(tuple(raw))
    task_m, harness_m = info.poll_frames
    assert task_m == harness_m
    assert poll_identity(tuple(raw), info, tuple(range(0, 4096, 64)), 0, bytes(4096)) is None


@pytest.mark.parametrize("make", [shapes.park_epoll_124, shapes.pool_busy, shapes.pool_idle,
                                  shapes.scheduler_between_polls])
def test_no_task_means_no_frames_to_read(make):
    _, info = Classifier(shapes.APP).classify(make())
    assert (info.task_frame, info.harness_frame) == (-1, -1)


# --- the identity itself -----------------------------------------------------------------------

def _fr(name: str, address: int, inlined: bool = False) -> Frame:
    return Frame(address=address, function=name, inlined=inlined)


# Machine frames: 0 the task's helper, 1 the task's future, 2 the harness (Core::poll
# inlined into Harness::poll), 3 the scheduler.
STACK = (_fr("app::work", 0x10), _fr("app::task::{{closure}}", 0x20),
         _fr("tokio::runtime::task::core::Core<T,S>::poll", 0x30, inlined=True),
         _fr("tokio::runtime::task::harness::Harness<T,S>::poll", 0x30),
         _fr("tokio::runtime::scheduler::multi_thread::worker::Context::run_task", 0x40))


def _info(stack, task_frame: int = 1, harness_frame: int = 3) -> StackInfo:
    return StackInfo(worker=True, task="app::task", task_frame=task_frame,
                     harness_frame=harness_frame,
                     poll_frames=(machine_frame(stack, task_frame),
                                  machine_frame(stack, harness_frame)))


INFO = _info(STACK)
SPS = (SP, SP + 0x40, SP + 0x80, SP + 0x180, SP + 0x200)   # the harness: [0x80, 0x180)


def _copy(harness: bytes, inner: bytes = b"") -> bytes:
    inner = (inner or os.urandom(0x80)).ljust(0x80, b"\0")
    return inner + harness + os.urandom(0x200)


def test_machine_frames_count_inlined_frames_as_their_caller():
    assert [machine_frame(STACK, i) for i in range(5)] == [0, 1, 2, 2, 3]


def test_same_harness_bytes_same_poll_whatever_the_inner_frames_do():
    harness = os.urandom(0x100)
    a = poll_identity(STACK, INFO, SPS, SP, _copy(harness))
    b = poll_identity(STACK, INFO, SPS, SP, _copy(harness))   # inner frames differ
    assert a is not None and a == b


def test_another_task_in_the_harness_frame_is_another_poll():
    harness = bytearray(os.urandom(0x100))
    a = poll_identity(STACK, INFO, SPS, SP, _copy(bytes(harness)))
    harness[0x40:0x48] = (0x5555_0000_1234).to_bytes(8, "little")   # another header
    assert poll_identity(STACK, INFO, SPS, SP, _copy(bytes(harness))) != a


def test_a_byte_beyond_the_harness_frame_changes_nothing():
    harness = os.urandom(0x100)
    data = bytearray(_copy(harness))
    a = poll_identity(STACK, INFO, SPS, SP, bytes(data))
    data[0x180] ^= 0xFF    # the scheduler's frame, outside the harness
    assert poll_identity(STACK, INFO, SPS, SP, bytes(data)) == a


@pytest.mark.parametrize("case", ["inlined", "no_cfa", "short_copy", "no_harness", "huge"])
def test_cannot_tell_is_none(case):
    stack, info, sps, data = STACK, INFO, SPS, _copy(os.urandom(0x100))
    if case == "inlined":
        # The future runs in the harness frame itself: its bytes change during the poll.
        stack = (STACK[0], _fr("app::task::{{closure}}", 0x30, inlined=True), *STACK[2:])
        info = _info(stack)
    elif case == "no_cfa":
        sps = SPS[:3]
    elif case == "short_copy":
        data = data[:0x120]
    elif case == "no_harness":
        info = StackInfo(worker=True, task="app::task", task_frame=1)   # poll_frames unset
    elif case == "huge":
        sps = (*SPS[:3], SP + 0x80 + (1 << 16) + 8, SP + (1 << 17))   # over MAX_FRAME
        data = os.urandom(1 << 17)
    assert poll_identity(stack, info, sps, SP, data) is None


# --- the episode builder -----------------------------------------------------------------------

def _builder(idents: list, table: StackTable) -> EpisodeBuilder:
    it = iter(idents)

    def ident(pid, capture, stack, info):
        got = next(it)
        if isinstance(got, Exception):
            raise got
        return got

    b = EpisodeBuilder(table, Classifier(shapes.APP), 5 * MS, ident)
    b.set_role(W, ROLE_WORKER)
    return b


def _run(b: EpisodeBuilder, t: StackTable, n: int) -> list:
    out = []
    for i in range(n):
        out.extend(b.sample(sample(t, W, i, shapes.cpu_hog(120 + i % 4), seq=3))[0])
    return out + b.flush()


def test_back_to_back_short_polls_of_one_async_fn_are_not_one_long_poll():
    t = StackTable()
    b = _builder([k // 2 for k in range(20)], t)   # a new task every 2 samples
    assert _run(b, t, 20) == []
    assert b.counts["polls_told_apart"] == 9 and b.counts["short_stretches"] == 10


def test_two_long_polls_back_to_back_are_two_findings():
    t = StackTable()
    b = _builder(["a"] * 10 + ["b"] * 10, t)
    eps = _run(b, t, 20)
    assert [(e.kind, e.start_ns // MS, e.end_ns // MS) for e in eps] == [
        (KIND_CPU, 0, 10), (KIND_CPU, 10, 20)]


def test_unknown_identities_merge_as_before_and_never_split():
    t = StackTable()
    b = _builder(["a", None, "a", None] * 5, t)
    (ep,) = _run(b, t, 20)
    assert (ep.start_ns // MS, ep.end_ns // MS) == (0, 20)
    t = StackTable()
    b = _builder([None] + ["a"] * 19, t)   # told later: the stretch takes it on
    (ep,) = _run(b, t, 20)
    assert b.counts["polls_told_apart"] == 0


def test_an_identity_error_costs_the_distinction_not_the_run():
    t = StackTable()
    b = _builder([RuntimeError("boom")] * 20, t)
    (ep,) = _run(b, t, 20)
    assert ep.kind == KIND_CPU and b.counts["poll_identity_errors"] == 20
