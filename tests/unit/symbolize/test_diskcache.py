"""The on-disk symbol cache: it never changes an answer, ignores whatever it did not
write itself, and refuses paths and files an attacker could have placed."""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from unit.symbolize import oracle

from hud.symbolize import Symbolizer, diskcache
from hud.symbolize.diskcache import SymbolCache, decode, default_cache_dir, encode

ROOT = Path(__file__).resolve().parents[3]
BUILD = ROOT / "tests" / "fixtures" / "build"
NOFP = BUILD / "blockers-nofp" / "blockers"
STRIPPED = BUILD / "blockers-stripped" / "blockers"
BID = "ab" * 20
KEY = "cd" * 32


@pytest.fixture(scope="module")
def addrs() -> list[int]:
    if not NOFP.exists():
        pytest.skip("fixture binaries not built (scripts/build-fixtures)")
    return oracle.pick_addresses(NOFP, 200, seed=7)


def _levels(n: int = 3) -> dict:
    shared = (("caller", "/src/a.rs", 10, 5), ("outer", "/src/b.rs", 20, None))
    out = {0x1000 + i: (f"f{i}", "/src/x.rs", i, 1, shared if i % 2 else (), "")
           for i in range(n)}
    out[0x9000] = (None, None, None, None, (), "no symbol covers this address")
    return out


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _only_file(d: Path) -> Path:
    files = [p for p in d.iterdir() if p.suffix == ".json"]
    assert len(files) == 1, files
    return files[0]


# -- answers ---------------------------------------------------------------------------

def _readelf_build_id(path: Path) -> str:
    """The build-id as binutils reads it (it differs per checkout: paths go into it)."""
    out = subprocess.run(["readelf", "-n", str(path)], capture_output=True, text=True,
                         check=True).stdout
    ids = [ln.split(":", 1)[1].strip() for ln in out.splitlines() if "Build ID:" in ln]
    assert len(ids) == 1, out
    return ids[0]


def test_round_trip_gives_identical_frames(private, addrs):
    cache = private / "c"
    before = _fds()
    with Symbolizer() as plain:
        want = plain.symbolize_file(str(NOFP), addrs)
        want_ret = plain.symbolize_file(str(NOFP), addrs, return_addresses=True)
    with Symbolizer(cache_dir=str(cache)) as cold:
        assert cold.symbolize_file(str(NOFP), addrs) == want
        assert cold.symbolize_file(str(NOFP), addrs, return_addresses=True) == want_ret
    assert cold.cache.stats["files_written"] == 1, cold.cache.reason
    f = _only_file(cache)
    assert f.name.startswith(_readelf_build_id(NOFP) + "-"), f.name
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert not [p for p in cache.iterdir() if p.name.startswith(".tmp-")]
    with Symbolizer(cache_dir=str(cache)) as warm:
        assert warm.symbolize_file(str(NOFP), addrs) == want
        assert warm.symbolize_file(str(NOFP), addrs, return_addresses=True) == want_ret
        obj, _ = warm.object_for_path(str(NOFP))
        assert obj is not None and not obj._dwarf_loaded   # all from disk: no DWARF read
    assert warm.cache.stats["entries_loaded"] >= len(addrs)
    assert warm.cache.stats["files_written"] == 0          # nothing new: nothing written
    assert _fds() == before


def test_variants_of_one_build_id_do_not_share_answers(private, addrs):
    """The stripped binary alone, with its debug file, and the unstripped one share a
    build-id; each must get its own answers back, never another's."""
    if not STRIPPED.exists():
        pytest.skip("fixture binaries not built")
    alone = private / "alone"
    alone.mkdir()
    shutil.copy(STRIPPED, alone / "blockers")        # no blockers.debug beside it
    cache = str(private / "c")
    results = {}
    for exe in (NOFP, STRIPPED, alone / "blockers"):
        with Symbolizer() as plain:
            want = plain.symbolize_file(str(exe), addrs)
        for _ in range(2):   # cold, then from disk
            with Symbolizer(cache_dir=cache) as sym:
                assert sym.symbolize_file(str(exe), addrs) == want, exe
        results[exe] = want
    assert results[alone / "blockers"] != results[NOFP]
    assert len(list(Path(cache).glob("*.json"))) >= 2


