"""Learned whitening: what it learns, how it is stored, and the index built in its space."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tongkuan.adapt import whitening as whitening_module
from tongkuan.adapt.whitening import META_KEY, learn_from_catalog, search_space
from tongkuan.catalog.sqlite import SqliteCatalog
from tongkuan.domain.indexes import IndexKind
from tongkuan.domain.products import NewImage, Product
from tongkuan.domain.spaces import ModelSpace
from tongkuan.index.embedded import EmbeddedIndex
from tongkuan.vision.encoder import l2_normalise
from tongkuan.vision.whitening import MIN_PRODUCTS, CannotLearn, ScatterSums, Whitening, learn_whitening

DIM = 32


def nuisance_products(
    products: int, pictures: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pictures of products whose identity lives in a few weak directions, plus a strong
    nuisance (lighting, background) that changes from picture to picture, and one more
    "query" picture per product taken under a new nuisance."""
    rng = np.random.default_rng(seed)
    identity = rng.normal(size=(products, DIM)) * np.r_[np.ones(8), np.zeros(DIM - 8)] * 0.5
    nuisance_basis = np.linalg.qr(rng.normal(size=(DIM, DIM)))[0][:, :6]

    def photos(n: int) -> np.ndarray:
        noise = (rng.normal(size=(products, n, 6)) * 2.0) @ nuisance_basis.T
        return l2_normalise(
            (identity[:, None, :] + noise + 0.05 * rng.normal(size=(products, n, DIM))).reshape(-1, DIM)
        )

    catalog = photos(pictures)
    labels = np.repeat(np.arange(products), pictures)
    return catalog, labels, photos(1), np.arange(products)


def rank1(queries: np.ndarray, truth: np.ndarray, catalog: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(labels[np.argmax(queries @ catalog.T, axis=1)] == truth))


def test_whitening_learned_from_products_with_several_pictures_discounts_what_varies_within_them() -> None:
    catalog, labels, queries, truth = nuisance_products(60, 4)
    before = rank1(queries, truth, catalog, labels)
    whitening = learn_whitening(catalog.astype(np.float32), labels, "m", dims=16)
    after = rank1(whitening(queries), truth, whitening(catalog), labels)
    assert whitening.dim == 16 and whitening.products == 60 and whitening.pictures == 240
    assert before < 0.2 and after > 0.8, (before, after)
    mapped = whitening(queries)
    assert mapped.dtype == np.float32 and np.allclose(np.linalg.norm(mapped, axis=1), 1.0, atol=1e-5)


def test_sums_added_in_pieces_learn_what_all_at_once_does() -> None:
    catalog, labels, _, _ = nuisance_products(40, 3)
    groups = [catalog[labels == p] for p in range(40)]
    whole = ScatterSums(DIM)
    whole.add(groups)
    pieces = ScatterSums(DIM)
    for start in range(0, 40, 7):
        pieces.add(groups[start : start + 7])
    a, b = whole.learn("m", 8), pieces.learn("m", 8)
    assert np.allclose(a.projection, b.projection, atol=1e-4) and np.allclose(a.mean, b.mean, atol=1e-6)
    assert a.key == learn_whitening(catalog, labels, "m", 8).key  # deterministic, signs included


def test_stored_text_round_trips_exactly() -> None:
    catalog, labels, queries, _ = nuisance_products(30, 3)
    whitening = learn_whitening(catalog, labels, "m", dims=8, shrinkage=0.2)
    again = Whitening.from_text(whitening.to_text())
    assert again.key == whitening.key and again.shrinkage == 0.2 and again.model == "m"
    assert np.array_equal(again(queries), whitening(queries))


def test_too_little_to_learn_from_is_refused_with_the_reason() -> None:
    catalog, labels, _, _ = nuisance_products(MIN_PRODUCTS - 1, 2)
    with pytest.raises(CannotLearn, match=f"at least {MIN_PRODUCTS} products with two or more pictures"):
        learn_whitening(catalog, labels, "m")
    single = np.arange(len(catalog))  # every picture its own product: nothing varies within one
    with pytest.raises(CannotLearn, match="the catalog has 0"):
        learn_whitening(catalog, single, "m")
    catalog, labels, _, _ = nuisance_products(MIN_PRODUCTS, 2)
    with pytest.raises(CannotLearn, match="dims must be between 1 and 32"):
        learn_whitening(catalog, labels, "m", dims=33)
    with pytest.raises(CannotLearn, match="shrinkage"):
        learn_whitening(catalog, labels, "m", dims=8, shrinkage=1.5)


def store(catalog: SqliteCatalog, vectors: np.ndarray, labels: np.ndarray) -> None:
    catalog.upsert_many(
        [
            (
                Product(f"p{p:03d}", "t"),
                [
                    NewImage(f"{p:032x}{i:032x}", "x.jpg", v.astype(np.float32))
                    for i, v in enumerate(vectors[labels == p])
                ],
            )
            for p in np.unique(labels)
        ]
    )


