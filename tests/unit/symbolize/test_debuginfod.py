"""Debug files from a debuginfod server (a real HTTP server on loopback, serving files by
build-id as debuginfod does): fetched, verified, cached; every failure a note."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from support.debuginfod import serve
from unit.symbolize.oracle import function_symbols

from hud.symbolize import Symbolizer
from hud.symbolize.debuginfod import Debuginfod, host_listed, urls_from
from hud.symbolize.elf import ElfFile


def _bid(path: Path) -> str:
    with ElfFile.open(str(path)) as elf:
        return elf.build_id


@pytest.fixture(scope="module")
def split(build):
    """(stripped binary without a debuglink, its debug file, another build's debug file)."""
    full = build.c("dinod", ("-O1", "-g"))
    stripped, dbg = build.split_debug(full, "dinod-split", debuglink=False)
    other = build.c("dinod-other", ("-O2", "-g"))
    _o_stripped, other_dbg = build.split_debug(other, "dinod-other-split", debuglink=False)
    assert _bid(stripped) != _bid(other)
    return stripped, dbg, other_dbg


def _lines(binary: Path, fetcher=None) -> list:
    addrs = [s + size // 2 for s, size, n in function_symbols(binary.parent / (binary.name
                                                              + ".debug"))
             if n in ("outer", "main", "park")]
    with Symbolizer(debuginfod=fetcher) as sym:
        return [(f[-1].function, f[-1].file, f[-1].line)
                for f in sym.symbolize_file(str(binary), addrs)]


def test_a_stripped_binarys_debug_file_is_fetched_verified_and_cached(split, private):
    stripped, dbg, _other = split
    bid = _bid(stripped)
    assert all(f is None for _fn, f, _l in _lines(stripped))   # no DWARF here at all
    said = []
    with serve({f"/buildid/{bid}/debuginfo": dbg.read_bytes()}) as (url, asked):
        fetcher = Debuginfod([url], str(private / "debuginfod"), progress=said.append)
        got = _lines(stripped, fetcher)
    assert asked == [f"/buildid/{bid}/debuginfo"]
    assert fetcher.stats["fetched"] == 1 and said and bid[:12] in said[0]
    assert all(f and f.endswith("dinod.c") and line for _fn, f, line in got), got
    cached = private / "debuginfod" / f"{bid}.debug"
    assert cached.read_bytes() == dbg.read_bytes()
    assert (cached.stat().st_mode & 0o777) == 0o600
    assert (os.stat(private / "debuginfod").st_mode & 0o777) == 0o700
    # The server is gone: the next process answers from the cache.
    again = Debuginfod([url], str(private / "debuginfod"))
    assert _lines(stripped, again) == got and again.stats["cached"] == 1


def test_a_wrong_file_from_the_server_is_refused(split, private):
    stripped, _dbg, other_dbg = split
    bid = _bid(stripped)
    with serve({f"/buildid/{bid}/debuginfo": other_dbg.read_bytes()}) as (url, _asked):
        fetcher = Debuginfod([url], str(private / "d"))
        got = _lines(stripped, fetcher)
        path, why = fetcher.fetch(bid)
    assert all(f is None for _fn, f, _l in got)
    assert path is None and "not" in why and bid[:12] in why
    assert os.listdir(private / "d") == []          # nothing kept, no temporary left


