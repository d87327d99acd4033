"""Every vector index gives the answers the `VectorIndex` contract promises, from the same
catalog, through the same calls.

Each test fills one embedded catalog, opens an index of every backend over it (the faiss
index of each kind the embedded store offers, and a Milvus collection), makes the same writes
through the catalog, so that each index learns of them as it does in service (replaying the
change log in `sync`), and compares each answer with an exact scan of the catalog's vectors
in numpy. An exact index (faiss Flat) must answer as the scan does: the same ids in the same
order and the same scores. An approximate one (HNSW, its 8-bit variant, Milvus) may differ
where the contract lets it: each stored picture still finds itself first, most of the nearest
pictures are found, and no removed picture is ever returned.

To add a backend, add it to the BACKENDS fixture (a name among its params, and the `Backend`
that opens it): every test here then runs against it too.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from tongkuan.catalog.sqlite import SqliteCatalog
from tongkuan.domain.categories import Category
from tongkuan.domain.changes import IndexSource
from tongkuan.domain.indexes import IndexKind
from tongkuan.domain.products import NewImage, Product
from tongkuan.domain.spaces import ModelSpace, SearchSpace
from tongkuan.index import embedded
from tongkuan.index.base import VectorIndex
from tongkuan.index.embedded import EmbeddedIndex

DIM = 16
PICTURES = 3  # per product
CATEGORIES = (Category.TOPS, Category.SHOES, Category.SNACKS, None)
TRAIN_AT = 64  # so that the trained kind (hnsw-sq8) is trained here, on a small catalog
_prefixes = itertools.count()

Vectors = NDArray[np.float32]


@dataclass
class Backend:
    """One kind of vector index: how to open it over a catalog at a named place (an index
    folder, a collection prefix), opened again at the same place, and how close it answers."""

    name: str
    exact: bool  # answers exactly as a scan of every vector
    score_tolerance: float  # how far its scores may be from the exact ones
    opener: Callable[[IndexSource, str, SearchSpace | None], VectorIndex]

    def open(self, catalog: IndexSource, place: str = "index", space: SearchSpace | None = None) -> VectorIndex:
        return self.opener(catalog, place, space)


def _embedded(kind: IndexKind, folder: Path) -> Callable[[IndexSource, str, SearchSpace | None], VectorIndex]:
    def open_index(catalog: IndexSource, place: str, space: SearchSpace | None) -> VectorIndex:
        return EmbeddedIndex(catalog, folder / place, kind, space=space)

    return open_index


def _milvus(request: pytest.FixtureRequest) -> Callable[[IndexSource, str, SearchSpace | None], VectorIndex]:
    from tongkuan.index.milvus import MilvusIndex

    server = request.getfixturevalue("milvus")
    test = next(_prefixes)

    def open_index(catalog: IndexSource, place: str, space: SearchSpace | None) -> VectorIndex:
        return MilvusIndex(catalog, f"milvus://127.0.0.1:{server.port}/contract{test}{place}", space=space)

    return open_index


@pytest.fixture(name="BACKENDS", params=["flat", "hnsw", "hnsw-sq8", "milvus"])
def backends(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    """Every vector index, one per run of each test."""
    monkeypatch.setattr(embedded, "TRAIN_AT", TRAIN_AT)
    name: str = request.param
    if name == "milvus":
        yield Backend(name, exact=False, score_tolerance=1e-4, opener=_milvus(request))
    else:
        kind = IndexKind(name)
        # 8-bit codes are approximate, the more so for vectors outside the ranges the codes
        # were trained on (here a small sample: the pictures added later stray further)
        tolerance = 0.2 if kind is IndexKind.HNSW_SQ8 else 1e-5
        yield Backend(name, kind is IndexKind.FLAT, tolerance, _embedded(kind, tmp_path))


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[SqliteCatalog]:
    opened = SqliteCatalog(tmp_path / "catalog.db", "m", DIM)
    yield opened
    opened.close()


def unit(count: int, seed: int) -> Vectors:
    v = np.random.default_rng(seed).standard_normal((count, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)  # type: ignore[no-any-return]


def add_products(catalog: SqliteCatalog, start: int, count: int) -> None:
    """Products `p<start>`... with `PICTURES` random pictures each, in turn in each of `CATEGORIES`."""
    vectors = unit(count * PICTURES, seed=start)
    catalog.upsert_many(
        [
            (
                Product(f"p{n}", f"p{n}", category=CATEGORIES[n % len(CATEGORIES)]),
                [NewImage(f"h{n}-{j}", f"{n}-{j}.jpg", vectors[i * PICTURES + j]) for j in range(PICTURES)],
            )
            for i, n in enumerate(range(start, start + count))
        ]
    )


def caught_up(index: VectorIndex) -> int:
    """Replay the catalog's changes into `index`, then wait for a rebuild that started (the
    trained kind's first training); how many changes were replayed."""
    replayed = index.sync()
    index.finish_rebuild()
    return replayed


