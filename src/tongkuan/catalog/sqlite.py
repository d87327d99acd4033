"""The embedded catalog: products, their image vectors and a change log, in one SQLite file.

SQLite is the source of truth. Each image row carries its float32 vector, and every add or
delete of a vector appends to `changes` in the same transaction as the record, so a vector
index is a cache that any process can bring up to date (`changes_since`) or rebuild. WAL
mode lets readers run beside the one writer; `snapshot()` pins a consistent read view.
"""

from __future__ import annotations

import fcntl
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from tongkuan.catalog import keywords
from tongkuan.catalog.product import Product, ProductFilter, StoredImage
from tongkuan.catalog.store import (
    NO_CATEGORY,
    Change,
    ChangeKind,
    NewImage,
    Shop,
    SortOrder,
    check_vectors,
    free_name,
    named,
    page_of_groups,
    product_from_row,
    product_row,
    stacked,
)
from tongkuan.catalog.store import chunks as _chunks
from tongkuan.errors import CatalogConflict, DimensionMismatch, PictureNotFound, ProductNotFound
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
CREATE INDEX IF NOT EXISTS items_category ON items(category_id);
CREATE INDEX IF NOT EXISTS items_shop ON items(shop_title);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    vector_id INTEGER NOT NULL,
    added INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE VIRTUAL TABLE IF NOT EXISTS item_words USING fts5(title, shop, tokenize = 'unicode61');
