"""A target whose /proc/PID/maps hud cannot read is refused at start, with the cause
named as `hud doctor` names it, instead of a run that ends with nothing and no reason:
no stack can be unwound or named without the memory map."""
from __future__ import annotations

import json
import os
import subprocess

# Imported before the fork: check_readable imports them on failure, and nobody may not be
# able to read them.
import hud.doctor.explain
import hud.doctor.host  # noqa: F401
from hud.errors import PermissionDenied
from hud.session import Profiler, check_readable

NOBODY = 65534


def _as_nobody(fn) -> dict:
    """Run `fn()` in a forked child with uid/gid nobody; what it returned or raised."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        out: dict = {}
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            out["value"] = repr(fn())
        except PermissionDenied as e:
            out.update(error=type(e).__name__, message=e.message, hint=e.hint,
                       code=e.exit_code)
        except BaseException as e:      # anything else is the test's failure, reported
            out.update(error=type(e).__name__, message=str(e))
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    return json.loads(data)


def test_an_unreadable_target_is_refused_with_the_cause():
    target = subprocess.Popen(["sleep", "60"])       # root's: nobody may not read it
    try:
        check_readable(target.pid)                   # root may
        got = _as_nobody(lambda: check_readable(target.pid))
        assert got.get("error") == "PermissionDenied", got
        assert got["code"] == 3
        assert got["message"].startswith(f"cannot read /proc/{target.pid}/maps: EACCES"), got
        assert "not root" in got["message"] and got["hint"], got
        # The Profiler refuses it at start, before any kernel object is made.
        got = _as_nobody(lambda: Profiler(pid=target.pid).start())
        assert got.get("error") == "PermissionDenied", got
        assert f"/proc/{target.pid}/maps" in got["message"]
        # Its own process (the child's) is readable to nobody: no refusal.
        assert _as_nobody(lambda: check_readable(os.getpid())) == {"value": "None"}
    finally:
        target.kill()
        target.wait()
