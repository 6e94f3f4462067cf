"""Build dist/hud.pyz: hud, kernel and the pinned wheels in one reproducible zip (issue 9).

Inputs are exactly: the files of hud/ and kernel/ that git knows (tracked, or untracked and
not ignored), the wheels named with their SHA-256 in scripts/pyz/wheels.lock (fetched with
`pip download` into a cache and verified), and the two bootstrap files beside this one.
Same inputs and the same zlib give the same bytes: entries sorted, one fixed timestamp,
fixed permissions, no directory entries, no bytecode, no extra fields.

Layout of the zip:
    __main__.py              scripts/pyz/zip_main.py (version check, re-exec with -I)
    _hud_pyz.py              scripts/pyz/bootstrap.py (hermetic sys.path, capstone loader)
    _hud_pyz_native.py       generated: arch -> (member, sha256) of libcapstone.so
    _hud_native/ARCH/libcapstone.so   from the capstone manylinux wheel of that arch
    _hud_licenses/DIST/...   license files of every vendored distribution
    hud/ kernel/             the source, plus a generated hud/_build.py (COMMIT)
    click/ elftools/ textual/ rich/ ... capstone/ (Python part only)
"""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
LOCK = HERE / "wheels.lock"
RUNTIME = ROOT / "requirements" / "runtime.txt"
DEFAULT_OUT = ROOT / "dist" / "hud.pyz"
DEFAULT_CACHE = ROOT / "build" / "pyz" / "wheels"

SHEBANG = b"#!/usr/bin/env python3\n"
DATE = (1980, 1, 1, 0, 0, 0)           # the earliest a zip can say: no build time leaks in
FILE_MODE = 0o100644 << 16              # regular file, rw-r--r--
PYTHON = "3.9"                          # the oldest target: wheels must support it
SOURCES = ("hud", "kernel")
NATIVE_LIB = "libcapstone.so"
# capstone's manylinux wheels, one per architecture hud.pyz supports.
ARCH_TAGS = {"x86_64": "manylinux_2_17_x86_64", "aarch64": "manylinux_2_17_aarch64"}

# Not needed at run time, dropped from vendored packages to save size.
PRUNE_DIRS = {"tests", "test", "testing", "docs", "doc", "examples", "__pycache__"}
PRUNE_PREFIXES = (
    "textual/demo/",          # `python -m textual` demo app
    "textual/tree-sitter/",   # highlight queries, used only with tree_sitter (not vendored)
    "capstone/include/",      # C headers
    "capstone/lib/",          # the native library: vendored per arch under _hud_native/
)
PRUNE_SUFFIXES = (".pyc", ".pyo", ".pyi", "/py.typed")
LICENSE_RE = re.compile(r"(^|/)(LICEN[CS]E|COPYING|NOTICE|AUTHORS)[^/]*$", re.I)


class BuildError(Exception):
    """A build input is missing or does not match what the lock says."""


# ----------------------------------------------------------------------------- lock + wheels

def read_lock(path: Path = LOCK) -> dict[str, str]:
    """filename -> sha256 from wheels.lock (`FILENAME SHA256` lines, # comments)."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, digest = line.split()
            out[name] = digest
    return out


def read_pins(path: Path = RUNTIME) -> dict[str, str]:
    """Normalized distribution name -> pinned version from requirements/runtime.txt."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            if not version:
                raise BuildError(f"{path}: {line!r} is not pinned with ==")
            pins[_norm(name)] = version.strip()
    return pins


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def wheel_name_version(filename: str) -> tuple[str, str]:
    parts = filename[:-len(".whl")].split("-")
    return _norm(parts[0]), parts[1]


def wheel_arch(filename: str) -> Optional[str]:
    """The architecture of a platform wheel (None for a pure one)."""
    for arch, tag in ARCH_TAGS.items():
        if tag in filename:
            return arch
    if filename.endswith("-any.whl"):
        return None
    raise BuildError(f"{filename}: neither pure nor one of {sorted(ARCH_TAGS.values())}")


def check_lock(lock: dict[str, str], pins: dict[str, str]) -> list[str]:
    """Problems between the lock and the pins (empty when they agree)."""
    problems = []
    have: dict[str, set] = {}
    for filename in lock:
        name, version = wheel_name_version(filename)
        if pins.get(name) != version:
            problems.append(f"{filename}: not the pinned {name}=={pins.get(name)}")
        have.setdefault(name, set()).add(wheel_arch(filename))
    for name in pins:
        if name not in have:
            problems.append(f"{name}: pinned but not in the lock")
    if have.get("capstone") != set(ARCH_TAGS):
        problems.append(f"capstone: need one wheel per arch {sorted(ARCH_TAGS)}")
    return problems


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _pip_download(specs: list[str], dest: Path, arch: Optional[str]) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
           "--only-binary=:all:", "--python-version", PYTHON, "--dest", str(dest)]
    if arch:
        cmd += ["--platform", ARCH_TAGS[arch]]
    subprocess.run([*cmd, *specs], check=True)


