"""The embedded catalog: products, their image vectors and a change log, in one SQLite file.

SQLite is the source of truth. Each image row carries its float32 vector, and every add or
delete of a vector appends to `changes` in the same transaction as the record, so a vector
index is a cache that any process can bring up to date (`changes_since`) or rebuild. WAL
mode lets readers run beside the one writer; `snapshot()` pins a consistent read view.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from tongkuan.catalog.product import Product, StoredImage
from tongkuan.errors import DimensionMismatch, ProductNotFound
from tongkuan.vision.categories import Category

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    item_id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    reserve_price TEXT NOT NULL,
    final_price TEXT,
    shop_title TEXT NOT NULL,
    seller_id TEXT NOT NULL,
    provcity TEXT NOT NULL,
    user_type INTEGER NOT NULL,
    volume INTEGER NOT NULL,
    category_name TEXT NOT NULL,
    level_one_category_name TEXT NOT NULL,
    coupon_amount INTEGER,
    coupon_start_fee TEXT,
    url TEXT NOT NULL,
    category_id INTEGER,
    category_predicted INTEGER NOT NULL DEFAULT 0,
    extra TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS images (
    vector_id INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id TEXT NOT NULL REFERENCES items(item_id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    location TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS images_item ON images(item_id);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    vector_id INTEGER NOT NULL,
    added INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_ITEM_COLUMNS = (
    "item_id, title, reserve_price, final_price, shop_title, seller_id, provcity, user_type,"
    " volume, category_name, level_one_category_name, coupon_amount, coupon_start_fee, url,"
    " category_id, category_predicted, extra"
)

_UPSERT_ITEM = (
    f"INSERT INTO items ({_ITEM_COLUMNS}) VALUES ({', '.join('?' * 17)}) ON CONFLICT(item_id) DO UPDATE SET "
    + ", ".join(f"{c.strip()} = excluded.{c.strip()}" for c in _ITEM_COLUMNS.split(",")[1:])
)


@dataclass(frozen=True)
class NewImage:
    """An image to store with its product: content hash, where it is served from, its vector."""

    content_hash: str
    location: str
    vector: NDArray[np.float32]


@dataclass(frozen=True)
class Change:
    """One entry of the change log: a vector added (with its data) or removed."""

    seq: int
    vector_id: int
    added: bool


class SqliteCatalog:
    """Products and vectors in `path`. Safe to share between threads and processes."""

    def __init__(self, path: Path, model: str, dim: int) -> None:
        self.path = path
        self.model = model
        self.dim = dim
        self._local = threading.local()
        self._write_lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db.executescript(SCHEMA)  # idempotent; executescript manages its own transaction
        with self._write() as db:
            self._check_model(db)

    @staticmethod
    def stored_model(path: Path) -> str | None:
        """The model name a catalog file was built with, or None for a new catalog."""
        if not path.exists():
            return None
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'model'").fetchone()
        except sqlite3.OperationalError:
            return None
        finally:
            db.close()
        return None if row is None else str(json.loads(row[0])["model"])

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        return db

    @property
    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = self._connect()
            self._local.db = db
        return db

    def _check_model(self, db: sqlite3.Connection) -> None:
        row = db.execute("SELECT value FROM meta WHERE key = 'model'").fetchone()
        wanted = json.dumps({"model": self.model, "dim": self.dim})
        if row is None:
            db.execute("INSERT INTO meta VALUES ('model', ?)", (wanted,))
        elif row[0] != wanted:
            raise DimensionMismatch(
                f"catalog {self.path} was built with {row[0]}, not {wanted}; use a new data directory for another model"
            )

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._write_lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Pin one consistent read view for every read this thread makes inside the block."""
        db = self._db
        db.execute("BEGIN")
        try:
            db.execute("SELECT 1 FROM meta LIMIT 1").fetchall()  # start the read transaction now
            yield
        finally:
            db.execute("COMMIT")

    # --- writes -----------------------------------------------------------------------

    def upsert(self, product: Product, images: Sequence[NewImage] | None) -> None:
        """Insert or replace `product`; with `images`, replace its images (None keeps them).

        Record, vectors and change-log entries commit together or not at all.
        """
        self.upsert_many([(product, images)])

    def upsert_many(self, items: Sequence[tuple[Product, Sequence[NewImage] | None]]) -> None:
        """`upsert` for many products in one transaction (all or none)."""
        for _, images in items:
            for image in images or ():
                if image.vector.shape != (self.dim,):
                    raise DimensionMismatch(f"vector of shape {image.vector.shape}, index dim {self.dim}")
        with self._write() as db:
            for product, images in items:
                db.execute(_UPSERT_ITEM, _product_row(product))
                if images is None:
                    continue
                self._delete_images(db, product.item_id)
                for position, image in enumerate(images):
                    cur = db.execute(
                        "INSERT INTO images (item_id, position, content_hash, location, vector) VALUES (?, ?, ?, ?, ?)",
                        (
                            product.item_id,
                            position,
                            image.content_hash,
                            image.location,
                            np.ascontiguousarray(image.vector, dtype=np.float32).tobytes(),
                        ),
                    )
                    db.execute("INSERT INTO changes (vector_id, added) VALUES (?, 1)", (cur.lastrowid,))

    def delete(self, item_id: str) -> None:
        """Remove a product and its vectors; raise `ProductNotFound` if it is not there."""
        with self._write() as db:
            self._delete_images(db, item_id)
            if db.execute("DELETE FROM items WHERE item_id = ?", (item_id,)).rowcount == 0:
                raise ProductNotFound(item_id)

    @staticmethod
    def _delete_images(db: sqlite3.Connection, item_id: str) -> None:
        ids = [r[0] for r in db.execute("SELECT vector_id FROM images WHERE item_id = ?", (item_id,))]
        db.execute("DELETE FROM images WHERE item_id = ?", (item_id,))
        db.executemany("INSERT INTO changes (vector_id, added) VALUES (?, 0)", [(i,) for i in ids])

    # --- reads ------------------------------------------------------------------------

    def get(self, item_id: str) -> Product:
        row = self._db.execute(f"SELECT {_ITEM_COLUMNS} FROM items WHERE item_id = ?", (item_id,)).fetchone()
        if row is None:
            raise ProductNotFound(item_id)
        return _product_from_row(row)

    def image_hashes(self, item_id: str) -> list[str]:
        """Content hashes of a product's images in order (empty if it is not there)."""
        return [
            r[0]
            for r in self._db.execute("SELECT content_hash FROM images WHERE item_id = ? ORDER BY position", (item_id,))
        ]

    def count(self) -> tuple[int, int]:
        """(products, images)."""
        items = self._db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        images = self._db.execute("SELECT COUNT(*) FROM images").fetchone()[0]
        return int(items), int(images)

    def last_change(self) -> int:
        row = self._db.execute("SELECT MAX(seq) FROM changes").fetchone()
        return int(row[0] or 0)

    def changes_since(self, seq: int) -> list[Change]:
        return [
            Change(int(s), int(v), bool(a))
            for s, v, a in self._db.execute(
                "SELECT seq, vector_id, added FROM changes WHERE seq > ? ORDER BY seq", (seq,)
            )
        ]

    def vectors(self, vector_ids: Sequence[int] | None = None) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """Ids and vectors of the given images that still exist (all images if None)."""
        if vector_ids is None:
            rows = self._db.execute("SELECT vector_id, vector FROM images ORDER BY vector_id").fetchall()
        else:
            rows = []
            for chunk in _chunks(list(vector_ids), 500):
                rows += self._db.execute(
                    f"SELECT vector_id, vector FROM images WHERE vector_id IN ({','.join('?' * len(chunk))})",
                    chunk,
                ).fetchall()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), self.dim)
        return ids, vecs

    def image_ids(self) -> list[int]:
        """Every image (vector) id, ascending."""
        return [int(r[0]) for r in self._db.execute("SELECT vector_id FROM images ORDER BY vector_id")]

    def hydrate(self, vector_ids: Sequence[int]) -> dict[int, tuple[Product, StoredImage]]:
        """Products and first-image info for the given vector ids; ids that are gone are left out."""
        found: dict[int, tuple[Product, StoredImage]] = {}
        for chunk in _chunks(list(vector_ids), 500):
            rows = self._db.execute(
                f"SELECT i.vector_id, i.content_hash, i.location, "
                f"{', '.join('p.' + c.strip() for c in _ITEM_COLUMNS.split(','))} "
                f"FROM images i JOIN items p ON p.item_id = i.item_id "
                f"WHERE i.vector_id IN ({','.join('?' * len(chunk))})",
                chunk,
            ).fetchall()
            for row in rows:
                product = _product_from_row(row[3:])
                found[int(row[0])] = (product, StoredImage(int(row[0]), product.item_id, row[1], row[2]))
        return found

    def close(self) -> None:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


