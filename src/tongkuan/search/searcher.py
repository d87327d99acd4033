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

from tongkuan.catalog.product import Product, StoredImage
from tongkuan.catalog.sqlite import SqliteCatalog
from tongkuan.index.sync import IndexSync
from tongkuan.vision.categories import Category, CategoryScore, fuse, neighbour_vote, ranked
from tongkuan.vision.detect import Box
from tongkuan.vision.pipeline import Vision

DEFAULT_TOP_CATEGORIES = 4


@dataclass(frozen=True)
class SearchQuery:
    """What to search for besides the pixels."""

    category: Category | None = None
    crop: bool = True
    region: Box | None = None
    offset: int = 0
    limit: int = 10


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


@dataclass(frozen=True)
class SearchOptions:
    """Search tuning from settings."""

    prior_weight: float = 0.35
    neighbours: int = 30
    filter_predicted_category: bool = False


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
            total = self.index.count()
            k = min(total, max(self.options.neighbours, 4 * wanted))
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
                hits = _distinct(ordered, chosen)
                if len(hits) >= wanted or k >= total:
                    break
                k = min(total, k * 4)
        return SearchResults(
            hits=hits[query.offset : wanted],
            searched=described.searched,
            regions=described.regions,
            categories=categories,
            category_filter=chosen,
        )


def _distinct(ordered: list[tuple[tuple[Product, StoredImage], float]], category: Category | None) -> list[SearchHit]:
    seen: set[str] = set()
    hits: list[SearchHit] = []
    for (product, image), score in ordered:
        if product.item_id in seen or (category is not None and product.category != category):
            continue
        seen.add(product.item_id)
        hits.append(SearchHit(product, image, float(np.clip(score, -1.0, 1.0))))
    return hits