def test_learned_from_the_catalog_equals_learned_in_memory_and_is_kept_in_it(tmp_path: Path) -> None:
    vectors, labels, _, _ = nuisance_products(50, 3)
    catalog = SqliteCatalog(tmp_path / "catalog.db", "m", DIM)
    store(catalog, vectors, labels)
    assert isinstance(search_space(catalog), ModelSpace)
    learned = learn_from_catalog(catalog, dims=12)
    assert learned.key == learn_whitening(vectors.astype(np.float32), labels, "m", dims=12).key
    sampled = learn_from_catalog(catalog, dims=12, max_pictures=75)  # every second product
    assert sampled.products == 25 and sampled.pictures == 75
    catalog.set_learned(META_KEY, learned.to_text())
    reopened = SqliteCatalog(tmp_path / "catalog.db", "m", DIM)
    assert search_space(reopened).key == learned.key
    other_model = SqliteCatalog(tmp_path / "other.db", "m2", DIM)
    other_model.set_learned(META_KEY, learned.to_text())  # learned for another model: ignored
    assert isinstance(search_space(other_model), ModelSpace)
    reopened.set_learned(META_KEY, None)
    assert isinstance(search_space(reopened), ModelSpace)


def test_the_index_holds_the_catalog_in_the_learned_space(tmp_path: Path) -> None:
    vectors, labels, queries, _ = nuisance_products(50, 3)
    catalog = SqliteCatalog(tmp_path / "catalog.db", "m", DIM)
    store(catalog, vectors, labels)
    whitening = learn_from_catalog(catalog, dims=12)
    index = EmbeddedIndex(catalog, tmp_path / "index", IndexKind.HNSW, space=whitening)
    assert index.faiss.dim == 12 and index.space is whitening
    scores, ids = index.search(whitening(queries), 1)
    stored_ids, stored = catalog.vectors()
    exact = whitening(queries) @ whitening(stored).T
    assert np.array_equal(ids[:, 0], stored_ids[exact.argmax(axis=1)])
    assert np.allclose(scores[:, 0], exact.max(axis=1), atol=1e-5)
    index.save()
    reopened = EmbeddedIndex(catalog, tmp_path / "index", IndexKind.HNSW, space=whitening)
    assert reopened.faiss.dim == 12 and reopened.count() == len(vectors)


def test_a_catalog_of_listings_learns_from_its_near_duplicate_pairs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # one SKU listed twice, one picture a listing: no product has two pictures, but a
    # listing's nearest neighbour is its twin, photographed under a somewhat different nuisance
    rng = np.random.default_rng(0)
    identity = rng.normal(size=(60, DIM)) * np.r_[np.ones(8), np.zeros(DIM - 8)] * 0.5
    basis = np.linalg.qr(rng.normal(size=(DIM, DIM)))[0][:, :6]
    nuisance = rng.normal(size=(60, 6)) * 2.0

    def photos(shift: float) -> np.ndarray:
        moved = (nuisance + shift * rng.normal(size=nuisance.shape)) @ basis.T
        return l2_normalise(identity + moved + 0.02 * rng.normal(size=identity.shape)).astype(np.float32)

    listings = np.concatenate([photos(0.0), photos(0.6)])
    skus = np.r_[np.arange(60), np.arange(60)]
    queries, truth = photos(2.0), np.arange(60)  # shoppers' photos: a new nuisance
    catalog = SqliteCatalog(tmp_path / "catalog.db", "m", DIM)
    store(catalog, listings, np.arange(len(listings)))  # every listing a product of its own
    with pytest.raises(CannotLearn, match="near-duplicate"):
        learn_from_catalog(catalog, dims=12, neighbours="off")
    learned = learn_from_catalog(catalog, dims=12)
    assert learned.pairs >= 45 and learned.products == learned.pairs
    assert Whitening.from_text(learned.to_text()).pairs == learned.pairs
    before = rank1(queries, truth, listings, skus)
    assert rank1(learned(queries), truth, learned(listings), skus) > before + 0.1
    # a large catalog: products sampled for the spread, single pictures on their own
    assert learn_from_catalog(catalog, dims=12, max_pictures=40).pairs >= 45  # every single picture still read
    monkeypatch.setattr(whitening_module, "MAX_PAIRED", 60)  # half of them: half the twins
    assert 10 <= learn_from_catalog(catalog, dims=12).pairs < 45


def test_a_catalog_of_different_products_does_not_learn_from_lookalike_pairs(tmp_path: Path) -> None:
    vectors, labels, _, _ = nuisance_products(60, 1)  # one picture each, every product different
    catalog = SqliteCatalog(tmp_path / "catalog.db", "m", DIM)
    store(catalog, vectors, labels)
    with pytest.raises(CannotLearn):
        learn_from_catalog(catalog, dims=12)  # "auto": too few near-duplicates
    assert learn_from_catalog(catalog, dims=8, neighbours="on").pairs > 0  # asked for: learned
