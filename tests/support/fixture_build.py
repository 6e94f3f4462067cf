"""Build the Tokio fixtures offline and write their ground-truth manifests (scripts/build-fixtures)."""
from __future__ import annotations

import argparse
import datetime
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[2]
SOURCES = REPO / "tests" / "fixtures"
BUILD = SOURCES / "build"
TARGET = BUILD / "target"
INDEX = BUILD / "index.json"
SCHEMA = "hud-fixture/1"
INDEX_SCHEMA = "hud-fixture-index/1"

# Tokio 1.24 names every runtime thread "tokio-runtime-worker"; /proc/PID/task/*/comm keeps the
# first 15 bytes (TASK_COMM_LEN - 1). Blocking-pool threads get the same name as workers.
TOKIO_DEFAULT_THREAD_NAME = "tokio-runtime-worker"
COMM_LEN = 15
CUSTOM_THREAD_NAME = "hud-fx-worker"

# Cargo profiles (tests/fixtures/Cargo.toml) and the RUSTFLAGS that make them differ.
PROFILES: dict[str, dict[str, object]] = {
    "fp": {"rustflags": "-C force-frame-pointers=yes", "frame_pointers": True},
    "nofp": {"rustflags": "", "frame_pointers": False},
    "lto": {"rustflags": "", "frame_pointers": False},
    "lines": {"rustflags": "", "frame_pointers": False},
    "nodebug": {"rustflags": "", "frame_pointers": False},
}

# Every variant: which program, built with which profile, post-processed how, and which
# command-line flags it always runs with. Runtime flags stand in for rebuilds where the code
# is the same (thread name, runtime flavour): the manifest says so ("args").
VARIANTS: dict[str, dict[str, object]] = {
    "blockers-fp": {
        "program": "blockers", "profile": "fp", "strip": False, "args": [],
        "about": "release build with debug info and frame pointers",
    },
    "blockers-nofp": {
        "program": "blockers", "profile": "nofp", "strip": False, "args": [],
        "about": "release build with debug info, no forced frame pointers (cargo's default)",
    },
    "blockers-stripped": {
        "program": "blockers", "profile": "nofp", "strip": True, "args": [],
        "about": "blockers-nofp stripped (strip --strip-all); DWARF and symtab in a separate "
                 "file found through .gnu_debuglink (objcopy --only-keep-debug)",
    },
    "blockers-lto": {
        "program": "blockers", "profile": "lto", "strip": False, "args": [],
        "about": "release build with debug info, fat LTO and one codegen unit (what "
                 "services ship), no forced frame pointers",
    },
    "blockers-lines": {
        "program": "blockers", "profile": "lines", "strip": False, "args": [],
        "about": "release build with debug = \"line-tables-only\" (what hud's hint asks "
                 "for): file:line, inline levels named by their last path segment only",
    },
    "blockers-nodebug": {
        "program": "blockers", "profile": "nodebug", "strip": False, "args": [],
        "about": "cargo's release profile as it comes: no debug info, symbol table kept",
    },
    "blockers-named": {
        "program": "blockers", "profile": "fp", "strip": False,
        "args": ["--thread-name", CUSTOM_THREAD_NAME],
        "about": "blockers-fp's binary run with Builder::thread_name (runtime flag)",
    },
    "blockers-current": {
        "program": "blockers", "profile": "fp", "strip": False,
        "args": ["--runtime", "current"],
        "about": "blockers-fp's binary run on a current_thread runtime (runtime flag): the "
                 "worker is the main thread, which runs block_on",
    },
    "demo": {
        "program": "demo", "profile": "nofp", "strip": False, "args": [],
        "about": "HTTP demo server + load generator, release build without frame pointers",
    },
    "demo-fp": {
        "program": "demo", "profile": "fp", "strip": False, "args": [],
        "about": "HTTP demo server + load generator, release build with frame pointers",
    },
}

MARKER = re.compile(r"//\s*hud:(blocking|cpu|none)\s+([A-Za-z0-9_-]+)\s*$")
FN_DECL = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:async\s+)?(?:unsafe\s+)?fn\s+([A-Za-z_]\w*)")