def test_a_second_symbolizer_adds_to_the_file(private, addrs):
    cache = str(private / "c")
    half = len(addrs) // 2
    for part in (addrs[:half], addrs[half:]):
        with Symbolizer(cache_dir=cache) as sym:
            sym.symbolize_file(str(NOFP), part)
    with Symbolizer(cache_dir=cache) as sym:
        sym.symbolize_file(str(NOFP), addrs[:1])
        assert sym.cache.stats["entries_loaded"] >= len(set(addrs))


def test_encode_decode_round_trip():
    entries = _levels(50)
    got = decode(encode(BID, KEY, entries), BID, KEY)
    assert got == entries
    # Callers shared in memory stay shared after loading.
    assert got[0x1001][4] is got[0x1003][4]
    assert decode(encode(BID, KEY, entries), BID, "ef" * 32) is None
    assert decode(encode(BID, KEY, entries), "ba" * 20, KEY) is None


def test_entries_are_bounded(monkeypatch, private):
    monkeypatch.setattr(diskcache, "MAX_ENTRIES", 10)
    c = SymbolCache(str(private / "c"))
    assert c.store(BID, KEY, _levels(30))
    assert len(c.load(BID, KEY)) == 10
    assert c.store(BID, KEY, {0x77: ("n", None, None, None, (), "")})
    got = c.load(BID, KEY)
    assert len(got) == 10 and 0x77 in got                # the newest entries win


