"""StackResolver's kernel frames follow the kernel table as code comes and goes: stacks
named with an old table are not served once a new one is read, and a stack with an
unnamed kernel address is not kept until a re-read has had its chance."""
from __future__ import annotations

import os

from hud.model import StackCapture
from hud.resolve import StackResolver
from hud.symbolize import kallsyms

OLD = """\
ffffffff81000000 T schedule
ffffffff81002000 T do_nanosleep
ffffffffc0020000 t bpf_prog_6deef7357e7b4530_old\t[bpf]
"""
LATE_PROG = "ffffffffc0020400 t bpf_prog_0123456789abcdef_late\t[bpf]\n"
LATE_MODULE = "ffffffffa0000000 t late_module_fn\t[late]\n"


class _Host:
    def __init__(self) -> None:
        self.text, self.fp, self.now = OLD, ("mods", (1,)), 100.0

    def shared(self) -> kallsyms.SharedKernelSymbols:
        return kallsyms.SharedKernelSymbols(lambda: self.text, lambda: self.fp,
                                            lambda: self.now)


def _kernel_names(resolver: StackResolver, kips: tuple) -> list:
    stack = resolver(os.getpid(), StackCapture(kernel_ips=kips))
    return [f.function for f in stack if f.cls == "kernel"]


def test_stacks_are_renamed_when_a_new_table_is_read():
    host = _Host()
    resolver = StackResolver(os.getpid(), kernel_symbols=host.shared())
    try:
        kips = (0xFFFFFFFFC0020410, 0xFFFFFFFF81002010)
        first = _kernel_names(resolver, kips)
        assert first == ["bpf_prog_6deef7357e7b4530_old", "do_nanosleep"]
        host.text, host.fp = OLD + LATE_PROG, ("mods", (1, 2))
        host.now += kallsyms.KEEP_FOR
        assert _kernel_names(resolver, kips) == ["bpf_prog_0123456789abcdef_late",
                                                 "do_nanosleep"]
    finally:
        resolver.close()


def test_a_stack_with_an_unnamed_kernel_address_waits_for_a_re_read():
    host = _Host()
    host.fp = None                       # changes cannot be seen: only a miss re-reads
    resolver = StackResolver(os.getpid(), kernel_symbols=host.shared())
    try:
        kips = (0xFFFFFFFFA0000010, 0xFFFFFFFF81000010)
        assert _kernel_names(resolver, kips) == [None, "schedule"]
        host.text = OLD + LATE_MODULE
        assert _kernel_names(resolver, kips) == [None, "schedule"]   # too soon
        host.now += kallsyms.KEEP_FOR
        assert _kernel_names(resolver, kips) == ["late_module_fn", "schedule"]
        # Named now, and kept: the same answer from the cache.
        assert _kernel_names(resolver, kips) == ["late_module_fn", "schedule"]
    finally:
        resolver.close()
