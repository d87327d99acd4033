"""The layers of the package and the direction of imports between them.

This is the one place the layer order is written down (docs/architecture.md explains it).
A unit (a top-level module or package of `tongkuan`) may import units in lower layers only:
never one above it, and never a sibling in its own layer, not even under `TYPE_CHECKING`.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "tongkuan"

# Highest first.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("cli",),  # the command line; `serve` starts the HTTP app
    ("api",),  # the HTTP edge: parameters, auth, DAJI's wire names
    ("engine",),  # the composition root: builds the parts from settings, offers the operations
    ("config",),  # settings, read at the edges and by the engine only
    ("search", "ingest", "adapt", "migrate", "backup", "sample"),  # services over the parts
    ("vision", "index", "catalog", "images"),  # the parts, independent of each other
    ("domain", "errors"),  # shared values and the exception tree: import nothing of ours
    # The HTTP client: no part of the server, but the lowest layer is the one whose units may
    # import nothing of ours, which is what keeps it usable installed alone (httpx, pydantic
    # and the standard library only; tests/client/test_standalone.py checks the rest).
    ("client",),
)


def imports(package: Path) -> set[tuple[str, str, str]]:
    """(importing unit, imported unit, file) for every import of another unit of the package."""
    found = set()
    for path in package.rglob("*.py"):
        unit = path.relative_to(package).parts[0].removesuffix(".py")
        if unit == "__init__":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] == package.name and len(parts) > 1 and parts[1] != unit:
                    found.add((unit, parts[1], str(path.relative_to(package))))
    return found


def violations(package: Path, layers: tuple[tuple[str, ...], ...] = LAYERS) -> list[str]:
    """Each import that points up or sideways, or involves a unit no layer names."""
    rank = {unit: level for level, units in enumerate(layers) for unit in units}
    wrong = []
    for unit, imported, path in sorted(imports(package)):
        if unit not in rank or imported not in rank:
            wrong.append(f"{path}: {unit} -> {imported} (a unit with no layer: add it to LAYERS)")
        elif rank[imported] <= rank[unit]:
            wrong.append(f"{path}: {unit} -> {imported} imports a layer that is not below it")
    return wrong


def test_every_import_points_down_the_layers() -> None:
    assert violations(PACKAGE) == []


def test_every_unit_has_a_layer() -> None:
    units = {p.name.removesuffix(".py") for p in PACKAGE.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    named = {unit for layer in LAYERS for unit in layer}
    assert units - {"__init__"} == named


def test_a_back_import_is_caught_even_under_type_checking(tmp_path: Path) -> None:
    package = tmp_path / "tongkuan"
    for unit in ("catalog", "vision", "index", "domain"):
        (package / unit).mkdir(parents=True)
        (package / unit / "__init__.py").write_text("")
    (package / "catalog" / "store.py").write_text("from tongkuan.vision.categories import Category\n")
    (package / "index" / "sync.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from tongkuan.catalog.store import Catalog\n"
    )
    (package / "domain" / "values.py").write_text("import tongkuan.index.sync\n")
    found = violations(package)
    assert found == [
        "catalog/store.py: catalog -> vision imports a layer that is not below it",
        "domain/values.py: domain -> index imports a layer that is not below it",
        "index/sync.py: index -> catalog imports a layer that is not below it",
    ]