def test_writers_take_turns_and_keep_each_others_entries(private):
    """A store waits while another process holds the directory's lock (its read, merge
    and rename), then merges what that one wrote: both processes' entries survive."""
    import fcntl
    import threading

    c = SymbolCache(str(private / "c"))
    assert c.store(BID, KEY, {0x10: ("first", None, None, None, (), "")})
    dfd = os.open(str(private / "c"), os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(dfd, fcntl.LOCK_EX)          # another hud in the middle of its write
        done = threading.Event()
        t = threading.Thread(target=lambda: (
            c.store(BID, KEY, {0x20: ("ours", None, None, None, (), "")}), done.set()))
        t.start()
        assert not done.wait(0.5), "stored while another writer held the lock"
        # What the other writer renames into place before it lets go.
        other = SymbolCache(str(private / "c"))
        other_entries = {**other.load(BID, KEY), 0x30: ("theirs", None, None, None, (), "")}
        (_only_file(private / "c")).write_bytes(encode(BID, KEY, other_entries))
        fcntl.flock(dfd, fcntl.LOCK_UN)
        t.join(10)
        assert done.is_set()
    finally:
        os.close(dfd)
    assert set(c.load(BID, KEY)) == {0x10, 0x20, 0x30}


def test_a_lock_never_released_only_delays_the_write(private, monkeypatch):
    import fcntl

    monkeypatch.setattr(diskcache, "LOCK_WAIT_S", 0.2)
    c = SymbolCache(str(private / "c"))
    os.makedirs(private / "c", mode=0o700, exist_ok=True)
    dfd = os.open(str(private / "c"), os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(dfd, fcntl.LOCK_EX)          # a hud stuck mid-write
        assert c.store(BID, KEY, _levels(3))
    finally:
        os.close(dfd)
    assert len(c.load(BID, KEY)) == 4


# -- hostile or broken files ------------------------------------------------------------

def _valid_doc() -> dict:
    return json.loads(encode(BID, KEY, _levels(4)))


def _hostile() -> list[bytes]:
    def doc(**change) -> bytes:
        d = _valid_doc()
        d.update(change)
        return json.dumps(d).encode()

    def cell(group: str, column: str, value, i: int = 0) -> bytes:
        d = _valid_doc()
        if i is None:
            d[group][column] = value
        else:
            d[group][column][i] = value
        return json.dumps(d).encode()

    good = encode(BID, KEY, _levels(4))
    return [
        b"", good[:len(good) // 2], good + b"garbage", b"[]", b"null", b'"x"',
        doc(format="hud-symcache/0"), doc(build_id="00" * 20), doc(key="00" * 32),
        doc(strings="abc"), doc(strings=[1, 2]), doc(entries=[]), doc(levels=[[0]]),
        doc(chains=[[10 ** 6]]), doc(chains=[[0] * 1000]), doc(chains=[[-1]]),
        doc(chains={}), doc(chains=[0]),
        cell("levels", "line", -2), cell("levels", "name", 99),
        cell("levels", "file", [1], None),   # wrong length
        cell("entries", "vaddr", True), cell("entries", "vaddr", -1),
        cell("entries", "vaddr", 1 << 64), cell("entries", "vaddr", 1.5),
        cell("entries", "vaddr", "0x10"), cell("entries", "vaddr", None),
        cell("entries", "name", 10 ** 6), cell("entries", "name", -1),
        cell("entries", "line", 1 << 40), cell("entries", "line", 2.0),
        cell("entries", "col", False), cell("entries", "why", [0]),
        cell("entries", "chain", 99), cell("entries", "chain", None),
        cell("entries", "file", [0], None), cell("entries", "chain", "x", None),
        good.replace(b'"vaddr":[', b'"vaddr":[' + b"9" * 5000 + b","),
        b"[" * 100000 + b"]" * 100000, b'{"format":' + b"[" * 50000,
        good.replace(b"/src/x.rs", b"/src/\xff\xfe.rs"),
        good.replace(b"/src/x.rs", b"/src/\\udc80.rs"),
        good.replace(b'"format"', b'"format":NaN,"x"'),
        "\ufeff".encode() + good,
    ]


def test_hostile_files_are_ignored_whole(private):
    c = SymbolCache(str(private / "c"))
    assert c.store(BID, KEY, _levels(4))
    path = _only_file(private / "c")
    before = _fds()
    for n, payload in enumerate(_hostile()):
        path.write_bytes(payload)
        os.chmod(path, 0o600)
        assert c.load(BID, KEY) == {}, (n, payload[:80])
        assert not c.disabled
    assert c.stats["files_ignored"] == len(_hostile())
    # A bad file is replaced by the next write, not merged.
    assert c.store(BID, KEY, _levels(2))
    assert c.load(BID, KEY) == _levels(2)
    assert _fds() == before


def test_our_own_files_are_trusted_and_a_bad_one_falls_back(private, addrs):
    cache = private / "c"
    with Symbolizer() as plain:
        want = plain.symbolize_file(str(NOFP), addrs)
    with Symbolizer(cache_dir=str(cache)) as sym:
        sym.symbolize_file(str(NOFP), addrs)
    f = _only_file(cache)
    d = json.loads(f.read_bytes())
    d["strings"] = ["evil"] * len(d["strings"])          # well-formed, wrong answers:
    f.write_bytes(json.dumps(d).encode())                # only a changed key could tell,
    with Symbolizer(cache_dir=str(cache)) as sym:        # so here the content is trusted,
        got = sym.symbolize_file(str(NOFP), addrs)       # being ours (0600, our uid)
    assert got != want
    d["entries"]["chain"][0] = "x"                       # one wrong type: all ignored
    f.write_bytes(json.dumps(d).encode())
    with Symbolizer(cache_dir=str(cache)) as sym:
        assert sym.symbolize_file(str(NOFP), addrs) == want
        assert sym.cache.stats["files_ignored"] == 1


def test_oversized_file_is_refused(private):
    c = SymbolCache(str(private / "c"))
    assert c.store(BID, KEY, _levels(1))
    path = _only_file(private / "c")
    with open(path, "r+b") as f:
        f.truncate(diskcache.MAX_FILE_BYTES + 1)
    assert c.load(BID, KEY) == {}
    assert "over the limit" in c.reason


# -- paths and files an attacker could plant --------------------------------------------

def test_symlinked_file_is_refused_and_replaced_not_followed(private):
    c = SymbolCache(str(private / "c"))
    assert c.store(BID, KEY, _levels(3))
    path = _only_file(private / "c")
    target = private / "elsewhere.json"
    os.rename(path, target)
    os.symlink(target, path)
    assert c.load(BID, KEY) == {}
    assert "symbolic links" in c.reason
    before = target.read_bytes()
    assert c.store(BID, KEY, _levels(1))
    assert target.read_bytes() == before                 # the link's target untouched
    assert not path.is_symlink() and stat.S_ISREG(path.lstat().st_mode)


def test_symlinked_directory_is_refused(private):
    real = private / "real"
    real.mkdir(mode=0o700)
    (private / "link").symlink_to(real)
    for cache_dir in (private / "link", private / "link" / "sub"):
        c = SymbolCache(str(cache_dir))
        assert not c.store(BID, KEY, _levels(2))
        assert c.disabled and c.reason
        assert c.load(BID, KEY) == {}
    assert list(real.iterdir()) == []


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o775, 0o757])
def test_writable_parent_is_refused(private, mode):
    parent = private / "shared"
    parent.mkdir()
    os.chmod(parent, mode)
    c = SymbolCache(str(parent / "c"))
    assert not c.store(BID, KEY, _levels(2))
    assert c.disabled and "shared" in c.reason
    assert not (parent / "c").exists()


def test_sticky_tmp_is_refused(tmp_path):
    if not (os.stat("/tmp").st_mode & 0o002):
        pytest.skip("/tmp is not world-writable here")
    c = SymbolCache(str(tmp_path / "c"))
    assert not c.store(BID, KEY, _levels(2))
    assert c.disabled and "/tmp" in c.reason


def test_wrong_mode_leaf_is_refused_not_fixed(private):
    leaf = private / "c"
    leaf.mkdir()
    os.chmod(leaf, 0o755)
    c = SymbolCache(str(leaf))
    assert not c.store(BID, KEY, _levels(2))
    assert "mode 700" in c.reason
    assert stat.S_IMODE(leaf.stat().st_mode) == 0o755
    assert list(leaf.iterdir()) == []


@pytest.mark.parametrize("umask", [0, 0o077, 0o277])
def test_created_dirs_are_0700_and_files_0600(private, umask):
    old = os.umask(umask)
    try:
        c = SymbolCache(str(private / "a" / "b"))
        assert c.store(BID, KEY, _levels(2)), c.reason
    finally:
        os.umask(old)
    for d in (private / "a", private / "a" / "b"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert stat.S_IMODE(_only_file(private / "a" / "b").stat().st_mode) == 0o600
    assert c.load(BID, KEY) == _levels(2)


def test_fifo_and_hard_link_are_refused(private):
    c = SymbolCache(str(private / "c"))
    assert c.store(BID, KEY, _levels(2))
    path = _only_file(private / "c")
    os.link(path, private / "second-link")
    assert c.load(BID, KEY) == {} and "links" in c.reason
    os.unlink(path)
    os.mkfifo(path, 0o600)
    assert c.load(BID, KEY) == {}                        # returns: open() did not block
    assert "not a regular file" in c.reason


def test_group_readable_file_is_refused(private):
    c = SymbolCache(str(private / "c"))
    assert c.store(BID, KEY, _levels(2))
    os.chmod(_only_file(private / "c"), 0o640)
    assert c.load(BID, KEY) == {}


def test_bad_build_id_or_key_never_reaches_the_file_system(private):
    c = SymbolCache(str(private / "c"))
    for bid, key in (("../../etc/x", KEY), (BID, "../x"), ("", KEY), (BID, KEY + "/"),
                     ("AB" * 20, KEY)):
        assert not c.store(bid, key, _levels(1))
        assert c.load(bid, key) == {}
    assert not (private / "c").exists()


# -- concurrency, eviction, descriptors -------------------------------------------------

def _writer(cache_dir: str, base: int) -> None:
    c = SymbolCache(cache_dir)
    for i in range(15):
        c.store(BID, KEY, {base + i: (f"w{base}", "/f.rs", i, 0, (), "")})


def test_concurrent_writers_leave_a_valid_file(private):
    cache_dir = str(private / "c")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(cache_dir, base)) for base in
             (0x1000, 0x2000, 0x3000)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    got = SymbolCache(cache_dir).load(BID, KEY)
    assert got and all(v[0] in ("w4096", "w8192", "w12288") for v in got.values())
    names = os.listdir(cache_dir)
    assert len(names) == 1 and not names[0].startswith(".tmp-")


def test_two_symbolizers_closing_keep_both_sets(private, addrs):
    cache = str(private / "c")
    half = len(addrs) // 2
    a, b = Symbolizer(cache_dir=cache), Symbolizer(cache_dir=cache)
    a.symbolize_file(str(NOFP), addrs[:half])
    b.symbolize_file(str(NOFP), addrs[half:])
    a.close()
    b.close()
    with Symbolizer(cache_dir=cache) as c:
        c.symbolize_file(str(NOFP), addrs[:1])
        assert c.cache.stats["entries_loaded"] >= len(set(addrs))


def test_eviction_and_stale_temp_files(monkeypatch, private):
    monkeypatch.setattr(diskcache, "MAX_FILES", 3)
    cache_dir = private / "c"
    c = SymbolCache(str(cache_dir))
    assert c.store(BID, KEY, _levels(1))
    stale = cache_dir / ".tmp-1-dead"
    stale.write_bytes(b"x")
    os.utime(stale, (1, 1))
    for i in range(5):
        assert c.store(f"{i:02x}" * 20, KEY, _levels(1))
    names = sorted(os.listdir(cache_dir))
    assert len(names) == 3 and ".tmp-1-dead" not in names
    assert f"{4:02x}" * 20 + "-" + KEY[:16] + ".json" in names


def test_no_descriptor_leaks_on_refusals(private):
    before = _fds()
    for cache_dir in (private / "missing" / "c", "/proc/self", "/tmp/x", "/"):
        c = SymbolCache(str(cache_dir))
        c.load(BID, KEY)
        c.store(BID, KEY, _levels(1))
    assert _fds() == before


# -- where the cache lives --------------------------------------------------------------

def test_default_directory(monkeypatch):
    assert default_cache_dir({"HUD_NO_CACHE": "1", "HUD_CACHE_DIR": "/x"}) is None
    assert default_cache_dir({"HUD_CACHE_DIR": "/x/y"}) == "/x/y"
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert default_cache_dir({"HOME": "/home/u", "XDG_CACHE_HOME": "/home/u/.c"}) == \
        "/var/cache/hud/symbols"
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert default_cache_dir({"HOME": "/home/u", "XDG_CACHE_HOME": "/home/u/.c"}) == \
        "/home/u/.c/hud/symbols"
    assert default_cache_dir({"HOME": "/home/u", "XDG_CACHE_HOME": "rel"}) == \
        "/home/u/.cache/hud/symbols"
    assert default_cache_dir({}) is None


def test_disabled_symbolizer_touches_nothing(private, addrs, monkeypatch):
    with Symbolizer() as sym:
        assert sym.cache is None
        obj, _ = sym.object_for_path(str(NOFP))
        sym.symbolize_file(str(NOFP), addrs[:5])
        assert obj is not None and obj._fresh == {}


def _cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hud", "addr2line", *args],
                          capture_output=True, text=True, cwd=ROOT, env=env)


