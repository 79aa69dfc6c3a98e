"""The packages import only downward: read every module's imports with ast and check them against
the table below (docs/ARCHITECTURE.md, "Layers"). Lazy imports inside functions count too."""

from __future__ import annotations

import ast
from pathlib import Path

import goldenlayers

# Leaf modules every package may import; they import only each other. text holds the subject
# search that data (validation) and models (token positions) share without importing each other;
# files (a package of leaf modules: atomic writes, outputs, locks, digests, JSON files) is what
# every package that writes uses.
LEAVES = {"errors", "files", "options", "progress", "text"}

# Which other goldenlayers packages each one may import (besides itself and LEAVES).
# engine (edit-score-restore cells, grids, result files) sits between editing/evaluate and
# locate/study.
DOMAIN = {"models", "data", "editing", "evaluate"}
ALLOWED = {
    "models": set(),
    "data": set(),
    "editing": {"models", "data"},
    "evaluate": {"models", "data"},
    "engine": DOMAIN,
    "locate": DOMAIN | {"engine"},
    "study": DOMAIN | {"engine", "locate"},
    "report": DOMAIN | {"engine", "locate", "study"},
    "app": None,  # None: anything
    "cli": None,
}

ROOT = Path(goldenlayers.__file__).parent


def unit_of(path: Path) -> str:
    """The package (or top-level module) a file belongs to: goldenlayers/<unit>/... or <unit>.py."""
    return path.relative_to(ROOT).parts[0].removesuffix(".py")


def imported_units(tree: ast.AST, module: str) -> set[str]:
    """The goldenlayers packages/modules named by the imports anywhere in a module."""
    units = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = module.split(".")[: -node.level]
                names = [".".join(base + ([node.module] if node.module else []))]
            else:
                names = [node.module or ""]
            if names == ["goldenlayers"]:  # from goldenlayers import x
                names = [f"goldenlayers.{alias.name}" for alias in node.names]
        else:
            continue
        units.update(name.split(".")[1] for name in names
                     if name.startswith("goldenlayers.") and name.count(".") >= 1)
    return units


def modules():
    for path in sorted(ROOT.rglob("*.py")):
        module = ".".join(("goldenlayers",) + path.relative_to(ROOT).with_suffix("").parts)
        yield path, module


def violations() -> list[str]:
    found = []
    for path, module in modules():
        unit = unit_of(path)
        if unit == "__init__" or unit in LEAVES:
            allowed = LEAVES if unit in LEAVES else None
        else:
            assert unit in ALLOWED, f"{path}: {unit!r} is not in the table of tests/test_layers.py"
            allowed = ALLOWED[unit]
        if allowed is None:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for other in sorted(imported_units(tree, module) - {unit} - LEAVES - allowed):
            found.append(f"{module} imports goldenlayers.{other}")
    return found


def test_packages_import_only_downward():
    assert violations() == []


def test_the_check_sees_lazy_and_relative_imports():
    source = ("import goldenlayers.evaluate\n"
              "def f():\n    from goldenlayers.study import x\n"
              "from ..app import render\n"
              "from goldenlayers import report\n")
    assert imported_units(ast.parse(source), "goldenlayers.editing.batches") == {
        "evaluate", "study", "app", "report"}


def test_every_package_is_in_the_table():
    units = {unit_of(path) for path, _ in modules()} - {"__init__"} - LEAVES
    assert units <= ALLOWED.keys(), units - ALLOWED.keys()
