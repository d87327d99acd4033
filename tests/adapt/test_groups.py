"""Supervision: product and group-key labels, and pseudo-groups found on a synthetic embedding set
whose groups are known (purity, pairs recovered, lookalikes kept apart)."""

from __future__ import annotations

import numpy as np
import pytest

from tongkuan.adapt.groups import (
    combine,
    density_groups,
    k_reciprocal_distances,
    labels_from_products,
    linked_groups,
    mutual_knn_groups,
    mutual_pairs,
    pair_recall,
    pseudo_groups,
    purity,
    split_groups,
)


def synthetic(groups: int = 30, per_group: int = 4, noise: float = 0.25, dim: int = 64, seed: int = 0):  # type: ignore[no-untyped-def]
    """Unit vectors scattered around `groups` random centres: known groups, realistic overlap."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(groups, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    truth = np.repeat(np.arange(groups), per_group)
    points = centres[truth] + noise * rng.normal(size=(len(truth), dim)) / np.sqrt(dim)
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points.astype(np.float32), truth.astype(np.int64)


def test_pictures_of_one_product_share_a_label() -> None:
    labels = labels_from_products(["a", "b", "a", "c"])
    assert labels[0] == labels[2]
    assert len(set(labels.tolist())) == 3


def test_a_group_key_ties_listings_of_one_sku_together() -> None:
    labels = labels_from_products(["l1", "l2", "l3", "l4", "l1"], ["sku", None, "sku", "other", None])
    assert labels[0] == labels[2] == labels[4]
    assert len({labels[1], labels[3], labels[0]}) == 3


def test_mutual_neighbours_recover_known_groups_purely() -> None:
    points, truth = synthetic()
    found = mutual_knn_groups(points, k=3, threshold=0.8)
    assert purity(found, truth) >= 0.95
    assert pair_recall(found, truth) >= 0.6


def test_a_high_threshold_joins_nothing() -> None:
    points, truth = synthetic()
    found = mutual_knn_groups(points, k=3, threshold=0.999)
    assert len(set(found.tolist())) == len(points)
    assert purity(found, truth) == 1.0


def test_k_reciprocal_distances_are_small_within_groups() -> None:
    points, truth = synthetic(noise=0.4)
    distances = k_reciprocal_distances(points, k1=6, k2=3)
    same = truth[:, None] == truth[None, :]
    np.fill_diagonal(same, False)
    different = truth[:, None] != truth[None, :]
    assert distances.shape == (len(points), len(points))
    assert np.allclose(np.diag(distances), 0)
    assert distances[same].mean() < 0.7 < distances[different].mean()


def test_density_clustering_of_k_reciprocal_distances_recovers_groups() -> None:
    points, truth = synthetic(noise=0.4)
    found = pseudo_groups(points, "k-reciprocal", k=6, k2=3, eps=0.5)
    assert purity(found, truth) >= 0.9
    assert pair_recall(found, truth) >= 0.6


def test_density_clustering_leaves_noise_on_its_own() -> None:
    distances = np.array([[0, 0.1, 0.9], [0.1, 0, 0.9], [0.9, 0.9, 0]], dtype=np.float32)
    found = density_groups(distances, eps=0.5, min_samples=2)
    assert found[0] == found[1] != found[2]


def test_pseudo_groups_join_only_open_pictures() -> None:
    known = np.array([0, 0, 1, 1, 2, 3])
    pseudo = np.array([0, 1, 0, 1, 5, 5])  # would merge everything if allowed
    joinable = np.array([False, False, False, False, True, True])
    found = combine(known, pseudo, joinable)
    assert found[0] == found[1] and found[2] == found[3] and found[4] == found[5]
    assert len({found[0], found[2], found[4]}) == 3


def test_an_unknown_method_is_refused() -> None:
    points, _ = synthetic(groups=3)
    with pytest.raises(ValueError):
        pseudo_groups(points, "spectral")


def test_average_linkage_recovers_groups_purely() -> None:
    points, truth = synthetic()
    found = linked_groups(points, k=8, threshold=0.8)
    assert purity(found, truth) >= 0.95
    assert pair_recall(found, truth) >= 0.6
    assert np.array_equal(found, pseudo_groups(points, "linked", k=8, threshold=0.8))


def test_average_linkage_does_not_chain_lookalikes() -> None:
    # a line of points each close to the next: components chain them all, linkage does not
    line = np.stack([np.cos(np.linspace(0, 1.5, 12)), np.sin(np.linspace(0, 1.5, 12))], axis=1).astype(np.float32)
    assert len(set(mutual_knn_groups(line, k=2, threshold=0.98).tolist())) == 1
    assert len(set(linked_groups(line, k=2, threshold=0.98).tolist())) > 3


def test_a_pseudo_group_never_spans_two_categories() -> None:
    found = np.array([0, 0, 0, 1, 1, 2])
    categories = np.array([3, 3, 5, 5, 5, -1])
    split = split_groups(found, categories)
    assert split[0] == split[1] != split[2]
    assert split[3] == split[4]
    assert len(set(split.tolist())) == 4


def test_mutual_pairs_are_near_duplicates_each_nearest_to_the_other() -> None:
    points, truth = synthetic(groups=40, per_group=2, noise=0.2)
    pairs, cosine = mutual_pairs(points, k=1, threshold=0.5)
    assert len(pairs) >= 35 and (truth[pairs[:, 0]] == truth[pairs[:, 1]]).all()
    assert (pairs[:, 0] < pairs[:, 1]).all()
    assert np.allclose(cosine, np.sum(points[pairs[:, 0]] * points[pairs[:, 1]], axis=1), atol=1e-5)
    chunked, _ = mutual_pairs(points, k=1, threshold=0.5, chunk=7)  # chunks that split pairs give the same
    assert sorted(map(tuple, chunked.tolist())) == sorted(map(tuple, pairs.tolist()))
    assert len(mutual_pairs(points, k=1, threshold=0.9999)[0]) == 0
    assert mutual_pairs(points[:1])[0].shape == (0, 2)  # one picture: no pair
