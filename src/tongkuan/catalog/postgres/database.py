"""The server catalog's database: its schema and numbered migrations, the connection pool,
write transactions, read snapshots and cross-process locks.

Every table lives in the schema `tongkuan`, apart from other applications' tables.
Every call has a deadline (`timeout_s`): connecting, waiting for a pooled connection and each
statement (`statement_timeout`); only migrations and the waits for a catalog-wide lock that
are meant to wait (`exclusive` without `wait_s`) lift it. A pool that lost its connections
tries again at least every `RECONNECT_MAX_S`, however long the outage was. Schema
changes are numbered migrations applied once, in order, under a lock, and recorded in
`tongkuan.schema_migrations`; after them, under the same lock, the keyword vectors are
derived again from the titles when the terms they hold changed (`keywords.VERSION`, kept
in `meta`, as the embedded store does). Connections come from a `psycopg_pool` pool.
Writers take one advisory lock per transaction, so change-log sequence numbers are handed
out in commit order. Every store module (`products`, `writer`, ...) builds on
`PostgresDatabase`.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout
from psycopg_pool.base import AttemptWithBackoff

from tongkuan.catalog import common, keywords
from tongkuan.errors import InvalidValue, StoreUnavailable

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
    # 3: vectors of a model the catalog may switch to (`tongkuan tune`), staged beside the used ones
    """
    CREATE TABLE staged_vectors (
        model TEXT NOT NULL,
        vector_id BIGINT NOT NULL,
        vector BYTEA NOT NULL,
        PRIMARY KEY (model, vector_id)
    );
    """,
    # 4: import jobs, so any replica reports them and one takes over a job whose runner died
    """
    CREATE TABLE import_jobs (
        job_id TEXT PRIMARY KEY,
        created DOUBLE PRECISION NOT NULL,
        status TEXT NOT NULL,
        open BOOLEAN NOT NULL,
        lease_owner TEXT,
        lease_until DOUBLE PRECISION,
        body BYTEA NOT NULL
    );
    CREATE INDEX import_jobs_open ON import_jobs (created) WHERE open;
    """,
    # 5: the text read on each picture (NULL: not read yet), searched with its product's title
    """
    ALTER TABLE images ADD COLUMN words TEXT;
    CREATE INDEX images_unread ON images (vector_id) WHERE words IS NULL;
    """,
]

SCHEMA = "tongkuan"  # every table lives here, apart from other applications' tables
DEFAULT_TIMEOUT_S = 5.0
RECONNECT_MAX_S = 1.0  # the longest pause between a pool's attempts to connect again
PROBE_TIMEOUT_S = 0.5  # a readiness probe's wait (Kubernetes' default probe timeout is 1 s)
_MIGRATION_LOCK = 0x746B6D67  # "tkmg": one process migrates at a time
_WRITE_LOCK = 0x746B7772  # "tkwr": writers commit one at a time, so change seqs commit in order


def connection_options(timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
    """libpq settings of every connection: the schema, and deadlines of `timeout_s` on
    connecting (libpq counts whole seconds, at least 2), on each statement and on data the
    server does not acknowledge (a peer that vanished without closing the connection)."""
    milliseconds = max(1, round(timeout_s * 1000))
    return {
        "autocommit": True,
        "options": f"-c search_path={SCHEMA} -c statement_timeout={milliseconds}",
        "connect_timeout": max(2, math.ceil(timeout_s)),
        "tcp_user_timeout": milliseconds,
    }


class _Attempts(AttemptWithBackoff):
    """psycopg_pool's reconnection backoff (1 s, doubling for up to 5 minutes) with a short
    first pause and a ceiling, so the pool is whole again about a second after the server
    answers, whether the outage lasted seconds or hours."""

    INITIAL_DELAY = 0.1

    def update_delay(self, now: float) -> None:
        super().update_delay(now)
        self.delay = min(self.delay, RECONNECT_MAX_S)


class CatalogPool(ConnectionPool[psycopg.Connection[Any]]):
    """A psycopg_pool pool that reconnects at least every `RECONNECT_MAX_S` and, handing out a
    connection, drops a broken one and tries the next at once: the pool's own loop pauses 1,
    2, 4... s after each, so idle connections the server dropped during an outage delayed the
    first requests after it by many seconds. Overrides two private methods of the pinned
    psycopg_pool (3.3)."""

    def _add_connection(self, attempt: AttemptWithBackoff | None, growing: bool = False) -> None:
        super()._add_connection(attempt or _Attempts(timeout=self.reconnect_timeout), growing)

    def _getconn_with_check_loop(self, deadline: float) -> psycopg.Connection[Any]:
        pause = 0.0
        while True:
            conn = self._getconn_unchecked(deadline - time.monotonic())
            try:
                self._check_connection(conn)
            except BaseException as exc:
                self._putconn(conn, from_getconn=True)  # a broken one is closed and replaced
                if not isinstance(exc, Exception):  # cancellation: give up at once
                    raise
            else:
                return conn
            pause = min(2 * pause or 0.01, RECONNECT_MAX_S)
            if time.monotonic() + pause >= deadline:
                raise PoolTimeout()
            time.sleep(pause)


@contextmanager
def no_statement_timeout(db: psycopg.Connection[Any]) -> Iterator[None]:
    """Lift the statement deadline on `db` for a block that is meant to take long (migrations)
    or to wait (for a catalog-wide lock another process holds)."""
    db.execute("SET statement_timeout = 0")
    try:
        yield
    finally:
        db.execute("RESET statement_timeout")  # back to the connection's own deadline


def migrate(pool: ConnectionPool[Any]) -> int:
    """Apply the migrations this database lacks, in order, each in its own transaction, then
    bring the keyword vectors up to `keywords.VERSION`; return how many migrations ran."""
    applied = 0
    with pool.connection() as db, no_statement_timeout(db):
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
            _update_keyword_vectors(db)
        finally:
            db.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
    return applied


def _update_keyword_vectors(db: psycopg.Connection[Any]) -> None:
    """Derive every product's keyword vectors again, in one transaction, when they hold the
    terms of another `keywords.VERSION` (a new database: at once, it has no products)."""
    row = db.execute("SELECT value FROM meta WHERE key = 'keywords'").fetchone()
    if row is not None and row[0] == keywords.VERSION:
        return
    # a server-side cursor walks the products the transaction sees; the updates are new row
    # versions it never meets again
    with db.transaction(), db.cursor(name="keyword_vectors") as products, db.cursor() as cur:
        products.execute("SELECT item_id, title, shop_title FROM items")
        while batch := products.fetchmany(5000):
            cur.executemany(
                "UPDATE items SET title_words = %s::tsvector, shop_words = %s::tsvector WHERE item_id = %s",
                [(tsvector(title), tsvector(shop), item_id) for item_id, title, shop in batch],
            )
        cur.execute(
            "INSERT INTO meta VALUES ('keywords', %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (keywords.VERSION,),
        )


def lexeme(text: str) -> str:
    """One tsvector/tsquery lexeme, quoted so that no text is read as syntax."""
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


CHARACTER_MARK = "_"  # starts the lexeme of a single character; no word or pair holds "_"


def tsvector(text: str) -> str:
    """The keyword vector of a title or shop name, as tsvector text: its words and pairs
    (`keywords.words`) and, marked apart from them, its single Chinese characters
    (`keywords.characters`). Marked, a character matches only a one-character query term,
    never a word that happens to be one character (jieba's 奶 in 燕麦奶), and ts_rank ignores
    a vector's length: how words rank stays as it was."""
    terms = [*keywords.words(text), *(CHARACTER_MARK + char for char in keywords.characters(text))]
    return " ".join(lexeme(term) for term in terms)


@contextmanager
def values_checked() -> Iterator[None]:
    """A value PostgreSQL refuses (NUL in text, an integer beyond 64 bits) is the caller's
    error, as it would be on any store, not a server fault; a database that cannot be
    reached is a temporary outage (503), not a bug (500)."""
    try:
        yield
    except psycopg.DataError as exc:  # NumericValueOutOfRange, UntranslatableCharacter and kin
        raise InvalidValue(f"the catalog cannot store this value: {exc}") from exc
    except (psycopg.OperationalError, PoolTimeout) as exc:
        raise StoreUnavailable(f"the catalog database cannot be reached: {exc}") from exc


class PostgresDatabase:
    """The catalog in the PostgreSQL database at `url` (a libpq URL or DSN), for vectors of
    `model` (`dim` components each), through a pool of at most `pool_size` connections."""

    def __init__(
        self, url: str, model: str, dim: int, pool_size: int = 8, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        self.url = url
        self.model = model
        self.dim = dim
        self.timeout_s = timeout_s
        self._local = threading.local()
        self._products = common.BuiltProducts()  # the products searches read, by their rows
        self._pool = CatalogPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs=connection_options(timeout_s),
            open=True,
            name="tongkuan-catalog",
            check=ConnectionPool.check_connection,  # a connection the server dropped is replaced, not used
            timeout=timeout_s,  # a request waits this long for a connection before answering 503
        )
        try:
            migrate(self._pool)
            with self._write() as db:
                self._check_model(db)
        except BaseException:
            self._pool.close()
            raise

    @staticmethod
    def stored_model(url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> str | None:
        """The model name a database's catalog searches with, or None for a new one."""
        stored = PostgresDatabase.stored_spec(url, timeout_s)
        return None if stored is None else stored[0]

    @staticmethod
    def stored_spec(url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> tuple[str, int] | None:
        """The model name and vector dimension a database's catalog searches with, or None."""
        with psycopg.connect(url, **connection_options(timeout_s)) as db:
            if db.execute(f"SELECT to_regclass('{SCHEMA}.meta')").fetchone() == (None,):
                return None
            row = db.execute("SELECT value FROM meta WHERE key = 'model'").fetchone()
        return None if row is None else common.model_of(row[0])

    def _check_model(self, db: psycopg.Connection[Any]) -> None:
        row = db.execute("SELECT value FROM meta WHERE key = 'model'").fetchone()
        advice = "use another database for another model"
        record = common.new_model_record(row and row[0], self.model, self.dim, "the catalog in this database", advice)
        if record is not None:
            db.execute("INSERT INTO meta VALUES ('model', %s)", (record,))

    @contextmanager
    def _read(self) -> Iterator[psycopg.Connection[Any]]:
        """This thread's snapshot connection inside `snapshot()`, else a pooled one."""
        pinned: psycopg.Connection[Any] | None = getattr(self._local, "db", None)
        with values_checked():
            if pinned is not None:
                yield pinned
                return
            with self._pool.connection() as db:
                yield db

    def _rows(self, sql: str, args: Sequence[object] | dict[str, object] = ()) -> list[tuple[Any, ...]]:
        """Every row a read returns."""
        with self._read() as db:
            return db.execute(sql, args).fetchall()

    def _require_model(self, db: psycopg.Connection[Any]) -> None:
        """Refuse to write this process's model's vectors into a catalog switched to another."""
        row = db.execute("SELECT value FROM meta WHERE key = 'model'").fetchone()
        common.require_model(row and row[0], self.model, self.dim)

    @contextmanager
    def _write(self) -> Iterator[psycopg.Connection[Any]]:
        """One write transaction, holding the write lock until it commits."""
        with values_checked(), self._pool.connection() as db, db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK,))
            yield db

    def _set_meta(self, key: str, value: str) -> None:
        """Store one metadata value, outside the writers' lock (it joins no change)."""
        with values_checked(), self._pool.connection() as db:
            db.execute(
                "INSERT INTO meta VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value)
            )

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Pin one consistent read view for every read this thread makes inside the block."""
        if getattr(self._local, "db", None) is not None:  # already pinned by an outer block
            yield
            return
        with values_checked(), self._pool.connection() as db:
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
        with values_checked(), self._pool.connection() as db:

            def lock() -> None:
                with no_statement_timeout(db):  # waiting is the point: another process holds it
                    db.execute("SELECT pg_advisory_lock(hashtext(%s))", (name,))

            def try_lock() -> bool:
                return bool(db.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (name,)).fetchone()[0])  # type: ignore[index]

            def unlock() -> None:
                db.execute("SELECT pg_advisory_unlock(hashtext(%s))", (name,))

            with common.held(lock, try_lock, unlock, wait_s) as locked:
                yield locked

    def ping(self) -> None:
        """Raise `StoreUnavailable` unless the database hands a working connection within
        `PROBE_TIMEOUT_S`: what a readiness probe asks."""
        with values_checked(), self._pool.connection(timeout=min(self.timeout_s, PROBE_TIMEOUT_S)) as db:
            db.execute("SELECT 1").fetchall()

    def close(self) -> None:
        """Close the connection pool."""
        self._pool.close()
