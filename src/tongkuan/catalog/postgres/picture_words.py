"""The text read on the server catalog's pictures (`PictureWords`)."""

from __future__ import annotations

from collections.abc import Sequence

from tongkuan.catalog import common, keywords
from tongkuan.catalog.postgres.database import PostgresDatabase
from tongkuan.catalog.postgres.writer import reindex
from tongkuan.domain.products import StagedImage


class PostgresPictureWords(PostgresDatabase):
    """`PictureWords` on the server catalog."""

    def unread_pictures(self, after: int = 0, limit: int = 1000) -> list[StagedImage]:
        rows = self._rows(
            "SELECT vector_id, location, content_hash FROM images WHERE words IS NULL AND vector_id > %s "
            "ORDER BY vector_id LIMIT %s",
            (after, limit),
        )
        return [StagedImage(int(v), str(location), str(digest)) for v, location, digest in rows]

    def set_picture_words(self, words: Sequence[tuple[int, str]]) -> None:
        with self._write() as db, db.cursor() as cur:
            cur.executemany("UPDATE images SET words = %s WHERE vector_id = %s", [(w, v) for v, w in words])
            rows = cur.execute(
                f"SELECT {common.ITEM_FIELDS} FROM items WHERE item_id IN "
                "(SELECT item_id FROM images WHERE vector_id = ANY(%s))",
                ([v for v, _ in words],),
            ).fetchall()
            reindex(cur, [common.product_from_row(row) for row in rows], reset=True)

    def searched_texts(self, item_ids: Sequence[str]) -> dict[str, str]:
        if not item_ids:
            return {}
        rows = self._rows(
            "SELECT p.item_id, p.title, string_agg(i.words, ' ' ORDER BY i.position) FROM items p "
            "LEFT JOIN images i ON i.item_id = p.item_id AND i.words <> '' "
            "WHERE p.item_id = ANY(%s) GROUP BY p.item_id, p.title",
            (list(item_ids),),
        )
        return {str(i): keywords.searched_text(str(title), [read]) for i, title, read in rows}

    def picture_words(self, item_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        rows = self._rows(
            "SELECT item_id, name, words FROM images WHERE words IS NOT NULL AND item_id = ANY(%s)", (list(item_ids),)
        )
        return common.words_by_picture(rows)

    def reading_counts(self) -> tuple[int, int]:
        ((read, worded),) = self._rows("SELECT COUNT(words), COUNT(NULLIF(words, '')) FROM images", ())
        return int(read), int(worded)

    def showed_words(self, vector_ids: Sequence[int]) -> dict[int, bool]:
        rows = self._rows(
            "SELECT vector_id, words <> '' FROM images WHERE words IS NOT NULL AND vector_id = ANY(%s)",
            (list(vector_ids),),
        )
        return {int(vector_id): bool(worded) for vector_id, worded in rows}
