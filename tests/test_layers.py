"""The layer rule: imports point one way down the layers of the package.

The rule lives in one place, the import-linter `layers` contract in pyproject.toml
(`lint-imports` checks it; docs/architecture.md explains each layer). These tests run it on
the package, and on a throwaway package built from the contract's own layer list to show
that it catches what it must: a back import, also one under `TYPE_CHECKING`, an import
between siblings of one layer, and a unit that no layer names.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "pyproject.toml"
LINT = "from importlinter.cli import lint_imports_command; lint_imports_command()"


def importlinter_config() -> dict[str, Any]:
    settings: dict[str, Any] = tomllib.loads(CONFIG.read_text(encoding="utf-8"))["tool"]["importlinter"]
    return settings


def layers_contract() -> dict[str, Any]:
    contracts: list[dict[str, Any]] = [c for c in importlinter_config()["contracts"] if c["type"] == "layers"]
    (contract,) = contracts
    return contract


def units() -> list[str]:
    """Every unit the contract names, highest layer first."""
    return [unit.strip() for layer in layers_contract()["layers"] for unit in layer.split("|")]


def lint(cwd: Path, pythonpath: str | None = None) -> tuple[int, str]:
    """Run `lint-imports` with the project's config; its exit status and report."""
    env = {**os.environ, "COLUMNS": "200"}  # module names are never wrapped
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    done = subprocess.run(
        [sys.executable, "-c", LINT, str(CONFIG), "--no-cache", "--no-logo"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, done.stdout + done.stderr


def throwaway_package(root: Path, files: dict[str, str]) -> Path:
    """A package named `tongkuan` under `root` with every unit of the contract (empty) plus
    `files` (paths relative to the package); it shadows the real one on `PYTHONPATH`."""
    package = root / "tongkuan"
    for unit in units():
        (package / unit).mkdir(parents=True)
        (package / unit / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    for name, text in files.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    return root


def broken(report: str) -> set[tuple[str, str]]:
    """(importing unit, imported unit) for each pair the report says may not import."""
    return set(re.findall(r"^tongkuan\.(\w+) is not allowed to import tongkuan\.(\w+):$", report, re.MULTILINE))


def lint_throwaway(tmp_path: Path, files: dict[str, str]) -> tuple[int, str]:
    root = throwaway_package(tmp_path, files)
    return lint(root, pythonpath=str(root))


TYPE_CHECKING_IMPORT = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    {}\n"


def test_the_package_keeps_its_layers() -> None:
    status, report = lint(REPO)
    assert status == 0, report
    assert f"{layers_contract()['name']} KEPT" in report


def test_the_contract_counts_type_checking_imports_and_gives_every_unit_a_layer() -> None:
    assert importlinter_config().get("exclude_type_checking_imports", False) in (False, "False", "false")
    contract = layers_contract()
    assert contract["containers"] == ["tongkuan"] and contract["exhaustive"] is True
    assert not contract.get("exhaustive_ignores") and not contract.get("ignore_imports")
    assert units().index("engine") < units().index("models") < units().index("config")


def test_imports_down_the_layers_are_kept(tmp_path: Path) -> None:
    status, report = lint_throwaway(
        tmp_path,
        {
            "cli/main.py": "import tongkuan.api.app\n",
            "api/app.py": "import tongkuan.engine.core\n",
            "engine/core.py": "import tongkuan.models.switch\n",
            "models/switch.py": "import tongkuan.config.settings\n",
            "config/settings.py": "import tongkuan.search.searcher\n",
            "search/searcher.py": TYPE_CHECKING_IMPORT.format("from tongkuan.index.base import VectorIndex"),
            "index/base.py": "from tongkuan.domain.values import Value\n",
            "domain/values.py": "import tongkuan.client\nValue = int\n",
        },
    )
    assert status == 0, report


def test_a_back_import_is_caught_even_under_type_checking(tmp_path: Path) -> None:
    status, report = lint_throwaway(
        tmp_path,
        {
            "domain/values.py": "import tongkuan.config\n",
            "index/sync.py": TYPE_CHECKING_IMPORT.format("from tongkuan.engine.core import Engine"),
            "engine/core.py": "Engine = object\n",
            "config/settings.py": "from tongkuan.models.records import StoredModel\n",
            "models/records.py": "StoredModel = object\n",
        },
    )
    assert status == 1
    assert broken(report) == {("domain", "config"), ("index", "engine"), ("config", "models")}


def test_an_import_between_siblings_of_one_layer_is_caught(tmp_path: Path) -> None:
    status, report = lint_throwaway(
        tmp_path,
        {
            "catalog/store.py": "from tongkuan.vision.categories import Category\n",
            "vision/categories.py": "Category = int\n",
            "search/searcher.py": TYPE_CHECKING_IMPORT.format("from tongkuan.ingest.readers import Reader"),
            "ingest/readers.py": "Reader = object\n",
            "errors/__init__.py": "import tongkuan.domain\n",
        },
    )
    assert status == 1
    assert broken(report) == {("catalog", "vision"), ("search", "ingest"), ("errors", "domain")}


def test_a_unit_that_no_layer_names_is_caught(tmp_path: Path) -> None:
    status, report = lint_throwaway(tmp_path, {"extra.py": ""})
    assert status == 1
    assert re.search(r"not listed as layers:\s+- tongkuan\.extra$", report, re.MULTILINE), report
