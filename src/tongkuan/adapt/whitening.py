"""The catalog's learned whitening: learned from its stored vectors, kept in its metadata (so
every replica reads the same one), and read back as the space searches run in.

The maths is `tongkuan.vision.whitening`; this module reads the catalog, finds the pairs of
near-duplicate single-picture listings where the catalog is made of them, and stores the result.

Why pairs: where a SKU is listed many times with one picture each (a marketplace's shape),
no product has two pictures to learn from, but listings that are each other's nearest
neighbours at a high cosine are nearly always one product. On 2,640 grocery listings
(`bench/quality.py`, listings table, Lite2) a whitening learned from mutual 2-nearest-
neighbour pairs at cosine >= 0.7 lifts shoppers' photos' R@1 from 0.581 to 0.672 as the
service describes pictures (0.564 to 0.645 for whole pictures). Where the products are
all different (a studio shot each), the nearest pairs are lookalike products, and a whitening
learned from them cost 3 to 8 points: so pairs are used only when most single pictures have
a near-duplicate (`DUPLICATED_SHARE`), which held for the listings (77 %) and not for studio
shots (43 %), fashion shots (44 %) or shoppers' clothing photos (13 %).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from tongkuan.adapt.groups import mutual_pairs
from tongkuan.catalog.store import LearnedMetadata, ProductReader
from tongkuan.domain.spaces import ModelSpace, SearchSpace
from tongkuan.vision.whitening import DEFAULT_SHRINKAGE, ScatterSums, Whitening

META_KEY = "whitening"
MAX_PICTURES = 200_000  # learned from at most this many pictures (an even sample of products)
MAX_PAIRED = 20_000  # single pictures searched for near-duplicate pairs at most (an even sample)
PAIR_NEIGHBOURS = 2  # each of a pair among the other's 2 nearest single pictures
PAIR_COSINE = 0.7  # ... at this cosine or more
DUPLICATE_COSINE = 0.8  # "auto": a single picture with a pair this close has a near-duplicate
DUPLICATED_SHARE = 0.6  # "auto": pairs are learned from when this share of single pictures has one
# grocery listings, Lite2, the service's subject crop: 256 dims at shrinkage 0.1 gave R@1
# 0.601 -> 0.632 but R@5 0.811 -> 0.767; 512 at 0.3 gave 0.628 and 0.801 (bench/quality.py)
PAIR_DIMS = 512
PAIR_SHRINKAGE = 0.3
Neighbours = Literal["auto", "on", "off"]
_PAGE = 500


def learn_from_catalog(
    catalog: ProductReader,
    dims: int | None = None,
    shrinkage: float | None = None,
    max_pictures: int = MAX_PICTURES,
    neighbours: Neighbours = "auto",
) -> Whitening:
    """Learn from the catalog's stored vectors: every product, or an even sample of products
    when the catalog holds more than `max_pictures` pictures. `neighbours`: whether pairs of
    near-duplicate single-picture products count as products ("auto": where most single
    pictures have a near-duplicate). `dims` and `shrinkage` default to `DEFAULT_DIMS` and
    `DEFAULT_SHRINKAGE`, or `PAIR_DIMS` and `PAIR_SHRINKAGE` where pairs were learned from."""
    products, pictures = catalog.count()
    step = max(1, -(-pictures // max_pictures))
    # single pictures are sampled on their own (a twin must stay beside its listing as
    # often as can be): every one up to MAX_PAIRED, else an even share of them
    single_step = max(1, -(-products // MAX_PAIRED))
    sums = ScatterSums(catalog.dim)
    singles: list[np.ndarray] = []
    after: str | None = None
    seen = single_seen = 0
    while page := catalog.products(after, _PAGE):
        after = page[-1].item_id
        chosen = {p.item_id for i, p in enumerate(page, start=seen) if i % step == 0}
        seen += len(page)
        read = [p.item_id for p in page] if neighbours != "off" else sorted(chosen)
        found = catalog.pictures_with_vectors(read)
        sums.add(vectors for item_id, (_, vectors) in found.items() if item_id in chosen)
        for _, vectors in found.values():
            if len(vectors) == 1 and neighbours != "off":
                if single_seen % single_step == 0:
                    singles.append(vectors[0])
                single_seen += 1
    if singles and add_near_duplicates(sums, np.stack(singles).astype(np.float32), neighbours, 1 / single_step):
        # pairs are less sure than products: pull further towards PCA and keep more dimensions
        dims = min(PAIR_DIMS, catalog.dim) if dims is None else dims
        shrinkage = PAIR_SHRINKAGE if shrinkage is None else shrinkage
    return sums.learn(catalog.model, dims, DEFAULT_SHRINKAGE if shrinkage is None else shrinkage)


def add_near_duplicates(
    sums: ScatterSums, singles: np.ndarray, neighbours: Neighbours = "auto", sampled: float = 1.0
) -> bool:
    """Add to `sums` the pairs of near-duplicates among `singles`, the vectors of
    single-picture products (added to `sums` already), where `neighbours` says so; whether
    any were added. `sampled`: the share of the catalog's single pictures `singles` are;
    in a sample, a listing's twin is often left out, and lookalikes as often, so the share
    "auto" asks for shrinks with it."""
    if neighbours == "off" or len(singles) < 2:
        return False
    pairs, cosine = mutual_pairs(singles, PAIR_NEIGHBOURS, PAIR_COSINE)
    if neighbours == "auto" and not listed_again(pairs, cosine, len(singles), sampled):
        return False
    sums.add_pairs(singles[pairs[:, 0]], singles[pairs[:, 1]])
    return len(pairs) > 0


def listed_again(pairs: np.ndarray, cosine: np.ndarray, pictures: int, sampled: float = 1.0) -> bool:
    """Whether single pictures with these near-duplicate `pairs` are mostly the same things
    listed again (`DUPLICATED_SHARE` of them in a pair at `DUPLICATE_COSINE`); `sampled` as
    in `add_near_duplicates`."""
    return duplicated_share(pairs, cosine, pictures) >= DUPLICATED_SHARE * sampled


def listings_whitening(listings: np.ndarray, model: str, neighbours: Neighbours = "auto") -> Whitening | None:
    """The whitening `learn_from_catalog` learns for a catalog of single-picture listings given
    as vectors (each listing a product, with its near-duplicate pairs where `neighbours` says
    so), or None where no pairs are learned from."""
    sums = ScatterSums(listings.shape[1])
    sums.add(vector[None] for vector in listings)
    if not add_near_duplicates(sums, listings, neighbours):
        return None
    return sums.learn(model, min(PAIR_DIMS, listings.shape[1]), PAIR_SHRINKAGE)


def duplicated_share(pairs: np.ndarray, cosine: np.ndarray, pictures: int) -> float:
    """Share of `pictures` in a pair at `DUPLICATE_COSINE` or more: how much the catalog is
    made of the same things listed again."""
    close = pairs[cosine >= DUPLICATE_COSINE]
    return len(np.unique(close)) / pictures if pictures else 0.0


def stored_whitening(catalog: LearnedMetadata) -> Whitening | None:
    """The whitening the catalog holds for its model, if any."""
    text = catalog.learned(META_KEY)
    if text is None:
        return None
    whitening = Whitening.from_text(text)
    return whitening if whitening.model == catalog.model and len(whitening.mean) == catalog.dim else None


def search_space(catalog: LearnedMetadata) -> SearchSpace:
    """The space searches run in: the stored whitening, else the model's own."""
    return stored_whitening(catalog) or ModelSpace(catalog.dim)
