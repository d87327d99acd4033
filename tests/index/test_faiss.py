"""One contract for both faiss index kinds: add, search, remove, persist; HNSW tombstones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from tongkuan.domain.indexes import IndexKind
from tongkuan.errors import DimensionMismatch
from tongkuan.index.faiss import FaissIndex

DIM = 32


def unit(n: int, seed: int) -> NDArray[np.float32]:
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture(params=list(IndexKind))
def kind(request: pytest.FixtureRequest) -> IndexKind:
    return request.param  # type: ignore[no-any-return]


def make(kind: IndexKind, path: Path | None = None) -> FaissIndex:
    """An empty index of `kind`; a trained one learns from vectors like the test's."""
    return FaissIndex(DIM, kind, path, training=unit(500, 99) if kind.needs_training else None)


def test_each_vector_finds_itself_first(kind: IndexKind) -> None:
    index = make(kind)
    vectors = unit(200, 1)
    index.add(np.arange(1000, 1200, dtype=np.int64), vectors)
    scores, ids = index.search(vectors[:20], 5)
    assert ids[:, 0].tolist() == list(range(1000, 1020))
    assert np.allclose(scores[:, 0], 1.0, atol=0.05)  # 8-bit codes are approximate


def test_adding_a_present_id_again_does_not_duplicate_it(kind: IndexKind) -> None:
    index = make(kind)
    vectors = unit(10, 2)
    index.add(np.arange(10, dtype=np.int64), vectors)
    index.add(np.arange(10, dtype=np.int64), vectors)
    assert index.count() == 10
    _, ids = index.search(vectors[:1], 10)
    assert sorted(ids[0].tolist()) == list(range(10))


def test_removed_ids_are_never_returned_and_missing_ids_are_ignored(kind: IndexKind) -> None:
    index = make(kind)
    vectors = unit(50, 3)
    index.add(np.arange(50, dtype=np.int64), vectors)
    index.remove(np.array([0, 1, 2, 999], dtype=np.int64))
    assert index.count() == 47
    _, ids = index.search(vectors[:3], 47)
    assert not {0, 1, 2} & set(ids.ravel().tolist())
    assert -1 not in ids[0]


def test_the_index_survives_a_save_and_load_with_its_removals(kind: IndexKind, tmp_path: Path) -> None:
    path = tmp_path / "index-7.faiss"
    index = make(kind, path)
    vectors = unit(40, 4)
    index.add(np.arange(40, dtype=np.int64), vectors)
    index.remove(np.array([5], dtype=np.int64))
    index.save()
    loaded = FaissIndex(DIM, IndexKind.FLAT, path)  # the file decides the kind
    assert loaded.kind is kind and loaded.count() == 39
    _, ids = loaded.search(vectors[5:6], 39)
    assert 5 not in ids[0].tolist()
    with pytest.raises(DimensionMismatch):
        FaissIndex(DIM * 2, kind, path)


def test_hnsw_asks_for_a_rebuild_once_tombstones_pile_up() -> None:
    index = make(IndexKind.HNSW)
    index.add(np.arange(3000, dtype=np.int64), unit(3000, 5))
    index.remove(np.arange(500, dtype=np.int64))
    assert not index.needs_rebuild()
    index.remove(np.arange(500, 1100, dtype=np.int64))
    assert index.needs_rebuild()


def test_vectors_of_the_wrong_dimension_are_refused(kind: IndexKind) -> None:
    with pytest.raises(DimensionMismatch):
        make(kind).add(np.arange(2, dtype=np.int64), unit(2, 6)[:, :16])


def test_a_trained_index_refuses_to_start_without_training_vectors() -> None:
    with pytest.raises(ValueError, match="training"):
        FaissIndex(DIM, IndexKind.HNSW_SQ8)
