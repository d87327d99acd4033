"""The index kept in step with the catalog's change log: replay, restart, trained switch-over."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tongkuan.catalog.sqlite import SqliteCatalog
from tongkuan.domain.indexes import IndexKind
from tongkuan.domain.products import NewImage, Product
from tongkuan.index import embedded as sync_module
from tongkuan.index.embedded import EmbeddedIndex

DIM = 16


def add_products(catalog: SqliteCatalog, start: int, count: int) -> None:
    rng = np.random.default_rng(start)
    vectors = rng.random((count, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    catalog.upsert_many(
        [(Product(f"p{start + i}", "t"), [NewImage(f"{start + i:064x}", "x.jpg", vectors[i])]) for i in range(count)]
    )


def test_a_trained_index_starts_exact_and_switches_once_the_catalog_is_big_enough(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sync_module, "TRAIN_AT", 300)
    catalog = SqliteCatalog(tmp_path / "catalog.db", "m", DIM)
    add_products(catalog, 0, 100)
    index = EmbeddedIndex(catalog, tmp_path / "index", IndexKind.HNSW_SQ8)
    assert index.faiss.kind is IndexKind.FLAT and index.count() == 100
    add_products(catalog, 100, 250)
    catalog.delete("p3")
    index.sync()  # starts the trained build in the background; the exact index keeps serving
    assert index.faiss.kind is IndexKind.FLAT and index.count() == 349
    add_products(catalog, 350, 5)  # written while the build runs: replayed at the swap
    index.finish_rebuild()
    assert index.faiss.kind is IndexKind.HNSW_SQ8 and index.count() == 354
    probe = catalog.vectors([11])[1]  # product p10 holds vector id 11 (ids count from 1)
    _, ids = index.search(probe, 349)
    assert ids[0][0] == 11 and 4 not in ids[0].tolist()  # p3 (vector 4) was deleted
    index.save()

    reopened = EmbeddedIndex(catalog, tmp_path / "index", IndexKind.HNSW_SQ8)
    assert reopened.faiss.kind is IndexKind.HNSW_SQ8 and reopened.count() == 354


def test_changes_made_after_the_saved_file_are_replayed_on_open(tmp_path: Path) -> None:
    catalog = SqliteCatalog(tmp_path / "catalog.db", "m", DIM)
    add_products(catalog, 0, 50)
    index = EmbeddedIndex(catalog, tmp_path / "index", IndexKind.HNSW)
    index.save()
    add_products(catalog, 50, 10)
    catalog.delete("p0")
    reopened = EmbeddedIndex(catalog, tmp_path / "index", IndexKind.HNSW)
    assert reopened.count() == 59
    assert len(list((tmp_path / "index").glob("index-*.faiss"))) == 1


def test_switching_the_configured_kind_rebuilds_from_the_catalog(tmp_path: Path) -> None:
    catalog = SqliteCatalog(tmp_path / "catalog.db", "m", DIM)
    add_products(catalog, 0, 40)
    EmbeddedIndex(catalog, tmp_path / "index", IndexKind.HNSW).save()
    exact = EmbeddedIndex(catalog, tmp_path / "index", IndexKind.FLAT)
    assert exact.faiss.kind is IndexKind.FLAT and exact.count() == 40