def stored(catalog: IndexSource, space: SearchSpace | None = None) -> tuple[list[int], Vectors]:
    """Every picture's id and vector as the index holds it (mapped by `space`)."""
    ids, vectors = catalog.vectors()
    return ids.tolist(), (space or ModelSpace(DIM))(vectors)


def scan(
    catalog: IndexSource, queries: Vectors, k: int, space: SearchSpace | None = None
) -> tuple[Vectors, list[list[int]]]:
    """The exact answer: scores and ids of the `k` nearest pictures by inner product."""
    ids, vectors = stored(catalog, space)
    scores = queries @ vectors.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), [[ids[j] for j in row] for row in order]


def found(ids: NDArray[np.int64]) -> list[list[int]]:
    """Each row's ids, without the empty slots (id -1), which may only come after them."""
    rows = []
    for row in ids.tolist():
        hits = [i for i in row if i >= 0]
        assert row[: len(hits)] == hits, f"an empty slot before a hit: {row}"
        rows.append(hits)
    return rows


def assert_answers_as_a_scan(
    backend: Backend,
    index: VectorIndex,
    catalog: IndexSource,
    queries: Vectors,
    k: int,
    space: SearchSpace | None = None,
) -> None:
    """The nearest pictures as an exact scan finds them: the very same for an exact index;
    for an approximate one, most of them, with close scores."""
    expected_scores, expected = scan(catalog, queries, k, space)
    scores, ids = index.search(queries, k)
    got = found(ids)
    assert all(len(row) == min(k, len(stored(catalog)[0])) for row in got)
    if backend.exact:
        assert got == expected
    else:
        recall = np.mean([len(set(e) & set(g)) / len(e) for e, g in zip(expected, got, strict=True)])
        assert recall >= 0.9, recall
    # the score of each id found is its exact score (approximately, for 8-bit codes)
    vectors = dict(zip(*stored(catalog, space), strict=True))
    for query, row_ids, row_scores in zip(queries, got, scores, strict=True):
        exact = np.array([vectors[i] @ query for i in row_ids], dtype=np.float32)
        assert np.allclose(row_scores[: len(row_ids)], exact, atol=backend.score_tolerance)
    if backend.exact:
        assert np.allclose(scores[:, :k], expected_scores, atol=1e-5)


def assert_each_finds_itself_first(
    backend: Backend, index: VectorIndex, catalog: IndexSource, space: SearchSpace | None = None
) -> None:
    ids, vectors = stored(catalog, space)
    scores, found_ids = index.search(vectors, 5)
    assert found_ids[:, 0].tolist() == ids
    assert np.allclose(scores[:, 0], 1.0, atol=backend.score_tolerance)


def test_the_nearest_pictures_are_those_an_exact_scan_finds(BACKENDS: Backend, catalog: SqliteCatalog) -> None:
    add_products(catalog, 0, 40)
    index = BACKENDS.open(catalog)
    caught_up(index)
    if isinstance(index, EmbeddedIndex):  # the configured kind is the one searched (trained, for hnsw-sq8)
        assert index.faiss.kind is index.kind
    assert index.count() == catalog.count()[1] == 120 and index.max_k >= 120
    index.ping()
    assert_each_finds_itself_first(BACKENDS, index, catalog)
    assert_answers_as_a_scan(BACKENDS, index, catalog, unit(30, seed=99), 10)
    index.close()


def test_writes_reach_the_index_through_the_change_log(BACKENDS: Backend, catalog: SqliteCatalog) -> None:
    add_products(catalog, 0, 30)
    index = BACKENDS.open(catalog)
    caught_up(index)
    before = catalog.last_change()
    add_products(catalog, 30, 10)
    catalog.delete("p3")
    add_products(catalog, 5, 1)  # p5's pictures replaced
    catalog.add_image("p7", NewImage("h7-x", "7-x.jpg", unit(1, seed=7)[0], "extra"))
    catalog.delete_image("p8", "0")
    catalog.update("p9", lambda p: Product(p.item_id, p.title, category=Category.BAGS))  # retagged
    add_products(catalog, 100, 1)
    catalog.delete("p100")  # added and removed between two replays: never in the index
    assert caught_up(index) == catalog.last_change() - before
    assert caught_up(index) == 0
    live = catalog.image_ids()
    assert index.count() == catalog.count()[1] == len(live)
    # as deep as the index holds, a search finds every picture once, and no removed one
    _, ids = index.search(unit(3, seed=5), len(live))
    assert [sorted(row) for row in found(ids)] == [live] * 3
    # deeper than that: at most `k` slots, the empty ones (id -1) last
    _, ids = index.search(unit(3, seed=6), len(live) + 20)
    assert ids.shape[1] <= len(live) + 20 and [sorted(row) for row in found(ids)] == [live] * 3
    assert_each_finds_itself_first(BACKENDS, index, catalog)
    assert_answers_as_a_scan(BACKENDS, index, catalog, unit(20, seed=98), 10)
    index.close()


