"""Switching the server catalog to another model (`ModelVersions`).

A new model's vectors are staged beside the ones searches use (`staged_vectors`) while every
replica keeps serving; the switch swaps them in, keeps the old model's vectors staged (to
switch back) and records the new model in one transaction, so every replica sees all of one
model or all of the other.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from tongkuan.catalog import common
from tongkuan.catalog.postgres.database import PostgresDatabase
from tongkuan.domain.products import StagedImage

_MISSING = (
    "FROM images i WHERE NOT EXISTS (SELECT 1 FROM staged_vectors s WHERE s.model = %s AND s.vector_id = i.vector_id)"
)


class PostgresModelVersions(PostgresDatabase):
    """`ModelVersions` on the server catalog."""

    def unstaged(self, model: str, limit: int = 1000) -> list[StagedImage]:
        """Pictures with no staged vector of `model` yet, oldest first (at most `limit`)."""
        rows = self._rows(
            f"SELECT i.vector_id, i.location, i.content_hash {_MISSING} ORDER BY i.vector_id LIMIT %s", (model, limit)
        )
        return [StagedImage(int(v), str(location), str(digest)) for v, location, digest in rows]

    def stage(self, model: str, dim: int, vectors: Sequence[tuple[int, NDArray[np.float32]]]) -> None:
        """Keep vectors of `model` (`dim` components) for the given pictures until a switch."""
        packed = []
        for vector_id, vector in vectors:
            array = np.asarray(vector, dtype=np.float32)
            common.check_dim(array, dim)
            packed.append((model, int(vector_id), common.vector_bytes(array)))
        with self._write() as db, db.cursor() as cur:
            cur.executemany(
                "INSERT INTO staged_vectors VALUES (%s, %s, %s) "
                "ON CONFLICT (model, vector_id) DO UPDATE SET vector = excluded.vector",
                packed,
            )

    def switch_model(self, model: str, dim: int) -> bool:
        """`ModelVersions.switch_model`: one transaction; the replaced vectors stay staged."""
        with self._write() as db:
            if db.execute(f"SELECT 1 {_MISSING} LIMIT 1", (model,)).fetchone() is not None:
                return False
            (record,) = db.execute("SELECT value FROM meta WHERE key = 'model'").fetchone() or ("{}",)
            old = json.loads(record)
            db.execute("DELETE FROM staged_vectors WHERE model = %s", (old["model"],))
            db.execute("INSERT INTO staged_vectors SELECT %s, vector_id, vector FROM images", (old["model"],))
            db.execute(
                "UPDATE images SET vector = s.vector FROM staged_vectors s "
                "WHERE s.model = %s AND s.vector_id = images.vector_id",
                (model,),
            )
            db.execute("DELETE FROM staged_vectors WHERE model = %s", (model,))
            db.execute(
                "DELETE FROM staged_vectors s WHERE NOT EXISTS (SELECT 1 FROM images i WHERE i.vector_id = s.vector_id)"
            )
            for key, value in (("model", {"model": model, "dim": dim}), ("previous_model", old)):
                db.execute(
                    "INSERT INTO meta VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (key, json.dumps(value)),
                )
        self.model, self.dim = model, dim
        return True

    def previous_model(self) -> tuple[str, int] | None:
        """The model the catalog used before its last switch, and its dimension."""
        rows = self._rows("SELECT value FROM meta WHERE key = 'previous_model'")
        return common.model_of(rows[0][0]) if rows else None

    def current_model(self) -> tuple[str, int]:
        """The model whose vectors searches use now, as stored (another replica may have switched)."""
        return common.model_of(self._rows("SELECT value FROM meta WHERE key = 'model'")[0][0])
