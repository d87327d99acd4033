"""The server catalog: products, vectors and the change log in PostgreSQL, shared by replicas.

Same contract as the embedded store (`catalog.store.Catalog`): a product's record, its
pictures (with their float32 vectors) and change-log entries commit in one transaction.
Writers take one advisory lock per transaction, so change-log sequence numbers are
handed out in commit order and a reader that has seen change N has seen every change
before it (with concurrent writers, sequences would commit out of order and an index
replaying the log could skip one for good).

Keyword search stores the same terms as the embedded store (jieba words plus Chinese
character pairs, `catalog.keywords`) as a `simple` tsvector with a GIN index: exact,
two-character words such as 手机 included, which a pg_trgm index cannot serve.

Every table lives in the schema `tongkuan`, apart from other applications' tables. Schema
changes are numbered migrations applied once, in order, under a lock, and recorded in
`tongkuan.schema_migrations`; connections come from a `psycopg_pool` pool.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import psycopg
from numpy.typing import NDArray
from psycopg_pool import ConnectionPool, PoolTimeout

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
    chunks,
    free_name,
    named,
    page_of_groups,
    product_from_row,
    product_row,
    stacked,
)
from tongkuan.errors import (
    CatalogConflict,
    DimensionMismatch,
    InvalidValue,
    PictureNotFound,
    ProductNotFound,
    StoreUnavailable,
)
from tongkuan.vision.categories import Category

MIGRATIONS: list[str] = [
    # 1: the catalog
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE items (
        item_id TEXT PRIMARY KEY,
        title TEXT NOT NULL,
        reserve_price NUMERIC NOT NULL,
        final_price NUMERIC,
        shop_title TEXT NOT NULL,
        seller_id TEXT NOT NULL,
        provcity TEXT NOT NULL,
        user_type INTEGER NOT NULL,
        volume BIGINT NOT NULL,
        category_name TEXT NOT NULL,
        level_one_category_name TEXT NOT NULL,
        coupon_amount BIGINT,
        coupon_start_fee TEXT,
        url TEXT NOT NULL,
        category_id INTEGER,
        category_predicted BOOLEAN NOT NULL DEFAULT FALSE,
        extra TEXT NOT NULL DEFAULT '{}',
        title_words TSVECTOR NOT NULL,
        shop_words TSVECTOR NOT NULL
    );
    CREATE INDEX items_category ON items (category_id);
    CREATE INDEX items_shop ON items (lower(shop_title));
    CREATE INDEX items_volume ON items (volume DESC, item_id);
    CREATE INDEX items_title_words ON items USING GIN (title_words);
    CREATE INDEX items_shop_words ON items USING GIN (shop_words);
    CREATE TABLE images (
        vector_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        item_id TEXT NOT NULL REFERENCES items (item_id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        name TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        location TEXT NOT NULL,
        vector BYTEA NOT NULL,
        UNIQUE (item_id, name)
    );
    CREATE INDEX images_item ON images (item_id, position);
    CREATE TABLE changes (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        vector_id BIGINT NOT NULL,
        kind SMALLINT NOT NULL
    );
    """,
    # 2: product and picture counts kept by the writers (COUNT(*) scans the table: ~1 s at
    # 10M pictures, and every search asks how many pictures there are)
    """
    INSERT INTO meta (key, value) SELECT 'products', COUNT(*)::text FROM items ON CONFLICT (key) DO NOTHING;
    INSERT INTO meta (key, value) SELECT 'pictures', COUNT(*)::text FROM images ON CONFLICT (key) DO NOTHING;
    """,
]

SCHEMA = "tongkuan"  # every table lives here, apart from other applications' tables
_CONNECTION: dict[str, Any] = {"autocommit": True, "options": f"-c search_path={SCHEMA}", "connect_timeout": 10}
_MIGRATION_LOCK = 0x746B6D67  # "tkmg": one process migrates at a time
_WRITE_LOCK = 0x746B7772  # "tkwr": writers commit one at a time, so change seqs commit in order

