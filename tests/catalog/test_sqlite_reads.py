"""The embedded catalog's search reads: a search's candidates are read from an index of what it
needs, never from the pictures' rows, which hold their vectors; a catalog another process is
upgrading (building that index on a large catalog) is waited for, not refused."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tongkuan.catalog.sqlite import SqliteCatalog, database
from tongkuan.catalog.sqlite.database import HITS_INDEX
from tongkuan.domain.products import NewImage, Product

DIM = 1280  # a vector wider than a page: its row runs onto overflow pages


def plan(path: Path, sql: str) -> str:
    with sqlite3.connect(path) as db:
        return " / ".join(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql))


def filled(path: Path) -> SqliteCatalog:
    catalog = SqliteCatalog(path, "m", DIM)
    vectors = np.eye(4, DIM, dtype=np.float32)
    catalog.upsert_many(
        [(Product(f"p{i}", f"product {i}"), [NewImage(f"h{i}", f"{i}.jpg", vectors[i], "front")]) for i in range(4)]
    )
    return catalog


def test_candidates_are_read_from_the_hits_index_and_found_whole(tmp_path: Path) -> None:
    catalog = filled(tmp_path / "catalog.db")
    statements: list[str] = []
    catalog._db.set_trace_callback(statements.append)  # this thread's connection
    found, counts = catalog.hits([1, 3, 99])
    catalog._db.set_trace_callback(None)
    assert {vector_id: (product.item_id, image.name) for vector_id, (product, image) in found.items()} == {
        1: ("p0", "front"),
        3: ("p2", "front"),
    }
    assert counts == {"p0": 1, "p2": 1}
    catalog.close()
    (read,) = statements  # the statement the search ran, its values in place
    assert f"COVERING INDEX {HITS_INDEX}" in plan(tmp_path / "catalog.db", read)


def test_a_catalog_written_before_the_hits_index_gets_it_when_opened(tmp_path: Path) -> None:
    filled(tmp_path / "catalog.db").close()
    with sqlite3.connect(tmp_path / "catalog.db") as db:
        db.execute(f"DROP INDEX {HITS_INDEX}")
    catalog = SqliteCatalog(tmp_path / "catalog.db", "m", DIM)
    found, _ = catalog.hits([2])
    assert found[2][0].item_id == "p1"
    catalog.close()


def test_a_catalog_opened_while_another_upgrades_it_waits_for_the_upgrade(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # building an index over a large catalog's pictures holds the write lock for longer than
    # SQLite waits for it: a replica opening the file meanwhile waits for the upgrade instead
    path = tmp_path / "catalog.db"
    filled(path).close()
    monkeypatch.setattr(database, "BUSY_TIMEOUT_S", 0.2)
    upgrade, upgrading = database.migrate, threading.Event()

    def slow_upgrade(db: sqlite3.Connection) -> None:
        if not upgrading.is_set():  # the first opener's upgrade outlasts the busy timeout
            upgrading.set()
            time.sleep(1.0)
        upgrade(db)

    monkeypatch.setattr(database, "migrate", slow_upgrade)
    first = threading.Thread(target=lambda: SqliteCatalog(path, "m", DIM).close())
    first.start()
    assert upgrading.wait(timeout=10)
    second = SqliteCatalog(path, "m", DIM)  # "database is locked" before
    first.join()
    found, _ = second.hits([1])
    assert found[1][0].item_id == "p0"
    second.close()
