"""The code, benchmarks and docs are written for the project's users: they cite measurements
and documents a user has, never a bug tracker's numbers or a developer's scratch files."""

from __future__ import annotations

import re

from tests.conftest import REPO

PRIVATE = re.compile(r"\bissue \d+|/tmp/[\w.-]+\.md", re.IGNORECASE)


def test_no_file_cites_a_tracker_item_or_a_scratch_file() -> None:
    files = [
        *(REPO / "src").rglob("*.py"),
        *(REPO / "bench").glob("*.py"),
        *(REPO / "docs").glob("*.md"),
        REPO / "README.md",
        REPO / "CHANGELOG.md",
    ]
    found = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in files
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if PRIVATE.search(line)
    ]
    assert not found, "\n".join(found)
