"""Writing products and pictures to the embedded catalog (`ProductWriter`).

Each write is one transaction: the product's record, its keyword documents (`item_words`,
`item_chars`), its pictures with their float32 vectors, and a change-log entry for every
vector added, removed or moved to another category commit together or not at all.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import replace

from tongkuan.catalog import common, keywords
from tongkuan.catalog.sqlite.database import SqliteDatabase, index_words, words_row
from tongkuan.domain.changes import ChangeKind
from tongkuan.domain.products import NewImage, Product, StoredImage
from tongkuan.errors import ProductNotFound

_UPSERT_ITEM = (
    f"INSERT INTO items ({common.ITEM_FIELDS}) VALUES ({', '.join('?' * 17)}) ON CONFLICT(item_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in common.ITEM_COLUMNS[1:])
)


class SqliteProductWriter(SqliteDatabase):
    """`ProductWriter` on the embedded catalog."""

    def upsert(self, product: Product, images: Sequence[NewImage] | None) -> None:
        """Insert or replace `product`; with `images`, replace its images (None keeps them).

        Record, vectors and change-log entries commit together or not at all.
        """
        self.upsert_many([(product, images)])

    def upsert_many(self, items: Sequence[tuple[Product, Sequence[NewImage] | None]]) -> None:
        """`upsert` for many products in one transaction (all or none)."""
        common.check_vectors([image for _, images in items for image in images or ()], self.dim)
        documents = [
            words_row(keywords.searched_text(p.title, [i.words for i in images or ()]), p.shop_title)
            for p, images in items
        ]
        with self._write() as db:
            self._require_model(db)
            for (product, images), words in zip(items, documents, strict=True):
                db.execute(_UPSERT_ITEM, common.product_row(product))
                if images is None:
                    reindex(db, product.item_id)  # the words read on its pictures stay searchable
                    continue
                _index_words(db, product.item_id, words)
                _delete_images(db, product.item_id)
                for position, image in enumerate(common.named(images)):
                    _insert_image(db, product.item_id, position, image)

    def add_image(self, item_id: str, image: NewImage) -> StoredImage:
        """Add one picture to a product, replacing its picture of the same name."""
        common.check_vectors([image], self.dim)
        with self._write() as db:
            self._require_model(db)
            if db.execute("SELECT 1 FROM items WHERE item_id = ?", (item_id,)).fetchone() is None:
                raise ProductNotFound(item_id)
            old = db.execute(
                "SELECT vector_id, position FROM images WHERE item_id = ? AND name = ?", (item_id, image.name)
            ).fetchone()
            if old is not None:
                db.execute("DELETE FROM images WHERE vector_id = ?", (old[0],))
                db.execute("INSERT INTO changes (vector_id, added) VALUES (?, 0)", (old[0],))
                position = int(old[1])
            else:
                last = db.execute("SELECT MAX(position) FROM images WHERE item_id = ?", (item_id,)).fetchone()[0]
                position = 0 if last is None else int(last) + 1
            taken = {r[0] for r in db.execute("SELECT name FROM images WHERE item_id = ?", (item_id,))}
            name = image.name or common.free_name(taken, position)
            vector_id = _insert_image(db, item_id, position, replace(image, name=name))
            if image.words or old is not None:
                reindex(db, item_id)
        return StoredImage(vector_id, item_id, image.content_hash, image.location, name)

    def delete_image(self, item_id: str, name: str) -> None:
        """Remove one picture of a product. The last one cannot go: delete the product instead."""
        with self._write() as db:
            pictures = dict(db.execute("SELECT name, vector_id FROM images WHERE item_id = ?", (item_id,)).fetchall())
            if not pictures and db.execute("SELECT 1 FROM items WHERE item_id = ?", (item_id,)).fetchone() is None:
                raise ProductNotFound(item_id)
            vector_id = common.picture_to_delete(item_id, name, pictures)
            db.execute("DELETE FROM images WHERE vector_id = ?", (vector_id,))
            db.execute("INSERT INTO changes (vector_id, added) VALUES (?, 0)", (vector_id,))
            reindex(db, item_id)

    def update(self, item_id: str, change: Callable[[Product], Product]) -> Product:
        """Apply `change` to a stored product's fields in one transaction; pictures stay."""
        with self._write() as db:
            row = db.execute(f"SELECT {common.ITEM_FIELDS} FROM items WHERE item_id = ?", (item_id,)).fetchone()
            if row is None:
                raise ProductNotFound(item_id)
            before = common.product_from_row(row)
            product = common.changed(item_id, before, change)
            db.execute(_UPSERT_ITEM, common.product_row(product))
            reindex(db, item_id)
            if product.category != before.category:
                db.execute(
                    "INSERT INTO changes (vector_id, added) SELECT vector_id, ? FROM images WHERE item_id = ?",
                    (int(ChangeKind.RETAGGED), item_id),
                )
        return product

    def delete(self, item_id: str) -> None:
        """Remove a product and its vectors; raise `ProductNotFound` if it is not there."""
        with self._write() as db:
            row = db.execute("SELECT rowid FROM items WHERE item_id = ?", (item_id,)).fetchone()
            if row is None:
                raise ProductNotFound(item_id)
            _delete_images(db, item_id)
            db.execute("DELETE FROM item_words WHERE rowid = ?", (row[0],))
            db.execute("DELETE FROM item_chars WHERE rowid = ?", (row[0],))
            db.execute("DELETE FROM items WHERE item_id = ?", (item_id,))


def reindex(db: sqlite3.Connection, item_id: str) -> None:
    """Derive a stored product's keyword documents again: its title and shop, and the words
    read on its pictures."""
    title, shop = db.execute("SELECT title, shop_title FROM items WHERE item_id = ?", (item_id,)).fetchone()
    read = [str(r[0]) for r in db.execute("SELECT words FROM images WHERE item_id = ?", (item_id,)) if r[0]]
    _index_words(db, item_id, words_row(keywords.searched_text(title, read), shop))


def _insert_image(db: sqlite3.Connection, item_id: str, position: int, image: NewImage) -> int:
    cur = db.execute(
        "INSERT INTO images (item_id, position, content_hash, location, vector, name, words) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            item_id, position, image.content_hash, image.location, common.vector_bytes(image.vector), image.name,
            image.words,
        ),
    )  # fmt: skip
    db.execute("INSERT INTO changes (vector_id, added) VALUES (?, 1)", (cur.lastrowid,))
    return int(cur.lastrowid or 0)


def _delete_images(db: sqlite3.Connection, item_id: str) -> None:
    ids = [r[0] for r in db.execute("SELECT vector_id FROM images WHERE item_id = ?", (item_id,))]
    db.execute("DELETE FROM images WHERE item_id = ?", (item_id,))
    db.executemany("INSERT INTO changes (vector_id, added) VALUES (?, 0)", [(i,) for i in ids])


def _index_words(db: sqlite3.Connection, item_id: str, words: tuple[str, str, str, str]) -> None:
    """Replace a product's keyword documents (their rows share the item's rowid)."""
    index_words(db, db.execute("SELECT rowid FROM items WHERE item_id = ?", (item_id,)).fetchone()[0], words)
