"""The query pipeline: an image and options in, ranked products out. No HTTP here.

Vision work (detection, embedding) runs outside any lock. Index search and hydration run
under one lock and inside one catalog snapshot, after the index has been brought up to
that snapshot's change log, so a search sees each product either before or after a write,
never half-written, whichever process wrote it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image

from tongkuan.catalog.product import Product, ProductFilter, StoredImage
from tongkuan.catalog.sqlite import SqliteCatalog
from tongkuan.index.sync import IndexSync
from tongkuan.vision.categories import Category, CategoryScore, fuse, neighbour_vote, ranked
from tongkuan.vision.detect import Box
from tongkuan.vision.pipeline import Vision

DEFAULT_TOP_CATEGORIES = 4
# Pictures fetched from the index before grouping by product: enough that a relevant
# product's best pictures are all among them (grocery rank-1 0.611 at 30, 0.628 at 200).
MIN_CANDIDATES = 200


@dataclass(frozen=True)
class SearchQuery:
    """What to search for besides the pixels."""

    category: Category | None = None
    crop: bool = True
    region: Box | None = None
    offset: int = 0
    limit: int = 10
    where: ProductFilter = ProductFilter()
    min_score: float | None = None  # leave out hits less similar than this
    distinct: bool = True  # one hit per product; False: one per picture
    count_total: bool = False  # also count every hit there is (SearchResults.total)


@dataclass(frozen=True)
class SearchHit:
    """One product found, with its best-matching image and cosine similarity."""

    product: Product
    image: StoredImage
    score: float


@dataclass(frozen=True)
class SearchResults:
    """Hits of the requested page plus what vision saw in the query image."""

    hits: list[SearchHit]
    searched: Box
    regions: tuple[Box, ...]
    categories: list[CategoryScore]
    category_filter: Category | None
    total: int = 0  # every hit the query has over all pages, when asked for (count_total)


@dataclass(frozen=True)
class SearchOptions:
    """Search tuning from settings."""

    prior_weight: float = 0.35
    neighbours: int = 30
    filter_predicted_category: bool = False
    # A product's score is the mean similarity of its best few pictures: one lucky picture
    # counts less than several good ones (grocery photos: rank-1 0.605 with the single best
    # picture, 0.628 with the best three).
    images_per_product: int = 3


class Searcher:
    """Runs queries over a catalog and its vector index."""

    def __init__(self, vision: Vision, catalog: SqliteCatalog, index: IndexSync, options: SearchOptions) -> None:
        self.vision = vision
        self.catalog = catalog
        self.index = index
        self.options = options
        self.lock = threading.Lock()

    def search(self, image: Image.Image, query: SearchQuery) -> SearchResults:
        """Detect, classify and embed `image`, then rank distinct products for one page."""
        described = self.vision.describe([image], crop=query.crop, regions=[query.region])[0]
        wanted = query.offset + query.limit
        with self.lock, self.catalog.snapshot():
            self.index.sync()
            vectors = self.index.count()
            k = min(vectors, max(self.options.neighbours, 4 * wanted, MIN_CANDIDATES))
            while True:
                scores, ids = self.index.search(described.embedding[None, :], k)
                found = self.catalog.hydrate([int(i) for i in ids[0] if i >= 0])
                ordered = [(found[int(i)], float(s)) for i, s in zip(ids[0], scores[0], strict=True) if int(i) in found]
                vote = neighbour_vote(
                    (product.category, score)
                    for (product, _), score in ordered[: self.options.neighbours]
                    if product.category is not None
                )
                probabilities = fuse(described.prior, vote, self.options.prior_weight)
                categories = ranked(probabilities, DEFAULT_TOP_CATEGORIES)
                chosen = query.category
                if chosen is None and self.options.filter_predicted_category:
                    chosen = categories[0].category
                ordered = [
                    (hit, score)
                    for hit, score in ordered
                    if (chosen is None or hit[0].category == chosen) and query.where.matches(hit[0])
                ]
                if query.distinct:
                    hits = _rank_products(ordered, self.options.images_per_product)
                else:
                    hits = [SearchHit(product, image, _similarity(score)) for (product, image), score in ordered]
                if query.min_score is not None:
                    hits = [hit for hit in hits if hit.score >= query.min_score]
                # unseen pictures are less similar than the last one seen: past the threshold, done
                complete = k >= vectors or (
                    query.min_score is not None and bool(scores.size) and float(scores[0, -1]) < query.min_score
                )
                if len(hits) >= wanted or complete:
                    break
                k = min(vectors, k * 4)
            total = len(hits)
            if query.count_total and not complete:
                in_scope = self.catalog.count_products(chosen, query.where) if query.distinct else vectors
                total = max(total, in_scope)
        return SearchResults(
            hits=hits[query.offset : wanted],
            searched=described.searched,
            regions=described.regions,
            categories=categories,
            category_filter=chosen,
            total=total,
        )


def _similarity(cosine: float) -> float:
    """A hit's score: cosine similarity clipped to 0..1 (1 = the same picture)."""
    return float(np.clip(cosine, 0.0, 1.0))


def _rank_products(ordered: list[tuple[tuple[Product, StoredImage], float]], per_product: int) -> list[SearchHit]:
    """Group picture hits (best first) by product, score each product by the mean of its best
    `per_product` similarities, and rank products by that score."""
    best: dict[str, tuple[Product, StoredImage]] = {}
    scores: dict[str, list[float]] = {}
    for (product, image), score in ordered:
        kept = scores.setdefault(product.item_id, [])
        if not kept:
            best[product.item_id] = (product, image)
        if len(kept) < per_product:
            kept.append(score)
    ranked = sorted(scores, key=lambda item_id: -float(np.mean(scores[item_id])))
    return [SearchHit(best[i][0], best[i][1], _similarity(float(np.mean(scores[i])))) for i in ranked]
