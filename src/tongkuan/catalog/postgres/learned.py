"""What was learned from the server catalog (`LearnedMetadata`), kept in its `meta` table under
`learned:<key>`."""

from __future__ import annotations

from tongkuan.catalog.postgres.database import PostgresDatabase, values_checked


class PostgresLearned(PostgresDatabase):
    """`LearnedMetadata` on the server catalog."""

    def learned(self, key: str) -> str | None:
        rows = self._rows("SELECT value FROM meta WHERE key = %s", (f"learned:{key}",))
        return str(rows[0][0]) if rows else None

    def set_learned(self, key: str, value: str | None) -> None:
        if value is not None:
            self._set_meta(f"learned:{key}", value)
            return
        with values_checked(), self._pool.connection() as db:
            db.execute("DELETE FROM meta WHERE key = %s", (f"learned:{key}",))

    def learned_keys(self) -> list[str]:
        rows = self._rows("SELECT key FROM meta WHERE key LIKE %s ORDER BY key", ("learned:%",))
        return [str(row[0]).removeprefix("learned:") for row in rows]
