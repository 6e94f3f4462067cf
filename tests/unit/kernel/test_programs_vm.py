"""hud's BPF programs executed by a small eBPF interpreter with emulated helpers (no root).

The interpreter runs the exact instructions kernel.programs builds, against fake maps that
hold the same bytes the kernel's would, a fake user address space with unmapped pages
(bpf_probe_read_user fails and zeroes like the kernel's), a settable clock and current
task. That makes the programs' logic testable to the byte: time accounting, the park
shortcut, roles, the exit path, records, and the page-wise stack copy across unmapped
pages. Helpers clobber r1-r5 with garbage, as the verifier assumes.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Optional

import pytest

from hud.collect import ebpf_records as rec
from hud.model import CpuSample, OffCpuEvent, ThreadExit, ThreadTimes, Wake
from kernel import isa, uapi
from kernel.abi import MapSpec
from kernel.asm import Image
from kernel.programs import common as c
from kernel.programs import sampler, sched_switch, sched_waking, timer_flag

MASK64 = (1 << 64) - 1
PAGE = 4096
EFAULT, EEXIST, ENOENT, E2BIG = 14, 17, 2, 7


class VmFault(Exception):
    """An access the verifier would have refused (out of a region, bad pointer)."""


def _s64(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >> 31 else v


class FakeMap:
    """A map's entries as bytearrays; lookups hand out their live memory like the kernel."""

    def __init__(self, spec: MapSpec) -> None:
        self.spec = spec
        self.entries: dict[bytes, bytearray] = {}
        self.records: list[tuple[bytes, int]] = []     # ringbuf: (bytes, flags)
        if spec.map_type in (uapi.BPF_MAP_TYPE_ARRAY, uapi.BPF_MAP_TYPE_PERCPU_ARRAY):
            for i in range(spec.max_entries):
                self.entries[struct.pack("<I", i)] = bytearray(spec.value_size)

    def get(self, key: bytes) -> Optional[bytearray]:
        return self.entries.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        assert len(value) == self.spec.value_size, (self.spec.name, len(value))
        self.entries[key] = bytearray(value)


@dataclass
class Task:
    """The current task, as the helpers see it."""

    tid: int
    tgid: int
    comm: str = "task"
    ip: int = 0
    sp: int = 0
    fp: int = 0
    fp_ips: tuple[int, ...] = ()
    kernel_ips: tuple[int, ...] = ()    # what bpf_get_stack without BPF_F_USER_STACK gives
    get_stack_error: int = 0
    kernel_stack_error: int = 0         # bpf_get_stack without BPF_F_USER_STACK only
    # The call it is in: a name of `SYSCALLS`, None for user mode (its registers saved
    # by an interrupt: -1), "kthread" for zeroed registers (a kernel thread, idle).
    syscall: Optional[str] = "futex"


# x86_64 numbers: common.ARCH_REGS lists the ones that wake, this the others used here.
SYSCALLS = {"futex": 202, "exit": 60, "tgkill": 234, "write": 1, "epoll_wait": 232}


@dataclass
class Env:
    now: int = 1_000_000
    cpu: int = 0
    current: Task = field(default_factory=lambda: Task(1, 1))
    user: dict[int, bytes] = field(default_factory=dict)   # page address -> PAGE bytes
    ring_full: bool = False

    def map_user(self, start: int, data: bytes) -> None:
        """Map whole pages from `start` (page aligned) holding `data`."""
        assert start % PAGE == 0
        data = data + bytes(-len(data) % PAGE)
        for off in range(0, len(data), PAGE):
            self.user[start + off] = data[off:off + PAGE]

    def read_user(self, addr: int, size: int) -> Optional[bytes]:
        out = bytearray()
        while size > 0:
            page = addr & ~(PAGE - 1)
            if page not in self.user:
                return None
            take = min(size, page + PAGE - addr)
            out += self.user[page][addr - page:addr - page + take]
            addr += take
            size -= take
        return bytes(out)


