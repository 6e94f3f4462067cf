"""Which Tokio task poll a worker's sample is in, read from the copied user stack.

The stack's functions cannot tell two tasks running the same async fn apart. Tokio's
harness can: `Harness::poll` (with `poll_inner`, `poll_future` and often `Core::poll`
inlined) builds the polled task's `Waker` in its own frame, a word pair holding the
task's header pointer, and hands the future a `Context` pointing at it.

When the task's code runs in a machine frame inside the harness frame (never in the
harness frame itself), the harness frame is suspended in one call for the whole poll, and
nothing writes its bytes until that call returns. So every sample of one poll sees the
same harness frame bytes, and a sample of another task's poll sees the other task's
Waker there: the bytes (with the harness's pc) identify the poll. Two samples with
different identities are two polls, never one poll cut in two; polls whose frames carry
nothing per task (a future that never uses its Context may have no Waker built at all)
look alike and merge, as they did before this distinction existed.

Everything that stops the argument (the task's code inlined into the harness frame, no
CFA for it, a frame beyond the stack copy) is None: "cannot tell", never a guess.
"""
from __future__ import annotations

from typing import Optional

from hud.classify import StackInfo
from hud.model import Stack

# A harness frame takes a few hundred bytes around a small future, and 11 KiB around the
# demo's HTTP connection task (room for the future's output): the whole frame is hashed
# (~3 us at 11 KiB). The stack copy (<= 32 KiB) bounds it already; this only bounds what
# a corrupt walk can make every sample hash.
MAX_FRAME = 1 << 16


def poll_identity(stack: Stack, info: StackInfo, sps: tuple[int, ...], sp: int,
                  data: bytes) -> Optional[int]:
    """An identity of the task poll a sample is in, or None when it cannot be told.

    `stack` is the symbolized stack (innermost first) of a capture whose user stack copy
    `data` starts at `sp`; `info` its StackInfo (`poll_frames`: the task's and the
    harness's machine frames); `sps` the unwinder's per-machine-frame stack pointers
    (`UnwindResult.sps`). Equal within one poll; different for polls of different tasks
    whenever the harness frame holds the task's Waker.
    """
    task_m, harness_m = info.poll_frames
    if task_m < 0 or task_m >= harness_m or harness_m + 1 >= len(sps):
        return None    # the harness frame runs the task's code itself, or has no CFA
    start, end = sps[harness_m] - sp, sps[harness_m + 1] - sp
    if not (0 <= start < end <= len(data)) or end - start > MAX_FRAME:
        return None
    return hash((stack[info.harness_frame].address, data[start:end]))