_ITEM_COLUMNS = (
    "item_id, title, reserve_price, final_price, shop_title, seller_id, provcity, user_type,"
    " volume, category_name, level_one_category_name, coupon_amount, coupon_start_fee, url,"
    " category_id, category_predicted, extra"
)
_ITEM_COLUMNS_P = ", ".join("p." + c.strip() for c in _ITEM_COLUMNS.split(","))
_WORD_COLUMNS = ["title_words", "shop_words"]
_UPSERT_ITEM = (
    f"INSERT INTO items ({_ITEM_COLUMNS}, title_words, shop_words) "
    f"VALUES ({', '.join(['%s'] * 17)}, %s::tsvector, %s::tsvector) ON CONFLICT (item_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in [c.strip() for c in _ITEM_COLUMNS.split(",")[1:]] + _WORD_COLUMNS)
)
_PRICE = "COALESCE(p.final_price, p.reserve_price)"
_ID = 'p.item_id COLLATE "C"'  # ties in byte order, as the embedded store breaks them
_ORDER = {
    SortOrder.PRICE_ASC: f"{_PRICE} ASC, p.volume DESC, {_ID}",
    SortOrder.PRICE_DESC: f"{_PRICE} DESC, p.volume DESC, {_ID}",
    SortOrder.SALES_DESC: f"p.volume DESC, {_PRICE} ASC, {_ID}",
}


