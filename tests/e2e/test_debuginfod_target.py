"""A stripped Tokio service whose debug file lives only on a debuginfod server (the
"strip, ship, publish the debug info" workflow): `hud --debuginfod URL` fetches it by
build-id while attaching and the findings get file:line; `hud addr2line` does the same."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from support.debuginfod import serve
from support.fixtures import load_manifest
from unit.symbolize.conftest import _private_parent

from hud.symbolize.elf import ElfFile

ROOT = Path(__file__).resolve().parents[2]


def _env(cache: Path) -> dict:
    env = dict(os.environ, HUD_DEBUGINFOD_CACHE=str(cache), HUD_NO_CACHE="1")
    env.pop("DEBUGINFOD_URLS", None)
    return env


def test_a_profile_fetches_the_debug_file_by_build_id(tmp_path):
    m = load_manifest("blockers-stripped")
    exe = tmp_path / "blockers"        # away from its debug file and its debuglink
    shutil.copy(m.binary, exe)
    with ElfFile.open(str(exe)) as elf:
        bid = elf.build_id
    cache = _private_parent()
    try:
        proc = subprocess.Popen([str(exe), "--scenario", "sleep", "--work-dir",
                                 str(tmp_path), "--exit-on-stdin-eof"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            proc.stdout.readline()     # the fixture's first line: it is up
            out = tmp_path / "r.json"
            files = {f"/buildid/{bid}/debuginfo": Path(m.debug_file).read_bytes()}
            with serve(files) as (url, asked):
                run = subprocess.run([sys.executable, "-m", "hud", "--pid", str(proc.pid),
                                      "--headless", "--duration", "3", "--debuginfod", url,
                                      "--export", str(out), "--format", "report"],
                                     cwd=ROOT, capture_output=True, text=True, timeout=120,
                                     env=_env(cache / "d"))
        finally:
            proc.kill()
            proc.wait()
        assert run.returncode == 0, run.stderr
        assert f"/buildid/{bid}/debuginfo" in asked
        assert f"fetching debug info {bid[:12]}" in run.stderr, run.stderr
        sleep = m.scenarios["sleep"]
        found = [f for f in json.loads(out.read_text())["findings"]
                 if f["function"] == sleep.function]
        assert found, run.stdout
        # file:line only the debug file knows
        assert found[0]["file"].endswith("scenarios.rs") and found[0]["line"], found[0]

        # The fetched file is kept: the CLI answers from the cache, no server needed.
        addr = next(int(p[0], 16) for p in (ln.split() for ln in subprocess.run(
            ["nm", str(m.debug_file)], capture_output=True, text=True,
            check=True).stdout.splitlines()) if len(p) == 3 and p[1] in "tT"
            and "sleep_blocker" in p[2])
        text = subprocess.run([sys.executable, "-m", "hud", "addr2line", "-e", str(exe),
                               "--debuginfod", "http://127.0.0.1:9", hex(addr)],
                              cwd=ROOT, capture_output=True, text=True, timeout=60,
                              env=_env(cache / "d"))
        assert text.returncode == 0, text.stderr
        assert "scenarios.rs:" in text.stdout, text.stdout
    finally:
        shutil.rmtree(cache, ignore_errors=True)
