"""Structure of hud's BPF programs, read back through the disassembler (no root).

Goldens: the verifier-style listings of both programs for the default parameters live in
tests/unit/kernel/golden/; a change to a program must change its golden on purpose
(regenerate with HUD_UPDATE_GOLDENS=1 and review the diff).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from kernel import isa, uapi
from kernel.abi import PERF_EVENT_DATA_SIZE_X86_64
from kernel.asm import Image
from kernel.disasm import disassemble_image, parse
from kernel.programs import common as c
from kernel.programs import sampler, sched_switch, sched_waking, timer_flag

GOLDEN = Path(__file__).resolve().parent / "golden"
BUILDERS = {"hud_switch": sched_switch.build, "hud_sample": sampler.build}
# sched_waking's `pid` offset in 6.18's format (8-byte common header, then comm[16]).
WAKING_PID = 24
LISTED = {**BUILDERS, "hud_waking": lambda p: sched_waking.build(WAKING_PID, p),
          "hud_timer_in": lambda p: timer_flag.build_entry(),
          "hud_timer_out": lambda p: timer_flag.build_exit()}
# Helpers each program type may call (all available to TRACEPOINT and PERF_EVENT on 6.18).
ALLOWED = {"map_lookup_elem", "map_update_elem", "map_delete_elem", "ktime_get_ns",
           "get_current_pid_tgid", "get_smp_processor_id", "get_current_comm",
           "get_current_task_btf", "task_pt_regs", "get_stack", "probe_read_user",
           "ringbuf_output", "ringbuf_reserve", "ringbuf_submit"}


def _helpers(img: Image) -> list[str]:
    return [uapi.HELPER_NAMES[i.imm] for i in img.insns
            if i.code == isa.BPF_JMP | isa.BPF_CALL and i.src == 0]


@pytest.mark.parametrize("name", sorted(LISTED))
def test_golden_listing(name):
    img = LISTED[name](c.Params(ncpus=2))
    text = disassemble_image(img)
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("HUD_UPDATE_GOLDENS") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.read_text() == text, f"{name} changed: review, then HUD_UPDATE_GOLDENS=1"


@pytest.mark.parametrize("name", sorted(BUILDERS))
@pytest.mark.parametrize("stack_bytes", [8, 4096, 16384, 20000, 65536])
def test_listing_round_trips_and_stays_small(name, stack_bytes):
    p = c.Params(ncpus=2, stack_bytes=stack_bytes)
    img = BUILDERS[name](p)
    insns, relocs = parse(disassemble_image(img))
    assert tuple(insns) == img.insns and tuple(relocs) == img.relocs
    assert len(img) < 1200
    assert img.insns[-1] == isa.BPF_EXIT_INSN()
    # One probe_read_user per page chunk: the partial first page, then whole pages (and
    # for a switch-out, the instruction before the user ip: a page fault's tell).
    assert _helpers(img).count("probe_read_user") == p.copy_chunks + (name == "hud_switch")
    assert p.copy_chunks == -(-stack_bytes // 4096) + 1


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_helpers_maps_and_stack_slots(name):
    p = c.Params(ncpus=2)
    img = BUILDERS[name](p)
    assert set(_helpers(img)) <= ALLOWED
    # The user frame-pointer walk, and the kernel stack where one says something.
    assert _helpers(img).count("get_stack") == 2
    assert set(img.maps) <= {s.name for s in c.map_specs(p)}
    assert "hud_timing" not in img.maps
    for i in img.insns:
        cls = i.cls
        if (cls == isa.BPF_LDX and i.src == 10) or (cls in (isa.BPF_ST, isa.BPF_STX) and i.dst == 10):
            size = isa.SIZE_BYTES[i.code & 0x18]
            assert -isa.MAX_BPF_STACK <= i.off and i.off + size <= 0, i
            assert i.off % size == 0, i
    # Every ring output asks for no wakeup: the consumer polls on a timer.
    listing = disassemble_image(img).splitlines()
    calls = [k for k, line in enumerate(listing) if "bpf_ringbuf_output" in line]
    assert calls
    for k in calls:
        assert any(f"r4 = {uapi.BPF_RB_NO_WAKEUP}" in line for line in listing[k - 3:k])


def _ctx_loads(img: Image) -> set[int]:
    # r6 holds ctx for the whole program: set once from r1, never written again.
    writes = [n for n, i in enumerate(img.insns)
              if i.dst == 6 and i.cls in (isa.BPF_ALU64, isa.BPF_ALU, isa.BPF_LDX)]
    assert writes == [0] and img.insns[0] == isa.BPF_MOV64_REG(6, 1)
    return {i.off for i in img.insns if i.cls == isa.BPF_LDX and i.src == 6}


def test_sched_switch_reads_only_the_format_offsets():
    f = c.SwitchFields(prev_state=32, prev_state_size=8, next_pid=56, next_comm=40)
    assert _ctx_loads(sched_switch.build(c.Params(fields=f, ncpus=1))) == {32, 40, 48, 56}
    g = c.SwitchFields(prev_state=44, prev_state_size=4, next_pid=80, next_comm=96)
    img = sched_switch.build(c.Params(fields=g, ncpus=1))
    assert _ctx_loads(img) == {44, 80, 96, 104}     # never below 8: common_* is EACCES
    assert any(i.cls == isa.BPF_LDX and i.src == 6 and i.off == 44 and
               (i.code & 0x18) == isa.BPF_W for i in img.insns)   # a 4-byte prev_state


def test_sampler_reads_mode_and_period_from_perf_event_data():
    regs = c.ARCH_REGS["x86_64"]
    loads = _ctx_loads(sampler.build(c.Params(ncpus=1)))
    assert loads == {regs.mode_off, regs.period_off}
    assert regs.period_off + 8 <= PERF_EVENT_DATA_SIZE_X86_64
    assert _ctx_loads(sampler.build(c.Params(ncpus=1, arch="aarch64"))) == \
        {c.ARCH_REGS["aarch64"].mode_off, c.ARCH_REGS["aarch64"].period_off}


def test_timing_and_fp_depth_variants():
    p = c.Params(ncpus=1, timing=True)
    for build in BUILDERS.values():
        img = build(p)
        assert "hud_timing" in img.maps
        assert "get_stack" not in _helpers(build(c.Params(ncpus=1, fp_depth=0,
                                                          kernel_depth=0)))
    assert "hud_timing" in {s.name for s in c.map_specs(p)}


def test_capture_buffer_sizes():
    p = c.Params(ncpus=1, stack_bytes=16384)
    assert p.kernel_off == c.HDR_SIZE + c.CAPTURE.size + 8 * 127
    assert p.stack_off == p.kernel_off + 8 * 48
    # One page of slack past the copy: the verifier bounds each chunk on its own.
    assert p.record_size == p.stack_off + 16384 + 4096
    specs = {s.name: s for s in c.map_specs(p)}
    assert specs["hud_caps"].value_size == specs["hud_scratch"].value_size == p.record_size
    assert specs["hud_caps"].flags == uapi.BPF_F_NO_PREALLOC
    assert specs["hud_threads"].flags == 0 and specs["hud_threads"].value_size == c.THREAD.size


@pytest.mark.parametrize("bad", [dict(stack_bytes=0), dict(stack_bytes=12), dict(arch="mips"),
                                 dict(page_size=3000), dict(fp_depth=128)])
def test_params_validation(bad):
    with pytest.raises(ValueError):
        c.Params(**bad)


@pytest.mark.parametrize("stack_bytes", [8, 16384, 65536])
def test_waking_program_helpers_maps_and_copy(stack_bytes):
    p = c.Params(ncpus=2, stack_bytes=stack_bytes)
    img = sched_waking.build(WAKING_PID, p)
    assert len(img) < 1200 and img.insns[-1] == isa.BPF_EXIT_INSN()
    assert set(_helpers(img)) <= ALLOWED
    assert _helpers(img).count("probe_read_user") == p.copy_chunks
    assert set(img.maps) <= {s.name for s in c.map_specs(p)}
    assert {"hud_threads", "hud_caps", "hud_scratch", "hud_rb"} <= set(img.maps)
