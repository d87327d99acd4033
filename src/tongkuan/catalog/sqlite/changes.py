"""What a vector index reads from the embedded catalog (`IndexSource`): the change log, how far
each shared index has applied it, and the stored vectors to (re)build from.

The `changes` table gets an entry for every vector added, removed or retagged, in the same
transaction as the write (see `writer`); its `added` column holds a `ChangeKind`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from tongkuan.catalog import common
from tongkuan.catalog.sqlite.database import SqliteDatabase
from tongkuan.domain.changes import NO_CATEGORY, Change, ChangeKind


class SqliteIndexSource(SqliteDatabase):
    """`IndexSource` on the embedded catalog, less the picture count (`SqliteProductReader.count`)."""

    def last_change(self) -> int:
        row = self._db.execute("SELECT MAX(seq) FROM changes").fetchone()
        return int(row[0] or 0)

    def changes_since(self, seq: int, limit: int | None = None) -> list[Change]:
        """Changes after `seq` in order (at most `limit`)."""
        return [
            Change(int(s), int(v), ChangeKind(a))
            for s, v, a in self._db.execute(
                "SELECT seq, vector_id, added FROM changes WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit or -1)
            )
        ]

    def index_position(self, name: str) -> int:
        """The last change a shared vector index named `name` has applied (0: none)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (f"index:{name}",)).fetchone()
        return 0 if row is None else int(row[0])

    def set_index_position(self, name: str, seq: int) -> None:
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"index:{name}", str(seq)))

    def vectors(self, vector_ids: Sequence[int] | None = None) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """Ids and vectors of the given images that still exist (all images if None)."""
        if vector_ids is None:
            rows = self._db.execute("SELECT vector_id, vector FROM images ORDER BY vector_id").fetchall()
        else:
            rows = self._rows_in("SELECT vector_id, vector FROM images WHERE vector_id IN ({values})", vector_ids)
        return common.id_vectors(rows, self.dim)

    def image_ids(self) -> list[int]:
        """Every image (vector) id, ascending."""
        return [int(r[0]) for r in self._db.execute("SELECT vector_id FROM images ORDER BY vector_id")]

    def vector_categories(self, vector_ids: Sequence[int]) -> dict[int, int]:
        """The category of each given picture's product (`NO_CATEGORY` for none)."""
        rows = self._rows_in(
            "SELECT i.vector_id, p.category_id FROM images i JOIN items p ON p.item_id = i.item_id "
            "WHERE i.vector_id IN ({values})",
            vector_ids,
        )
        return {int(v): NO_CATEGORY if category is None else int(category) for v, category in rows}
