"""What a search takes and gives: the query's options, the service's search settings, and the
ranked hits with what vision saw in the picture. Plain values, no HTTP."""

from __future__ import annotations

from dataclasses import dataclass

from tongkuan.domain.boxes import Box
from tongkuan.domain.categories import PRIOR_WEIGHT, VOTERS, Category, CategoryScore
from tongkuan.domain.products import Product, ProductFilter, StoredImage


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
    read_text: bool = True  # rank by the words read on the picture too, where the searcher reads
    words: tuple[str, ...] | None = None  # rank by these words instead of those read (None: as read)


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
    words: tuple[str, ...] = ()  # the words read on the picture that ranked its products


@dataclass(frozen=True)
class SearchOptions:
    """Search tuning from settings."""

    prior_weight: float = PRIOR_WEIGHT
    neighbours: int = VOTERS
    filter_predicted_category: bool = False
    # A product's score is the mean similarity of its best few pictures: one lucky picture
    # counts less than several good ones (grocery photos: rank-1 0.605 with the single best
    # picture, 0.628 with the best three).
    images_per_product: int = 3
    find_insets: bool = True  # a picture inside the query picture (a screenshot) is its subject
    # query pictures whose descriptions are kept: the next page of a search by the same
    # picture (pageSize is at most 20) skips the model
    cached_pictures: int = 1000
