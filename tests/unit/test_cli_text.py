"""The headless findings table: every line fits the width, long names keep their end
(the function), holder lists are cut between holders, never inside a name."""
from __future__ import annotations

from hud.cli.text import findings_table
from hud.model import Finding

HOLDERS = ("CPU held by tokio-runtime-w (pid 4214) 15%, tokio-runtime-w (pid 4200) 10%, "
           "demo-load (pid 4220) 9%, ksoftirqd/0 (pid 14) 5%")


def _finding(**kw) -> Finding:
    base = dict(kind="sched_delay", function="demo::handlers::hash_body",
                file="/work/src/handlers.rs", line=161, count=29, total_ms=241.0,
                max_ms=19.3, p99_ms=19.3, workers=(4199, 4200, 4201, 4202, 4203),
                detail=HOLDERS)
    base.update(kw)
    return Finding(**base)


def test_every_line_fits_and_the_holder_list_ends_between_holders():
    long_fn = "my_service::" + "::".join(["very_long_module_name"] * 6) + "::handler"
    for width in (60, 80, 100):
        text = findings_table([_finding(), _finding(function=long_fn)], width=width)
        lines = text.splitlines()
        assert all(len(line) <= width for line in lines), (width, text)
        held = [line.strip() for line in lines if line.strip().startswith("CPU held by")]
        assert len(held) == 2
        for line in held:
            if line == HOLDERS:
                continue
            assert line.endswith("%, …"), line     # cut right after a holder's share
            assert HOLDERS.startswith(line[:-2])
        # The function's end (its own name) survives a cut.
        assert any(line.strip().endswith("::handler") for line in lines), text
    wide = findings_table([_finding()], width=200)
    assert HOLDERS in wide


def test_no_finding_says_so():
    assert findings_table([]).startswith("no blocking, cpu or sched_delay finding")
