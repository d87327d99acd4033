"""Writing products and pictures to the server catalog (`ProductWriter`).

Each write is one transaction under the writers' advisory lock: the product's record with its
keyword vectors, its pictures with their float32 vectors, a change-log entry for every vector
added, removed or moved to another category, and the product and picture counters (COUNT(*)
scans the table: ~1 s at 10M pictures) commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from tongkuan.catalog import common, keywords
from tongkuan.catalog.postgres.database import PostgresDatabase, tsvector
from tongkuan.domain.changes import ChangeKind
from tongkuan.domain.products import NewImage, Product, StoredImage
from tongkuan.errors import ProductNotFound

_WORD_COLUMNS = ["title_words", "shop_words"]
_UPSERT_ITEM = (
    f"INSERT INTO items ({common.ITEM_FIELDS}, title_words, shop_words) "
    f"VALUES ({', '.join(['%s'] * 17)}, %s::tsvector, %s::tsvector) ON CONFLICT (item_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in common.ITEM_COLUMNS[1:] + _WORD_COLUMNS)
)


class PostgresProductWriter(PostgresDatabase):
    """`ProductWriter` on the server catalog."""

    def upsert(self, product: Product, images: Sequence[NewImage] | None) -> None:
        """Insert or replace `product`; with `images`, replace its images (None keeps them)."""
        self.upsert_many([(product, images)])

    def upsert_many(self, items: Sequence[tuple[Product, Sequence[NewImage] | None]]) -> None:
        """`upsert` for many products in one transaction (all or none)."""
        common.check_vectors([image for _, images in items for image in images or ()], self.dim)
        items = _last_write_wins(items)
        rows = [_product_row(p, [i.words for i in images or ()]) for p, images in items]
        with self._write() as db, db.cursor() as cur:
            self._require_model(db)
            ids = [p.item_id for p, _ in items]
            known = cur.execute("SELECT COUNT(*) FROM items WHERE item_id = ANY(%s)", (ids,)).fetchone()
            _bump(cur, "products", len(ids) - int(known[0]))  # type: ignore[index]
            cur.executemany(_UPSERT_ITEM, rows)
            reindex(cur, [p for p, images in items if images is None])  # the words read on their pictures stay
            replaced = [(p.item_id, images) for p, images in items if images is not None]
            if not replaced:
                return
            _delete_images(cur, [item_id for item_id, _ in replaced])
            pictures = [
                (
                    item_id, position, image.name, image.content_hash, image.location,
                    common.vector_bytes(image.vector), image.words,
                )
                for item_id, images in replaced
                for position, image in enumerate(common.named(images))
            ]  # fmt: skip
            _insert_images(cur, pictures)

    def add_image(self, item_id: str, image: NewImage) -> StoredImage:
        """Add one picture to a product, replacing its picture of the same name."""
        common.check_vectors([image], self.dim)
        with self._write() as db, db.cursor() as cur:
            self._require_model(db)
            if cur.execute("SELECT 1 FROM items WHERE item_id = %s FOR UPDATE", (item_id,)).fetchone() is None:
                raise ProductNotFound(item_id)
            pictures = {
                str(name): (int(v), int(pos))
                for name, v, pos in cur.execute(
                    "SELECT name, vector_id, position FROM images WHERE item_id = %s", (item_id,)
                ).fetchall()
            }
            if image.name in pictures:
                old, position = pictures[image.name]
                cur.execute("DELETE FROM images WHERE vector_id = %s", (old,))
                _log(cur, [old], ChangeKind.REMOVED)
            else:
                position = max((pos for _, pos in pictures.values()), default=-1) + 1
            name = image.name or common.free_name(set(pictures), position)
            (vector_id,) = _insert_images(
                cur,
                [
                    (
                        item_id, position, name, image.content_hash, image.location,
                        common.vector_bytes(image.vector), image.words,
                    )
                ],
            )  # fmt: skip
            _reindex_ids(cur, [item_id])
        return StoredImage(vector_id, item_id, image.content_hash, image.location, name)

    def delete_image(self, item_id: str, name: str) -> None:
        """Remove one picture of a product. The last one cannot go: delete the product instead."""
        with self._write() as db, db.cursor() as cur:
            if cur.execute("SELECT 1 FROM items WHERE item_id = %s FOR UPDATE", (item_id,)).fetchone() is None:
                raise ProductNotFound(item_id)
            pictures = dict(cur.execute("SELECT name, vector_id FROM images WHERE item_id = %s", (item_id,)).fetchall())
            vector_id = common.picture_to_delete(item_id, name, pictures)
            cur.execute("DELETE FROM images WHERE vector_id = %s", (vector_id,))
            _log(cur, [int(vector_id)], ChangeKind.REMOVED)
            _reindex_ids(cur, [item_id])

    def update(self, item_id: str, change: Callable[[Product], Product]) -> Product:
        """Apply `change` to a stored product's fields in one transaction; pictures stay."""
        with self._write() as db, db.cursor() as cur:
            select = f"SELECT {common.ITEM_FIELDS} FROM items WHERE item_id = %s FOR UPDATE"
            row = cur.execute(select, (item_id,)).fetchone()
            if row is None:
                raise ProductNotFound(item_id)
            before = common.product_from_row(row)
            product = common.changed(item_id, before, change)
            cur.execute(_UPSERT_ITEM, _product_row(product))
            reindex(cur, [product])
            if product.category != before.category:
                ids = [int(r[0]) for r in cur.execute("SELECT vector_id FROM images WHERE item_id = %s", (item_id,))]
                _log(cur, ids, ChangeKind.RETAGGED)
        return product

    def delete(self, item_id: str) -> None:
        """Remove a product and its vectors; raise `ProductNotFound` if it is not there."""
        with self._write() as db, db.cursor() as cur:
            _delete_images(cur, [item_id])
            if cur.execute("DELETE FROM items WHERE item_id = %s", (item_id,)).rowcount == 0:
                raise ProductNotFound(item_id)
            _bump(cur, "products", -1)


