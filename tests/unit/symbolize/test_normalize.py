"""ProcessMaps: modules, open paths and biases of live processes (PIE, non-PIE, rust-lld,
shared libraries loaded later), checked against nm's symbol values."""
from __future__ import annotations

import os
import subprocess
import time

import pytest
from unit.symbolize.binaries import LIB_PROG, nm_address

from hud.linux.procfs import parse_maps
from hud.symbolize.normalize import KIND_ANON, KIND_ELF, KIND_VDSO, ProcessMaps, _group

pytestmark = pytest.mark.timeout(60)


def _start(cmd: list) -> tuple:
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    lines = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        if "=" in line:
            k, v = line.strip().split("=", 1)
            lines[k] = v
        if "lib_func" in lines or (len(cmd) == 1 and "r" in lines) or "work" in lines:
            break
    return p, lines


@pytest.fixture
def proc():
    started = []

    def start(cmd: list) -> tuple:
        p, lines = _start([str(c) for c in cmd])
        started.append(p)
        return p, lines

    yield start
    for p in started:
        p.kill()
        p.wait()
        p.stdout.close()


@pytest.mark.parametrize("pie", [True, False])
def test_executable_bias(build, proc, pie):
    exe = build.c("norm_pie" if pie else "norm_nopie",
                  ("-g", "-O2", "-fPIE", "-pie") if pie else ("-g", "-O2", "-no-pie"))
    p, lines = proc([exe])
    addr = int(lines["outer"], 16)
    maps = ProcessMaps(p.pid)
    mod = maps.find(addr)
    assert mod is not None and mod.kind == KIND_ELF
    assert mod.path == str(exe)
    assert mod.to_vaddr(addr) == nm_address(exe, "outer")
    assert (mod.bias == 0) == (not pie)
    assert mod.open_path and os.path.exists(mod.open_path)
    assert mod.build_id and len(mod.build_id) == 40


def test_rust_lld_layout_bias(build, proc):
    exe = build.rust()
    p, lines = proc([exe, "5", "sleep"])
    addr = int(lines["work"], 16)
    mod = ProcessMaps(p.pid).find(addr)
    nm = subprocess.run(["nm", str(exe)], capture_output=True, text=True).stdout
    sym = next(s for s in nm.splitlines() if "4work17h" in s)
    assert mod.to_vaddr(addr) == int(sym.split()[0], 16)


def test_shared_library_found_after_dlopen(build):
    lib = build.c("libnorm.so", ("-g", "-O2"), src=LIB_PROG, lib=True)
    exe = build.c("norm_dl", ("-g", "-O2"))
    p = subprocess.Popen([str(exe), str(lib)], stdout=subprocess.PIPE, stdin=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout.readline().startswith("outer=")
        maps = ProcessMaps(p.pid, miss_refresh_interval=0)
        assert not any(m.path == str(lib) for m in maps.modules())
        p.stdin.write("\n")
        p.stdin.flush()
        lines = dict(p.stdout.readline().strip().partition("=")[::2] for _ in range(2))
        addr = int(lines["lib_func"], 16)
        mod = maps.find(addr)      # a miss, then one refresh finds the new library
        assert mod is not None and mod.path == str(lib)
        assert mod.to_vaddr(addr) == nm_address(lib, "lib_func")
    finally:
        p.kill()
        p.wait()
        p.stdout.close()
        p.stdin.close()


def test_vdso_and_anonymous(build, proc):
    exe = build.c("norm_pie", ("-g", "-O2", "-fPIE", "-pie"))
    p, _ = proc([exe])
    mods = ProcessMaps(p.pid).modules()
    vdso = [m for m in mods if m.kind == KIND_VDSO]
    assert len(vdso) == 1 and vdso[0].path == "[vdso]" and vdso[0].build_id
    assert any(m.kind == KIND_ANON and m.path == "[stack]" for m in mods)


def test_gone_process_has_no_modules():
    p = subprocess.Popen(["true"])
    p.wait()
    maps = ProcessMaps(p.pid)
    assert maps.modules() == [] and maps.find(0x1000) is None


def test_grouping_keeps_separate_files_apart():
    text = (
        "1000-2000 r--p 00000000 08:01 11 /a\n"
        "2000-3000 r-xp 00001000 08:01 11 /a\n"
        "3000-4000 rw-p 00000000 00:00 0 \n"
        "4000-5000 r-xp 00000000 08:01 12 /b\n"
        "5000-6000 r--p 00000000 08:01 11 /a\n")
    groups = _group(parse_maps(text))
    assert [len(g) for g in groups] == [2, 1, 1, 1]


@pytest.mark.parametrize("shared", [True, False])
def test_anonymous_executable_memory_is_jit(shared):
    import ctypes
    import mmap

    flags = (mmap.MAP_SHARED if shared else mmap.MAP_PRIVATE) | mmap.MAP_ANONYMOUS
    m = mmap.mmap(-1, 4096, flags=flags,
                  prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    try:
        buf = ctypes.c_char.from_buffer(m)
        addr = ctypes.addressof(buf)
        mod = ProcessMaps(os.getpid()).find(addr)
        del buf
        assert mod is not None and mod.kind == "jit" and mod.open_path == ""
    finally:
        import gc
        gc.collect()
        try:
            m.close()
        except BufferError:
            pass
