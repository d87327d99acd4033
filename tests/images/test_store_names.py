"""Stored picture names are matched whole: a name with a trailing newline is not a stored
picture, even where such a file exists."""

from __future__ import annotations

from pathlib import Path

import pytest

from tongkuan.errors import ImageNotFound
from tongkuan.images.store import ImageStore

NAME = "0123456789abcdef0123456789abcdef.jpg"


def test_a_name_with_a_trailing_newline_is_not_a_stored_picture(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    (tmp_path / NAME).write_bytes(b"x")
    (tmp_path / f"{NAME}\n").write_bytes(b"x")
    assert store.path(NAME) == tmp_path / NAME
    with pytest.raises(ImageNotFound):
        store.path(f"{NAME}\n")


def test_clean_up_leaves_files_whose_names_only_end_like_a_picture(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    odd = tmp_path / f"{NAME}\n"
    odd.write_bytes(b"x")
    assert store.remove_unused(set(), older_than=-1) == (0, 0)
    assert odd.exists()