def _chunks(items: list[int] | list[str], size: int) -> Iterator[list]:  # type: ignore[type-arg]
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _product_row(p: Product) -> tuple[object, ...]:
    return (
        p.item_id,
        p.title,
        str(p.reserve_price),
        None if p.final_price is None else str(p.final_price),
        p.shop_title,
        p.seller_id,
        p.provcity,
        p.user_type,
        p.volume,
        p.category_name,
        p.level_one_category_name,
        p.coupon_amount,
        p.coupon_start_fee,
        p.url,
        None if p.category is None else int(p.category),
        int(p.category_predicted),
        json.dumps(p.extra, ensure_ascii=False),
    )


def _product_from_row(row: Sequence[object]) -> Product:
    (item_id, title, reserve, final, shop, seller, provcity, user_type, volume, cat_name,
     level_one, coupon, coupon_fee, url, category_id, predicted, extra) = row  # fmt: skip
    return Product(
        item_id=str(item_id),
        title=str(title),
        reserve_price=Decimal(str(reserve)),
        final_price=None if final is None else Decimal(str(final)),
        shop_title=str(shop),
        seller_id=str(seller),
        provcity=str(provcity),
        user_type=int(user_type),  # type: ignore[call-overload]
        volume=int(volume),  # type: ignore[call-overload]
        category_name=str(cat_name),
        level_one_category_name=str(level_one),
        coupon_amount=None if coupon is None else int(coupon),  # type: ignore[call-overload]
        coupon_start_fee=None if coupon_fee is None else str(coupon_fee),
        url=str(url),
        category=None if category_id is None else Category(int(category_id)),  # type: ignore[call-overload]
        category_predicted=bool(predicted),
        extra=json.loads(str(extra)),
    )
