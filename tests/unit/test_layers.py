"""Layers import downward only (DESIGN.md §2); kernel/ imports only the standard library."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Lower rank = lower layer. A module may import modules of its own rank (same package)
# or lower ranks only.
RANKS = {
    "kernel": 0,
    "hud": 1, "hud.errors": 1, "hud.model": 1, "hud._build": 1,
    "hud.linux": 2,
    "hud.bpf": 3,
    "hud.symbolize": 4,
    "hud.unwind": 5,
    "hud.classify": 6, "hud.discovery": 6, "hud.resolve": 6, "hud.task_identity": 6,
    "hud.collect": 7,
    "hud.analysis": 8,
    "hud.export": 9,
    "hud.session": 10, "hud.doctor": 10,
    "hud.tui": 11,
    "hud.cli": 12, "hud.__main__": 12,
}
# Presentation never touches the kernel side, so it is testable without root.
PRESENTATION = ("hud.export", "hud.tui")
KERNEL_SIDE = ("kernel", "hud.linux", "hud.bpf", "hud.collect")
# hud/__init__.py is the public facade: it may re-export the session lazily.
FACADE = {"hud"}
THIRD_PARTY = {"elftools", "capstone", "click", "textual", "rich"}


def _layer(module: str) -> str:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        if name in RANKS:
            return name
    raise AssertionError(f"module {module} is in no layer: add it to RANKS")


def _modules():
    for pkg in ("kernel", "hud"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            is_pkg = parts[-1] == "__init__"
            if is_pkg:
                parts = parts[:-1]
            yield ".".join(parts), path, is_pkg


def _imports(module: str, path: Path, is_pkg: bool):
    tree = ast.parse(path.read_text(), str(path))
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - (node.level - 1)]
                name = ".".join(anchor + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            yield name, node.lineno
            for alias in node.names:
                # `from hud import model` imports hud.model
                full = f"{name}.{alias.name}"
                if full.split(".")[0] in ("hud", "kernel"):
                    try:
                        _layer(full)
                    except AssertionError:
                        continue
                    if full in RANKS:
                        yield full, node.lineno


def test_every_module_has_a_layer():
    for module, _, _ in _modules():
        _layer(module)


def test_layers_import_downward_only():
    bad = []
    for module, path, is_pkg in _modules():
        mine = _layer(module)
        if mine in FACADE and module == "hud":
            continue
        for name, line in _imports(module, path, is_pkg):
            top = name.split(".")[0]
            if top not in ("hud", "kernel"):
                continue
            theirs = _layer(name)
            if theirs == "hud" and name == "hud":
                theirs = "hud"
            if RANKS[theirs] > RANKS[mine]:
                bad.append(f"{path.relative_to(ROOT)}:{line}: {mine} imports {name}")
            if mine.startswith(PRESENTATION) and theirs.startswith(KERNEL_SIDE):
                bad.append(f"{path.relative_to(ROOT)}:{line}: presentation imports {name}")
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_kernel_imports_only_the_standard_library():
    stdlib = set(sys.stdlib_module_names)
    bad = []
    for module, path, is_pkg in _modules():
        if not module.startswith("kernel"):
            continue
        for name, line in _imports(module, path, is_pkg):
            top = name.split(".")[0]
            if top == "kernel" or top in stdlib or top == "__future__":
                continue
            bad.append(f"{path.relative_to(ROOT)}:{line}: imports {name}")
    assert not bad, "kernel/ must be stdlib only:\n" + "\n".join(bad)


def test_the_check_can_fail(tmp_path):
    """The import walker sees relative and absolute imports (guards against a vacuous pass)."""
    src = tmp_path / "m.py"
    src.write_text("from ..session import Profiler\nimport hud.tui.app\n")
    names = [n for n, _ in _imports("hud.linux.m", src, False)]
    assert "hud.session" in names and "hud.tui.app" in names
