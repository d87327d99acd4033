"""Switching the embedded catalog to another model (`ModelVersions`).

A new model's vectors are staged beside the ones searches use (`staged_vectors`), picture by
picture, while the catalog keeps serving; the switch then swaps them in, keeps the old
model's vectors staged (to switch back), and records the new model, all in one transaction:
a reader sees every vector of one model or every vector of the other, never a mix, and a
crash at any point leaves one of the two.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from tongkuan.catalog import common
from tongkuan.catalog.sqlite.database import SqliteDatabase
from tongkuan.domain.products import StagedImage

_MISSING = (
    "FROM images i WHERE NOT EXISTS (SELECT 1 FROM staged_vectors s WHERE s.model = ? AND s.vector_id = i.vector_id)"
)


class SqliteModelVersions(SqliteDatabase):
    """`ModelVersions` on the embedded catalog."""

    def unstaged(self, model: str, limit: int = 1000) -> list[StagedImage]:
        """Pictures with no staged vector of `model` yet, oldest first (at most `limit`)."""
        rows = self._db.execute(
            f"SELECT i.vector_id, i.location, i.content_hash {_MISSING} ORDER BY i.vector_id LIMIT ?", (model, limit)
        ).fetchall()
        return [StagedImage(int(v), str(location), str(digest)) for v, location, digest in rows]

    def stage(self, model: str, dim: int, vectors: Sequence[tuple[int, NDArray[np.float32]]]) -> None:
        """Keep vectors of `model` (`dim` components) for the given pictures until a switch."""
        packed = []
        for vector_id, vector in vectors:
            array = np.asarray(vector, dtype=np.float32)
            common.check_dim(array, dim)
            packed.append((model, int(vector_id), common.vector_bytes(array)))
        with self._write() as db:
            db.executemany("INSERT OR REPLACE INTO staged_vectors VALUES (?, ?, ?)", packed)

    def switch_model(self, model: str, dim: int) -> bool:
        """`ModelVersions.switch_model`: one transaction; the replaced vectors stay staged."""
        with self._write() as db:
            if db.execute(f"SELECT 1 {_MISSING} LIMIT 1", (model,)).fetchone() is not None:
                return False
            old = json.loads(db.execute("SELECT value FROM meta WHERE key = 'model'").fetchone()[0])
            db.execute("DELETE FROM staged_vectors WHERE model = ?", (old["model"],))
            db.execute("INSERT INTO staged_vectors SELECT ?, vector_id, vector FROM images", (old["model"],))
            db.execute(
                "UPDATE images SET vector = (SELECT s.vector FROM staged_vectors s "
                "WHERE s.model = ? AND s.vector_id = images.vector_id)",
                (model,),
            )
            db.execute("DELETE FROM staged_vectors WHERE model = ?", (model,))
            _drop_orphans(db)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('model', ?)", (json.dumps({"model": model, "dim": dim}),))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('previous_model', ?)", (json.dumps(old),))
        self.model, self.dim = model, dim
        return True

    def previous_model(self) -> tuple[str, int] | None:
        """The model the catalog used before its last switch, and its dimension."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'previous_model'").fetchone()
        return None if row is None else common.model_of(row[0])

    def current_model(self) -> tuple[str, int]:
        """The model whose vectors searches use now, as stored (another process may have switched)."""
        return common.model_of(self._db.execute("SELECT value FROM meta WHERE key = 'model'").fetchone()[0])


def _drop_orphans(db: sqlite3.Connection) -> None:
    """Staged vectors of pictures that were deleted since."""
    db.execute("DELETE FROM staged_vectors WHERE vector_id NOT IN (SELECT vector_id FROM images)")