def fetch_wheels(lock: dict[str, str], cache: Path, offline: bool = False) -> dict[str, Path]:
    """filename -> verified path in `cache`, downloading what is missing or wrong."""
    cache.mkdir(parents=True, exist_ok=True)
    missing = [f for f, digest in lock.items()
               if not (cache / f).is_file() or sha256_file(cache / f) != digest]
    if missing and offline:
        raise BuildError(f"--offline and not in {cache}: {', '.join(missing)}")
    if missing:
        with tempfile.TemporaryDirectory(prefix="hud-wheels-") as tmp:
            groups: dict[Optional[str], list[str]] = {}
            for f in missing:
                name, version = wheel_name_version(f)
                groups.setdefault(wheel_arch(f), []).append(f"{name}=={version}")
            for arch, specs in sorted(groups.items(), key=lambda kv: kv[0] or ""):
                _pip_download(specs, Path(tmp), arch)
            for f in missing:
                got = Path(tmp) / f
                if not got.is_file():
                    raise BuildError(f"pip did not download {f}")
                if sha256_file(got) != lock[f]:
                    raise BuildError(f"{f}: SHA-256 differs from wheels.lock")
                shutil.move(str(got), str(cache / f))
    return {f: cache / f for f in lock}


def refresh_lock(pins: dict[str, str], path: Path = LOCK) -> None:
    """Rewrite wheels.lock from the pins (a maintainer step after changing runtime.txt)."""
    lines = []
    with tempfile.TemporaryDirectory(prefix="hud-lock-") as tmp:
        pure = [f"{n}=={v}" for n, v in pins.items() if n != "capstone"]
        _pip_download(pure, Path(tmp), None)
        for arch in ARCH_TAGS:
            _pip_download([f"capstone=={pins['capstone']}"], Path(tmp), arch)
        for whl in sorted(Path(tmp).glob("*.whl")):
            lines.append(f"{whl.name} {sha256_file(whl)}")
    header = ("# Wheels vendored into hud.pyz, by file name and SHA-256: exactly the pins of\n"
              "# requirements/runtime.txt, for Python >= 3.9; capstone once per architecture.\n"
              "# Regenerate after changing the pins: scripts/build-pyz --refresh-lock\n")
    path.write_text(header + "\n".join(lines) + "\n")


# ----------------------------------------------------------------------------- zip content

def _pruned(name: str) -> bool:
    parts = name.split("/")
    if any(p in PRUNE_DIRS for p in parts[:-1]):
        return True
    if name.startswith(PRUNE_PREFIXES):
        return True
    return name.endswith(PRUNE_SUFFIXES) or ("/" + name).endswith(PRUNE_SUFFIXES)


def vendored(wheels: dict[str, Path]) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """(files, natives): zip members from the wheels, and arch -> libcapstone.so bytes."""
    files: dict[str, bytes] = {}
    natives: dict[str, bytes] = {}
    for filename in sorted(wheels):
        name, _ = wheel_name_version(filename)
        arch = wheel_arch(filename)
        with zipfile.ZipFile(wheels[filename]) as whl:
            for info in sorted(whl.infolist(), key=lambda i: i.filename):
                member = info.filename
                if member.endswith("/"):
                    continue
                top = member.split("/", 1)[0]
                if top.endswith(".dist-info"):
                    if LICENSE_RE.search(member):
                        files[f"_hud_licenses/{name}/{member.split('/')[-1]}"] = whl.read(info)
                    continue
                if top.endswith(".data") and member.split("/")[1] == "scripts":
                    continue      # console scripts (pyelftools' readelf.py): not needed
                if top.endswith(".data"):
                    raise BuildError(f"{filename}: .data entries are not supported ({member})")
                if arch and member == f"capstone/lib/{NATIVE_LIB}":
                    natives[arch] = whl.read(info)
                    continue
                if _pruned(member):
                    continue
                data = whl.read(info)
                if member in files and files[member] != data:
                    raise BuildError(f"{member}: two wheels disagree")
                files[member] = data
    if set(natives) != set(ARCH_TAGS):
        raise BuildError(f"{NATIVE_LIB} found for {sorted(natives)}, need {sorted(ARCH_TAGS)}")
    return files, natives


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True,
                          capture_output=True, text=True).stdout


