"""How training draws its pictures: class-balanced batches, the groups held back for early
stopping, and the near-duplicate groups that stand in for products where single-picture
listings are listed again."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from tongkuan.adapt.groups import Labels, joined, mutual_pairs
from tongkuan.adapt.recipe import Recipe
from tongkuan.adapt.whitening import PAIR_COSINE, PAIR_NEIGHBOURS, listed_again


def balanced_batches(
    labels: Labels, views: int, recipe: Recipe, epoch: int, silent: NDArray[np.bool_] | None = None
) -> list[tuple[list[int], list[int]]]:
    """One epoch of P groups × K (picture, view) pairs, as many batches as the pictures fill;
    `silent` groups (one bool per group) are never drawn, and the others fill the epoch (its
    length, and so the learning-rate schedule, does not change as groups fall silent)."""
    rng = np.random.default_rng([recipe.seed, epoch])
    members = [np.flatnonzero(labels == g) for g in range(int(labels.max()) + 1)]
    drawn = np.flatnonzero(~silent) if silent is not None and not silent.all() else np.arange(len(members))
    per_batch = recipe.groups_per_batch * recipe.views_per_group
    steps = max(1, math.ceil(len(labels) / per_batch))
    order = np.concatenate([rng.permutation(drawn) for _ in range(steps * recipe.groups_per_batch // len(drawn) + 1)])
    batches = []
    for step in range(steps):
        pictures, chosen_views = [], []
        for group in order[step * recipe.groups_per_batch : (step + 1) * recipe.groups_per_batch]:
            pairs = len(members[group]) * views
            picks = rng.choice(pairs, recipe.views_per_group, replace=pairs < recipe.views_per_group)
            pictures += [int(members[group][p // views]) for p in picks]
            chosen_views += [int(p % views) for p in picks]
        batches.append((pictures, chosen_views))
    return batches


def hold_back(labels: Labels, recipe: Recipe) -> NDArray[np.bool_]:
    """Whole groups held back for early stopping, preferring groups with several pictures
    (their photos can be searched among themselves); True marks a held-back picture."""
    rng = np.random.default_rng([recipe.seed, 7])
    groups = rng.permutation(int(labels.max()) + 1)
    sizes = np.bincount(labels)
    groups = np.concatenate([groups[sizes[groups] >= 2], groups[sizes[groups] < 2]])
    count = max(2, round(recipe.holdback * len(groups)))
    return np.isin(labels, groups[:count])


def hold_back_twins(twins: Labels, recipe: Recipe) -> NDArray[np.bool_]:
    """Whole groups of near-duplicate listings held back, about `holdback` of the pictures, so
    that each held-back listing's twins are held back with it and the check can ask whether
    the tuned model still finds them; True marks a held-back picture."""
    rng = np.random.default_rng([recipe.seed, 7])
    sizes = np.bincount(twins)
    groups = rng.permutation(np.flatnonzero(sizes >= 2))
    taken = np.cumsum(sizes[groups]) <= recipe.holdback * len(twins)
    taken[:2] = True
    return np.isin(twins, groups[taken])


def twin_groups(embeddings: NDArray[np.float32]) -> Labels | None:
    """Listings joined where they are near-duplicate pairs (each among the other's
    `PAIR_NEIGHBOURS` nearest at `PAIR_COSINE` or more), or None where too few listings have
    one for the catalog to be listings of SKUs listed again (the whitening's "auto" rule)."""
    pairs, cosine = mutual_pairs(embeddings, PAIR_NEIGHBOURS, PAIR_COSINE)
    return joined(pairs, len(embeddings)) if listed_again(pairs, cosine, len(embeddings)) else None