class PostgresCatalog:
    """Products and vectors in the PostgreSQL database at `url` (a libpq URL or DSN)."""

    def __init__(self, url: str, model: str, dim: int, pool_size: int = 8) -> None:
        self.url = url
        self.model = model
        self.dim = dim
        self._local = threading.local()
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs=_CONNECTION,
            open=True,
            name="tongkuan-catalog",
            check=ConnectionPool.check_connection,  # a connection the server dropped is replaced, not used
            timeout=5.0,  # a request waits this long for a connection before answering 503
        )
        try:
            migrate(self._pool)
            with self._write() as db:
                self._check_model(db)
        except BaseException:
            self._pool.close()
            raise

    @staticmethod
    def stored_model(url: str) -> str | None:
        """The model name a database's catalog was built with, or None for a new one."""
        with psycopg.connect(url, **_CONNECTION) as db:
            if db.execute(f"SELECT to_regclass('{SCHEMA}.meta')").fetchone() == (None,):
                return None
            row = db.execute("SELECT value FROM meta WHERE key = 'model'").fetchone()
        return None if row is None else str(json.loads(row[0])["model"])

    def _check_model(self, db: psycopg.Connection[Any]) -> None:
        row = db.execute("SELECT value FROM meta WHERE key = 'model'").fetchone()
        wanted = json.dumps({"model": self.model, "dim": self.dim})
        if row is None:
            db.execute("INSERT INTO meta VALUES ('model', %s)", (wanted,))
        elif row[0] != wanted:
            raise DimensionMismatch(
                f"the catalog in this database was built with {row[0]}, not {wanted}; "
                "use another database for another model"
            )

    # --- connections ------------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[psycopg.Connection[Any]]:
        """This thread's snapshot connection inside `snapshot()`, else a pooled one."""
        pinned: psycopg.Connection[Any] | None = getattr(self._local, "db", None)
        with _values_checked():
            if pinned is not None:
                yield pinned
                return
            with self._pool.connection() as db:
                yield db

    @contextmanager
    def _write(self) -> Iterator[psycopg.Connection[Any]]:
        with _values_checked(), self._pool.connection() as db, db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK,))
            yield db

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        if getattr(self._local, "db", None) is not None:  # already pinned by an outer block
            yield
            return
        with _values_checked(), self._pool.connection() as db:
            db.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            self._local.db = db
            try:
                db.execute("SELECT 1").fetchall()  # take the snapshot now
                yield
            finally:
                self._local.db = None
                db.execute("COMMIT")

    @contextmanager
    def exclusive(self, name: str, wait_s: float | None = None) -> Iterator[bool]:
        """A session advisory lock keyed by `name`, held on a connection of its own. With
        `wait_s`, gives up after that long and yields False."""
        with _values_checked(), self._pool.connection() as db:
            if wait_s is None:
                db.execute("SELECT pg_advisory_lock(hashtext(%s))", (name,))
            else:
                deadline = time.monotonic() + wait_s
                while not db.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (name,)).fetchone()[0]:  # type: ignore[index]
                    if time.monotonic() >= deadline:
                        yield False
                        return
                    time.sleep(0.02)
            try:
                yield True
            finally:
                db.execute("SELECT pg_advisory_unlock(hashtext(%s))", (name,))

    # --- writes -----------------------------------------------------------------------

    def upsert(self, product: Product, images: Sequence[NewImage] | None) -> None:
        """Insert or replace `product`; with `images`, replace its images (None keeps them)."""
        self.upsert_many([(product, images)])

    def upsert_many(self, items: Sequence[tuple[Product, Sequence[NewImage] | None]]) -> None:
        """`upsert` for many products in one transaction (all or none)."""
        check_vectors([image for _, images in items for image in images or ()], self.dim)
        items = _last_write_wins(items)
        rows = [_product_row(p) for p, _ in items]
        with self._write() as db, db.cursor() as cur:
            ids = [p.item_id for p, _ in items]
            known = cur.execute("SELECT COUNT(*) FROM items WHERE item_id = ANY(%s)", (ids,)).fetchone()
            _bump(cur, "products", len(ids) - int(known[0]))  # type: ignore[index]
            cur.executemany(_UPSERT_ITEM, rows)
            replaced = [(p.item_id, images) for p, images in items if images is not None]
            if not replaced:
                return
            self._delete_images(cur, [item_id for item_id, _ in replaced])
            pictures = [
                (item_id, position, image.name, image.content_hash, image.location, _vector_bytes(image.vector))
                for item_id, images in replaced
                for position, image in enumerate(named(images))
            ]
            self._insert_images(cur, pictures)

    @staticmethod
    def _insert_images(cur: psycopg.Cursor[Any], pictures: Sequence[tuple[object, ...]]) -> list[int]:
        ids: list[int] = []
        for chunk in chunks(pictures, 1000):
            values = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(chunk))
            cur.execute(
                "INSERT INTO images (item_id, position, name, content_hash, location, vector) "
                f"VALUES {values} RETURNING vector_id",
                [v for picture in chunk for v in picture],
            )
            ids += [int(r[0]) for r in cur.fetchall()]
        _log(cur, ids, ChangeKind.ADDED)
        return ids

    @staticmethod
    def _delete_images(cur: psycopg.Cursor[Any], item_ids: list[str]) -> None:
        cur.execute("DELETE FROM images WHERE item_id = ANY(%s) RETURNING vector_id", (item_ids,))
        _log(cur, [int(r[0]) for r in cur.fetchall()], ChangeKind.REMOVED)

    def add_image(self, item_id: str, image: NewImage) -> StoredImage:
        """Add one picture to a product, replacing its picture of the same name."""
        check_vectors([image], self.dim)
        with self._write() as db, db.cursor() as cur:
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
            name = image.name or free_name(set(pictures), position)
            (vector_id,) = self._insert_images(
                cur,
                [(item_id, position, name, image.content_hash, image.location, _vector_bytes(image.vector))],
            )
        return StoredImage(vector_id, item_id, image.content_hash, image.location, name)

    def delete_image(self, item_id: str, name: str) -> None:
        """Remove one picture of a product. The last one cannot go: delete the product instead."""
        with self._write() as db, db.cursor() as cur:
            if cur.execute("SELECT 1 FROM items WHERE item_id = %s FOR UPDATE", (item_id,)).fetchone() is None:
                raise ProductNotFound(item_id)
            pictures = dict(cur.execute("SELECT name, vector_id FROM images WHERE item_id = %s", (item_id,)).fetchall())
            if name not in pictures:
                raise PictureNotFound(f"product {item_id!r} has no picture named {name!r}")
            if len(pictures) == 1:
                raise CatalogConflict(
                    f"{name!r} is the last picture of product {item_id!r}; delete the product instead"
                )
            cur.execute("DELETE FROM images WHERE vector_id = %s", (pictures[name],))
            _log(cur, [int(pictures[name])], ChangeKind.REMOVED)

    def update(self, item_id: str, change: Callable[[Product], Product]) -> Product:
        """Apply `change` to a stored product's fields in one transaction; pictures stay."""
        with self._write() as db, db.cursor() as cur:
            row = cur.execute(f"SELECT {_ITEM_COLUMNS} FROM items WHERE item_id = %s FOR UPDATE", (item_id,)).fetchone()
            if row is None:
                raise ProductNotFound(item_id)
            before = product_from_row(row)
            product = change(before)
            if product.item_id != item_id:
                raise CatalogConflict("itemId cannot be changed")
            cur.execute(_UPSERT_ITEM, _product_row(product))
            if product.category != before.category:
                ids = [int(r[0]) for r in cur.execute("SELECT vector_id FROM images WHERE item_id = %s", (item_id,))]
                _log(cur, ids, ChangeKind.RETAGGED)
        return product

    def delete(self, item_id: str) -> None:
        """Remove a product and its vectors; raise `ProductNotFound` if it is not there."""
        with self._write() as db, db.cursor() as cur:
            self._delete_images(cur, [item_id])
            if cur.execute("DELETE FROM items WHERE item_id = %s", (item_id,)).rowcount == 0:
                raise ProductNotFound(item_id)
            _bump(cur, "products", -1)

    def set_index_position(self, name: str, seq: int) -> None:
        with _values_checked(), self._pool.connection() as db:
            db.execute(
                "INSERT INTO meta VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (f"index:{name}", str(seq)),
            )

    def set_learned(self, key: str, value: str | None) -> None:
        with _values_checked(), self._pool.connection() as db:
            if value is None:
                db.execute("DELETE FROM meta WHERE key = %s", (f"learned:{key}",))
            else:
                db.execute(
                    "INSERT INTO meta VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (f"learned:{key}", value),
                )

    # --- reads ------------------------------------------------------------------------

    def _rows(self, sql: str, args: Sequence[object] | dict[str, object] = ()) -> list[tuple[Any, ...]]:
        with self._read() as db:
            return db.execute(sql, args).fetchall()

    def get(self, item_id: str) -> Product:
        rows = self._rows(f"SELECT {_ITEM_COLUMNS} FROM items WHERE item_id = %s", (item_id,))
        if not rows:
            raise ProductNotFound(item_id)
        return product_from_row(rows[0])

    def image_hashes(self, item_id: str) -> list[str]:
        rows = self._rows("SELECT content_hash FROM images WHERE item_id = %s ORDER BY position", (item_id,))
        return [str(r[0]) for r in rows]

    def stored_locations(self) -> set[str]:
        return {str(r[0]) for r in self._rows("SELECT DISTINCT location FROM images")}

    def images_of(self, item_id: str) -> list[StoredImage]:
        return [
            StoredImage(int(v), item_id, h, loc, name)
            for v, h, loc, name in self._rows(
                "SELECT vector_id, content_hash, location, name FROM images WHERE item_id = %s ORDER BY position",
                (item_id,),
            )
        ]

    def first_images(self, item_ids: Sequence[str]) -> dict[str, StoredImage]:
        rows = self._rows(
            "SELECT DISTINCT ON (item_id) vector_id, item_id, content_hash, location, name FROM images "
            "WHERE item_id = ANY(%s) ORDER BY item_id, position",
            (list(item_ids),),
        )
        return {item_id: StoredImage(int(v), item_id, h, loc, name) for v, item_id, h, loc, name in rows}

    def keyword_search(
        self,
        text: str,
        sort: SortOrder = SortOrder.RELEVANCE,
        where: ProductFilter | None = None,
        offset: int = 0,
        limit: int = 20,
    ) -> tuple[list[Product], int]:
        """Products whose titles match `text`, one page of them, and how many match in all.

        The same tiers as the embedded store: sorted by price or sales, every required term;
        by relevance, titles holding every term first, then those holding some, each by
        `ts_rank` (PostgreSQL has no BM25).
        """
        terms = keywords.query_terms(text)
        if not terms:
            return [], 0
        conditions, args = _filter_sql(where or ProductFilter())
        every, some = _tsquery(terms, every=True), _tsquery(terms)

        def fetch(match: str, order: str, skip: int, wanted: int) -> list[Product]:
            rows = self._rows(
                f"SELECT {_ITEM_COLUMNS_P} FROM items p WHERE {match}{conditions} "
                f"ORDER BY {order} LIMIT %(limit)s OFFSET %(offset)s",
                {"some": some, "every": every, "limit": wanted, "offset": skip, **args},
            )
            return [product_from_row(r) for r in rows]

        with self.snapshot():
            if sort is not SortOrder.RELEVANCE:
                match = "p.title_words @@ %(every)s::tsquery"
                total = self._count(match, {"every": every, **args}, conditions)
                groups = [(match, _ORDER[sort], total)]
            else:
                both = "p.title_words @@ %(every)s::tsquery AND p.title_words @@ %(some)s::tsquery"
                total = self._count("p.title_words @@ %(some)s::tsquery", {"some": some, **args}, conditions)
                first = self._count(both, {"some": some, "every": every, **args}, conditions)
                order = f"ts_rank(p.title_words, %(some)s::tsquery) DESC, {_ID}"
                groups = [
                    (both, order, first),
                    (
                        "p.title_words @@ %(some)s::tsquery AND NOT p.title_words @@ %(every)s::tsquery",
                        order,
                        total - first,
                    ),
                ]
            return page_of_groups(groups, offset, limit, fetch), total

    def _count(self, match: str, args: dict[str, object], conditions: str) -> int:
        return int(self._rows(f"SELECT COUNT(*) FROM items p WHERE {match}{conditions}", args)[0][0])

    def shop_search(self, text: str, offset: int = 0, limit: int = 20) -> tuple[list[Shop], int]:
        """Shops whose names hold every query term, best sellers first, and how many match."""
        terms = keywords.query_terms(text)
        if not terms:
            return [], 0
        grouped = (
            "SELECT p.shop_title, MIN(p.seller_id), MIN(p.provcity), MAX(p.user_type), COUNT(*), SUM(p.volume) "
            "FROM items p WHERE p.shop_words @@ %(q)s::tsquery GROUP BY p.shop_title"
        )
        q = _tsquery(terms, every=True)
        with self.snapshot():
            total = int(self._rows(f"SELECT COUNT(*) FROM ({grouped}) g", {"q": q})[0][0])
            rows = self._rows(
                f'{grouped} ORDER BY SUM(p.volume) DESC, p.shop_title COLLATE "C" LIMIT %(limit)s OFFSET %(offset)s',
                {"q": q, "limit": limit, "offset": offset},
            )
        return [Shop(str(t), str(s), str(c), int(u), int(n), int(v or 0)) for t, s, c, u, n, v in rows], total

    def shop_items(self, shop_title: str, limit: int) -> list[Product]:
        rows = self._rows(
            f"SELECT {_ITEM_COLUMNS_P} FROM items p WHERE p.shop_title = %s ORDER BY p.volume DESC, {_ID} LIMIT %s",
            (shop_title, limit),
        )
        return [product_from_row(r) for r in rows]

    def products(self, after: str | None = None, limit: int = 100) -> list[Product]:
        rows = self._rows(
            f"SELECT {_ITEM_COLUMNS_P} FROM items p "
            'WHERE p.item_id COLLATE "C" > %s ORDER BY p.item_id COLLATE "C" LIMIT %s',
            (after or "", limit),
        )
        return [product_from_row(r) for r in rows]

    def count_products(self, category: Category | None = None, where: ProductFilter | None = None) -> int:
        conditions, args = _filter_sql(where or ProductFilter())
        if category is not None:
            conditions += " AND p.category_id = %(category)s"
            args["category"] = int(category)
        return int(self._rows(f"SELECT COUNT(*) FROM items p WHERE TRUE{conditions}", args)[0][0])

    def count(self) -> tuple[int, int]:
        """(products, pictures), from the counters writers keep."""
        found = dict(self._rows("SELECT key, value FROM meta WHERE key IN ('products', 'pictures')"))
        return int(found["products"]), int(found["pictures"])

    def last_change(self) -> int:
        return int(self._rows("SELECT COALESCE(MAX(seq), 0) FROM changes")[0][0])

    def changes_since(self, seq: int, limit: int | None = None) -> list[Change]:
        return [
            Change(int(s), int(v), ChangeKind(k))
            for s, v, k in self._rows(
                "SELECT seq, vector_id, kind FROM changes WHERE seq > %s ORDER BY seq LIMIT %s", (seq, limit)
            )
        ]

    def vectors(self, vector_ids: Sequence[int] | None = None) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        if vector_ids is None:
            rows = self._rows("SELECT vector_id, vector FROM images ORDER BY vector_id")
        else:
            rows = self._rows("SELECT vector_id, vector FROM images WHERE vector_id = ANY(%s)", (list(vector_ids),))
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), self.dim)
        return ids, vecs

    def vector_categories(self, vector_ids: Sequence[int]) -> dict[int, int]:
        rows = self._rows(
            "SELECT i.vector_id, p.category_id FROM images i JOIN items p ON p.item_id = i.item_id "
            "WHERE i.vector_id = ANY(%s)",
            (list(vector_ids),),
        )
        return {int(v): NO_CATEGORY if c is None else int(c) for v, c in rows}

    def image_ids(self) -> list[int]:
        return [int(r[0]) for r in self._rows("SELECT vector_id FROM images ORDER BY vector_id")]

    def picture_counts(self, item_ids: Sequence[str]) -> dict[str, int]:
        rows = self._rows(
            "SELECT item_id, COUNT(*) FROM images WHERE item_id = ANY(%s) GROUP BY item_id", (list(item_ids),)
        )
        return {str(item_id): int(n) for item_id, n in rows}

    def pictures_with_vectors(
        self, item_ids: Sequence[str]
    ) -> dict[str, tuple[list[StoredImage], NDArray[np.float32]]]:
        grouped: dict[str, list[tuple[StoredImage, bytes]]] = {}
        for item_id, v, h, loc, name, vector in self._rows(
            "SELECT item_id, vector_id, content_hash, location, name, vector FROM images "
            "WHERE item_id = ANY(%s) ORDER BY item_id, position",
            (list(item_ids),),
        ):
            grouped.setdefault(item_id, []).append((StoredImage(int(v), item_id, h, loc, name), bytes(vector)))
        return stacked(grouped, self.dim)

    def hydrate(self, vector_ids: Sequence[int]) -> dict[int, tuple[Product, StoredImage]]:
        """Products and picture info for the given vector ids; ids that are gone are left out."""
        with self.snapshot():
            pictures = [
                StoredImage(int(v), item_id, h, loc, name)
                for v, item_id, h, loc, name in self._rows(
                    "SELECT vector_id, item_id, content_hash, location, name FROM images WHERE vector_id = ANY(%s)",
                    (list(vector_ids),),
                )
            ]
            products = {
                str(row[0]): product_from_row(row)
                for row in self._rows(
                    f"SELECT {_ITEM_COLUMNS} FROM items WHERE item_id = ANY(%s)", (list({p.item_id for p in pictures}),)
                )
            }
        return {p.vector_id: (products[p.item_id], p) for p in pictures if p.item_id in products}

    def index_position(self, name: str) -> int:
        rows = self._rows("SELECT value FROM meta WHERE key = %s", (f"index:{name}",))
        return int(rows[0][0]) if rows else 0

    def learned(self, key: str) -> str | None:
        rows = self._rows("SELECT value FROM meta WHERE key = %s", (f"learned:{key}",))
        return str(rows[0][0]) if rows else None

    def close(self) -> None:
        self._pool.close()


