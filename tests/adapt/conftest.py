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
