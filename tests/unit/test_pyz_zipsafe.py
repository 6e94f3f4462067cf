"""hud and kernel stay runnable from inside hud.pyz: no file paths derived from `__file__`.

In the zip, `Path(__file__).parent / "x"` names no file on disk, and textual's `CSS_PATH`
is read with open(): both work from a checkout and break only in the pyz. Package data is
read with `importlib.resources.files("hud.tui").joinpath(...).read_text()` (or the loader's
get_data) and handed to textual as `CSS = ...`. A line that must use `__file__` for
something other than opening files says so with `# pyz-ok: <why>`.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _offences(path: Path, root: Path = ROOT) -> list[str]:
    source = path.read_text()
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source, str(path))):
        what = None
        if isinstance(node, ast.Name) and node.id == "__file__":
            what = "__file__"
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "CSS_PATH" for t in targets):
                what = "CSS_PATH (textual opens it as a file)"
        if what and "pyz-ok" not in lines[node.lineno - 1]:
            found.append((node.lineno, f"{path.relative_to(root)}:{node.lineno}: {what}"))
    return [text for _, text in sorted(found)]


def test_no_paths_from_file_in_hud_or_kernel():
    bad = [o for pkg in ("hud", "kernel") for p in sorted((ROOT / pkg).rglob("*.py"))
           for o in _offences(p)]
    assert not bad, "breaks inside hud.pyz (see this test's docstring):\n" + "\n".join(bad)


def test_the_check_can_fail(tmp_path):
    bad = tmp_path / "m.py"
    bad.write_text("from pathlib import Path\n"
                   "CSS = Path(__file__).with_name('a.tcss').read_text()\n"
                   "class App:\n    CSS_PATH = 'app.tcss'\n"
                   "HERE = __file__  # pyz-ok: only shown in an error message\n")
    found = _offences(bad, tmp_path)
    assert found == ["m.py:2: __file__", "m.py:4: CSS_PATH (textual opens it as a file)"]
