"""The headless findings table: every line fits the width, long names keep their end
(the function), holder lists are cut between holders, never inside a name."""
from __future__ import annotations

from hud.cli.text import findings_table
from hud.model import Finding

HOLDERS = ("CPU held by tokio-runtime-w (tid 4214) 15%, tokio-runtime-w (tid 4200) 10%, "
           "demo-load (tid 4220) 9%, ksoftirqd/0 (tid 14) 5%")


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


def test_a_codegen_unit_is_no_source_location():
    # A binary without DWARF: the symbol table's STT_FILE (the codegen unit) is all
    # binutils and `hud addr2line` give as the file; the table names the binary instead.
    from hud.cli.text import without_lines
    from hud.model import Frame
    cgu = "blockers.6963577c908abf9e-cgu.12"
    frame = Frame(address=0x1000, function="blockers::scenarios::sleep_blocker", file=cgu,
                  line=None, module="/srv/bin/blockers")
    bare = _finding(kind="blocking", function=frame.function, file=cgu, line=None,
                    stack=(frame,), detail="")
    text = findings_table([bare, _finding()])
    assert "at blockers (no line info)" in text and cgu not in text
    assert "at src/handlers.rs:161" in text
    assert without_lines([bare, _finding()]) == ["blockers"]
    assert without_lines([_finding()]) == []


def test_source_known():
    from hud.classify import source_known
    assert not source_known("tokio.6e4bffd0bfee3601-cgu.11", None)
    assert not source_known(None, None) and not source_known("", 3)
    assert source_known("/src/main.rs", 3) and source_known("start.S", None)
    assert source_known("tokio.6e4bffd0bfee3601-cgu.11", 7)    # a line makes it a place


def test_wakers_get_a_line_each_and_where_they_woke_the_worker_its_own():
    at = "blockers::scenarios::start_mutex_holder::inner_helper (scenarios.rs:305)"
    wakers = [{"waker": "fx-mutex-holder (tid 17223)", "at": at, "ms": 180.0},
              {"waker": "tokio-runtime-w (tid 17220)", "ms": 60.0},
              {"waker": "other (tid 5)", "ms": 1.0}]
    f = _finding(kind="blocking", detail="woken by …", extra=(("wakers", wakers),))
    for width in (60, 80):
        lines = findings_table([f], width=width).splitlines()
        assert all(len(line) <= width for line in lines), lines
        assert lines[-4].strip() == "woken by fx-mutex-holder (tid 17223) 75%"
        assert lines[-3].strip().startswith("at ") and lines[-3].endswith("(scenarios.rs:305)")
        assert lines[-2].strip() == "woken by tokio-runtime-w (tid 17220) 25%"
        assert lines[-1].strip() == "… and 1 more wakers (see --export)"
