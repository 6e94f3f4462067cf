"""`hud addr2line` prints what binutils `addr2line -f -i -C` prints; Symbolizer API
contracts: return addresses, per-build-id sharing, Frame fields, errors as exit codes."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from unit.symbolize import oracle

from hud.symbolize import Symbolizer

ROOT = Path(__file__).resolve().parents[3]


def _hud(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hud", "addr2line", *args], input=stdin,
                          capture_output=True, text=True, cwd=ROOT)


def _sample(exe: Path, n: int = 60) -> list[int]:
    return oracle.pick_addresses(exe, n)


def test_cli_output_is_binutils_text(build):
    for exe in (build.c("cli_c", ("-g", "-O2")), build.rust()):
        addrs = [hex(a) for a in _sample(exe)] + ["0x10"]
        ours = _hud("-a", "-f", "-i", "-C", "-e", str(exe), *addrs)
        assert ours.returncode == 0, ours.stderr
        theirs = subprocess.run(["addr2line", "-a", "-f", "-i", "-C", "-e", str(exe), *addrs],
                                capture_output=True, text=True, check=True).stdout
        strip = [ln.split(" (discriminator")[0] for ln in theirs.splitlines()]
        assert ours.stdout.splitlines() == strip


def test_cli_reads_stdin_and_basenames(build):
    exe = build.c("cli_c", ("-g", "-O2"))
    addrs = [hex(a) for a in _sample(exe, 5)]
    ours = _hud("-s", "-e", str(exe), stdin="\n".join(addrs) + "\n")
    theirs = subprocess.run(["addr2line", "-s", "-f", "-i", "-C", "-e", str(exe), *addrs],
                            capture_output=True, text=True, check=True).stdout
    assert ours.stdout.splitlines() == [ln.split(" (discriminator")[0]
                                        for ln in theirs.splitlines()]


def test_cli_errors_have_exit_codes(tmp_path):
    missing = _hud("-e", str(tmp_path / "nope"), "0x1")
    assert missing.returncode == 8 and missing.stderr.startswith("hud: ")
    junk = tmp_path / "junk"
    junk.write_text("not elf")
    assert _hud("-e", str(junk), "0x1").returncode == 8
    assert _hud("0x1").returncode == 2                          # neither -e nor --pid
    assert _hud("-e", str(junk), "zzz").returncode == 2         # not an address
    assert _hud("--pid", "999999999", "0x1").returncode == 4    # no such process


def test_cli_pid_mode(build):
    exe = build.c("cli_pid", ("-g", "-O2", "-fPIE", "-pie"))
    p = subprocess.Popen([str(exe)], stdout=subprocess.PIPE, text=True)
    try:
        ip = p.stdout.readline().strip().split("=")[1]
        out = _hud("--pid", str(p.pid), ip)
        assert out.returncode == 0, out.stderr
        assert "outer" in out.stdout.splitlines()
    finally:
        p.kill()
        p.wait()
        p.stdout.close()


def test_return_addresses_look_up_the_call(build):
    exe = build.c("cli_ret", ("-g", "-O2"))
    addrs = _sample(exe, 40)
    with Symbolizer() as sym:
        exact = sym.symbolize_file(str(exe), [a - 1 for a in addrs])
        ret = sym.symbolize_file(str(exe), addrs, return_addresses=True)
    assert [oracle.ours(f) for f in exact] == [oracle.ours(f) for f in ret]
    assert [f[0].address for f in ret] == addrs     # reported as given


def test_frames_fields(build):
    exe = build.c("cli_fields", ("-g", "-O2"))
    leaf = [a for s, size, n in oracle.function_symbols(exe) if n == "outer"
            for a in range(s, s + size)]
    with Symbolizer() as sym:
        chains = sym.symbolize_file(str(exe), leaf)
    deep = next(c for c in chains if len(c) == 3)
    assert [f.function for f in deep] == ["leaf", "middle", "outer"]
    assert [f.inlined for f in deep] == [True, True, False]
    assert all(f.module == str(exe) and f.cls == "unknown" and f.reason is None for f in deep)
    assert all(f.file and f.file.endswith("cli_fields.c") and f.line for f in deep)


def test_objects_are_shared_per_build_id(build, tmp_path):
    exe = build.c("cli_share", ("-g", "-O2"))
    copy = tmp_path / "copy"
    shutil.copy(exe, copy)
    with Symbolizer() as sym:
        a, _ = sym.object_for_path(str(exe))
        b, _ = sym.object_for_path(str(copy))
        assert a is b
    # close() released the descriptors
    assert a.elf._fd == -1


def test_no_fd_leak(build):
    exe = build.rust()
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        with Symbolizer() as sym:
            sym.symbolize_file(str(exe), _sample(exe, 20))
    assert len(os.listdir("/proc/self/fd")) == before


def test_fast_frames_equal_constructed_frames():
    from hud.model import Frame
    from hud.symbolize import symbolizer
    args = (0x1234, "f", "/x.rs", 3, 4, True, "/bin", None)
    fast = symbolizer.make_frame(*args)
    slow = symbolizer._frame_by_init(*args)
    assert fast == slow and hash(fast) == hash(slow) and type(fast) is Frame
    assert fast.to_dict() == slow.to_dict() and repr(fast) == repr(slow)
