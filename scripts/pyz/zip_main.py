"""hud.pyz's `__main__`: check the Python version, make the run isolated, start the bootstrap.

Deliberately tiny and old-fashioned (no f-strings, no annotations): it must be able to say
"too old" on any python3, and it imports nothing before the re-exec decision (`os` and
`sys` are loaded by the interpreter before any user code), so a hostile PYTHONPATH or user
site directory cannot slip a module in ahead of the zip.
"""
import os
import sys

if sys.version_info < (3, 9):  # noqa: UP036 - the point: say so on an older python3
    sys.stderr.write("hud: needs Python >= 3.9; this python3 is " + sys.version.split()[0]
                     + "\n")
    sys.exit(5)  # unsupported on this host

if not sys.flags.isolated and sys.executable:
    # `python3 hud.pyz` (no -I): become `python3 -I hud.pyz` in place, keeping -X/-W options.
    _archive = getattr(globals().get("__loader__"), "archive", "")
    if _archive:
        _argv = [sys.executable, "-I"]
        for _key, _value in sys._xoptions.items():
            _argv += ["-X", _key if _value is True else _key + "=" + str(_value)]
        for _opt in sys.warnoptions:
            _argv += ["-W", _opt]
        try:
            os.execv(sys.executable, [*_argv, _archive, *sys.argv[1:]])
        except OSError:
            pass  # cannot re-exec this interpreter: go on; the zip still comes first

import _hud_pyz  # only after the isolation decision above

_hud_pyz.main()