class BuildError(Exception):
    """A fixture could not be built; the message says what to do."""


# ---- source hash --------------------------------------------------------------------------

def _source_files(program: str) -> Iterator[Path]:
    """What one program's build reads: the workspace files, common/ and its own crate."""
    for path in sorted(SOURCES.rglob("*")):
        rel = path.relative_to(SOURCES)
        if not path.is_file() or rel.parts[0] == "build" or "target" in rel.parts:
            continue
        if path.name == "Cargo.lock" or path.suffix == ".md":
            continue
        if len(rel.parts) > 1 and rel.parts[0] not in (program, "common", ".cargo"):
            continue  # another program's crate
        yield path


def cargo_path() -> str:
    """The cargo to use: $CARGO, rustup's (the image's toolchain), or whatever is on PATH."""
    env = os.environ.get("CARGO")
    if env:
        return env
    rustup = Path("/root/.cargo/bin/cargo")
    if rustup.exists():
        return str(rustup)
    found = shutil.which("cargo")
    if not found:
        raise BuildError("cargo not found: install the Rust toolchain (rustup stable) or set CARGO")
    return found


def _toolchain_id(cargo: str) -> str:
    rustc = Path(cargo).with_name("rustc")
    exe = str(rustc) if rustc.exists() else "rustc"
    try:
        out = subprocess.run([exe, "-vV"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise BuildError(f"cannot run {exe} -vV: {e}") from e
    return out.strip()


def _registry() -> Path:
    return Path("/usr/share/cargo/registry")


_toolchain_cache: dict[str, str] = {}


def source_hash(program: str, cargo: Optional[str] = None) -> str:
    """Hash of everything one program's build depends on: its sources, this builder, the
    toolchain and the installed Debian crates. Equal hash and present outputs mean nothing to
    rebuild; a change to one program does not make the other's variants stale."""
    cargo = cargo or cargo_path()
    if cargo not in _toolchain_cache:
        _toolchain_cache[cargo] = _toolchain_id(cargo)
    h = hashlib.sha256()
    for path in _source_files(program):
        h.update(str(path.relative_to(SOURCES)).encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    h.update(Path(__file__).read_bytes())
    h.update(_toolchain_cache[cargo].encode())
    reg = _registry()
    if reg.is_dir():
        h.update("\n".join(sorted(os.listdir(reg))).encode())
    return h.hexdigest()[:20]


def variant_hash(variant: str, cargo: Optional[str] = None) -> str:
    return source_hash(str(VARIANTS[variant]["program"]), cargo)


# ---- markers ------------------------------------------------------------------------------

def _strip_code(line: str) -> str:
    """The code of one line with string/char literals blanked and the comment dropped, so brace
    counting sees only real braces (format strings are full of them)."""
    out = []
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c == "/" and line.startswith("//", i):
            break
        if c == '"':
            j = i + 1
            while j < n and line[j] != '"':
                j += 2 if line[j] == "\\" else 1
            i = j + 1
            out.append('""')
            continue
        if c == "'":
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'", line[i:])
            if m:
                i += m.end()
                out.append("' '")
                continue
        out.append(c)
        i += 1
    return "".join(out)


def _fn_span(lines: list[str], decl: int) -> int:
    """1-based last line of the function declared on 1-based line `decl` (brace matching)."""
    depth = 0
    opened = False
    for idx in range(decl - 1, len(lines)):
        code = _strip_code(lines[idx])
        for ch in code:
            if ch == "{":
                depth += 1
                opened = True
            elif ch == "}":
                depth -= 1
                if opened and depth == 0:
                    return idx + 1
    raise BuildError(f"unbalanced braces after line {decl}")


def _module_path(crate: str, src_dir: Path, path: Path) -> str:
    parts = list(path.relative_to(src_dir).with_suffix("").parts)
    if parts and parts[-1] in ("main", "lib", "mod"):
        parts = parts[:-1]
    return "::".join([crate, *parts])


def scan_markers(program: str) -> dict[str, dict[str, object]]:
    """Every `// hud:<kind> <name>` marker in a program's sources, with its line, the text of
    that line and the enclosing function (path, declaration line, last line)."""
    src_dir = SOURCES / program / "src"
    crate = program.replace("-", "_")
    found: dict[str, dict[str, object]] = {}
    for path in sorted(src_dir.rglob("*.rs")):
        lines = path.read_text().splitlines()
        for idx, text in enumerate(lines):
            m = MARKER.search(text)
            if not m:
                continue
            kind, name = m.group(1), m.group(2)
            line = idx + 1
            if name in found:
                raise BuildError(f"marker {name!r} appears twice: {found[name]['file_rel']}:"
                                 f"{found[name]['line']} and {path}:{line}")
            decl = next((j + 1 for j in range(idx, -1, -1) if FN_DECL.match(lines[j])), None)
            if decl is None:
                raise BuildError(f"{path}:{line}: marker outside any function")
            fn_name = FN_DECL.match(lines[decl - 1]).group(1)
            end = _fn_span(lines, decl)
            if end < line:
                raise BuildError(f"{path}:{line}: marker after the end of fn {fn_name}")
            found[name] = {
                "kind": kind,
                "function": f"{_module_path(crate, src_dir, path)}::{fn_name}",
                "file": str(path),
                "file_rel": str(path.relative_to(REPO)),
                # Cargo compiles workspace members with paths relative to the workspace root,
                # which is also DW_AT_comp_dir: this is how the DWARF line table names the file.
                "dwarf_file": str(path.relative_to(SOURCES)),
                "line": line,
                "line_text": text.strip(),
                "fn_line": decl,
                "fn_end_line": end,
            }
    return found


# ---- ELF helpers --------------------------------------------------------------------------

def _run(cmd: list[str], **kw) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True, **kw).stdout
    except FileNotFoundError as e:
        raise BuildError(f"{cmd[0]} not found: run scripts/setup (it installs binutils)") from e
    except subprocess.CalledProcessError as e:
        raise BuildError(f"{' '.join(cmd)} failed ({e.returncode}):\n{e.stderr}") from e


def _sections(path: Path) -> list[str]:
    out = _run(["readelf", "-SW", str(path)])
    return re.findall(r"\]\s+(\.\S+)", out)


def _build_id(path: Path) -> Optional[str]:
    m = re.search(r"Build ID:\s*([0-9a-f]+)", _run(["readelf", "-n", str(path)]))
    return m.group(1) if m else None


def _strip_into(src: Path, out_dir: Path, program: str) -> tuple[Path, Path]:
    binary = out_dir / program
    debug = out_dir / f"{program}.debug"
    _run(["objcopy", "--only-keep-debug", str(src), str(debug)])
    os.chmod(debug, 0o644)
    _run(["strip", "--strip-all", "-o", str(binary), str(src)])
    # The link stores the debug file's base name and CRC; tools look for it beside the binary.
    _run(["objcopy", f"--add-gnu-debuglink={debug.name}", str(binary)], cwd=str(out_dir))
    return binary, debug


# ---- build --------------------------------------------------------------------------------

def _tokio_version() -> Optional[str]:
    lock = SOURCES / "Cargo.lock"
    if not lock.exists():
        return None
    m = re.search(r'name = "tokio"\nversion = "([^"]+)"', lock.read_text())
    return m.group(1) if m else None


def _cargo_build(cargo: str, profile: str, programs: list[str], jobs: Optional[int]) -> None:
    env = dict(os.environ)
    # Only the profile's flags: a caller's RUSTFLAGS would silently change the ground truth.
    for k in ("CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_RUSTFLAGS", "CARGO_TARGET_DIR"):
        env.pop(k, None)
    env["RUSTFLAGS"] = str(PROFILES[profile]["rustflags"])
    cmd = [cargo, "build", "--offline", "--profile", profile, "--target-dir", str(TARGET)]
    for p in programs:
        cmd += ["-p", p]
    if jobs:
        cmd += ["-j", str(jobs)]
    print(f"build-fixtures: cargo build --profile {profile} ({', '.join(programs)})",
          flush=True)
    proc = subprocess.run(cmd, cwd=str(SOURCES), env=env)
    if proc.returncode != 0:
        raise BuildError(
            f"cargo build --profile {profile} failed (exit {proc.returncode}). Offline builds use "
            "Debian's crates in /usr/share/cargo/registry: run scripts/setup to install "
            "librust-tokio-dev (see .ci/apt-packages)")


def _describe(binary: Path) -> dict[str, object]:
    return json.loads(_run([str(binary), "--describe"]))


def _manifest(variant: str, spec: dict[str, object], binary: Path, debug: Optional[Path],
              described: dict[str, object], markers: dict[str, dict[str, object]],
              digest: str, toolchain: str) -> dict[str, object]:
    program = str(spec["program"])
    profile = str(spec["profile"])
    args = list(spec["args"])  # type: ignore[arg-type]
    thread_name = TOKIO_DEFAULT_THREAD_NAME
    if "--thread-name" in args:
        thread_name = args[args.index("--thread-name") + 1]
    current = args[-2:] == ["--runtime", "current"]
    pool_comm = thread_name[:COMM_LEN]
    # On a current_thread runtime the worker is the main thread, named after the executable.
    worker_comm = program[:COMM_LEN] if current else pool_comm

    scenarios: dict[str, dict[str, object]] = {}
    names = [str(s["name"]) for s in described["scenarios"]]  # type: ignore[index]
    extra = sorted(set(markers) - set(names))
    if extra:
        raise BuildError(f"{program}: markers without a scenario: {extra}")
    for s in described["scenarios"]:  # type: ignore[union-attr]
        name = str(s["name"])
        m = markers.get(name)
        if m is None:
            raise BuildError(f"{program}: scenario {name!r} has no `// hud:<kind> {name}` "
                             "marker in the sources")
        if m["function"] != s["function"]:
            raise BuildError(f"{program}: marker {name!r} is in {m['function']} but the program "
                             f"says the scenario runs {s['function']}")
        entry = {"name": name, **m}
        for k in ("block_ms", "period_ms", "runs_on", "about", "path"):
            if k in s:
                entry[k] = s[k]
        scenarios[name] = entry

    stripped = bool(spec["strip"])
    sections = _sections(binary)
    manifest = {
        "schema": SCHEMA,
        "variant": variant,
        "program": program,
        "about": spec["about"],
        "binary": str(binary),
        "debug_file": str(debug) if debug else None,
        "debuglink": debug.name if debug else None,
        "build_id": _build_id(binary),
        "stripped": stripped,
        "has_symtab": ".symtab" in sections,
        "has_debug_info": ".debug_info" in sections,
        "profile": profile,
        "rustflags": PROFILES[profile]["rustflags"],
        "frame_pointers": PROFILES[profile]["frame_pointers"],
        "toolchain": toolchain.splitlines()[0] if toolchain else "",
        "tokio_version": _tokio_version(),
        "args": args,
        "runtime": {
            "flavor": "current_thread" if current else "multi_thread",
            # None: Tokio's default, one worker per CPU (the demo).
            "worker_threads": 1 if current else described.get("default_threads"),
            "thread_name": thread_name,
            "set_by_flag": bool(args),
        },
        "worker_names": [worker_comm],
        "blocking_pool_names": [pool_comm],
        "other_threads": described.get("other_threads", {}),
        "source_root": str(SOURCES),
        "dwarf_comp_dir": str(SOURCES),
        "scenarios": scenarios,
        "source_hash": digest,
        "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if described.get("default_mix"):
        manifest["default_mix"] = described["default_mix"]  # demo: `demo load`'s default --mix
    return manifest


def _write_json(path: Path, data: object) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def manifest_path(variant: str) -> Path:
    return BUILD / variant / "manifest.json"


def up_to_date(variant: str, digest: str) -> bool:
    path = manifest_path(variant)
    try:
        m = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    files = [m.get("binary"), m.get("debug_file")]
    return m.get("source_hash") == digest and all(f is None or Path(f).exists() for f in files)


def build(variants: list[str], *, force: bool = False, jobs: Optional[int] = None) -> list[str]:
    """Build `variants` (names from VARIANTS); return the ones actually rebuilt."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise BuildError(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    cargo = cargo_path()
    BUILD.mkdir(parents=True, exist_ok=True)
    # One builder at a time per checkout: cargo locks its target dir, but not our copies.
    with open(BUILD / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        toolchain = _toolchain_id(cargo)
        digests = {v: variant_hash(v, cargo) for v in variants}
        todo = [v for v in variants if force or not up_to_date(v, digests[v])]
        if not todo:
            return []
        if not _registry().is_dir() or not any(
                p.startswith("tokio-1.") for p in os.listdir(_registry())):
            raise BuildError("no tokio crate in /usr/share/cargo/registry: run scripts/setup "
                             "(apt-get install librust-tokio-dev)")
        by_profile: dict[str, list[str]] = {}
        for v in todo:
            spec = VARIANTS[v]
            progs = by_profile.setdefault(str(spec["profile"]), [])
            if spec["program"] not in progs:
                progs.append(str(spec["program"]))
        for profile, programs in sorted(by_profile.items()):
            _cargo_build(cargo, profile, sorted(programs), jobs)

        markers_cache: dict[str, dict[str, dict[str, object]]] = {}
        for v in todo:
            spec = VARIANTS[v]
            program = str(spec["program"])
            built = TARGET / str(spec["profile"]) / program
            out = BUILD / v
            if out.exists():
                shutil.rmtree(out)
            out.mkdir(parents=True)
            debug: Optional[Path] = None
            if spec["strip"]:
                binary, debug = _strip_into(built, out, program)
            else:
                binary = out / program
                shutil.copy2(built, binary)
            if program not in markers_cache:
                markers_cache[program] = scan_markers(program)
            described = _describe(binary)
            _write_json(manifest_path(v), _manifest(v, spec, binary, debug, described,
                                                    markers_cache[program], digests[v],
                                                    toolchain))
            print(f"build-fixtures: {v}: {manifest_path(v).relative_to(REPO)}", flush=True)
        _update_index()
        return todo


def _update_index() -> None:
    present = {v: str(manifest_path(v).relative_to(BUILD)) for v in VARIANTS
               if manifest_path(v).exists()}
    _write_json(INDEX, {"schema": INDEX_SCHEMA, "variants": present})


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(
        prog="build-fixtures",
        description="Build the Tokio fixtures offline (Debian crates) and their manifests. "
                    "Cached by source hash: a rerun with nothing changed does nothing.")
    ap.add_argument("variants", nargs="*", help="variants to build (default: all)")
    ap.add_argument("--force", action="store_true", help="rebuild even when up to date")
    ap.add_argument("--list", action="store_true", help="list variants and their state")
    ap.add_argument("--check", action="store_true",
                    help="exit 1 if any selected variant is missing or stale; build nothing")
    ap.add_argument("-j", "--jobs", type=int, help="cargo build jobs")
    a = ap.parse_args(argv)
    variants = a.variants or list(VARIANTS)
    t0 = time.monotonic()
    try:
        if a.list or a.check:
            stale = [v for v in variants if not up_to_date(v, variant_hash(v))]
            if a.list:
                for v in variants:
                    state = "stale or missing" if v in stale else "up to date"
                    print(f"{v:20} {state:17} {VARIANTS[v]['about']}")
            return 1 if a.check and stale else 0
        rebuilt = build(variants, force=a.force, jobs=a.jobs)
    except BuildError as e:
        print(f"build-fixtures: error: {e}", file=sys.stderr)
        return 1
    took = time.monotonic() - t0
    if rebuilt:
        print(f"build-fixtures: built {len(rebuilt)} variant(s) in {took:.1f} s")
    else:
        print(f"build-fixtures: {len(variants)} variant(s) up to date ({took:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
