"""Matching the words read on a query picture against the catalog's products: their titles
and the words read on their pictures.

A product's text score is the share of the query's words it holds, each word weighted by
its inverse document frequency over the catalog (a brand printed on few products counts
more than "juice"). Search adds `weight` × that score to the picture similarity, and only
where the query showed words the reader was sure of: a picture without text ranks as before.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from tongkuan.catalog import keywords
from tongkuan.domain.products import Product, ProductFilter, SortOrder
from tongkuan.search.query import SearchHit

# a size as printed on packs: 250ml, 1.5 L, 1,5l, 500 g, 2kg, 330毫升, 1升
_SIZE = re.compile(r"(\d+(?:[.,]\d+)?)\s*(ml|cl|dl|l|kg|mg|g|oz|lb|毫升|升|千克|公斤|克|斤)(?![a-z])")
_LATIN = re.compile(r"[^\W\d_]{3,}")  # a word of letters (mellanmjölk stays whole), three or more
_NUMBER = re.compile(r"\d{2,}")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]{2,}")


def tokens(text: str) -> set[str]:
    """The words of `text` that can tell products apart: Latin words of three letters or
    more, sizes with their unit (250ml, 1.5l), numbers of two digits or more, and Chinese
    words and character pairs (jieba, as keyword search cuts them)."""
    text = _plain(text)
    found = {f"{amount.replace(',', '.')}{unit}" for amount, unit in _SIZE.findall(text)}
    found |= set(_LATIN.findall(text)) | set(_NUMBER.findall(_SIZE.sub(" ", text)))
    for run in _CJK.findall(text):
        found |= {word for word in keywords.words(run) if len(word) >= 2}
    return found


def _plain(text: str) -> str:
    """Lower case, compatibility forms folded and accents dropped: a reader often misses
    them (MELLANMJOLK for mellanmjölk). Chinese is untouched."""
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).lower())
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if not unicodedata.combining(c)))


def query_tokens(lines: Iterable[tuple[str, float]], gate: float) -> list[str]:
    """The tokens of the lines read with confidence at least `gate`, in reading order."""
    seen: dict[str, None] = {}
    for text, confidence in lines:
        if confidence >= gate:
            seen |= dict.fromkeys(sorted(tokens(text)))
    return list(seen)


def text_scores(
    query: Sequence[str], texts: Mapping[str, str], frequencies: Mapping[str, int], products: int
) -> dict[str, float]:
    """Each product's share (0..1) of the query's IDF weight that its text holds. Words no
    product holds (misreadings, mostly) weigh nothing: they would only dilute the others."""
    weights = {t: math.log(1 + products / (1 + frequencies[t])) for t in query if frequencies.get(t, 0) > 0}
    total = sum(weights.values())
    if not total:
        return {}
    scores = {}
    for item_id, text in texts.items():
        held = tokens(text)
        scores[item_id] = sum(w for t, w in weights.items() if t in held) / total
    return scores


# The text match's weight against the picture similarity, the confidence a line needs, and
# how many products keyword search adds as candidates (chosen on the shared val photos:
# docs/benchmarks.md, "Reading the text on the product").
TEXT_WEIGHT = 0.1
CONFIDENCE_GATE = 0.8
TEXT_CANDIDATES = 20
IMAGE_CANDIDATES = 50  # the picture ranking's best products the text may reorder


class TextReads(Protocol):
    """What matching reads of the catalog: keyword search over titles and picture words, each
    product's searched text, and which pictures showed words."""

    def keyword_search(
        self, text: str, sort: SortOrder = ..., where: ProductFilter | None = None, offset: int = 0, limit: int = 20
    ) -> tuple[list[Product], int]: ...

    def searched_texts(self, item_ids: Sequence[str]) -> dict[str, str]: ...

    def showed_words(self, vector_ids: Sequence[int]) -> dict[int, bool]: ...


@dataclass(frozen=True)
class TextMatch:
    """How the words read on a query picture move its products."""

    weight: float = TEXT_WEIGHT
    gate: float = CONFIDENCE_GATE
    candidates: int = TEXT_CANDIDATES

    def rerank(
        self,
        catalog: TextReads,
        hits: list[SearchHit],
        words: Sequence[str],
        score_products: Callable[[list[Product]], list[SearchHit]],
        admits: Callable[[Product], bool],
        products: int,
    ) -> list[SearchHit]:
        """`hits` (best first) with the best `IMAGE_CANDIDATES` and the products whose text
        matches `words` ordered by picture similarity plus `weight` × text score; the rest
        keep their order after them. `score_products` gives products the picture ranking has
        not scored their similarity; `admits` says whether a product passes the query's filters."""
        if not words:
            return hits
        head = hits[:IMAGE_CANDIDATES]
        known = {hit.product.item_id for hit in hits}
        found, _ = catalog.keyword_search(" ".join(words), limit=self.candidates)
        extra = score_products([p for p in found if p.item_id not in known and admits(p)])
        frequencies = {w: catalog.keyword_search(w, limit=1)[1] for w in words}
        pool = head + extra
        texts = catalog.searched_texts([hit.product.item_id for hit in pool])
        scores = text_scores(words, texts, frequencies, products)
        if not any(scores.values()):
            return hits
        fused = sorted(
            pool,
            key=lambda hit: (-(hit.score + self.weight * scores.get(hit.product.item_id, 0.0)), hit.product.item_id),
        )
        moved = {hit.product.item_id for hit in pool}
        return fused + [hit for hit in hits[IMAGE_CANDIDATES:] if hit.product.item_id not in moved]
