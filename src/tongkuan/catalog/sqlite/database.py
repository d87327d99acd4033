"""The embedded catalog's file: its schema and in-place upgrades, one connection per thread,
write transactions, read snapshots and cross-process locks.

SQLite is the source of truth. WAL mode lets readers run beside the one writer: writes take
a process-wide lock and run as `BEGIN IMMEDIATE` transactions, and `snapshot()` pins a
consistent read view. Every store module (`products`, `writer`, ...) builds on `SqliteDatabase`.
"""

from __future__ import annotations

import fcntl
import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tongkuan.catalog import common, keywords

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
CREATE TABLE IF NOT EXISTS staged_vectors (
    model TEXT NOT NULL,
    vector_id INTEGER NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (model, vector_id)
);
CREATE VIRTUAL TABLE IF NOT EXISTS item_words USING fts5(title, shop, tokenize = 'unicode61');
CREATE VIRTUAL TABLE IF NOT EXISTS item_chars USING fts5(title, shop, tokenize = 'unicode61');
CREATE TABLE IF NOT EXISTS import_jobs (
    job_id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    status TEXT NOT NULL,
    open INTEGER NOT NULL,
    lease_owner TEXT,
    lease_until REAL,
    body BLOB NOT NULL
);
"""
# item_words holds keywords.document() of each item's title and shop, and item_chars their
# keywords.character_document(), both with rowid = items.rowid (words_row() gives all four).
# The characters have a table of their own because FTS5's BM25 measures a row's length
# over all its columns: beside the words, they would change how every query ranks.
KEYWORDS_VERSION = keywords.VERSION
HITS_INDEX = "images_hits"
# How long a write waits for another's lock before it fails ("database is locked")
BUSY_TIMEOUT_S = 30.0


def words_row(title: str, shop: str) -> tuple[str, str, str, str]:
    """An item's keyword documents: title and shop words, then title and shop characters."""
    return (
        keywords.document(title),
        keywords.document(shop),
        keywords.character_document(title),
        keywords.character_document(shop),
    )


def index_words(db: sqlite3.Connection, rowid: int, words: tuple[str, str, str, str]) -> None:
    """Write an item's keyword documents (`words_row`) under its rowid, replacing any there."""
    db.execute("DELETE FROM item_words WHERE rowid = ?", (rowid,))
    db.execute("DELETE FROM item_chars WHERE rowid = ?", (rowid,))
    db.execute("INSERT INTO item_words (rowid, title, shop) VALUES (?, ?, ?)", (rowid, *words[:2]))
    db.execute("INSERT INTO item_chars (rowid, title, shop) VALUES (?, ?, ?)", (rowid, *words[2:]))