def test_misses_and_limits_are_notes(split, private):
    stripped, dbg, _other = split
    bid = _bid(stripped)
    with serve({}) as (url, asked):
        fetcher = Debuginfod([url], str(private / "d"))
        assert fetcher.fetch(bid) == (None, f"debuginfod: 127.0.0.1:{url.rsplit(':')[-1]}"
                                            ": HTTP 404")
        fetcher.fetch(bid)
        assert len(asked) == 1                       # a miss is remembered per process
        # ... and on disk for ten minutes, as elfutils does: the next run does not ask.
        path, why = Debuginfod([url], str(private / "d")).fetch(bid)
        assert path is None and "less than 10 minutes ago" in why and len(asked) == 1
    with serve({f"/buildid/{bid}/debuginfo": dbg.read_bytes()}) as (url, _asked):
        small = Debuginfod([url], str(private / "d2"), max_bytes=1000)
        path, why = small.fetch(bid)
        assert path is None and "over the limit" in why
        stopped = Debuginfod([url], str(private / "d2"), cancel=lambda: True)
        assert stopped.fetch(bid) == (None, "debuginfod: cancelled")
    # Nobody listening; then a second server that has it: the first failure is skipped.
    with serve({f"/buildid/{bid}/debuginfo": dbg.read_bytes()}) as (url, _asked):
        both = Debuginfod(["http://127.0.0.1:9", url], str(private / "d3"), timeout=2)
        path, why = both.fetch(bid)
        assert path and why == f"debuginfod {url}"


def test_an_unsafe_cache_directory_is_refused(split, tmp_path):
    stripped, dbg, _other = split
    bid = _bid(stripped)
    with serve({f"/buildid/{bid}/debuginfo": dbg.read_bytes()}) as (url, asked):
        # Under /tmp (sticky, world-writable): another user could swap it under us.
        fetcher = Debuginfod([url], str(tmp_path / "d"))
        path, why = fetcher.fetch(bid)
    assert path is None and "debuginfod cache" in why and not asked


def test_the_dwz_file_is_fetched_by_its_build_id(private, tmp_path):
    if shutil.which("dwz") is None:
        pytest.skip("dwz is not installed")
    src = ("static inline __attribute__((always_inline)) int leaf(int x) "
           "{ int r = 0; for (int k = 0; k < x; k++) r += k * k ^ x; return r; }\n")
    for n in ("a", "b"):
        (tmp_path / f"{n}.c").write_text(
            src + f"__attribute__((noinline)) int f_{n}(int x) {{ return leaf(x) + 1; }}\n"
            f"int main(int c, char **v) {{ return f_{n}(c); }}\n")
        subprocess.run(["gcc", "-O2", "-g", "-o", n, f"{n}.c"], cwd=tmp_path, check=True)
        subprocess.run(["objcopy", "--only-keep-debug", n, f"{n}.debug"], cwd=tmp_path,
                       check=True)
        subprocess.run(["objcopy", "--strip-debug", n, f"{n}.stripped"], cwd=tmp_path,
                       check=True)
    subprocess.run(["dwz", "-m", "common.debug", "-M", "/nonexistent/common.debug",
                    "a.debug", "b.debug"], cwd=tmp_path, check=True)
    served = {f"/buildid/{_bid(tmp_path / 'a')}/debuginfo": (tmp_path / "a.debug").read_bytes(),
              f"/buildid/{_bid(tmp_path / 'common.debug')}/debuginfo":
              (tmp_path / "common.debug").read_bytes()}
    for name in ("a.debug", "common.debug"):
        (tmp_path / name).unlink()
    start, size = next((s, z) for s, z, n in function_symbols(tmp_path / "a") if n == "f_a")
    with serve(served) as (url, asked):
        with Symbolizer(debuginfod=Debuginfod([url], str(private / "d"))) as sym:
            chains = sym.symbolize_file(str(tmp_path / "a.stripped"),
                                        list(range(start, start + size)))
    assert len(asked) == 2
    # leaf's name lives in the dwz file only.
    assert any([f.function for f in c] == ["leaf", "f_a"] for c in chains), chains


def test_servers_come_from_the_option_or_the_environment():
    env = {"DEBUGINFOD_URLS": "https://a.example/ ftp://no.example http://b.example"}
    assert urls_from((), env) == ["https://a.example", "http://b.example"]
    assert urls_from(("http://c.example",), env) == ["http://c.example"]
    assert urls_from((), {}) == []


