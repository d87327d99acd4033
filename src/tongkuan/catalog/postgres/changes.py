"""What a vector index reads from the server catalog (`IndexSource`): the change log, how far
each shared index has applied it, and the stored vectors to (re)build from.

The `changes` table gets an entry for every vector added, removed or retagged, in the same
transaction as the write (see `writer`); writers commit one at a time, so a reader that has
seen change N has seen every change before it (with concurrent writers, sequences would commit
out of order and an index replaying the log could skip one for good).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from tongkuan.catalog import common
from tongkuan.catalog.postgres.database import PostgresDatabase
from tongkuan.domain.changes import NO_CATEGORY, Change, ChangeKind


class PostgresIndexSource(PostgresDatabase):
    """`IndexSource` on the server catalog, less the picture count (`PostgresProductReader.count`)."""

    def last_change(self) -> int:
        return int(self._rows("SELECT COALESCE(MAX(seq), 0) FROM changes")[0][0])

    def changes_since(self, seq: int, limit: int | None = None) -> list[Change]:
        return [
            Change(int(s), int(v), ChangeKind(k))
            for s, v, k in self._rows(
                "SELECT seq, vector_id, kind FROM changes WHERE seq > %s ORDER BY seq LIMIT %s", (seq, limit)
            )
        ]

    def index_position(self, name: str) -> int:
        rows = self._rows("SELECT value FROM meta WHERE key = %s", (f"index:{name}",))
        return int(rows[0][0]) if rows else 0

    def set_index_position(self, name: str, seq: int) -> None:
        self._set_meta(f"index:{name}", str(seq))

    def vectors(self, vector_ids: Sequence[int] | None = None) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        if vector_ids is None:
            rows = self._rows("SELECT vector_id, vector FROM images ORDER BY vector_id")
        else:
            rows = self._rows("SELECT vector_id, vector FROM images WHERE vector_id = ANY(%s)", (list(vector_ids),))
        return common.id_vectors(rows, self.dim)

    def image_ids(self) -> list[int]:
        return [int(r[0]) for r in self._rows("SELECT vector_id FROM images ORDER BY vector_id")]

    def vector_categories(self, vector_ids: Sequence[int]) -> dict[int, int]:
        rows = self._rows(
            "SELECT i.vector_id, p.category_id FROM images i JOIN items p ON p.item_id = i.item_id "
            "WHERE i.vector_id = ANY(%s)",
            (list(vector_ids),),
        )
        return {int(v): NO_CATEGORY if c is None else int(c) for v, c in rows}
