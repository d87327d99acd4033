"""The text read on the embedded catalog's pictures (`PictureWords`)."""

from __future__ import annotations

from collections.abc import Sequence

from tongkuan.catalog import common, keywords
from tongkuan.catalog.sqlite.database import SqliteDatabase
from tongkuan.catalog.sqlite.writer import reindex
from tongkuan.domain.products import StagedImage


class SqlitePictureWords(SqliteDatabase):
    """`PictureWords` on the embedded catalog."""

    def unread_pictures(self, after: int = 0, limit: int = 1000) -> list[StagedImage]:
        rows = self._db.execute(
            "SELECT vector_id, location, content_hash FROM images WHERE words IS NULL AND vector_id > ? "
            "ORDER BY vector_id LIMIT ?",
            (after, limit),
        ).fetchall()
        return [StagedImage(int(v), str(location), str(digest)) for v, location, digest in rows]

    def set_picture_words(self, words: Sequence[tuple[int, str]]) -> None:
        with self._write() as db:
            db.executemany("UPDATE images SET words = ? WHERE vector_id = ?", [(w, v) for v, w in words])
            marks = ",".join("?" * len(words))
            items = {
                r[0]
                for r in db.execute(f"SELECT item_id FROM images WHERE vector_id IN ({marks})", [v for v, _ in words])
            }
            for item_id in sorted(items):
                reindex(db, item_id)

    def searched_texts(self, item_ids: Sequence[str]) -> dict[str, str]:
        if not item_ids:
            return {}
        marks = ",".join("?" * len(item_ids))
        titles = dict(self._db.execute(f"SELECT item_id, title FROM items WHERE item_id IN ({marks})", list(item_ids)))
        read: dict[str, list[str]] = {}
        for item_id, words in self._db.execute(
            f"SELECT item_id, words FROM images WHERE item_id IN ({marks}) AND words <> '' ORDER BY position",
            list(item_ids),
        ):
            read.setdefault(str(item_id), []).append(str(words))
        return {str(i): keywords.searched_text(str(t), read.get(str(i), [])) for i, t in titles.items()}

    def picture_words(self, item_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        rows = self._rows_in(
            "SELECT item_id, name, words FROM images WHERE words IS NOT NULL AND item_id IN ({values})", item_ids
        )
        return common.words_by_picture(rows)

    def reading_counts(self) -> tuple[int, int]:
        read, worded = self._db.execute("SELECT COUNT(words), COUNT(NULLIF(words, '')) FROM images").fetchone()
        return int(read), int(worded)

    def showed_words(self, vector_ids: Sequence[int]) -> dict[int, bool]:
        rows = self._rows_in(
            "SELECT vector_id, words <> '' FROM images WHERE words IS NOT NULL AND vector_id IN ({values})", vector_ids
        )
        return {int(vector_id): bool(worded) for vector_id, worded in rows}