"""
# item_words holds keywords.document() of each item's title and shop, with rowid = items.rowid.
KEYWORDS_VERSION = "1"

_ITEM_COLUMNS = (
    "item_id, title, reserve_price, final_price, shop_title, seller_id, provcity, user_type,"
    " volume, category_name, level_one_category_name, coupon_amount, coupon_start_fee, url,"
    " category_id, category_predicted, extra"
)

_ITEM_COLUMNS_P = ", ".join("p." + c.strip() for c in _ITEM_COLUMNS.split(","))

_UPSERT_ITEM = (
    f"INSERT INTO items ({_ITEM_COLUMNS}) VALUES ({', '.join('?' * 17)}) ON CONFLICT(item_id) DO UPDATE SET "
    + ", ".join(f"{c.strip()} = excluded.{c.strip()}" for c in _ITEM_COLUMNS.split(",")[1:])
)


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
            self._migrate(db)

    @staticmethod
    def stored_model(path: Path) -> str | None:
        """The model name a catalog file was built with, or None for a new catalog."""
        stored = SqliteCatalog.stored_spec(path)
        return None if stored is None else stored[0]

    @staticmethod
    def stored_spec(path: Path) -> tuple[str, int] | None:
        """The model name and vector dimension a catalog file was built with, or None."""
        if not path.exists():
            return None
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'model'").fetchone()
        except sqlite3.OperationalError:
            return None
        finally:
            db.close()
        if row is None:
            return None
        meta = json.loads(row[0])
        return str(meta["model"]), int(meta["dim"])

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

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        """Bring a catalog written by an older version up to this schema, in place."""
        columns = {row[1] for row in db.execute("PRAGMA table_info(images)")}
        if "name" not in columns:
            db.execute("ALTER TABLE images ADD COLUMN name TEXT")
            db.execute("UPDATE images SET name = CAST(position AS TEXT)")
        db.execute("CREATE UNIQUE INDEX IF NOT EXISTS images_name ON images(item_id, name)")
        row = db.execute("SELECT value FROM meta WHERE key = 'keywords'").fetchone()
        if row is None or row[0] != KEYWORDS_VERSION:
            db.execute("DELETE FROM item_words")
            rows = db.execute("SELECT rowid, title, shop_title FROM items").fetchall()
            db.executemany(
                "INSERT INTO item_words (rowid, title, shop) VALUES (?, ?, ?)",
                [(r, keywords.document(t), keywords.document(shop)) for r, t, shop in rows],
            )
            db.execute("INSERT OR REPLACE INTO meta VALUES ('keywords', ?)", (KEYWORDS_VERSION,))

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
        check_vectors([image for _, images in items for image in images or ()], self.dim)
        documents = [(keywords.document(p.title), keywords.document(p.shop_title)) for p, _ in items]
        with self._write() as db:
            for (product, images), (title_words, shop_words) in zip(items, documents, strict=True):
                db.execute(_UPSERT_ITEM, product_row(product))
                _index_words(db, product.item_id, title_words, shop_words)
                if images is None:
                    continue
                self._delete_images(db, product.item_id)
                for position, image in enumerate(named(images)):
                    self._insert_image(db, product.item_id, position, image)

    @staticmethod
    def _insert_image(db: sqlite3.Connection, item_id: str, position: int, image: NewImage) -> int:
        cur = db.execute(
            "INSERT INTO images (item_id, position, content_hash, location, vector, name) VALUES (?, ?, ?, ?, ?, ?)",
            (
                item_id,
                position,
                image.content_hash,
                image.location,
                np.ascontiguousarray(image.vector, dtype=np.float32).tobytes(),
                image.name,
            ),
        )
        db.execute("INSERT INTO changes (vector_id, added) VALUES (?, 1)", (cur.lastrowid,))
        return int(cur.lastrowid or 0)

    def add_image(self, item_id: str, image: NewImage) -> StoredImage:
        """Add one picture to a product, replacing its picture of the same name."""
        check_vectors([image], self.dim)
        with self._write() as db:
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
            name = image.name or free_name(taken, position)
            vector_id = self._insert_image(db, item_id, position, replace(image, name=name))
        return StoredImage(vector_id, item_id, image.content_hash, image.location, name)

    def delete_image(self, item_id: str, name: str) -> None:
        """Remove one picture of a product. The last one cannot go: delete the product instead."""
        with self._write() as db:
            pictures = dict(db.execute("SELECT name, vector_id FROM images WHERE item_id = ?", (item_id,)).fetchall())
            if not pictures and db.execute("SELECT 1 FROM items WHERE item_id = ?", (item_id,)).fetchone() is None:
                raise ProductNotFound(item_id)
            if name not in pictures:
                raise PictureNotFound(f"product {item_id!r} has no picture named {name!r}")
            if len(pictures) == 1:
                raise CatalogConflict(
                    f"{name!r} is the last picture of product {item_id!r}; delete the product instead"
                )
            db.execute("DELETE FROM images WHERE vector_id = ?", (pictures[name],))
            db.execute("INSERT INTO changes (vector_id, added) VALUES (?, 0)", (pictures[name],))

    def update(self, item_id: str, change: Callable[[Product], Product]) -> Product:
        """Apply `change` to a stored product's fields in one transaction; pictures stay."""
        with self._write() as db:
            row = db.execute(f"SELECT {_ITEM_COLUMNS} FROM items WHERE item_id = ?", (item_id,)).fetchone()
            if row is None:
                raise ProductNotFound(item_id)
            product = change(product_from_row(row))
            if product.item_id != item_id:
                raise CatalogConflict("itemId cannot be changed")
            db.execute(_UPSERT_ITEM, product_row(product))
            _index_words(db, item_id, keywords.document(product.title), keywords.document(product.shop_title))
            if product.category != product_from_row(row).category:
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
            self._delete_images(db, item_id)
            db.execute("DELETE FROM item_words WHERE rowid = ?", (row[0],))
            db.execute("DELETE FROM items WHERE item_id = ?", (item_id,))

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
        return product_from_row(row)

    def image_hashes(self, item_id: str) -> list[str]:
        """Content hashes of a product's images in order (empty if it is not there)."""
        return [
            r[0]
            for r in self._db.execute("SELECT content_hash FROM images WHERE item_id = ? ORDER BY position", (item_id,))
        ]

    def stored_locations(self) -> set[str]:
        """Every picture location the catalog names (file names in the image store, or URLs)."""
        return {str(r[0]) for r in self._db.execute("SELECT DISTINCT location FROM images")}

    def images_of(self, item_id: str) -> list[StoredImage]:
        """A product's pictures in order (empty if it is not there)."""
        return [
            StoredImage(int(v), item_id, h, loc, name)
            for v, h, loc, name in self._db.execute(
                "SELECT vector_id, content_hash, location, name FROM images WHERE item_id = ? ORDER BY position",
                (item_id,),
            )
        ]

    def first_images(self, item_ids: Sequence[str]) -> dict[str, StoredImage]:
        """The first picture of each of the given products."""
        found: dict[str, StoredImage] = {}
        for chunk in _chunks(list(item_ids), 500):
            rows = self._db.execute(
                "SELECT vector_id, item_id, content_hash, location, name, MIN(position) FROM images "
                f"WHERE item_id IN ({','.join('?' * len(chunk))}) GROUP BY item_id",
                chunk,
            )
            for v, item_id, h, loc, name, _ in rows:
                found[item_id] = StoredImage(int(v), item_id, h, loc, name)
        return found

    def keyword_search(
        self,
        text: str,
        sort: SortOrder = SortOrder.RELEVANCE,
        where: ProductFilter | None = None,
        offset: int = 0,
        limit: int = 20,
    ) -> tuple[list[Product], int]:
        """Products whose titles match `text`, one page of them, and how many match in all.

        Sorted by price or sales, a title must hold every query term. By relevance, titles
        holding every term come first and then those holding some, each group in BM25 order
        (see `keywords.query_terms`).
        """
        terms = keywords.query_terms(text)
        if not terms:
            return [], 0
        every, some = keywords.match_expression(terms, every=True), keywords.match_expression(terms)
        conditions, args = _filter_sql(where or ProductFilter())
        source = f"FROM item_words w JOIN items p ON p.rowid = w.rowid WHERE item_words MATCH ?{conditions}"

        def count(match: str) -> int:
            return int(self._db.execute(f"SELECT COUNT(*) {source}", [match, *args]).fetchone()[0])

        def fetch(match: str, order: str, skip: int, wanted: int) -> list[Product]:
            rows = self._db.execute(
                f"SELECT {_ITEM_COLUMNS_P} {source} ORDER BY {order} LIMIT ? OFFSET ?", [match, *args, wanted, skip]
            ).fetchall()
            return [product_from_row(r) for r in rows]

        with self.snapshot():
            if sort is not SortOrder.RELEVANCE:
                total = count(f"title : ({every})")
                groups = [(f"title : ({every})", _ORDER[sort], total)]
            else:
                # counting "any" and "all" is cheaper than counting "any but not all"
                total, first = count(f"title : ({some})"), count(f"title : (({every}) AND ({some}))")
                order = "bm25(item_words), p.item_id"
                groups = [
                    (f"title : (({every}) AND ({some}))", order, first),
                    (f"title : (({some}) NOT ({every}))", order, total - first),
                ]
            return page_of_groups(groups, offset, limit, fetch), total

    def shop_search(self, text: str, offset: int = 0, limit: int = 20) -> tuple[list[Shop], int]:
        """Shops whose names hold every query term, best sellers first, and how many match."""
        terms = keywords.query_terms(text)
        if not terms:
            return [], 0
        match = f"shop : ({keywords.match_expression(terms, every=True)})"
        grouped = (
            "SELECT p.shop_title, MIN(p.seller_id), MIN(p.provcity), MAX(p.user_type), COUNT(*), SUM(p.volume) "
            "FROM item_words w JOIN items p ON p.rowid = w.rowid WHERE item_words MATCH ? GROUP BY p.shop_title"
        )
        with self.snapshot():
            total = int(self._db.execute(f"SELECT COUNT(*) FROM ({grouped})", (match,)).fetchone()[0])
            rows = self._db.execute(
                f"{grouped} ORDER BY SUM(p.volume) DESC, p.shop_title LIMIT ? OFFSET ?", (match, limit, offset)
            ).fetchall()
        return [Shop(str(t), str(s), str(c), int(u), int(n), int(v or 0)) for t, s, c, u, n, v in rows], total

    def shop_items(self, shop_title: str, limit: int) -> list[Product]:
        """A shop's best-selling products."""
        rows = self._db.execute(
            f"SELECT {_ITEM_COLUMNS_P} FROM items p WHERE p.shop_title = ? ORDER BY p.volume DESC, p.item_id LIMIT ?",
            (shop_title, limit),
        ).fetchall()
        return [product_from_row(r) for r in rows]

    def products(self, after: str | None = None, limit: int = 100) -> list[Product]:
        """Products in itemId order, starting after the itemId `after` (a cursor)."""
        rows = self._db.execute(
            f"SELECT {_ITEM_COLUMNS_P} FROM items p WHERE p.item_id > ? ORDER BY p.item_id LIMIT ?",
            (after or "", limit),
        ).fetchall()
        return [product_from_row(r) for r in rows]

    def count_products(self, category: Category | None = None, where: ProductFilter | None = None) -> int:
        """Products in a category (all if None) that pass a filter."""
        conditions, args = _filter_sql(where or ProductFilter())
        if category is not None:
            conditions += " AND p.category_id = ?"
            args.append(int(category))
        return int(self._db.execute(f"SELECT COUNT(*) FROM items p WHERE 1{conditions}", args).fetchone()[0])

    def count(self) -> tuple[int, int]:
        """(products, images)."""
        items = self._db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        images = self._db.execute("SELECT COUNT(*) FROM images").fetchone()[0]
        return int(items), int(images)

    def last_change(self) -> int:
        row = self._db.execute("SELECT MAX(seq) FROM changes").fetchone()
        return int(row[0] or 0)

    def changes_since(self, seq: int, limit: int | None = None) -> list[Change]:
        """Changes after `seq` in order (at most `limit`); `added` holds a `ChangeKind`."""
        return [
            Change(int(s), int(v), ChangeKind(a))
            for s, v, a in self._db.execute(
                "SELECT seq, vector_id, added FROM changes WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit or -1)
            )
        ]

    def vector_categories(self, vector_ids: Sequence[int]) -> dict[int, int]:
        """The category of each given picture's product (`NO_CATEGORY` for none)."""
        found: dict[int, int] = {}
        for chunk in _chunks(list(vector_ids), 500):
            for v, category in self._db.execute(
                "SELECT i.vector_id, p.category_id FROM images i JOIN items p ON p.item_id = i.item_id "
                f"WHERE i.vector_id IN ({','.join('?' * len(chunk))})",
                chunk,
            ):
                found[int(v)] = NO_CATEGORY if category is None else int(category)
        return found

    def index_position(self, name: str) -> int:
        """The last change a shared vector index named `name` has applied (0: none)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (f"index:{name}",)).fetchone()
        return 0 if row is None else int(row[0])

    def set_index_position(self, name: str, seq: int) -> None:
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"index:{name}", str(seq)))

    def learned(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (f"learned:{key}",)).fetchone()
        return None if row is None else str(row[0])

    def set_learned(self, key: str, value: str | None) -> None:
        with self._write() as db:
            if value is None:
                db.execute("DELETE FROM meta WHERE key = ?", (f"learned:{key}",))
            else:
                db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"learned:{key}", value))

    @contextmanager
    def exclusive(self, name: str, wait_s: float | None = None) -> Iterator[bool]:
        """A lock file beside the catalog, held across processes (and threads: one file each).
        With `wait_s`, gives up after that long and yields False."""
        lock_path = self.path.with_name(f"{self.path.name}.{name.replace(':', '-')}.lock")
        with open(lock_path, "a+b") as handle:
            deadline = None if wait_s is None else time.monotonic() + wait_s
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | (0 if deadline is None else fcntl.LOCK_NB))
                    break
                except BlockingIOError:
                    if deadline is not None and time.monotonic() >= deadline:
                        yield False
                        return
                    time.sleep(0.02)
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

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

    def picture_counts(self, item_ids: Sequence[str]) -> dict[str, int]:
        """How many pictures each of the given products has (no vectors read)."""
        counts: dict[str, int] = {}
        for chunk in _chunks(list(item_ids), 500):
            for item_id, count in self._db.execute(
                "SELECT item_id, COUNT(*) FROM images "
                f"WHERE item_id IN ({','.join('?' * len(chunk))}) GROUP BY item_id",
                chunk,
            ):
                counts[item_id] = int(count)
        return counts

    def pictures_with_vectors(
        self, item_ids: Sequence[str]
    ) -> dict[str, tuple[list[StoredImage], NDArray[np.float32]]]:
        """Every picture of the given products with their vectors, one matrix per product."""
        rows: dict[str, list[tuple[StoredImage, bytes]]] = {}
        for chunk in _chunks(list(item_ids), 500):
            for item_id, v, h, loc, name, vector in self._db.execute(
                "SELECT item_id, vector_id, content_hash, location, name, vector FROM images "
                f"WHERE item_id IN ({','.join('?' * len(chunk))}) ORDER BY item_id, position",
                chunk,
            ):
                rows.setdefault(item_id, []).append((StoredImage(int(v), item_id, h, loc, name), vector))
        return stacked(rows, self.dim)

    def hydrate(self, vector_ids: Sequence[int]) -> dict[int, tuple[Product, StoredImage]]:
        """Products and picture info for the given vector ids; ids that are gone are left out.

        Each product is read and built once, however many of its pictures are asked for (a
        query's 200 candidates often hold only a few dozen products)."""
        pictures: list[StoredImage] = []
        for chunk in _chunks(list(vector_ids), 500):
            rows = self._db.execute(
                "SELECT vector_id, item_id, content_hash, location, name FROM images "
                f"WHERE vector_id IN ({','.join('?' * len(chunk))})",
                chunk,
            ).fetchall()
            pictures += [StoredImage(int(v), item_id, h, loc, name) for v, item_id, h, loc, name in rows]
        products: dict[str, Product] = {}
        for chunk in _chunks(list({p.item_id for p in pictures}), 500):
            rows = self._db.execute(
                f"SELECT {_ITEM_COLUMNS} FROM items WHERE item_id IN ({','.join('?' * len(chunk))})", chunk
            ).fetchall()
            products.update((str(row[0]), product_from_row(row)) for row in rows)
        return {p.vector_id: (products[p.item_id], p) for p in pictures if p.item_id in products}

    def close(self) -> None:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


def _index_words(db: sqlite3.Connection, item_id: str, title_words: str, shop_words: str) -> None:
    rowid = db.execute("SELECT rowid FROM items WHERE item_id = ?", (item_id,)).fetchone()[0]
    db.execute("DELETE FROM item_words WHERE rowid = ?", (rowid,))
    db.execute("INSERT INTO item_words (rowid, title, shop) VALUES (?, ?, ?)", (rowid, title_words, shop_words))


_PRICE = "CAST(COALESCE(p.final_price, p.reserve_price) AS REAL)"
_ORDER = {
    SortOrder.PRICE_ASC: f"{_PRICE} ASC, p.volume DESC, p.item_id",
    SortOrder.PRICE_DESC: f"{_PRICE} DESC, p.volume DESC, p.item_id",
    SortOrder.SALES_DESC: f"p.volume DESC, {_PRICE} ASC, p.item_id",
}


def _filter_sql(where: ProductFilter) -> tuple[str, list[object]]:
    """SQL conditions on items `p` for a filter, and their arguments."""
    sql: list[str] = []
    args: list[object] = []
    if where.min_price is not None:
        sql.append(f"{_PRICE} >= ?")
        args.append(float(where.min_price))
    if where.max_price is not None:
        sql.append(f"{_PRICE} <= ?")
        args.append(float(where.max_price))
    if where.user_type is not None:
        sql.append("p.user_type = ?")
        args.append(where.user_type)
    if where.shop_title is not None:
        sql.append("p.shop_title = ? COLLATE NOCASE")
        args.append(where.shop_title)
    if where.location is not None:
        sql.append("instr(p.provcity, ?) > 0")
        args.append(where.location)
    return "".join(f" AND {c}" for c in sql), args
