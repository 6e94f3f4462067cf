"""Where the CLI's output goes wrong: a full disk is one line, a hint and exit code 7; a
reader that leaves early (`| head`) ends the run quietly with success; never a
traceback."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ELF = sys.executable    # any ELF file: unknown addresses still print a block each


def _run(args: list, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hud", *args], cwd=ROOT,
                          stderr=subprocess.PIPE, text=True, timeout=120, **kw)


def test_a_full_disk_is_one_line_with_a_hint_and_exit_code_7():
    for args in (["addr2line", "-e", ELF, "0x10"], ["--help"], ["--version"]):
        with open("/dev/full", "w") as full:
            got = _run(args, stdout=full)
        assert got.returncode == 7, (args, got.stderr)
        lines = got.stderr.splitlines()
        assert lines == ["hud: cannot write the output: No space left on device",
                         "hint: free disk space or write elsewhere"], (args, got.stderr)


def test_a_reader_that_leaves_early_ends_the_run_quietly():
    # ~30 bytes per address: far more than a pipe holds, so hud is still writing when
    # the reader closes its end.
    addrs = "\n".join(["0x10"] * 40000) + "\n"
    proc = subprocess.Popen([sys.executable, "-m", "hud", "addr2line", "-a", "-e", ELF],
                            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdin.write(addrs.encode())
    proc.stdin.close()
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 0, err
    assert first.startswith(b"0x"), first
    assert err == ""


def test_everything_is_written_before_the_quick_exit():
    addrs = [hex(0x10 + i) for i in range(3000)]
    got = _run(["addr2line", "-a", "-e", ELF, *addrs], stdout=subprocess.PIPE)
    assert got.returncode == 0, got.stderr
    blocks = [line for line in got.stdout.splitlines() if line.startswith("0x")]
    assert blocks == [f"0x{int(a, 16):016x}" for a in addrs]


def test_an_export_that_cannot_be_written_is_refused_before_profiling(tmp_path):
    # pid 1 is never profiled: the check comes first, so this needs neither root nor a
    # target, and a run of 600 s would show as a timeout if it came after.
    for path, msg in ((tmp_path / "missing" / "t.json", "No such file or directory"),
                      (tmp_path, "is a directory")):
        got = _run(["--pid", "1", "--headless", "--duration", "600", "--export", str(path)],
                   stdout=subprocess.PIPE)
        assert got.returncode in (1, 2), got.stderr
        assert msg in got.stderr and "Traceback" not in got.stderr, got.stderr
    assert [p.name for p in tmp_path.iterdir()] == []     # the probe left nothing behind


def test_a_sampling_rate_that_would_swamp_the_host_is_a_usage_error():
    for freq in ("0", "-5", "100000"):
        got = _run(["--pid", "1", "--headless", "--duration", "600", "--freq", freq],
                   stdout=subprocess.PIPE)
        assert got.returncode == 2, got.stderr
        assert got.stderr.startswith("hud: --freq must be between 1 and 10,000 Hz"), got.stderr
