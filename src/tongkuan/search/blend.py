"""Two rankings of the same products made one: title matches and what the pictures show.

Reciprocal rank fusion (Cormack, Clarke and Büttcher, SIGIR 2009): a product scores
1 / (k + rank) in each ranking it is in, summed; it needs no common scale between a keyword
relevance and a cosine similarity, which have none, and k = 60 is the published default.
"""

from __future__ import annotations

from collections.abc import Sequence

from tongkuan.domain.products import Product, SortOrder

RRF_K = 60
# candidates taken from each ranking: enough to fill the first pages of 20
BLEND_CANDIDATES = 100


def fused(*rankings: Sequence[str], k: int = RRF_K) -> list[str]:
    """Item ids, best first, by the sum of 1 / (k + rank) over the rankings they are in
    (ranks from 1); ties keep the first ranking's order, then the next's."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, item_id in enumerate(ranking, start=1):
            scores[item_id] = scores.get(item_id, 0.0) + 1.0 / (k + rank)
    first_seen = {item_id: i for i, item_id in enumerate(dict.fromkeys(i for r in rankings for i in r))}
    return sorted(scores, key=lambda item_id: (-scores[item_id], first_seen[item_id]))


def ordered(products: list[Product], order: SortOrder) -> list[Product]:
    """Products in a keyword search's order (relevance: as given)."""
    if order == SortOrder.PRICE_ASC:
        return sorted(products, key=lambda p: p.price)
    if order == SortOrder.PRICE_DESC:
        return sorted(products, key=lambda p: p.price, reverse=True)
    if order == SortOrder.SALES_DESC:
        return sorted(products, key=lambda p: p.volume, reverse=True)
    return products
