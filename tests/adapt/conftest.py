"""Real grocery photos for the adaptation tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.utils.data import read_rows


@pytest.fixture(scope="session")
def grocery_rows(data_root: Path) -> list[dict[str, str]]:
    """The grocery label rows, each with `file` (an absolute path) added."""
    rows = read_rows(data_root / "grocery_store" / "labels.csv")
    return [r | {"file": str(data_root / "grocery_store" / r["path"])} for r in rows]


@pytest.fixture(scope="session")
def clothing_rows(data_root: Path) -> list[dict[str, str]]:
    """The clothing photos whose label maps onto an API category, each with `file` added."""
    rows = read_rows(data_root / "clothing_dataset" / "labels.csv")
    return [r | {"file": str(data_root / "clothing_dataset" / r["path"])} for r in rows if r["service_category"]]
