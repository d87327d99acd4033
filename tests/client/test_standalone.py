"""The client stands alone: it imports only httpx, pydantic and the standard library, and
nothing of the server imports it."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import tongkuan.client

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "tongkuan"
ALLOWED = {"httpx", "pydantic"}


def imported_roots(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def test_the_client_imports_only_httpx_pydantic_the_standard_library_and_itself() -> None:
    for path in (PACKAGE / "client").rglob("*.py"):
        for name in imported_roots(path):
            root = name.split(".")[0]
            ours = name == "tongkuan.client" or name.startswith("tongkuan.client.")
            assert ours or root in ALLOWED or root in sys.stdlib_module_names or root == "__future__", (path, name)


def test_nothing_of_the_server_imports_the_client() -> None:
    for path in PACKAGE.rglob("*.py"):
        if (PACKAGE / "client") in path.parents:
            continue
        assert not any(name.startswith("tongkuan.client") for name in imported_roots(path)), path


def test_importing_the_client_loads_no_server_module() -> None:
    code = "import json, sys, tongkuan.client; print(json.dumps([m for m in sys.modules if m.startswith(PREFIXES)]))"
    prefixes = "PREFIXES = ('tongkuan', 'fastapi', 'starlette', 'numpy', 'torch', 'PIL')\n"
    loaded = subprocess.run([sys.executable, "-c", prefixes + code], capture_output=True, text=True, check=True)
    modules = json.loads(loaded.stdout)
    assert all(m == "tongkuan" or m.startswith("tongkuan.client") for m in modules), modules


def test_all_names_the_public_surface() -> None:
    public = {name for name in vars(tongkuan.client) if not name.startswith("_")}
    modules = {"calls", "clients", "envelope", "errors", "models", "retry", "signing", "values"}
    assert set(tongkuan.client.__all__) == public - modules