def test_the_hosts_listed_servers_are_read_for_hints(tmp_path, monkeypatch):
    """/etc/debuginfod/*.urls as elfutils' profile script reads them (sudo drops the
    DEBUGINFOD_URLS it makes): *.urls files only, http(s) only, each server once."""
    (tmp_path / "a.urls").write_text("https://x.example/\n\nhttp://y.example\n")
    (tmp_path / "b.urls").write_text("ftp://z.example https://x.example file:///etc\n")
    (tmp_path / "notes.txt").write_text("https://ignored.example\n")
    assert host_listed(str(tmp_path)) == ["https://x.example", "http://y.example"]
    assert host_listed(str(tmp_path / "none")) == []
    # The files only: not the environment's servers where the host lists none.
    monkeypatch.setenv("DEBUGINFOD_URLS", "https://env.example")
    (tmp_path / "empty").mkdir()
    assert host_listed(str(tmp_path / "empty")) == []
    assert host_listed(str(tmp_path)) == ["https://x.example", "http://y.example"]


def test_the_cache_is_bounded_and_never_fills_the_disk(split, private, monkeypatch):
    from hud.symbolize import debuginfod
    stripped, dbg, other_dbg = split
    bid, other = _bid(stripped), _bid(other_dbg)
    files = {f"/buildid/{bid}/debuginfo": dbg.read_bytes(),
             f"/buildid/{other}/debuginfo": other_dbg.read_bytes()}
    with serve(files) as (url, _asked):
        monkeypatch.setattr(debuginfod, "FREE_FLOOR", 1 << 62)
        path, why = Debuginfod([url], str(private / "d")).fetch(bid)
        assert path is None and "not enough free space" in why
        monkeypatch.setattr(debuginfod, "FREE_FLOOR", 0)
        monkeypatch.setattr(debuginfod, "KEEP_BYTES", 1)
        fetcher = Debuginfod([url], str(private / "d"))
        assert fetcher.fetch(bid)[0] and fetcher.fetch(other)[0]
    # Over the bound, the older file went; the one just fetched stays.
    assert sorted(os.listdir(private / "d")) == [f"{other}.debug"]


def test_probe_reads_the_answer_not_the_file():
    """`hud doctor`'s question: has the server this build-id? A 200 is answered from its
    headers (a server that then never sends the 64 MB it announced does not hold the
    probe: the body is not read), a 404 is a miss, and a refused connection or a server
    that never answers is unreachable, through the timeout."""
    import socket
    import threading

    from hud.symbolize.debuginfod import HAS, MISSING, UNREACHABLE, probe
    bid = "cd34" * 10
    with serve({}) as (url, asked):
        state, size, why = probe(url, "ef56" * 10)
        assert (state, size) == (MISSING, 0) and why.endswith("HTTP 404"), why
        assert probe(url, "not-hex")[0] == MISSING and len(asked) == 1   # never sent
    with socket.socket() as stall:     # headers, then nothing: a body read would time out
        stall.bind(("127.0.0.1", 0))
        stall.listen(1)
        done = threading.Event()

        def answer() -> None:
            conn, _ = stall.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 67108864\r\n\r\n")
                done.wait(10)

        t = threading.Thread(target=answer, daemon=True)
        t.start()
        try:
            got = probe(f"http://127.0.0.1:{stall.getsockname()[1]}", bid, timeout=2.0)
        finally:
            done.set()
            t.join(10)
        assert got == (HAS, 64 << 20, "")
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    state, _size, why = probe(f"http://127.0.0.1:{port}", bid)
    assert (state, why) == (UNREACHABLE, f"127.0.0.1:{port}: Connection refused")
    with socket.socket() as mute:      # accepts connections (backlog), never answers
        mute.bind(("127.0.0.1", 0))
        mute.listen(4)
        state, _size, why = probe(f"http://127.0.0.1:{mute.getsockname()[1]}", bid,
                                  timeout=0.5)
        assert state == UNREACHABLE and "timed out" in why, why
