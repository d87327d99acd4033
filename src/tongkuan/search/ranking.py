"""Ranking products from picture hits: a product scores the mean similarity of its best few
pictures, so one lucky picture counts less than several good ones (grocery photos: rank-1
0.605 with the single best picture, 0.628 with the best three)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from tongkuan.domain.products import Product, StoredImage
from tongkuan.domain.spaces import SearchSpace
from tongkuan.search.query import SearchHit

# A query this similar to a catalog picture is that picture (re-encoded, resized).
DUPLICATE_SIMILARITY = 0.95

PictureHit = tuple[tuple[Product, StoredImage], float]  # a picture's product and picture, and its similarity


class RankingReads(Protocol):
    """What ranking reads of the catalog: how many pictures products have, and their vectors."""

    def picture_counts(self, item_ids: Sequence[str]) -> dict[str, int]: ...
    def pictures_with_vectors(
        self, item_ids: Sequence[str]
    ) -> dict[str, tuple[list[StoredImage], NDArray[np.float32]]]: ...


class ProductRanking:
    """The products of one query, scored once each and kept across the rounds of a widening
    search, so a product's score does not depend on how deep the index was searched."""

    def __init__(
        self, pictures: RankingReads, space: SearchSpace, query: NDArray[np.float32], per_product: int
    ) -> None:
        self.pictures = pictures
        self.space = space
        self.query = query  # (dim,), in the index's space
        self.per_product = per_product
        self._scored: dict[str, tuple[float, StoredImage]] = {}

    def rank(self, ordered: list[PictureHit], floor: float, counts: Mapping[str, int] | None = None) -> list[SearchHit]:
        """Products among the picture hits (best first), ranked by their score over all their
        pictures, not only those fetched.

        Only products scoring at least `floor`, the similarity of the last picture fetched,
        are returned: a product none of whose pictures was fetched scores below it, so these
        are final, in order, whatever a deeper search finds. Pages therefore walk one ranking.
        `counts`, each product's picture count where the caller read it with the hits, saves
        reading them again.
        """
        products: dict[str, Product] = {}
        fetched: dict[str, list[tuple[float, StoredImage]]] = {}
        for (product, image), score in ordered:  # best first
            products.setdefault(product.item_id, product)
            fetched.setdefault(product.item_id, []).append((score, image))
        self._score_known(fetched, counts)
        self._score_from_vectors([item_id for item_id in fetched if item_id not in self._scored])
        settled = [(item_id, *self._scored[item_id]) for item_id in products if self._scored[item_id][0] >= floor]
        settled.sort(key=lambda entry: (-entry[1], entry[0]))
        return [SearchHit(products[item_id], image, similarity(score)) for item_id, score, image in settled]

    def score_products(self, products: list[Product]) -> list[SearchHit]:
        """Hits for products the index did not return, scored from their stored vectors."""
        self._score_from_vectors([p.item_id for p in products if p.item_id not in self._scored])
        return [
            SearchHit(p, self._scored[p.item_id][1], similarity(self._scored[p.item_id][0]))
            for p in products
            if p.item_id in self._scored
        ]

    def _score_known(
        self, fetched: dict[str, list[tuple[float, StoredImage]]], counts: Mapping[str, int] | None = None
    ) -> None:
        """Score the products whose best pictures are all fetched: `per_product` of them (any
        unfetched one is less similar), or every picture the product has."""
        per_product = self.per_product
        new = [item_id for item_id in fetched if item_id not in self._scored]
        short = [item_id for item_id in new if len(fetched[item_id]) < per_product]
        if counts is None or any(item_id not in counts for item_id in short):
            counts = self.pictures.picture_counts(short)
        complete = {item_id for item_id in short if counts.get(item_id) == len(fetched[item_id])}
        for item_id in new:
            seen = fetched[item_id]
            if len(seen) >= per_product or item_id in complete:
                self._scored[item_id] = (product_score([score for score, _ in seen[:per_product]]), seen[0][1])

    def _score_from_vectors(self, item_ids: list[str]) -> None:
        """Score products with pictures the index did not return, from their stored vectors."""
        for item_id, (pictures, vectors) in self.pictures.pictures_with_vectors(item_ids).items():
            similarities = self.space(vectors) @ self.query
            best = np.sort(similarities)[::-1][: self.per_product]
            self._scored[item_id] = (product_score(best.tolist()), pictures[int(np.argmax(similarities))])


def product_score(best: list[float]) -> float:
    """A product's score from its best pictures' similarities, best first: their mean, or the
    best alone when that picture is the query itself (a near-duplicate names its product,
    whatever its other pictures look like)."""
    mean = sum(best) / len(best)
    return best[0] if best[0] >= DUPLICATE_SIMILARITY else mean


def similarity(cosine: float) -> float:
    """A hit's score: cosine similarity clipped to 0..1 (1 = the same picture)."""
    return min(1.0, max(0.0, float(cosine)))  # plain floats: np.clip costs ~15 µs a call