class Vm:
    """Runs one Image; regions (stack, ctx, map values, rings) live at (id + 1) << 32."""

    MAP_BASE = 0xFFFF << 48

    def __init__(self, image: Image, maps: dict[str, FakeMap], env: Env, arch: str = "x86_64"):
        self.maps = maps
        self.names = list(maps)
        self.env = env
        self.arch = arch
        self.insns = image.with_map_fds({n: i for i, n in enumerate(self.names)})
        self.regions: list[bytearray] = []
        self.helpers: list[tuple[str, tuple[int, ...]]] = []   # (name, args) of every call

    # -- memory ---------------------------------------------------------------------------
    def region(self, buf: bytearray) -> int:
        for i, r in enumerate(self.regions):
            if r is buf:
                return (i + 1) << 32
        self.regions.append(buf)
        return len(self.regions) << 32

    def _at(self, addr: int, size: int) -> tuple[bytearray, int]:
        rid, off = (addr >> 32) - 1, addr & 0xFFFFFFFF
        if not 0 <= rid < len(self.regions) or off + size > len(self.regions[rid]):
            raise VmFault(f"access of {size} bytes at {addr:#x}")
        return self.regions[rid], off

    def read(self, addr: int, size: int) -> bytes:
        buf, off = self._at(addr, size)
        return bytes(buf[off:off + size])

    def write(self, addr: int, data: bytes) -> None:
        buf, off = self._at(addr, len(data))
        buf[off:off + len(data)] = data

    def load(self, addr: int, size: int) -> int:
        return int.from_bytes(self.read(addr, size), "little")

    def store(self, addr: int, size: int, value: int) -> None:
        self.write(addr, (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little"))

    # -- execution ------------------------------------------------------------------------
    def run(self, ctx: bytes, max_steps: int = 100_000) -> int:
        self.regions = []
        stack = bytearray(512)
        reg = [0] * 11
        reg[10] = self.region(stack) + 512
        reg[1] = self.region(bytearray(ctx))
        pc = steps = 0
        insns = self.insns
        while True:
            steps += 1
            if steps > max_steps:
                raise VmFault("runaway program")
            i = insns[pc]
            cls, op, x = i.code & 7, i.code & 0xF0, i.code & 8
            if cls in (isa.BPF_ALU64, isa.BPF_ALU):
                wide = cls == isa.BPF_ALU64
                src = reg[i.src] if x else (i.imm & MASK64 if wide else i.imm & 0xFFFFFFFF)
                dst = reg[i.dst] if wide else reg[i.dst] & 0xFFFFFFFF
                if not wide:
                    src &= 0xFFFFFFFF
                bits = 64 if wide else 32
                res = _alu(op, dst, src, bits)
                reg[i.dst] = res & (MASK64 if wide else 0xFFFFFFFF)
            elif i.code == isa.BPF_LD | isa.BPF_DW | isa.BPF_IMM:
                nxt = insns[pc + 1]
                reg[i.dst] = (self.MAP_BASE | i.imm) if i.src == 1 else \
                    ((i.imm & 0xFFFFFFFF) | ((nxt.imm & 0xFFFFFFFF) << 32))
                pc += 1
            elif cls == isa.BPF_LDX:
                reg[i.dst] = self.load(reg[i.src] + i.off, isa.SIZE_BYTES[i.code & 0x18])
            elif cls == isa.BPF_ST:
                self.store(reg[i.dst] + i.off, isa.SIZE_BYTES[i.code & 0x18], i.imm)
            elif cls == isa.BPF_STX and (i.code & 0xE0) == isa.BPF_ATOMIC:
                size = isa.SIZE_BYTES[i.code & 0x18]
                assert i.imm == isa.BPF_ADD
                addr = reg[i.dst] + i.off
                self.store(addr, size, self.load(addr, size) + reg[i.src])
            elif cls == isa.BPF_STX:
                self.store(reg[i.dst] + i.off, isa.SIZE_BYTES[i.code & 0x18], reg[i.src])
            elif cls in (isa.BPF_JMP, isa.BPF_JMP32):
                if op == isa.BPF_EXIT:
                    return reg[0]
                if op == isa.BPF_CALL:
                    reg[0] = self.call(i.imm, reg[1:6]) & MASK64
                    for r in range(1, 6):
                        reg[r] = 0xBAD0BAD0BAD0BAD0   # caller-saved: garbage after calls
                elif op == isa.BPF_JA or _cond(op, reg[i.dst], reg[i.src] if x else i.imm,
                                              cls == isa.BPF_JMP32):
                    pc += i.off
            else:
                raise VmFault(f"instruction {i} not emulated")
            pc += 1

    # -- helpers --------------------------------------------------------------------------
    def _map(self, handle: int) -> FakeMap:
        if handle & self.MAP_BASE != self.MAP_BASE:
            raise VmFault(f"{handle:#x} is not a map")
        return self.maps[self.names[handle & 0xFFFF]]

    def call(self, func: int, args: list[int]) -> int:
        name = uapi.HELPER_NAMES[func]
        self.helpers.append((name, tuple(args)))
        env, cur = self.env, self.env.current
        a1, a2, a3, a4, _ = args
        if name == "map_lookup_elem":
            m = self._map(a1)
            value = m.get(self.read(a2, m.spec.key_size))
            return self.region(value) if value is not None else 0
        if name == "map_update_elem":
            m = self._map(a1)
            key = self.read(a2, m.spec.key_size)
            if a4 == uapi.BPF_NOEXIST and key in m.entries:
                return -EEXIST
            if key not in m.entries and len(m.entries) >= m.spec.max_entries:
                return -E2BIG
            m.put(key, self.read(a3, m.spec.value_size))
            return 0
        if name == "map_delete_elem":
            m = self._map(a1)
            return 0 if m.entries.pop(self.read(a2, m.spec.key_size), None) is not None \
                else -ENOENT
        if name == "ktime_get_ns":
            return env.now
        if name == "get_current_pid_tgid":
            return cur.tgid << 32 | cur.tid
        if name == "get_smp_processor_id":
            return env.cpu
        if name == "get_current_comm":
            self.write(a1, cur.comm.encode()[:a2 - 1].ljust(a2, b"\0"))
            return 0
        if name == "get_current_task_btf":
            return self.region(bytearray(8))
        if name == "task_pt_regs":
            r = c.ARCH_REGS[self.arch]
            regs = bytearray(max(r.sp, r.syscall_off) + 16)
            if cur.syscall != "kthread":
                nr = -1 if cur.syscall is None else SYSCALLS[cur.syscall]
                struct.pack_into("<q", regs, r.syscall_off, nr)
                struct.pack_into("<Q", regs, r.mode_off, r.user_value)   # from user mode
            for off, v in ((r.ip, cur.ip), (r.sp, cur.sp), (r.fp, cur.fp)):
                struct.pack_into("<Q", regs, off, v)
            return self.region(regs)
        if name == "get_stack":
            assert a4 in (0, uapi.BPF_F_USER_STACK)
            if cur.get_stack_error:
                return cur.get_stack_error
            if cur.kernel_stack_error and not a4:
                return cur.kernel_stack_error
            ips = (cur.fp_ips if a4 else cur.kernel_ips)[:a3 // 8]
            self.write(a2, b"".join(struct.pack("<Q", v) for v in ips))
            return 8 * len(ips)
        if name == "probe_read_user":
            data = env.read_user(a3, a2)
            if data is None:
                self.write(a1, bytes(a2))
                return -EFAULT
            self.write(a1, data)
            return 0
        if name == "ringbuf_output":
            if env.ring_full:
                return -11
            self._map(a1).records.append((self.read(a2, a3), a4))
            return 0
        if name == "ringbuf_reserve":
            if env.ring_full:
                return 0
            buf = bytearray(a2)
            self._reserved = (self._map(a1), buf)
            return self.region(buf)
        if name == "ringbuf_submit":
            m, buf = self._reserved
            m.records.append((bytes(buf), a2))
            return 0
        raise VmFault(f"helper {name} not emulated")


def _alu(op: int, dst: int, src: int, bits: int) -> int:
    mask = (1 << bits) - 1
    if op == isa.BPF_ADD:
        return dst + src
    if op == isa.BPF_SUB:
        return dst - src
    if op == isa.BPF_MUL:
        return dst * src
    if op == isa.BPF_OR:
        return dst | src
    if op == isa.BPF_AND:
        return dst & src
    if op == isa.BPF_XOR:
        return dst ^ src
    if op == isa.BPF_LSH:
        return dst << (src & (bits - 1))
    if op == isa.BPF_RSH:
        return (dst & mask) >> (src & (bits - 1))
    if op == isa.BPF_MOV:
        return src
    if op == isa.BPF_NEG:
        return -dst
    raise VmFault(f"ALU op {op:#x} not emulated")


def _cond(op: int, a: int, b: int, narrow: bool) -> bool:
    mask = 0xFFFFFFFF if narrow else MASK64
    a &= mask
    b &= mask
    sa, sb = (_s32(a), _s32(b)) if narrow else (_s64(a), _s64(b))
    return {isa.BPF_JEQ: a == b, isa.BPF_JNE: a != b, isa.BPF_JGT: a > b,
            isa.BPF_JGE: a >= b, isa.BPF_JLT: a < b, isa.BPF_JLE: a <= b,
            isa.BPF_JSGT: sa > sb, isa.BPF_JSGE: sa >= sb, isa.BPF_JSLT: sa < sb,
            isa.BPF_JSLE: sa <= sb, isa.BPF_JSET: bool(a & b)}[op]


# -- a machine with both programs on shared maps --------------------------------------------
TGID = 4242
R_STATE, S_STATE, D_STATE, X_STATE, PREEMPTED = 0, 0x1, 0x2, 0x10, 0x100
STACK_TOP = 0x7F00_0001_0000   # end of the fake thread stack mapping
WAKING_PID = 24                # sched_waking's pid field (6.18's format)


class Machine:
    """The maps, both programs and the kernel state they run against."""

    def __init__(self, params: Optional[c.Params] = None, threshold_ns: int = 5_000_000,
                 stack_bytes: Optional[int] = None, capture_roles: int = c.DEFAULT_ROLE_MASK,
                 sample_roles: int = c.DEFAULT_ROLE_MASK, probe_ns: int = 0,
                 flags: int = 0, sample_stack_bytes: Optional[int] = None) -> None:
        self.p = params or c.Params(ncpus=2)
        self.maps = {s.name: FakeMap(s) for s in c.map_specs(self.p)}
        self.env = Env()
        self.switch = Vm(sched_switch.build(self.p), self.maps, self.env, self.p.arch)
        self.sampler = Vm(sampler.build(self.p), self.maps, self.env, self.p.arch)
        self.waking = Vm(sched_waking.build(WAKING_PID, self.p), self.maps, self.env,
                         self.p.arch)
        self.timer_in = Vm(timer_flag.build_entry(), self.maps, self.env, self.p.arch)
        self.timer_out = Vm(timer_flag.build_exit(), self.maps, self.env, self.p.arch)
        self.maps["hud_cfg"].put(struct.pack("<I", 0), c.CONFIG.pack(
            tgid=TGID, flags=flags, threshold_ns=threshold_ns,
            stack_bytes=self.p.stack_bytes if stack_bytes is None else stack_bytes,
            sample_stack_bytes=self.p.stack_bytes if sample_stack_bytes is None
            else sample_stack_bytes,
            capture_roles=capture_roles, sample_roles=sample_roles, probe_ns=probe_ns))
        self.tasks: dict[int, Task] = {}

    def task(self, tid: int, tgid: int = TGID, **kw: object) -> Task:
        t = self.tasks.get(tid) or Task(tid, tgid, comm=f"t{tid}")
        for k, v in kw.items():
            setattr(t, k, v)
        self.tasks[tid] = t
        return t

    def ctx(self, prev: Task, state: int, nxt: Task) -> bytes:
        f = self.p.fields
        size = max(f.prev_state + f.prev_state_size, f.next_pid + 4, f.next_comm + 16, 64)
        buf = bytearray(size)
        struct.pack_into("<q" if f.prev_state_size == 8 else "<i", buf, f.prev_state, state)
        struct.pack_into("<i", buf, f.next_pid, nxt.tid)
        struct.pack_into("16s", buf, f.next_comm, nxt.comm.encode()[:15])
        return bytes(buf)

    def switch_at(self, now: int, prev: int, state: int, nxt: int) -> None:
        """sched_switch at `now`: `prev` (current) leaves with `state`, `nxt` comes in."""
        self.env.now = now
        self.env.current = self.task(prev) if prev in self.tasks else self.task(prev, 1)
        nxt_task = self.tasks.get(nxt) or self.task(nxt, 1)
        # 1: never suppress the tracepoint's perf events for other tracers
        assert self.switch.run(self.ctx(self.env.current, state, nxt_task)) == 1

    def wake_at(self, now: int, waker: int, wakee: int, in_timer: bool = False) -> None:
        """sched_waking at `now`: `waker` (current) wakes `wakee`; with `in_timer`, from
        inside an hrtimer callback that interrupted `waker`."""
        self.env.now = now
        self.env.current = self.tasks.get(waker) or self.task(waker, 1)
        ctx = bytearray(40)
        struct.pack_into("<i", ctx, WAKING_PID, wakee)
        if in_timer:
            assert self.timer_in.run(bytes(32)) == 1
        assert self.waking.run(bytes(ctx)) == 1
        if in_timer:
            assert self.timer_out.run(bytes(32)) == 1

    def sample_at(self, now: int, tid: int, kernel_mode: bool = False,
                  period: int = 2_500_000) -> None:
        self.env.now = now
        self.env.current = self.tasks.get(tid) or self.task(tid, 1)
        regs = c.ARCH_REGS[self.p.arch]
        ctx = bytearray(max(regs.period_off, regs.mode_off) + 16)   # bpf_perf_event_data
        struct.pack_into("<Q", ctx, regs.mode_off, 0x10 if kernel_mode else 0x33)
        struct.pack_into("<Q", ctx, regs.period_off, period)
        assert self.sampler.run(bytes(ctx)) == 0

    def thread(self, tid: int) -> Optional[dict]:
        v = self.maps["hud_threads"].get(struct.pack("<I", tid))
        return c.THREAD.unpack(bytes(v)) if v is not None else None

    def counters(self) -> dict[str, int]:
        return rec.sum_counters([bytes(self.maps["hud_counts"].get(struct.pack("<I", 0)))])

    def records(self) -> list[bytes]:
        return [r for r, _ in self.maps["hud_rb"].records]

    def events(self) -> list:
        out = []
        for raw in self.records():
            ev = rec.decode(raw, self.p.arch, self.p.fp_depth, self.p.kernel_depth)
            out.extend(ev if isinstance(ev, tuple) else (ev,))
        return out

    def set_role(self, tid: int, role: int) -> None:
        self.maps["hud_roles"].put(struct.pack("<I", tid), struct.pack("<I", role))

    def mark_park(self, tid: int, ip: int, sp: int, verdict: int = c.SITE_PARK) -> None:
        self.maps["hud_sites"].put(c.SITE_KEY.pack(tid=tid, ip=ip, sp=sp),
                                   struct.pack("<I", verdict))


def _stack_bytes(n: int, seed: int = 7) -> bytes:
    return bytes((seed * 31 + i * 7) & 0xFF for i in range(n))


def _worker(m: Machine, tid: int = 101, sp: int = STACK_TOP - 0x1F40) -> Task:
    """A target thread whose stack mapping ends at STACK_TOP, with sp inside it."""
    m.env.map_user(STACK_TOP - 4 * PAGE, _stack_bytes(4 * PAGE))
    return m.task(tid, ip=0x5555_0000_1234, sp=sp, fp=sp + 0x40,
                  fp_ips=(0x5555_0000_1234, 0x5555_0000_2000))


# -- tests --------------------------------------------------------------------------------------
def test_times_are_accounted_per_thread():
    m = Machine()
    _worker(m)
    m.task(7, 1, comm="other")
    m.switch_at(1_000, 7, S_STATE, 101)          # first sight at switch-in: not tracked yet
    assert m.thread(101) is None
    m.switch_at(2_000, 101, S_STATE, 7)          # first switch-out creates the entry
    t = m.thread(101)
    assert t["out_ns"] == 2_000 and t["oncpu_ns"] == 0 and t["switch_seq"] == 1
    m.switch_at(3_000, 7, S_STATE, 101)          # 1000 ns asleep
    m.switch_at(3_500, 101, PREEMPTED, 7)        # 500 ns on CPU, preempted
    m.switch_at(4_200, 7, S_STATE, 101)          # 700 ns in the run queue
    m.switch_at(4_300, 101, R_STATE, 7)          # yielded: runnable too
    m.switch_at(4_400, 7, S_STATE, 101)
    t = m.thread(101)
    assert (t["oncpu_ns"], t["offcpu_ns"], t["runq_ns"], t["parked_ns"]) == (600, 1000, 800, 0)
    assert t["switch_seq"] == 1                 # involuntary switches do not count
    assert t["switches"] == 3 and t["out_ns"] == 0 and t["in_ns"] == 4_400
    assert m.thread(7) is None                  # another process is never tracked
    assert m.records() == []                    # all below the threshold


def test_blocked_episode_record_carries_the_switch_out_stack():
    m = Machine(threshold_ns=1_000_000)
    w = _worker(m)
    m.task(7, 99, comm="holder")
    m.switch_at(10_000_000, 101, S_STATE, 7)
    m.switch_at(60_000_000, 7, S_STATE, 101)     # 50 ms later: past the threshold
    (ev,) = m.events()
    assert isinstance(ev, OffCpuEvent)
    assert (ev.pid, ev.tid, ev.start_ns, ev.end_ns) == (TGID, 101, 10_000_000, 60_000_000)
    assert ev.state == S_STATE and not ev.runnable
    # `next` at the switch-out is nobody's holder or waker here: no wake was seen.
    assert (ev.holder_pid, ev.holder_comm, ev.waker_tid, ev.waker_comm) == (0, "", 0, "")
    assert ev.stack.regs.ip == w.ip and ev.stack.regs.sp == w.sp and ev.stack.regs.fp == w.fp
    assert ev.stack.fp_ips == w.fp_ips
    # The copy is exactly the user memory from sp to the end of the stack mapping.
    assert ev.stack.stack == m.env.read_user(w.sp, STACK_TOP - w.sp)
    out = [(n, a) for n, a in m.switch.helpers if n == "ringbuf_output"]
    assert out and all(a[3] == uapi.BPF_RB_NO_WAKEUP for _, a in out)
    assert len(m.records()[0]) == m.p.stack_off + (STACK_TOP - w.sp)
    assert m.counters()["offcpu_records"] == 1 and m.counters()["captures"] == 1


def test_below_threshold_and_runnable_episodes():
    m = Machine(threshold_ns=5_000_000)
    _worker(m)
    m.switch_at(1_000_000, 101, S_STATE, 7)
    m.switch_at(5_999_999, 7, S_STATE, 101)      # 4.999999 ms: nothing
    assert m.records() == []
    m.task(8, 1, comm="hog")
    m.switch_at(7_000_000, 101, PREEMPTED, 8)    # the hog takes the CPU ...
    m.switch_at(11_000_000, 8, PREEMPTED, 7)
    m.switch_at(12_000_000, 7, R_STATE, 101)     # ... 7 runs last; exactly the threshold
    (ev,) = m.events()
    assert ev.runnable and ev.duration_ns == 5_000_000 and ev.state == PREEMPTED
    assert (ev.holder_pid, ev.holder_comm) == (8, "hog") and ev.stack.regs is not None


def test_a_marked_park_costs_no_capture_and_moves_time_to_parked():
    m = Machine(threshold_ns=1_000_000)
    w = _worker(m)
    m.mark_park(101, w.ip, w.sp)
    m.switch_at(1_000_000, 101, S_STATE, 7)
    m.switch_at(51_000_000, 7, S_STATE, 101)
    assert m.records() == []
    t = m.thread(101)
    assert t["parked_ns"] == 50_000_000 and t["offcpu_ns"] == 0 and t["parks"] == 1
    assert m.counters()["captures"] == 0
    assert m.maps["hud_caps"].entries == {}
    called = {n for n, _ in m.switch.helpers}
    assert "probe_read_user" not in called and "get_stack" not in called
    # The same thread sleeping elsewhere (another sp) is captured and reported.
    w.sp -= 0x100
    m.switch_at(52_000_000, 101, S_STATE, 7)
    m.switch_at(60_000_000, 7, S_STATE, 101)
    (ev,) = m.events()
    assert ev.stack.regs.sp == w.sp and m.thread(101)["offcpu_ns"] == 8_000_000
    # A park mark is per tid: another thread at the same (ip, sp) is not parked.
    m.task(102, ip=w.ip, sp=w.sp, fp_ips=())
    m.switch_at(61_000_000, 102, S_STATE, 7)
    assert m.thread(102)["out_kind"] & 0xF == c.KIND_BLOCKED


def test_a_runnable_switch_out_at_a_park_site_is_a_run_queue_wait():
    m = Machine(threshold_ns=1_000_000)
    w = _worker(m)
    m.mark_park(101, w.ip, w.sp)
    m.switch_at(1_000_000, 101, PREEMPTED, 7)
    m.switch_at(3_000_000, 7, S_STATE, 101)
    assert m.thread(101)["runq_ns"] == 2_000_000 and len(m.events()) == 1


def test_ignored_role_accounts_time_but_sends_nothing():
    m = Machine(threshold_ns=1_000_000)
    _worker(m)
    m.set_role(101, c.ROLE_IGNORE)
    m.switch_at(1_000_000, 101, D_STATE, 7)
    m.switch_at(41_000_000, 7, S_STATE, 101)
    m.sample_at(42_000_000, 101)
    assert m.records() == [] and m.thread(101)["offcpu_ns"] == 40_000_000
    assert m.counters()["captures"] == 0
    m.set_role(101, c.ROLE_WORKER)
    m.switch_at(43_000_000, 101, D_STATE, 7)
    m.switch_at(53_000_000, 7, S_STATE, 101)
    assert [e.state for e in m.events()] == [D_STATE]


@pytest.mark.parametrize("sp_in_page", [0, 8, 0x7F8, 0xFF8])
@pytest.mark.parametrize("pages_above", [1, 2, 3, 6])
def test_stack_copy_is_page_wise_up_to_the_end_of_the_mapping(sp_in_page, pages_above):
    """sp at any offset of its page, the mapping ending 1..6 pages above: one read over
    the whole range would fail, page-wise reads copy exactly what is mapped (capped)."""
    p = c.Params(ncpus=1, stack_bytes=16384)
    m = Machine(p, threshold_ns=1)
    top = STACK_TOP
    sp = top - pages_above * PAGE + sp_in_page
    m.env.map_user(top - 8 * PAGE, _stack_bytes(8 * PAGE, seed=pages_above))
    m.task(101, ip=1, sp=sp)
    m.switch_at(1_000, 101, S_STATE, 7)
    m.switch_at(2_000, 7, S_STATE, 101)
    (ev,) = m.events()
    want = min(top - sp, p.stack_bytes)
    assert len(ev.stack.stack) == want
    assert ev.stack.stack == m.env.read_user(sp, want)
    assert m.counters()["stack_copy"] == 0


def test_stack_copy_stops_at_a_hole_and_counts_an_unreadable_first_page():
    m = Machine(threshold_ns=1)
    m.env.map_user(STACK_TOP - 4 * PAGE, _stack_bytes(4 * PAGE))
    del m.env.user[STACK_TOP - 2 * PAGE]            # a hole two pages below the top
    sp = STACK_TOP - 4 * PAGE + 0x100
    m.task(101, ip=1, sp=sp)
    m.switch_at(1_000, 101, S_STATE, 7)
    m.switch_at(2_000, 7, S_STATE, 101)
    assert len(m.events()[0].stack.stack) == 2 * PAGE - 0x100
    m.maps["hud_rb"].records.clear()
    m.task(101, sp=0x1000_0000)                      # sp in no mapping at all
    m.switch_at(3_000, 101, S_STATE, 7)
    m.switch_at(4_000, 7, S_STATE, 101)
    assert m.events()[0].stack.stack == b"" and m.counters()["stack_copy"] == 1


def test_config_stack_bytes_caps_the_copy_below_the_build_size():
    m = Machine(c.Params(ncpus=1, stack_bytes=16384), threshold_ns=1, stack_bytes=1000)
    w = _worker(m, sp=STACK_TOP - 3 * PAGE)
    m.switch_at(1_000, 101, S_STATE, 7)
    m.switch_at(2_000, 7, S_STATE, 101)
    assert m.events()[0].stack.stack == m.env.read_user(w.sp, 1000)


def test_fp_stack_failure_is_counted_and_fp_depth_zero_skips_the_walk():
    m = Machine(threshold_ns=1)
    _worker(m).get_stack_error = -EFAULT
    m.switch_at(1_000, 101, S_STATE, 7)
    m.switch_at(2_000, 7, S_STATE, 101)
    assert m.events()[0].stack.fp_ips == () and m.counters()["fp_stack"] == 1
    m = Machine(c.Params(ncpus=1, fp_depth=0), threshold_ns=1)
    w = _worker(m)
    m.switch_at(1_000, 101, S_STATE, 7)
    m.switch_at(2_000, 7, S_STATE, 101)
    (ev,) = m.events()
    assert ev.stack.fp_ips == () and len(ev.stack.stack) == STACK_TOP - w.sp
    assert all(args[3] != uapi.BPF_F_USER_STACK
               for n, args in m.switch.helpers if n == "get_stack")


def test_exit_sends_final_times_and_forgets_the_thread():
    m = Machine()
    _worker(m)
    m.set_role(101, c.ROLE_WORKER)
    m.switch_at(1_000, 101, S_STATE, 7)
    m.switch_at(2_000, 7, S_STATE, 101)
    m.switch_at(2_500, 101, X_STATE, 7)          # its last switch
    times, gone = m.events()
    assert isinstance(times, ThreadTimes) and isinstance(gone, ThreadExit)
    assert (times.tid, times.offcpu_ns, times.oncpu_ns, gone.time_ns) == (101, 1000, 500, 2_500)
    assert m.thread(101) is None
    assert struct.pack("<I", 101) not in m.maps["hud_roles"].entries
    assert struct.pack("<I", 101) not in m.maps["hud_caps"].entries
    assert m.counters()["exits"] == 1


def test_full_maps_and_a_full_ring_are_counted():
    m = Machine(c.Params(ncpus=1, max_threads=1), threshold_ns=1)
    _worker(m)
    m.task(102)
    m.switch_at(1_000, 101, S_STATE, 7)
    m.switch_at(1_100, 102, S_STATE, 7)          # no room for a second thread
    assert m.thread(102) is None and m.counters()["threads_full"] == 1
    m.env.ring_full = True
    m.switch_at(2_000, 7, S_STATE, 101)
    assert m.records() == [] and m.counters()["ringbuf_offcpu"] == 1


CODE = 0x5555_0000_1000       # the code page of the worker's ip (0x5555_0000_1234)
T_STATE = 0x4                 # __TASK_STOPPED


@pytest.mark.parametrize("before_ip,state,fault", [
    (b"\x0f\x05", S_STATE, False),     # `syscall` right before the saved ip: a system call
    (b"\x8b\x07", S_STATE, True),      # a load (mov (%rdi),%eax): it faulted there
    (b"\x8b\x07", D_STATE, True),
    (b"\x8b\x07", T_STATE, False),     # stopped by a signal: interrupted, not faulting
    (None, S_STATE, False),             # code unreadable: nothing decided
])
def test_a_thread_asleep_in_a_page_fault_is_flagged(before_ip, state, fault):
    m = Machine(threshold_ns=1)
    w = _worker(m)
    if before_ip is not None:
        code = bytearray(PAGE)
        off = w.ip - CODE
        code[off - 2:off] = before_ip
        m.env.map_user(CODE, bytes(code))
    m.switch_at(1_000, 101, state, 7)
    m.switch_at(2_000, 7, S_STATE, 101)
    m.switch_at(3_000, 101, PREEMPTED, 7)        # runnable: never a fault
    m.switch_at(4_000, 7, S_STATE, 101)
    blocked, preempted = m.events()
    assert blocked.fault is fault and not preempted.fault
    flags = [c.OFFCPU_HDR.unpack(r)["flags"] & c.F_FAULT for r in m.records()]
    assert flags == [c.F_FAULT if fault else 0, 0]


def test_switch_fields_come_from_the_format_not_constants():
    f = c.SwitchFields(prev_state=48, prev_state_size=4, next_pid=72, next_comm=80)
    m = Machine(c.Params(fields=f, ncpus=1), threshold_ns=1)
    _worker(m)
    m.switch_at(1_000, 101, D_STATE, 7)
    m.switch_at(9_000, 7, S_STATE, 101)
    (ev,) = m.events()
    assert ev.state == D_STATE and ev.duration_ns == 8_000
    m.switch_at(10_000, 101, PREEMPTED, 7)
    m.switch_at(19_000, 7, S_STATE, 101)
    assert m.events()[-1].holder_pid == 7        # next_pid read at its format offset


def test_the_waker_of_a_blocked_episode_is_its_record_and_nothing_else():
    m = Machine(threshold_ns=1_000_000)
    _worker(m)
    m.task(7, TGID, comm="lock-keeper")
    m.task(8, 99, comm="other")
    m.wake_at(1_000_000, 7, 101)                 # untracked yet: a miss, nothing written
    m.switch_at(10_000_000, 101, S_STATE, 8)
    m.wake_at(40_000_000, 7, 101)                # the futex release
    m.switch_at(41_000_000, 8, S_STATE, 101)
    m.wake_at(42_000_000, 8, 101)                # on CPU again: no episode to name
    m.switch_at(50_000_000, 101, S_STATE, 8)     # the next wait: no wake seen
    m.switch_at(60_000_000, 8, S_STATE, 101)
    m.switch_at(70_000_000, 101, PREEMPTED, 8)   # a run-queue wait: its holder stays
    m.wake_at(71_000_000, 7, 101)
    m.switch_at(80_000_000, 8, S_STATE, 101)
    wake, a, b, c_ = m.events()
    assert (a.waker_tid, a.waker_comm, a.holder_pid) == (7, "lock-keeper", 0)
    assert (b.waker_tid, b.waker_comm) == (0, "")
    assert c_.runnable and (c_.holder_pid, c_.holder_comm, c_.waker_tid) == (8, "other", 0)
    # The waker is of the target and the wait was past the threshold: its stack too.
    assert isinstance(wake, Wake)
    assert (wake.pid, wake.tid, wake.waker_tid, wake.waker_comm) == (TGID, 101, 7,
                                                                    "lock-keeper")
    assert (wake.start_ns, wake.time_ns) == (10_000_000, 40_000_000)
    assert wake.stack.regs is None or wake.stack.regs.ip == 0    # task 7 has no user regs


def test_the_wakers_stack_comes_for_long_waits_woken_from_inside_the_target():
    m = Machine(threshold_ns=5_000_000)
    _worker(m)
    k = _worker(m, tid=7, sp=STACK_TOP - 0x800)
    k.kernel_ips = KERNEL_IPS                    # the waker's: try_to_wake_up, not sent
    m.task(7, TGID, comm="lock-keeper")
    m.task(8, 99, comm="other")
    m.switch_at(10_000_000, 101, S_STATE, 8)
    m.wake_at(12_000_000, 7, 101)                # 2 ms into the wait: a name, no stack
    m.switch_at(13_000_000, 8, S_STATE, 101)
    m.switch_at(20_000_000, 101, S_STATE, 8)
    m.wake_at(40_000_000, 8, 101)                # another process: a name, no stack
    m.switch_at(41_000_000, 8, S_STATE, 101)
    m.switch_at(50_000_000, 101, S_STATE, 8)
    m.wake_at(80_000_000, 7, 101)
    m.switch_at(81_000_000, 8, S_STATE, 101)
    evs = m.events()
    wakes = [e for e in evs if isinstance(e, Wake)]
    offs = [e for e in evs if isinstance(e, OffCpuEvent)]
    assert [(e.waker_tid, e.waker_comm) for e in offs] == [(8, "other"), (7, "lock-keeper")]
    (w,) = wakes
    assert (w.waker_tid, w.start_ns, w.time_ns) == (7, 50_000_000, 80_000_000)
    assert w.stack.regs.ip == k.ip and w.stack.regs.sp == k.sp and w.stack.fp_ips == k.fp_ips
    assert w.stack.stack == m.env.read_user(k.sp, STACK_TOP - k.sp)
    assert w.stack.kernel_ips == () and not _kernel_stack_calls(m.waking)
    assert m.counters()["wake_records"] == 1


@pytest.mark.parametrize("call,named", [
    ("futex", True), ("exit", True), ("tgkill", True),   # FUTEX_WAKE, a join, a signal
    (None, False),          # a timer interrupt landing on a task in user mode
    ("write", False),       # ... or inside a call that wakes no futex
    ("epoll_wait", False),
    ("kthread", False),     # the idle task or a kernel thread (zeroed registers)
])
def test_only_a_task_inside_a_waking_call_is_a_waker(call, named):
    m = Machine(threshold_ns=1_000_000)
    _worker(m)
    k = _worker(m, tid=7, sp=STACK_TOP - 0x800)
    k.comm, k.syscall = "lock-keeper", call
    m.task(8, 99, comm="other")
    m.switch_at(10_000_000, 101, S_STATE, 8)
    m.wake_at(40_000_000, 7, 101)
    m.switch_at(41_000_000, 8, S_STATE, 101)
    evs = m.events()
    offs = [e for e in evs if isinstance(e, OffCpuEvent)]
    assert [(e.waker_tid, e.waker_comm) for e in offs] == \
        [(7, "lock-keeper") if named else (0, "")]
    assert len([e for e in evs if isinstance(e, Wake)]) == (1 if named else 0)
    assert m.counters()["wake_records"] == (1 if named else 0)


def test_a_wake_from_a_timer_callback_names_nobody():
    """A timed futex wait that times out is woken by its hrtimer, in an interrupt that
    may land on a thread inside a futex call of its own: not the waker. The flag is
    cleared after the callback, so the next wake by that thread names it."""
    m = Machine(threshold_ns=1_000_000)
    _worker(m)
    k = _worker(m, tid=7, sp=STACK_TOP - 0x800)
    k.comm = "gil-swapper"                     # inside futex(): in the wake-call list
    m.task(8, 99, comm="other")
    m.switch_at(10_000_000, 101, S_STATE, 8)
    m.wake_at(40_000_000, 7, 101, in_timer=True)
    m.switch_at(41_000_000, 8, S_STATE, 101)
    m.switch_at(50_000_000, 101, S_STATE, 8)
    m.wake_at(60_000_000, 7, 101)
    m.switch_at(61_000_000, 8, S_STATE, 101)
    offs = [e for e in m.events() if isinstance(e, OffCpuEvent)]
    assert [(e.waker_tid, e.waker_comm) for e in offs] == [(0, ""), (7, "gil-swapper")]
    assert m.maps["hud_in_timer"].get(struct.pack("<I", 0)) == bytes(8)


def test_a_wake_of_an_ignored_or_parked_thread_writes_nothing():
    m = Machine(threshold_ns=1_000_000, capture_roles=c.DEFAULT_ROLE_MASK)
    w = _worker(m)
    m.set_role(101, c.ROLE_IGNORE)
    m.task(7, TGID, comm="lock-keeper")
    m.task(8, 99, comm="other")
    m.switch_at(10_000_000, 101, S_STATE, 8)
    m.wake_at(20_000_000, 7, 101)
    m.switch_at(30_000_000, 8, S_STATE, 101)
    assert m.maps["hud_caps"].get(struct.pack("<I", 101)) is None
    m.set_role(101, c.ROLE_WORKER)
    m.mark_park(101, w.ip, w.sp)
    m.switch_at(40_000_000, 101, S_STATE, 8)
    m.wake_at(50_000_000, 7, 101)
    m.switch_at(60_000_000, 8, S_STATE, 101)
    assert m.events() == []
    assert [n for n, _ in m.waking.helpers].count("get_current_comm") == 0


def test_samples_carry_switch_seq_mode_and_the_capture():
    m = Machine()
    w = _worker(m)
    m.sample_at(1_000, 101)                       # before any switch-out: seq -1
    m.switch_at(2_000, 101, S_STATE, 7)
    m.switch_at(3_000, 7, S_STATE, 101)
    m.sample_at(4_000, 101, kernel_mode=True, period=1_000_000)
    m.switch_at(5_000, 101, PREEMPTED, 7)
    m.switch_at(6_000, 7, S_STATE, 101)
    m.sample_at(7_000, 101)
    a, b, d = m.events()
    assert all(isinstance(s, CpuSample) for s in (a, b, d))
    assert [s.switch_seq for s in (a, b, d)] == [-1, 1, 1]
    assert (b.time_ns, b.period_ns, b.tid, b.pid) == (4_000, 1_000_000, 101, TGID)
    assert b.stack.stack == m.env.read_user(w.sp, STACK_TOP - w.sp)
    assert b.stack.regs.ip == w.ip and b.stack.fp_ips == w.fp_ips
    raw = m.records()
    assert [c.SAMPLE_HDR.unpack(r)["flags"] & c.F_KERNEL_MODE for r in raw] == \
        [0, c.F_KERNEL_MODE, 0]
    assert [s.kernel for s in (a, b, d)] == [False, True, False]


def test_sampler_filters_other_processes_and_roles():
    m = Machine(sample_roles=c.DEFAULT_ROLE_MASK & ~(1 << c.ROLE_BLOCKING))
    _worker(m)
    m.task(102)
    m.task(7, 1)
    m.set_role(102, c.ROLE_BLOCKING)
    m.sample_at(1_000, 7)
    m.sample_at(2_000, 102)
    assert m.records() == []
    m.sample_at(3_000, 101)
    assert len(m.records()) == 1 and m.counters()["sample_records"] == 1


def test_timing_builds_time_each_path():
    m = Machine(c.Params(ncpus=1, timing=True), threshold_ns=1)
    w = _worker(m)
    m.switch_at(1_000, 101, S_STATE, 7)
    m.mark_park(101, w.ip, w.sp)
    m.switch_at(2_000, 7, S_STATE, 101)
    m.switch_at(3_000, 101, S_STATE, 7)
    raw = bytes(m.maps["hud_timing"].get(struct.pack("<I", 0)))
    counts = struct.unpack_from(f"<{2 * len(c.PATHS)}Q", raw)[1::2]
    got = {name: n for name, n in zip(c.PATHS, counts) if n}
    assert got == {"out_capture": 1, "out_park": 1, "out_other": 1, "in_other": 2,
                   "in_record": 1}
    # The clock stands still within one run here, so every sum is 0; the first switch-out
    # creates the thread's entry, whose zeroed value on the BPF stack once cleared the
    # start time too (the capture path's mean was then the host's uptime).
    assert struct.unpack_from(f"<{2 * len(c.PATHS)}Q", raw)[0::2] == (0,) * len(c.PATHS)


def test_short_sleeps_at_unclassified_sites_are_probed_at_a_bounded_rate():
    m = Machine(threshold_ns=5_000_000, probe_ns=50_000_000)
    w = _worker(m)
    t = 100_000_000
    for _ in range(10):                           # 1 ms sleeps every 10 ms for 100 ms
        m.switch_at(t, 101, S_STATE, 7)
        m.switch_at(t + 1_000_000, 7, S_STATE, 101)
        t += 10_000_000
    probes = m.events()
    assert [e.start_ns for e in probes] == [100_000_000, 150_000_000]
    assert all(e.duration_ns == 1_000_000 and not e.runnable for e in probes)
    raw = m.records()
    assert all(c.OFFCPU_HDR.unpack(r)["flags"] == c.F_PROBE for r in raw)
    assert m.counters()["probes"] == 2 and m.counters()["offcpu_records"] == 2
    # Classified as no park: captured still (it may turn long), never probed again ...
    m.mark_park(101, w.ip, w.sp, c.SITE_NOT_PARK)
    for _ in range(10):
        m.switch_at(t, 101, S_STATE, 7)
        m.switch_at(t + 1_000_000, 7, S_STATE, 101)
        t += 10_000_000
    assert len(m.records()) == 2 and m.counters()["captures"] == 20
    m.switch_at(t, 101, S_STATE, 7)               # ... and reported when long
    m.switch_at(t + 6_000_000, 7, S_STATE, 101)
    assert c.OFFCPU_HDR.unpack(m.records()[-1])["flags"] == 0
    # Once a park, nothing is captured or sent from that site any more.
    m.mark_park(101, w.ip, w.sp)
    for _ in range(10):
        t += 10_000_000
        m.switch_at(t, 101, S_STATE, 7)
        m.switch_at(t + 1_000_000, 7, S_STATE, 101)
    assert len(m.records()) == 3 and m.counters()["captures"] == 21
    assert m.thread(101)["parks"] == 10


def test_runnable_waits_and_disabled_probes_send_nothing_below_threshold():
    m = Machine(threshold_ns=5_000_000, probe_ns=50_000_000)
    _worker(m)
    m.switch_at(1_000_000, 101, PREEMPTED, 7)     # preemptions are no park sites
    m.switch_at(2_000_000, 7, S_STATE, 101)
    assert m.records() == []
    m = Machine(threshold_ns=5_000_000, probe_ns=0)
    _worker(m)
    m.switch_at(1_000_000, 101, S_STATE, 7)
    m.switch_at(2_000_000, 7, S_STATE, 101)
    assert m.records() == [] and m.counters()["captures"] == 1


def test_runq_stacks_off_keeps_registers_only_for_preemptions():
    m = Machine(threshold_ns=1_000_000, flags=c.CFG_NO_RUNQ_STACKS)
    w = _worker(m)
    m.switch_at(1_000_000, 101, PREEMPTED, 7)
    m.switch_at(3_000_000, 7, S_STATE, 101)
    (ev,) = m.events()
    assert ev.runnable and ev.stack.regs.ip == w.ip and ev.stack.regs.sp == w.sp
    assert ev.stack.stack == b"" and ev.stack.fp_ips == ()
    assert len(m.records()[0]) == m.p.stack_off
    called = {n for n, _ in m.switch.helpers}
    assert "probe_read_user" not in called and "get_stack" not in called
    m.switch_at(4_000_000, 101, S_STATE, 7)       # a sleep is still captured in full
    m.switch_at(6_000_000, 7, S_STATE, 101)
    assert len(m.events()[-1].stack.stack) == STACK_TOP - w.sp


KERNEL_IPS = (0xFFFF_FFFF_8220_03E0, 0xFFFF_FFFF_8220_1000, 0xFFFF_FFFF_8100_2000)


def _kernel_stack_calls(prog) -> list[tuple[int, ...]]:
    return [args for n, args in prog.helpers if n == "get_stack" and args[3] == 0]


def test_a_blocked_switch_out_carries_its_kernel_stack():
    m = Machine(threshold_ns=1)
    w = _worker(m)
    w.kernel_ips = KERNEL_IPS
    m.switch_at(1_000, 101, S_STATE, 7)
    m.switch_at(2_000, 7, S_STATE, 101)
    (ev,) = m.events()
    assert ev.stack.kernel_ips == KERNEL_IPS and ev.stack.fp_ips == w.fp_ips
    assert len(ev.stack.stack) == STACK_TOP - w.sp       # the user copy is where it was
    (call,) = _kernel_stack_calls(m.switch)
    assert call[2] == 8 * m.p.kernel_depth
    # The record is reused: a later capture whose kernel walk fails keeps no old frames.
    w.kernel_ips = ()
    m.switch_at(3_000, 101, D_STATE, 7)
    m.switch_at(4_000, 7, S_STATE, 101)
    assert m.events()[-1].stack.kernel_ips == ()


def test_a_failed_kernel_walk_is_counted_as_lost_and_the_user_side_still_taken():
    m = Machine(threshold_ns=1)
    w = _worker(m)
    w.kernel_ips, w.kernel_stack_error = KERNEL_IPS, -EFAULT
    m.switch_at(1_000, 101, S_STATE, 7)
    m.switch_at(2_000, 7, S_STATE, 101)
    (ev,) = m.events()
    assert ev.stack.kernel_ips == () and ev.stack.fp_ips == w.fp_ips and ev.stack.stack
    assert m.counters()["kernel_stack"] == 1 and m.counters()["fp_stack"] == 0
    # No kernel frames is no failure (a sample of user code has none).
    w.kernel_ips, w.kernel_stack_error = (), 0
    m.switch_at(3_000, 101, S_STATE, 7)
    m.switch_at(4_000, 7, S_STATE, 101)
    assert m.events()[-1].stack.kernel_ips == () and m.counters()["kernel_stack"] == 1


def test_kernel_stacks_are_cut_at_kernel_depth_and_skipped_for_preemptions():
    m = Machine(c.Params(ncpus=1, kernel_depth=2), threshold_ns=1)
    w = _worker(m)
    w.kernel_ips = KERNEL_IPS
    m.switch_at(1_000, 101, S_STATE, 7)
    m.switch_at(2_000, 7, S_STATE, 101)
    assert m.events()[-1].stack.kernel_ips == KERNEL_IPS[:2]
    before = len(_kernel_stack_calls(m.switch))
    m.switch_at(3_000, 101, PREEMPTED, 7)
    m.switch_at(4_000, 7, S_STATE, 101)
    ev = m.events()[-1]
    assert ev.runnable and ev.stack.kernel_ips == () and ev.stack.fp_ips == w.fp_ips
    assert len(_kernel_stack_calls(m.switch)) == before
    m = Machine(c.Params(ncpus=1, kernel_depth=0), threshold_ns=1)
    _worker(m).kernel_ips = KERNEL_IPS
    m.switch_at(1_000, 101, S_STATE, 7)
    m.switch_at(2_000, 7, S_STATE, 101)
    assert m.events()[-1].stack.kernel_ips == () and not _kernel_stack_calls(m.switch)


def test_samples_carry_the_kernel_stack_the_helper_gives():
    m = Machine()
    w = _worker(m)
    w.kernel_ips = KERNEL_IPS
    m.sample_at(1_000, 101, kernel_mode=True)
    (s,) = m.events()
    assert s.kernel and s.stack.kernel_ips == KERNEL_IPS and s.stack.fp_ips == w.fp_ips
    assert len(_kernel_stack_calls(m.sampler)) == 1
    # A sample of user code does not ask (the helper would give nothing, at a cost).
    m.sample_at(2_000, 101)
    s = m.events()[-1]
    assert not s.kernel and s.stack.kernel_ips == () and s.stack.fp_ips == w.fp_ips
    assert len(_kernel_stack_calls(m.sampler)) == 1


def test_sample_copies_have_their_own_cap():
    m = Machine(sample_stack_bytes=512)
    w = _worker(m)
    m.sample_at(1_000, 101)
    m.switch_at(2_000, 101, S_STATE, 7)
    m.switch_at(90_000_000, 7, S_STATE, 101)
    sample, off = m.events()
    assert sample.stack.stack == m.env.read_user(w.sp, 512)
    assert len(off.stack.stack) == STACK_TOP - w.sp
