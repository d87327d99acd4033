"""The query pipeline: an image and options in, ranked products out. No HTTP here.

Vision work (detection, embedding) runs outside any lock. The index is first brought up to
the catalog's change log; index search and hydration then run under one lock and inside one
catalog snapshot, so a search sees each product either before or after a write, never
half-written, whichever process wrote it. (A picture the index holds but the snapshot does
not, written in between, is left out of that search.)
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from tongkuan.catalog.product import Product, ProductFilter, StoredImage
from tongkuan.catalog.store import Catalog
from tongkuan.index.store import VectorIndex
from tongkuan.vision.categories import Category, CategoryScore, fuse, neighbour_vote, ranked
from tongkuan.vision.detect import Box
from tongkuan.vision.pipeline import Description, Vision

DEFAULT_TOP_CATEGORIES = 4
# Pictures fetched from the index before grouping by product: enough that a relevant
# product's best pictures are all among them (grocery rank-1 0.611 at 30, 0.628 at 200).
MIN_CANDIDATES = 200
# A query this similar to a catalog picture is that picture (re-encoded, resized): it is
# searched as it is, even where a picture seems to be inside it.
DUPLICATE_SIMILARITY = 0.95


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
    find_insets: bool = True  # a picture inside the query picture (a screenshot) is its subject


class Searcher:
    """Runs queries over a catalog and its vector index."""

    def __init__(self, vision: Vision, catalog: Catalog, index: VectorIndex, options: SearchOptions) -> None:
        self.vision = vision
        self.catalog = catalog
        self.index = index
        self.options = options
        self.lock = threading.Lock()

    def search(self, image: Image.Image, query: SearchQuery) -> SearchResults:
        """Detect, classify and embed `image`, then rank distinct products for one page."""
        described = self.vision.describe(
            [image], crop=query.crop, regions=[query.region], insets=self.options.find_insets
        )[0]
        with self.lock:
            self.index.sync()  # before the snapshot: a shared index records its position outside it
            if described.inset is not None:
                described = self._inset_or_whole(described, described.inset)
            with self.catalog.snapshot():
                return self._search(described, query)

    def _inset_or_whole(self, whole: Description, inset: Description) -> Description:
        """The picture found inside the query, unless the query is itself (nearly) a catalog
        picture: a clean product shot whose "inset" is a panel printed on the product keeps
        its own subject. The inset stays among the regions either way."""
        scores, _ = self.index.search(self.index.space(whole.embedding[None, :]), 1)
        if scores[0, 0] < DUPLICATE_SIMILARITY:
            return inset
        extra = tuple(r for r in inset.regions[:1] if all(r.iou(kept) < 0.6 for kept in whole.regions))
        return replace(whole, regions=(*whole.regions, *extra), inset=None)

    def _search(self, described: Description, query: SearchQuery) -> SearchResults:
        embedding = self.index.space(described.embedding[None, :])  # the index's space (a learned whitening)
        wanted = query.offset + query.limit
        vectors = self.index.count()
        deepest = min(vectors, self.index.max_k)
        k = min(deepest, max(self.options.neighbours, 4 * wanted, MIN_CANDIDATES))
        scored: dict[str, tuple[float, StoredImage]] = {}  # exact product scores, kept as k grows
        categories: list[CategoryScore] = []
        chosen = query.category
        while True:
            # The first round sees every category, for the neighbour vote; deeper rounds ask an
            # index that stores categories (Milvus) for the chosen one only.
            narrowed = chosen if categories else None
            scores, ids = self.index.search(embedding, k, narrowed)
            found = self.catalog.hydrate([int(i) for i in ids[0] if i >= 0])
            ordered = [(found[int(i)], float(s)) for i, s in zip(ids[0], scores[0], strict=True) if int(i) in found]
            if not categories:
                vote = neighbour_vote(
                    (product.category, score)
                    for (product, _), score in ordered[: self.options.neighbours]
                    if product.category is not None
                )
                categories = ranked(fuse(described.prior, vote, self.options.prior_weight), DEFAULT_TOP_CATEGORIES)
                if chosen is None and self.options.filter_predicted_category:
                    chosen = categories[0].category
            ordered = [
                (hit, score)
                for hit, score in ordered
                if (chosen is None or hit[0].category == chosen) and query.where.matches(hit[0])
            ]
            valid = scores[0][ids[0] >= 0]  # an index may pad its answer with empty slots
            # An index that filtered by category and answered short has no more of it. (An
            # unfiltered short answer proves nothing: HNSW with tombstones can answer short.)
            exhausted = k >= vectors or (narrowed is not None and self.index.filters and valid.size < k)
            # every picture not fetched yet is less similar than the last one fetched
            floor = -np.inf if exhausted or not valid.size else float(valid[-1])
            if query.distinct:
                hits = self._rank_products(ordered, embedding[0], scored, floor)
            else:
                hits = [SearchHit(product, image, _similarity(score)) for (product, image), score in ordered]
            if query.min_score is not None:
                hits = [hit for hit in hits if hit.score >= query.min_score]
            complete = exhausted or (query.min_score is not None and floor < query.min_score)
            if len(hits) >= wanted or complete or k >= deepest:
                break
            k = min(deepest, k * 4)
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

    def _rank_products(
        self,
        ordered: list[tuple[tuple[Product, StoredImage], float]],
        embedding: NDArray[np.float32],
        scored: dict[str, tuple[float, StoredImage]],
        floor: float,
    ) -> list[SearchHit]:
        """Products among the picture hits, ranked by the mean similarity of their best few
        pictures, computed over all their pictures (not only those fetched), so a product's
        score does not depend on how deep the index was searched.

        Only products scoring at least `floor`, the similarity of the last picture fetched,
        are returned: a product none of whose pictures was fetched scores below it, so these
        are final, in order, whatever a deeper search finds. Pages therefore walk one ranking.
        """
        products: dict[str, Product] = {}
        fetched: dict[str, list[tuple[float, StoredImage]]] = {}
        for (product, image), score in ordered:  # best first
            products.setdefault(product.item_id, product)
            fetched.setdefault(product.item_id, []).append((score, image))
        per_product = self.options.images_per_product
        # A product's best pictures are known when it has `per_product` of them fetched (any
        # unfetched one is less similar) or when every picture it has was fetched.
        short = [item_id for item_id in fetched if item_id not in scored and len(fetched[item_id]) < per_product]
        complete = {item_id for item_id, n in self.catalog.picture_counts(short).items() if n == len(fetched[item_id])}
        for item_id, seen in fetched.items():
            if item_id not in scored and (len(seen) >= per_product or item_id in complete):
                scored[item_id] = (_product_score([score for score, _ in seen[:per_product]]), seen[0][1])
        short = [item_id for item_id in short if item_id not in scored]
        for item_id, (pictures, vectors) in self.catalog.pictures_with_vectors(short).items():
            similarities = self.index.space(vectors) @ embedding
            best = np.sort(similarities)[::-1][:per_product]
            scored[item_id] = (_product_score(best.tolist()), pictures[int(np.argmax(similarities))])
        settled = [(item_id, *scored[item_id]) for item_id in products if scored[item_id][0] >= floor]
        settled.sort(key=lambda entry: (-entry[1], entry[0]))
        return [SearchHit(products[item_id], image, _similarity(score)) for item_id, score, image in settled]


def _product_score(best: list[float]) -> float:
    """A product's score from its best pictures' similarities, best first: their mean, or the
    best alone when that picture is the query itself (a near-duplicate names its product,
    whatever its other pictures look like)."""
    mean = sum(best) / len(best)
    return best[0] if best[0] >= DUPLICATE_SIMILARITY else mean


def _similarity(cosine: float) -> float:
    """A hit's score: cosine similarity clipped to 0..1 (1 = the same picture)."""
    return min(1.0, max(0.0, float(cosine)))  # plain floats: np.clip costs ~15 µs a call
