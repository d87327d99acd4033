"""Fixtures of the model life-cycle tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def data_dir(tmp_path: Path, model_cache: Path) -> Path:
    """A data directory of its own (imported models go into its models folder), with the
    session's exported shipped models linked in."""
    data = tmp_path / "data"
    (data / "models").mkdir(parents=True)
    for shipped in ("efficientnet-lite0", "efficientnet-lite2"):
        (model_cache / "models" / shipped).mkdir(parents=True, exist_ok=True)
        (data / "models" / shipped).symlink_to(model_cache / "models" / shipped, target_is_directory=True)
    return data