def reindex(cur: psycopg.Cursor[Any], products: Sequence[Product], reset: bool = False) -> None:
    """Give stored products' title keyword vectors the words read on their pictures; those
    with none keep theirs, or with `reset` (their pictures changed) get their title's alone."""
    if not products:
        return
    read = dict(
        cur.execute(
            "SELECT item_id, string_agg(words, ' ' ORDER BY position) FROM images "
            "WHERE item_id = ANY(%s) AND words <> '' GROUP BY item_id",
            ([p.item_id for p in products],),
        ).fetchall()
    )
    cur.executemany(
        "UPDATE items SET title_words = %s::tsvector WHERE item_id = %s",
        [
            (tsvector(keywords.searched_text(p.title, [read[p.item_id]]) if p.item_id in read else p.title), p.item_id)
            for p in products
            if reset or p.item_id in read
        ],
    )


def _reindex_ids(cur: psycopg.Cursor[Any], item_ids: Sequence[str]) -> None:
    rows = cur.execute(f"SELECT {common.ITEM_FIELDS} FROM items WHERE item_id = ANY(%s)", (list(item_ids),)).fetchall()
    reindex(cur, [common.product_from_row(row) for row in rows], reset=True)


def _insert_images(cur: psycopg.Cursor[Any], pictures: Sequence[tuple[object, ...]]) -> list[int]:
    ids: list[int] = []
    for chunk in common.chunks(pictures, 1000):
        values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s)"] * len(chunk))
        cur.execute(
            "INSERT INTO images (item_id, position, name, content_hash, location, vector, words) "
            f"VALUES {values} RETURNING vector_id",
            [v for picture in chunk for v in picture],
        )
        ids += [int(r[0]) for r in cur.fetchall()]
    _log(cur, ids, ChangeKind.ADDED)
    return ids


def _delete_images(cur: psycopg.Cursor[Any], item_ids: list[str]) -> None:
    cur.execute("DELETE FROM images WHERE item_id = ANY(%s) RETURNING vector_id", (item_ids,))
    _log(cur, [int(r[0]) for r in cur.fetchall()], ChangeKind.REMOVED)


def _log(cur: psycopg.Cursor[Any], vector_ids: list[int], kind: ChangeKind) -> None:
    """Append to the change log (and keep the picture count), inside the writer's transaction."""
    if vector_ids:
        cur.execute("INSERT INTO changes (vector_id, kind) SELECT unnest(%s::bigint[]), %s", (vector_ids, int(kind)))
        _bump(cur, "pictures", {ChangeKind.ADDED: 1, ChangeKind.REMOVED: -1}.get(kind, 0) * len(vector_ids))


def _bump(cur: psycopg.Cursor[Any], counter: str, delta: int) -> None:
    """Move a counter; writers hold the write lock, so counters never race."""
    if delta:
        cur.execute("UPDATE meta SET value = (value::bigint + %s)::text WHERE key = %s", (delta, counter))


def _last_write_wins(
    items: Sequence[tuple[Product, Sequence[NewImage] | None]],
) -> list[tuple[Product, Sequence[NewImage] | None]]:
    """One entry per product, as if the batch were written in order (the embedded store's
    semantics): the last record, with the last pictures given (None keeps earlier ones)."""
    merged: dict[str, tuple[Product, Sequence[NewImage] | None]] = {}
    for product, images in items:
        earlier = merged.get(product.item_id)
        kept = images if images is not None or earlier is None else earlier[1]
        merged[product.item_id] = (product, kept)
    return list(merged.values())


def _product_row(p: Product, picture_words: Sequence[str | None] = ()) -> tuple[object, ...]:
    """The shared columns (prices as text, which PostgreSQL reads as NUMERIC exactly), a real
    boolean flag, and the keyword vectors (the title's with the words read on the pictures)."""
    row = common.product_row(p)
    title = tsvector(keywords.searched_text(p.title, picture_words))
    return (*row[:15], p.category_predicted, row[16], title, tsvector(p.shop_title))