def test_cli_flag_and_environment(private, addrs):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUD_")}
    env["HUD_CACHE_DIR"] = str(private / "c")
    args = ("-e", str(NOFP), *[hex(a) for a in addrs[:20]])
    off = _cli("--no-symbol-cache", *args, env=env)
    assert off.returncode == 0, off.stderr
    assert not (private / "c").exists()
    assert _cli(*args, env={**env, "HUD_NO_CACHE": "1"}).stdout == off.stdout
    assert not (private / "c").exists()
    cold = _cli(*args, env=env)
    assert cold.stdout == off.stdout
    _only_file(private / "c")
    assert _cli(*args, env=env).stdout == off.stdout


def test_profiler_and_cli_plumbing(monkeypatch, private):
    from hud.session import Profiler
    monkeypatch.delenv("HUD_NO_CACHE", raising=False)
    monkeypatch.setenv("HUD_CACHE_DIR", str(private / "c"))
    assert Profiler(pid=1).symbol_cache_dir == str(private / "c")
    assert Profiler(pid=1, symbol_cache=False).symbol_cache_dir is None
    assert Profiler(pid=1, symbol_cache="/x").symbol_cache_dir == "/x"
    monkeypatch.setenv("HUD_NO_CACHE", "1")
    assert Profiler(pid=1).symbol_cache_dir is None
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUD_")}
    helptext = subprocess.run([sys.executable, "-m", "hud", "app", "--help"], capture_output=True,
                              text=True, cwd=ROOT, env=env).stdout
    assert "--no-symbol-cache" in helptext


def test_probe_and_doctor_report_the_cache_without_creating_it(private):
    from hud.doctor.host import check_symbol_cache
    from hud.doctor.model import OK, WARN
    d = private / "c"
    assert SymbolCache(str(d)).probe() == ("absent", "", 0)
    c = check_symbol_cache(str(d))
    assert c.status == OK and "first run" in c.summary and not d.exists()
    assert SymbolCache(str(d)).store(BID, KEY, _levels())
    assert SymbolCache(str(d)).probe() == ("ok", "", 1)
    assert check_symbol_cache(str(d)).data["files"] == 1
    os.chmod(d, 0o755)            # readable by others: refused, reported, left as it is
    state, why, _ = SymbolCache(str(d)).probe()
    c = check_symbol_cache(str(d))
    assert state == "refused" and "mode 700" in why
    assert c.status == WARN and "mode 700" in c.summary and "--no-symbol-cache" in c.hint
    assert stat.S_IMODE(d.stat().st_mode) == 0o755
    assert check_symbol_cache(off=True).data["dir"] is None