def migrate(db: sqlite3.Connection) -> None:
    """Bring a catalog written by an older version up to this schema, in place."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(images)")}
    if "name" not in columns:
        db.execute("ALTER TABLE images ADD COLUMN name TEXT")
        db.execute("UPDATE images SET name = CAST(position AS TEXT)")
    if "words" not in columns:  # the text read on each picture (NULL: not read yet)
        db.execute("ALTER TABLE images ADD COLUMN words TEXT")
    db.execute("CREATE UNIQUE INDEX IF NOT EXISTS images_name ON images(item_id, name)")
    # What a search reads of its candidate pictures (`common.PICTURE_FIELDS`), apart from
    # their rows: each row holds its vector, so 200 candidates' rows lie on pages all over
    # the file (about 150 bytes a picture; a search's reads 2.2 -> 1.5 ms at 10k pictures)
    db.execute(f"CREATE INDEX IF NOT EXISTS {HITS_INDEX} ON images({common.PICTURE_FIELDS})")
    row = db.execute("SELECT value FROM meta WHERE key = 'keywords'").fetchone()
    if row is None or row[0] != KEYWORDS_VERSION:  # item_chars came with version 2
        db.execute("DELETE FROM item_words")
        db.execute("DELETE FROM item_chars")
        items = db.execute("SELECT rowid, title, shop_title FROM items").fetchall()
        rows = [(rowid, *words_row(title, shop)) for rowid, title, shop in items]
        db.executemany("INSERT INTO item_words (rowid, title, shop) VALUES (?, ?, ?)", [r[:3] for r in rows])
        db.executemany("INSERT INTO item_chars (rowid, title, shop) VALUES (?, ?, ?)", [(r[0], *r[3:]) for r in rows])
        db.execute("INSERT OR REPLACE INTO meta VALUES ('keywords', ?)", (KEYWORDS_VERSION,))


class SqliteDatabase:
    """The catalog file at `path`, for vectors of `model` (`dim` components each). Safe to
    share between threads and processes."""

    def __init__(self, path: Path, model: str, dim: int) -> None:
        self.path = path
        self.model = model
        self.dim = dim
        self._local = threading.local()
        self._products = common.BuiltProducts()  # the products searches read, by their rows
        self._write_lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        # Openers take turns: an upgrade of a large catalog (an index over every picture)
        # holds the write lock longer than a write waits for it, so another process opening
        # the file meanwhile waits for the upgrade to end rather than failing
        with self.exclusive("open"):
            self._db.executescript(SCHEMA)  # idempotent; executescript manages its own transaction
            with self._write() as db:
                self._check_model(db)
                migrate(db)

    @staticmethod
    def stored_model(path: Path) -> str | None:
        """The model name a catalog file was built with, or None for a new catalog."""
        stored = SqliteDatabase.stored_spec(path)
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
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        return db

    @property
    def _db(self) -> sqlite3.Connection:
        """This thread's connection."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = self._connect()
            self._local.db = db
        return db

    def _rows_in(self, sql: str, values: Sequence[object]) -> list[Any]:
        """The rows `sql` returns for all of `values`, passed as parameters where it says
        `{values}`, 500 at a time (SQLite limits how many parameters one statement takes)."""
        rows: list[Any] = []
        for chunk in common.chunks(list(values), 500):
            rows += self._db.execute(sql.format(values=",".join("?" * len(chunk))), chunk).fetchall()
        return rows

    def _check_model(self, db: sqlite3.Connection) -> None:
        row = db.execute("SELECT value FROM meta WHERE key = 'model'").fetchone()
        advice = "use a new data directory for another model"
        record = common.new_model_record(row and row[0], self.model, self.dim, f"catalog {self.path}", advice)
        if record is not None:
            db.execute("INSERT INTO meta VALUES ('model', ?)", (record,))

    def _require_model(self, db: sqlite3.Connection) -> None:
        """Refuse to write this process's model's vectors into a catalog switched to another."""
        row = db.execute("SELECT value FROM meta WHERE key = 'model'").fetchone()
        common.require_model(row and row[0], self.model, self.dim)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; writers in this process take turns, other processes wait."""
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
        """Pin one consistent read view for every read this thread makes inside the block (a
        block inside another reads the outer one's view)."""
        db = self._db
        if db.in_transaction:  # already pinned by an outer block
            yield
            return
        db.execute("BEGIN")
        try:
            db.execute("SELECT 1 FROM meta LIMIT 1").fetchall()  # start the read transaction now
            yield
        finally:
            db.execute("COMMIT")

    @contextmanager
    def exclusive(self, name: str, wait_s: float | None = None) -> Iterator[bool]:
        """A lock file beside the catalog, held across processes (and threads: one file each).
        With `wait_s`, gives up after that long and yields False."""
        lock_path = self.path.with_name(f"{self.path.name}.{name.replace(':', '-')}.lock")
        with open(lock_path, "a+b") as handle:

            def lock() -> None:
                fcntl.flock(handle, fcntl.LOCK_EX)

            def try_lock() -> bool:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return False
                return True

            with common.held(lock, try_lock, lambda: fcntl.flock(handle, fcntl.LOCK_UN), wait_s) as locked:
                yield locked

    def ping(self) -> None:
        """A file on this machine: it answers when it can be read."""
        self._db.execute("SELECT 1 FROM meta LIMIT 1").fetchall()

    def close(self) -> None:
        """Close this thread's connection (another call opens a new one)."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
