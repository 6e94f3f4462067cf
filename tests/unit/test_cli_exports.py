"""`--export [FORMAT:]FILE`, repeatable: each file's format from its prefix, `--format` (one
export only) or its name; the same file twice, a prefix without a file, and `--format`
with several exports are usage errors before anything attaches."""
from __future__ import annotations

import pytest

from hud.cli.profile import export_targets
from hud.errors import UsageError


def test_one_export_takes_format_or_its_name():
    assert export_targets(["t.json"], None) == [("t.json", "chrome")]
    assert export_targets(["out.json"], "report") == [("out.json", "report")]
    assert export_targets(["run.report.json"], None) == [("run.report.json", "report")]
    assert export_targets(["s.folded"], None) == [("s.folded", "folded")]
    assert export_targets([], None) == []


def test_several_exports_each_with_its_own_format(tmp_path):
    got = export_targets([str(tmp_path / "t.json"), f"report:{tmp_path / 'r.json'}",
                          f"folded:{tmp_path / 'stacks.txt'}", str(tmp_path / "x.folded")],
                         None)
    assert [k for _, k in got] == ["chrome", "report", "folded", "folded"]
    assert got[1][0] == str(tmp_path / "r.json")


def test_a_colon_that_is_no_format_stays_in_the_path():
    assert export_targets(["run:1.json"], None) == [("run:1.json", "chrome")]
    assert export_targets(["report:a:b.json"], None) == [("a:b.json", "report")]


@pytest.mark.parametrize("specs,fmt,says", [
    ([], "report", "--format needs --export"),
    (["a.json", "b.json"], "report", "--format applies to one --export"),
    (["report:"], None, "no file after the format"),
    (["t.json", "chrome:t.json"], None, "given twice"),
    (["t.json", "./t.json"], None, "given twice"),
])
def test_ambiguous_exports_are_usage_errors(specs, fmt, says):
    with pytest.raises(UsageError) as e:
        export_targets(specs, fmt)
    assert says in e.value.message and e.value.exit_code == 2
