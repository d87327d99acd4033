"""The embedded catalog's search reads: a search's candidates are read from an index of what it
needs, never from the pictures' rows, which hold their vectors."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np

from tongkuan.catalog.sqlite import SqliteCatalog
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