def source_files() -> list[str]:
    """hud/ and kernel/ files, repo-relative: what git tracks or would (ignored ones never)."""
    try:
        listed = _git("ls-files", "-z", "--cached", "--others", "--exclude-standard", "--",
                      *SOURCES).split("\0")
    except (OSError, subprocess.CalledProcessError):
        listed = [str(p.relative_to(ROOT)) for s in SOURCES for p in (ROOT / s).rglob("*")]
    out = set()
    for rel in listed:
        if not rel or not (ROOT / rel).is_file() or (ROOT / rel).is_symlink():
            continue
        if "__pycache__" in rel.split("/") or rel.endswith((".pyc", ".pyo")):
            continue
        if rel == "hud/_build.py":   # generated into the zip only
            continue
        out.add(rel)
    return sorted(out)


def build_commit() -> str:
    """The commit the sources come from, `-dirty` when hud/ or kernel/ differ from it."""
    try:
        commit = _git("rev-parse", "--short=12", "HEAD").strip()
        dirty = _git("status", "--porcelain", "--untracked-files=normal", "--", *SOURCES)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty.strip() else "")


def _module(doc: str, assignments: dict) -> bytes:
    body = "".join(f"{k} = {v!r}\n" for k, v in assignments.items())
    return f'"""{doc}"""\n{body}'.encode()


def contents(wheels: dict[str, Path], commit: str) -> dict[str, bytes]:
    """Every member of the zip, name -> bytes."""
    files, natives = vendored(wheels)
    for rel in source_files():
        files[rel] = (ROOT / rel).read_bytes()
    files["hud/_build.py"] = _module(
        "Build facts of this hud.pyz, written by scripts/build-pyz (never in the source tree).",
        {"COMMIT": commit})
    native_index = {}
    for arch, data in sorted(natives.items()):
        member = f"_hud_native/{arch}/{NATIVE_LIB}"
        files[member] = data
        native_index[arch] = (member, hashlib.sha256(data).hexdigest())
    files["_hud_pyz_native.py"] = _module(
        "capstone's native library per arch in this zip: arch -> (member, sha256).",
        {"NATIVE": native_index})
    files["_hud_pyz.py"] = (HERE / "bootstrap.py").read_bytes()
    files["__main__.py"] = (HERE / "zip_main.py").read_bytes()
    return files


def write_pyz(files: dict[str, bytes], out: Path) -> None:
    """Write the zip deterministically, atomically, 0755."""
    out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    buf.write(SHEBANG)
    with zipfile.ZipFile(buf, "w") as zf:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=DATE)
            info.create_system = 3              # unix, whatever builds it
            info.external_attr = FILE_MODE
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, files[name], compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    fd, tmp = tempfile.mkstemp(prefix=".hud.pyz.", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buf.getvalue())
        os.chmod(tmp, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
        os.replace(tmp, out)
    except BaseException:
        os.unlink(tmp)
        raise


def build(out: Path = DEFAULT_OUT, cache: Path = DEFAULT_CACHE, offline: bool = False,
          commit: Optional[str] = None) -> Path:
    lock = read_lock()
    problems = check_lock(lock, read_pins())
    if problems:
        raise BuildError("wheels.lock disagrees with requirements/runtime.txt "
                         "(scripts/build-pyz --refresh-lock):\n  " + "\n  ".join(problems))
    wheels = fetch_wheels(lock, cache, offline=offline)
    write_pyz(contents(wheels, commit or build_commit()), out)
    return out


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/build-pyz", description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="default: dist/hud.pyz")
    ap.add_argument("--wheel-cache", type=Path, default=DEFAULT_CACHE,
                    help="verified wheel cache (default: build/pyz/wheels)")
    ap.add_argument("--offline", action="store_true", help="use only the wheel cache")
    ap.add_argument("--refresh-lock", action="store_true",
                    help="rewrite scripts/pyz/wheels.lock from requirements/runtime.txt")
    args = ap.parse_args(argv)
    try:
        if args.refresh_lock:
            refresh_lock(read_pins())
            print(f"wrote {LOCK.relative_to(ROOT)}")
            return 0
        out = build(args.out, args.wheel_cache, args.offline)
    except (BuildError, subprocess.CalledProcessError) as e:
        print(f"build-pyz: {e}", file=sys.stderr)
        return 1
    data = out.read_bytes()
    with zipfile.ZipFile(out) as zf:
        count = len(zf.infolist())
    print(f"{out}: {len(data) / 1e6:.2f} MB, {count} files, "
          f"sha256 {hashlib.sha256(data).hexdigest()[:16]}")
    return 0
