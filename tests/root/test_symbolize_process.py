"""ProcessSymbolizer on live processes: whole stacks (eu-stack's raw pcs) against binutils
addr2line with return-address adjustment, a binary deleted after start, a binary that
exists only in the target's own mount namespace (unshare -m), and the vdso."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from unit.symbolize import oracle
from unit.symbolize.binaries import Builder

from hud.symbolize import ElfFile, Symbolizer

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Builder:
    return Builder(tmp_path_factory.mktemp("symbolize-root"))


def _wait_line(p: subprocess.Popen, prefix: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        if line.startswith(prefix):
            return line.strip()
    raise AssertionError(f"no {prefix!r} line from {p.args}")


def _stop(p: subprocess.Popen) -> None:
    p.kill()
    p.wait()
    for f in (p.stdout, p.stdin):
        if f is not None:
            f.close()


def _eu_stack_pcs(pid: int) -> list[list[int]]:
    """Per thread, the raw pcs eu-stack unwinds (frame 0 exact, the rest return addresses)."""
    out = subprocess.run(["eu-stack", "-p", str(pid), "-a", "-q"], capture_output=True,
                         text=True).stdout
    threads: list[list[int]] = []
    for line in out.splitlines():
        if line.startswith("TID"):
            threads.append([])
        elif line.startswith("#") and threads:
            threads[-1].append(int(line.split()[1], 16))
    return [t for t in threads if t]


def test_stack_frames_match_addr2line_with_return_addresses(build):
    exe = build.rust()
    p = subprocess.Popen([str(exe), "5", "sleep"], stdout=subprocess.PIPE, text=True)
    try:
        _wait_line(p, "work=")
        time.sleep(0.2)
        stacks = _eu_stack_pcs(p.pid)
        assert stacks and len(stacks[0]) >= 4
        with Symbolizer() as sym:
            proc = sym.for_process(p.pid)
            checked = 0
            for ips in stacks:
                ours = proc.symbolize(ips, first_is_exact=True)
                for k, (ip, frames) in enumerate(zip(ips, ours)):
                    mod = proc.maps.find(ip)
                    assert mod is not None and frames[-1].module == mod.path
                    if mod.kind != "elf":
                        continue
                    vaddr = mod.to_vaddr(ip) - (0 if k == 0 else 1)
                    exp = oracle.addr2line(Path(mod.open_path), [vaddr])
                    cmp = oracle.compare([vaddr], [oracle.ours(frames)], exp,
                                         Path(mod.open_path))
                    assert cmp.ratio == 1.0, (hex(ip), k, mod.path, cmp.report())
                    assert all(f.address == ip for f in frames)
                    assert [f.inlined for f in frames] == [True] * (len(frames) - 1) + [False]
                    checked += 1
            assert checked >= 4
            names = [f.function for fr in proc.symbolize(stacks[0]) for f in fr]
            assert "std::thread::functions::sleep" in names or "std::thread::sleep" in names, names
            assert "rs::main" in names, names
    finally:
        _stop(p)


def _outer_expected(exe: Path) -> tuple:
    addr = oracle.function_symbols(exe)
    start = next(s for s, _size, name in addr if name == "outer")
    return start, oracle.addr2line(exe, [start])[0]


def test_deleted_binary_resolves(build, tmp_path):
    src = build.c("sym_deleted", ("-g", "-O2", "-fPIE", "-pie"))
    exe = tmp_path / "victim"
    shutil.copy(src, exe)
    start, expected = _outer_expected(exe)
    p = subprocess.Popen([str(exe)], stdout=subprocess.PIPE, text=True)
    try:
        ip = int(_wait_line(p, "outer=").split("=")[1], 16)
        os.unlink(exe)
        with Symbolizer() as sym:
            proc = sym.for_process(p.pid)
            mod = proc.maps.find(ip)
            assert mod.deleted and mod.open_path.startswith(f"/proc/{p.pid}/map_files/")
            assert mod.to_vaddr(ip) == start
            frames = proc.symbolize([ip])[0]
        assert oracle.ours(frames) == expected
        assert frames[-1].function == "outer" and frames[-1].line
    finally:
        _stop(p)


@pytest.mark.parametrize("through", ["map_files", "root"])
def test_binary_in_another_mount_namespace_resolves(build, tmp_path, monkeypatch, through):
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is required")
    src = build.c("sym_ns", ("-g", "-O2", "-fPIE", "-pie"))
    _start, expected = _outer_expected(src)
    hidden = tmp_path / "ns"
    hidden.mkdir()
    # The binary lives on a tmpfs mounted only in the child's mount namespace: our own
    # view of `hidden` stays empty.
    script = (f"mount -t tmpfs none {hidden} && cp {src} {hidden}/prog && "
              f"exec {hidden}/prog")
    p = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                         stdout=subprocess.PIPE, text=True)
    try:
        ip = int(_wait_line(p, "outer=").split("=")[1], 16)
        assert not (hidden / "prog").exists()
        if through == "root":
            # Pretend map_files is not allowed (no CAP_SYS_ADMIN): /proc/PID/root must do.
            from hud.linux import procfs
            monkeypatch.setattr(procfs, "map_files_path",
                                lambda pid, e: f"/proc/{pid}/map_files/none")
        with Symbolizer() as sym:
            proc = sym.for_process(p.pid)
            mod = proc.maps.find(ip)
            assert mod.path == f"{hidden}/prog"
            want = "/map_files/" if through == "map_files" else f"/proc/{p.pid}/root{hidden}"
            assert want in mod.open_path
            frames = proc.symbolize([ip])[0]
        assert oracle.ours(frames) == expected
    finally:
        _stop(p)


def test_vdso_symbols(build):
    import io

    from elftools.elf.elffile import ELFFile  # an independent reader as the oracle

    exe = build.c("sym_vdso", ("-g", "-O2"))
    p = subprocess.Popen([str(exe)], stdout=subprocess.PIPE, text=True)
    try:
        _wait_line(p, "outer=")
        with Symbolizer() as sym:
            proc = sym.for_process(p.pid)
            vdso = next(m for m in proc.maps.modules() if m.kind == "vdso")
            image = proc.maps.read_vdso(vdso)
            ref = ELFFile(io.BytesIO(image))
            base = min(s["p_vaddr"] for s in ref.iter_segments() if s["p_type"] == "PT_LOAD")
            funcs = [(s.name, s["st_value"]) for s in ref.get_section_by_name(".dynsym")
                     .iter_symbols() if s["st_info"]["type"] == "STT_FUNC" and s["st_value"]]
            assert funcs
            aliases: dict = {}
            for name, value in funcs:
                aliases.setdefault(value, set()).add(name)
            for value, names in aliases.items():
                ip = vdso.start + (value - base)
                frames = proc.symbolize([ip])[0]
                assert frames[-1].function in names and frames[-1].module == "[vdso]"
            assert ElfFile.from_bytes(image).machine in ("x86_64", "aarch64")
    finally:
        _stop(p)


def test_unmapped_and_anonymous_addresses_are_data(build):
    exe = build.c("sym_anon", ("-g", "-O2"))
    p = subprocess.Popen([str(exe)], stdout=subprocess.PIPE, text=True)
    try:
        _wait_line(p, "outer=")
        with Symbolizer() as sym:
            proc = sym.for_process(p.pid)
            stack = next(m for m in proc.maps.modules() if m.path == "[stack]")
            got = proc.symbolize([0x10, stack.start + 64], first_is_exact=False)
        assert got[0][0].function is None and "no mapping" in got[0][0].reason
        assert got[1][0].function is None and "anonymous" in got[1][0].reason
    finally:
        _stop(p)


def test_helpers_resolve_a_live_process_as_one_process_does(build):
    # ProcessSymbolizer batches go through the same helpers as files (hud addr2line
    # --pid): runtime addresses of every function of a running program, and a stack's
    # worth of return addresses.
    exe = build.rust()
    vaddrs = oracle.pick_addresses(exe, 1200, seed=5)
    p = subprocess.Popen([str(exe), "5", "sleep"], stdout=subprocess.PIPE, text=True)
    try:
        _wait_line(p, "work=")
        got = {}
        for jobs in (1, 2):
            with Symbolizer(jobs=jobs) as sym:
                proc = sym.for_process(p.pid)
                mod = next(m for m in proc.maps.modules()
                           if m.kind == "elf" and Path(m.path).name == exe.name)
                ips = [v + mod.bias for v in vaddrs]
                got[jobs] = (proc.symbolize_addresses(ips),
                             proc.symbolize_addresses(ips, return_addresses=True))
                obj, _ = proc._object(mod)
                helped = obj.helped
        assert helped > 0      # with jobs=2: the helper answered part of the batches
        assert got[1] == got[2]
        named = sum(1 for frames in got[2][0] if frames[-1].function)
        assert named >= len(vaddrs) * 0.99
    finally:
        _stop(p)
