"""KernelSymbols on synthetic kallsyms text: filtering, ordering, modules, the ip - 1 rule
for return addresses, the table's edges, kptr_restrict, and hostile input."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hud.model import CLASS_KERNEL, Frame
from hud.symbolize import kallsyms
from hud.symbolize.kallsyms import KernelSymbols

# Deliberately out of order, with data symbols between text ones and two modules.
TEXT = """\
ffffffff81002000 T do_nanosleep
ffffffff81000000 T _stext
ffffffff81001000 t hrtimer_nanosleep.constprop.0
ffffffff81001800 d some_data
ffffffff81001900 D more_data
ffffffff81001a00 b bss_thing
ffffffff81001b00 r rodata_thing
ffffffff81003000 W weak_function
ffffffff81004000 w local_weak
ffffffffc0010000 t ext4_read\t[ext4]
ffffffffc0010400 T ext4_write\t[ext4]
ffffffffc0020000 t bpf_prog_6deef7357e7b4530_sd_fw_ingress\t[bpf]
ffffffff81005000 T __x64_sys_sync.cold
"""


@pytest.fixture(scope="module")
def table() -> KernelSymbols:
    return KernelSymbols.parse(TEXT)


def _name(table: KernelSymbols, addr: int, ret: bool = False):
    return table.frame(addr, ret).function


def test_sorted_lookup_of_unsorted_input(table):
    assert table.reason == ""
    assert len(table) == 9
    assert _name(table, 0xFFFFFFFF81000000) == "_stext"
    assert _name(table, 0xFFFFFFFF81000FFF) == "_stext"
    assert _name(table, 0xFFFFFFFF81001000) == "hrtimer_nanosleep.constprop.0"
    assert _name(table, 0xFFFFFFFF81002010) == "do_nanosleep"
    assert _name(table, 0xFFFFFFFF81005010) == "__x64_sys_sync.cold"


def test_data_symbols_are_not_functions(table):
    # d/D/b/r symbols sit inside hrtimer_nanosleep's range: they must not cut it short.
    for addr in (0xFFFFFFFF81001800, 0xFFFFFFFF81001900, 0xFFFFFFFF81001A00,
                 0xFFFFFFFF81001B00, 0xFFFFFFFF81001FFF):
        assert _name(table, addr) == "hrtimer_nanosleep.constprop.0"


def test_weak_symbols_are_functions(table):
    assert _name(table, 0xFFFFFFFF81003004) == "weak_function"
    assert _name(table, 0xFFFFFFFF81004004) == "local_weak"


def test_frames_carry_module_and_class(table):
    assert table.frame(0xFFFFFFFF81002010) == Frame(
        address=0xFFFFFFFF81002010, function="do_nanosleep", module="[kernel]",
        cls=CLASS_KERNEL)
    ext4 = table.frame(0xFFFFFFFFC0010404)
    assert (ext4.function, ext4.module, ext4.cls) == ("ext4_write", "[ext4]", CLASS_KERNEL)
    bpf = table.frame(0xFFFFFFFFC0020010)
    assert (bpf.function, bpf.module) == ("bpf_prog_6deef7357e7b4530_sd_fw_ingress", "[bpf]")
    assert _name(table, 0xFFFFFFFFC00103FF) == "ext4_read"


def test_return_address_is_looked_up_at_ip_minus_one(table):
    start = 0xFFFFFFFF81002000          # do_nanosleep's first byte
    assert _name(table, start) == "do_nanosleep"
    # A call that ends hrtimer_nanosleep returns to do_nanosleep's start: the caller is
    # hrtimer_nanosleep.
    assert _name(table, start, ret=True) == "hrtimer_nanosleep.constprop.0"
    frames = table.frames([start, start, 0xFFFFFFFF81003000])
    assert [f.function for f in frames] == [
        "do_nanosleep", "hrtimer_nanosleep.constprop.0", "do_nanosleep"]
    assert [f.address for f in frames] == [start, start, 0xFFFFFFFF81003000]
    assert table.frames([]) == ()


def test_before_first_and_past_end_are_unknown(table):
    for addr in (0, 1, 0xFFFFFFFF80FFFFFF, 0xFFFFFFFFC0020000 + (1 << 20),
                 0xFFFFFFFFFFFFFFFF, -5, 1 << 70):
        f = table.frame(addr)
        assert f.function is None, hex(addr)
        assert (f.address, f.module, f.cls, f.reason) == (
            addr, "[kernel]", CLASS_KERNEL, "no kernel symbol")
    assert _name(table, 0xFFFFFFFFC0020000 + (1 << 20) - 1) == \
        "bpf_prog_6deef7357e7b4530_sd_fw_ingress"
    # The first symbol's start, as a return address, is before the table.
    assert table.frame(0xFFFFFFFF81000000, True).reason == "no kernel symbol"


def test_last_symbol_of_a_module_does_not_cover_the_gap(table):
    # vmlinux's last function is followed by [ext4] 1 GiB higher: not one function.
    assert _name(table, 0xFFFFFFFF81005000 + (1 << 20) - 1) == "__x64_sys_sync.cold"
    assert table.frame(0xFFFFFFFF81005000 + (1 << 20)).reason == "no kernel symbol"
    assert table.frame(0xFFFFFFFFBFFFFFFF).reason == "no kernel symbol"


def test_32_bit_addresses():
    table = KernelSymbols.parse("c1000000 T _stext\nc1000100 T start_kernel\n")
    assert _name(table, 0xC1000104) == "start_kernel"
    assert _name(table, 0xC1000100, ret=True) == "_stext"


def test_aliases_keep_the_last_name_like_perf():
    text = ("ffffffff8170fc10 t __do_sys_sync\n"
            "ffffffff8170fc10 T __ia32_sys_sync\n"
            "ffffffff8170fc10 T __x64_sys_sync\n"
            "ffffffff8170fc40 T ksys_sync\n")
    table = KernelSymbols.parse(text)
    assert len(table) == 2
    assert _name(table, 0xFFFFFFFF8170FC1A) == "__x64_sys_sync"
    assert _name(table, 0xFFFFFFFF8170FC40) == "ksys_sync"


def test_hidden_addresses_give_the_kptr_restrict_reason():
    text = ("0000000000000000 T _stext\n"
            "0000000000000000 T do_nanosleep\n"
            "0000000000000000 t ext4_read\t[ext4]\n")
    table = KernelSymbols.parse(text)
    assert len(table) == 0
    assert table.reason == "kernel symbol addresses hidden (kernel.kptr_restrict)"
    f = table.frame(0xFFFFFFFF81002010)
    assert (f.function, f.module, f.cls, f.reason) == (
        None, "[kernel]", CLASS_KERNEL, table.reason)
    assert all(fr.reason == table.reason for fr in table.frames([1, 2, 3]))


def test_empty_and_data_only_tables_have_no_symbols():
    for text in ("", "\n\n", "ffffffff81001800 d some_data\n"):
        table = KernelSymbols.parse(text)
        assert (len(table), table.reason) == (0, "no kernel symbols")
        assert table.frame(0xFFFFFFFF81001800).reason == "no kernel symbols"


GARBAGE = [
    "", "T", "ffffffff81000000", "ffffffff81000000 T", "zzzz T bad_hex", "\u0661 T arabic_one",
    "ffffffff81000000 TT two_letter_type", "-1 T negative", "0x10 T prefixed",
    "1_0 T underscore", "f" * 17 + " T too_long", "9" * 5000 + " T huge",
    "ffffffff81000000 T name extra words here", "ffffffff81000000 T name\text4",
    "ffffffff81000000 T name\t[]", "\x00\x00\x00", "ffffffff81000000 \u00e9 accent",
    "-000000000000001 T negative_full_width", "ffffffff8100000g T bad_digit",
    "ffffffff8100000 T fifteen_wide", "ffffffff81000000 T ext4_thing\t[ext4",
]


def test_garbage_lines_are_skipped():
    text = "\n".join([*GARBAGE, "ffffffff81000010 T good_one", *GARBAGE])
    table = KernelSymbols.parse(text)
    assert table.reason == ""
    assert len(table) == 1
    assert _name(table, 0xFFFFFFFF81000010) == "good_one"
    assert _name(table, 0xFFFFFFFF8100000F) is None


@given(st.text(alphabet=st.sampled_from("0123456789abcdefxTtWwdD[]_ \t\n\r\x00é"),
               max_size=400),
       st.lists(st.integers(min_value=-(1 << 65), max_value=1 << 65), max_size=8))
def test_any_text_never_raises(text, ips):
    table = KernelSymbols.parse(text)
    assert isinstance(table.reason, str) and len(table) >= 0
    frames = table.frames(ips)
    assert [f.address for f in frames] == ips
    assert all(f.cls == CLASS_KERNEL and (f.function is None) == (f.reason is not None)
               for f in frames)


class _Host:
    """A fake host for SharedKernelSymbols: kallsyms text, a fingerprint, a clock."""

    def __init__(self, text=TEXT, fingerprint=("mods", (1, 2))) -> None:
        self.text, self.fp, self.now, self.reads = text, fingerprint, 100.0, 0

    def read(self):
        self.reads += 1
        return self.text

    def shared(self) -> kallsyms.SharedKernelSymbols:
        return kallsyms.SharedKernelSymbols(self.read, lambda: self.fp, lambda: self.now)


NEW_PROG = "ffffffffc0020400 t bpf_prog_0123456789abcdef_late\t[bpf]\n"


def test_shared_table_is_read_once_and_reports_unreadable():
    host = _Host(text=None)
    shared = host.shared()
    first = shared.table()
    assert first.reason == "cannot read /proc/kallsyms"
    assert first.frame(0xFFFFFFFF81000000).reason == "cannot read /proc/kallsyms"
    assert shared.table() is first and host.reads == 1 and shared.generation == 1
    host.now += 10 * kallsyms.KEEP_FOR
    assert not shared.refresh() and shared.table() is first and host.reads == 1


def test_shared_table_is_read_again_when_kernel_code_comes():
    host = _Host()
    shared = host.shared()
    assert shared.refresh() and host.reads == 1        # the first read counts as new
    old = shared.table()
    late = 0xFFFFFFFFC0020410
    # Before: the new program's code is named after the one laid out before it.
    assert old.frame(late).function == "bpf_prog_6deef7357e7b4530_sd_fw_ingress"
    host.text, host.fp = TEXT + NEW_PROG, ("mods", (1, 2, 3))
    host.now += kallsyms.CHECK_EVERY
    assert not shared.refresh() and host.reads == 1    # kept at least KEEP_FOR
    host.now += kallsyms.KEEP_FOR
    assert shared.refresh() and host.reads == 2 and shared.generation == 2
    assert shared.table().frame(late).function == "bpf_prog_0123456789abcdef_late"
    # Nothing changed since: looked at, not read.
    host.now += 2 * kallsyms.KEEP_FOR
    assert not shared.refresh() and host.reads == 2


def test_shared_table_looks_for_changes_at_most_every_check_interval():
    host = _Host()
    shared = host.shared()
    shared.table()
    looks = []
    shared._fingerprint = lambda: looks.append(host.now) or host.fp
    host.now += kallsyms.KEEP_FOR
    for _ in range(50):
        shared.refresh()
        host.now += 0.5
    # 25 s of calls every 0.5 s: one look per CHECK_EVERY, not one per call.
    assert len(looks) == int(25 / kallsyms.CHECK_EVERY) and host.reads == 1


def test_shared_table_is_read_again_for_an_unnamed_address_at_most_every_keep_for():
    host = _Host(fingerprint=None)      # no way to see changes (no modules, no bpf())
    shared = host.shared()
    shared.table()
    host.text = TEXT + "ffffffffa0000000 t late_module_fn\t[late]\n"
    assert not shared.refresh(missed=True) and host.reads == 1
    host.now += kallsyms.KEEP_FOR
    assert not shared.refresh() and host.reads == 1    # the fingerprint did not move
    assert shared.refresh(missed=True) and host.reads == 2
    assert shared.table().frame(0xFFFFFFFFA0000010).function == "late_module_fn"
    assert not shared.refresh(missed=True) and host.reads == 2


def test_modules_fingerprint_ignores_use_counts():
    a = ("ext4 1097728 2 mbcache,jbd2, Live 0xffffffffc0a00000\n"
         "nf_tables 352256 0 - Live 0xffffffffc0900000\n")
    b = a.replace(" 2 mbcache", " 5 mbcache").replace(" 0 - Live", " 1 - Live")
    c = a + "xfs 2000000 0 - Live 0xffffffffc0c00000\n"
    fa = kallsyms.modules_fingerprint(a)
    assert fa == kallsyms.modules_fingerprint(b) != kallsyms.modules_fingerprint(c)
    assert kallsyms.modules_fingerprint(None) is None
    assert kallsyms.modules_fingerprint("garbage\n\x00\n") == ()


def test_kernel_symbols_is_the_shared_table(monkeypatch):
    host = _Host()
    monkeypatch.setattr(kallsyms, "_shared", host.shared())
    assert kallsyms.kernel_symbols().frame(0xFFFFFFFF81002010).function == "do_nanosleep"
    assert kallsyms.kernel_symbols() is kallsyms.shared_kernel_symbols().table()


# -- vmlinux's lines looked up in place (kallsyms_core) against parsing each line ------

_TYPES = "tTwWdDbBrRA"


@st.composite
def _kernel_text(draw, clean: bool = True):
    """kallsyms-shaped text: vmlinux's lines sorted by address (aliases, data and per-CPU
    symbols at 0 among them), then modules' and BPF programs' lines in any order. Not
    `clean`: a few lines anywhere are replaced by garbage (one with a "\t[" cuts
    vmlinux's lines short), and modules may lie inside vmlinux's span."""
    n = draw(st.integers(min_value=1, max_value=40))
    base = 0xFFFFFFFF81000000
    offs = sorted(draw(st.lists(st.integers(0, 1 << 22), min_size=n, max_size=n)))
    lines = ["0000000000000000 A fixed_percpu_data"] * draw(st.integers(0, 2))
    for k, off in enumerate(offs):
        kind = draw(st.sampled_from(_TYPES))
        lines.append(f"{base + off:016x} {kind} f{k}")
    # Not clean: modules may also sit among vmlinux's functions (never seen in a kernel).
    mod_bases = [0xFFFFFFFFC0000000] if clean else [0xFFFFFFFFC0000000, base]
    for k in range(draw(st.integers(0, 6))):
        addr = draw(st.sampled_from(mod_bases)) + draw(st.integers(0, 1 << 21))
        mod = draw(st.sampled_from(["[ext4]", "[bpf]", "[xfs]"]))
        lines.append(f"{addr:016x} {draw(st.sampled_from('tT'))} m{k}\t{mod}")
    if not clean:
        for _ in range(draw(st.integers(1, 3))):
            at = draw(st.integers(0, len(lines) - 1))
            lines[at] = draw(st.sampled_from([*GARBAGE, "  " + lines[at], lines[at] + " x"]))
    return "\n".join(lines) + "\n", [base + o for o in offs]


def _pcs(addrs, draw_offsets):
    out = []
    for a in addrs:
        out += [a, a - 1, a + 1, a + 0xFFFFF, a + (1 << 20), a + (1 << 20) - 1]
    return out + list(draw_offsets)


def _same_answers(text, pcs):
    fast, slow = KernelSymbols.parse(text), KernelSymbols.parse(text, in_place=False)
    for pc in pcs:
        for ret in (False, True):
            a, b = fast.frame(pc, ret), slow.frame(pc, ret)
            assert (a.function, a.module, a.reason) == (b.function, b.module, b.reason), \
                (hex(pc), ret, text)
    assert fast.reason == slow.reason and len(fast) == len(slow)
    return fast


@given(_kernel_text(), st.lists(st.integers(0xFFFFFFFF80000000, 0xFFFFFFFFC0400000),
                                max_size=20))
def test_in_place_lookup_answers_as_parsing_each_line(got, extra):
    text, addrs = got
    fast = _same_answers(text, _pcs(addrs, extra))
    # Taken whenever vmlinux has a text symbol above 0 (else the parse decides).
    has_text = any(line.split()[1] in "tTwW" and int(line.split()[0], 16)
                   for line in text.splitlines() if "\t[" not in line)
    assert (fast._core is not None) == has_text


@given(_kernel_text(clean=False), st.lists(st.integers(0xFFFFFFFF80000000,
                                                       0xFFFFFFFFC0400000), max_size=20))
def test_garbage_gives_the_same_answers_either_way(got, extra):
    text, addrs = got
    _same_answers(text, _pcs(addrs, extra))


def test_unsorted_vmlinux_lines_are_parsed_one_by_one():
    assert KernelSymbols.parse(TEXT)._core is None      # TEXT is out of order
    ordered = "ffffffff81000000 T _stext\nffffffff81001000 t two\n"
    assert KernelSymbols.parse(ordered)._core is not None