def migrate(pool: ConnectionPool[Any]) -> int:
    """Apply the migrations this database lacks, in order, each in its own transaction."""
    applied = 0
    with pool.connection() as db:
        db.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        try:
            db.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
            db.execute(
                f"CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_migrations "
                "(version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            done = {int(r[0]) for r in db.execute("SELECT version FROM schema_migrations").fetchall()}
            for version, script in enumerate(MIGRATIONS, start=1):
                if version in done:
                    continue
                with db.transaction():
                    db.execute(script)
                    db.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                applied += 1
        finally:
            db.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
    return applied


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


@contextmanager
def _values_checked() -> Iterator[None]:
    """A value PostgreSQL refuses (NUL in text, an integer beyond 64 bits) is the caller's
    error, as it would be on any store, not a server fault; a database that cannot be
    reached is a temporary outage (503), not a bug (500)."""
    try:
        yield
    except psycopg.DataError as exc:  # NumericValueOutOfRange, UntranslatableCharacter and kin
        raise InvalidValue(f"the catalog cannot store this value: {exc}") from exc
    except (psycopg.OperationalError, PoolTimeout) as exc:
        raise StoreUnavailable(f"the catalog database cannot be reached ({type(exc).__name__})") from exc


def _log(cur: psycopg.Cursor[Any], vector_ids: list[int], kind: ChangeKind) -> None:
    """Append to the change log (and keep the picture count), inside the writer's transaction."""
    if vector_ids:
        cur.execute("INSERT INTO changes (vector_id, kind) SELECT unnest(%s::bigint[]), %s", (vector_ids, int(kind)))
        _bump(cur, "pictures", {ChangeKind.ADDED: 1, ChangeKind.REMOVED: -1}.get(kind, 0) * len(vector_ids))


def _bump(cur: psycopg.Cursor[Any], counter: str, delta: int) -> None:
    """Move a counter; writers hold the write lock, so counters never race."""
    if delta:
        cur.execute("UPDATE meta SET value = (value::bigint + %s)::text WHERE key = %s", (delta, counter))


def _vector_bytes(vector: NDArray[np.float32]) -> bytes:
    return np.ascontiguousarray(vector, dtype=np.float32).tobytes()


def _lexeme(text: str) -> str:
    """One tsvector/tsquery lexeme, quoted so that no text is read as syntax."""
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def _tsvector(text: str) -> str:
    return " ".join(_lexeme(word) for word in keywords.words(text))


def _tsquery(terms: list[keywords.Term], every: bool = False) -> str:
    """Any term, or with `every` all required terms, as tsquery text (prefix terms with `:*`)."""
    chosen = [t for t in terms if t.required] if every else terms
    return (" & " if every else " | ").join(_lexeme(t.text) + (":*" if t.prefix else "") for t in chosen)


def _filter_sql(where: ProductFilter) -> tuple[str, dict[str, object]]:
    """SQL conditions on items `p` for a filter, and their named arguments."""
    sql: list[str] = []
    args: dict[str, object] = {}
    if where.min_price is not None:
        sql.append(f"{_PRICE} >= %(min_price)s")
        args["min_price"] = where.min_price
    if where.max_price is not None:
        sql.append(f"{_PRICE} <= %(max_price)s")
        args["max_price"] = where.max_price
    if where.user_type is not None:
        sql.append("p.user_type = %(user_type)s")
        args["user_type"] = where.user_type
    if where.shop_title is not None:
        sql.append("lower(p.shop_title) = lower(%(shop)s)")
        args["shop"] = where.shop_title
    if where.location is not None:
        sql.append("strpos(p.provcity, %(location)s) > 0")
        args["location"] = where.location
    return "".join(f" AND {c}" for c in sql), args


def _product_row(p: Product) -> tuple[object, ...]:
    """The shared columns (prices as text, which PostgreSQL reads as NUMERIC exactly), a real
    boolean flag, and the keyword vectors."""
    row = product_row(p)
    return (*row[:15], p.category_predicted, row[16], _tsvector(p.title), _tsvector(p.shop_title))
