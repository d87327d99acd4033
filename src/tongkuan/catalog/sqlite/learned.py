"""What was learned from the embedded catalog (`LearnedMetadata`), kept in its `meta` table
under `learned:<key>`."""

from __future__ import annotations

from tongkuan.catalog.sqlite.database import SqliteDatabase


class SqliteLearned(SqliteDatabase):
    """`LearnedMetadata` on the embedded catalog."""

    def learned(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (f"learned:{key}",)).fetchone()
        return None if row is None else str(row[0])

    def set_learned(self, key: str, value: str | None) -> None:
        with self._write() as db:
            if value is None:
                db.execute("DELETE FROM meta WHERE key = ?", (f"learned:{key}",))
            else:
                db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"learned:{key}", value))

    def learned_keys(self) -> list[str]:
        rows = self._db.execute("SELECT key FROM meta WHERE key LIKE 'learned:%' ORDER BY key").fetchall()
        return [str(row[0]).removeprefix("learned:") for row in rows]