def test_a_category_search_answers_from_the_category_once_the_caller_filters(
    BACKENDS: Backend, catalog: SqliteCatalog
) -> None:
    add_products(catalog, 0, 40)
    catalog.update("p1", lambda p: Product(p.item_id, p.title, category=Category.BAGS))  # before the index opens
    index = BACKENDS.open(catalog)
    caught_up(index)
    catalog.update("p2", lambda p: Product(p.item_id, p.title, category=Category.BAGS))  # replayed as a retag
    caught_up(index)
    ids, vectors = stored(catalog)
    categories = catalog.vector_categories(ids)
    for vector_id, vector in list(zip(ids, vectors, strict=True))[::4]:
        category = categories[vector_id]
        if category < 0:
            continue
        _, found_ids = index.search(vector[None, :], 10, Category(category))
        hits = found(found_ids)[0]
        if index.filters:  # it stores categories: it answers from the category only
            assert {categories[i] for i in hits} == {category}
        in_category = [i for i in hits if categories[i] == category]  # what the caller keeps
        assert in_category[0] == vector_id
    index.close()


def test_an_index_opened_again_or_afresh_answers_as_the_one_kept_in_step(
    BACKENDS: Backend, catalog: SqliteCatalog
) -> None:
    add_products(catalog, 0, 30)
    index = BACKENDS.open(catalog, "kept")
    caught_up(index)
    add_products(catalog, 30, 10)
    catalog.delete("p4")
    caught_up(index)
    queries = unit(20, seed=97)
    before = index.search(queries, 10)
    index.save()
    index.close()
    again = BACKENDS.open(catalog, "kept")  # what was saved, or the shared collection
    assert caught_up(again) == 0
    assert found(again.search(queries, 10)[1]) == found(before[1])
    again.close()
    add_products(catalog, 40, 2)  # written while no index ran: replayed on open
    catalog.delete("p6")
    again = BACKENDS.open(catalog, "kept")
    fresh = BACKENDS.open(catalog, "fresh")  # nothing kept there: the whole log replayed
    for opened in (again, fresh):
        assert caught_up(opened) == 0  # opening caught up
        assert opened.count() == catalog.count()[1] == 3 * 40
        assert_each_finds_itself_first(BACKENDS, opened, catalog)
        assert_answers_as_a_scan(BACKENDS, opened, catalog, queries, 10)
        opened.close()


def test_an_empty_index_finds_nothing(BACKENDS: Backend, catalog: SqliteCatalog) -> None:
    index = BACKENDS.open(catalog)
    assert caught_up(index) == 0 and index.count() == 0
    index.ping()
    scores, ids = index.search(unit(2, seed=1), 5)
    assert ids.shape[0] == scores.shape[0] == 2 and found(ids) == [[], []]
    index.close()


@dataclass(frozen=True)
class Projection:
    """A search space of its own: a fixed projection to fewer dimensions, back to unit length."""

    matrix: Vectors
    key: str = "projection"

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def __call__(self, vectors: Vectors) -> Vectors:
        mapped = vectors @ self.matrix
        return (mapped / np.linalg.norm(mapped, axis=1, keepdims=True)).astype(np.float32)  # type: ignore[no-any-return]


def test_a_search_space_maps_stored_pictures_as_it_maps_queries(BACKENDS: Backend, catalog: SqliteCatalog) -> None:
    add_products(catalog, 0, 30)
    space = Projection(np.random.default_rng(3).standard_normal((DIM, 8)).astype(np.float32))
    index = BACKENDS.open(catalog, space=space)
    caught_up(index)
    assert index.space is space and index.count() == 90
    assert_each_finds_itself_first(BACKENDS, index, catalog, space)
    assert_answers_as_a_scan(BACKENDS, index, catalog, space(unit(20, seed=96)), 10, space)
    index.close()
