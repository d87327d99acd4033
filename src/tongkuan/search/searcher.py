"""The query pipeline: an image and options in, ranked products out. No HTTP here.

Vision work (detection, embedding) runs outside any lock. The index is first brought up to
the catalog's change log; index search and hydration then run under one lock and inside one
catalog snapshot, so a search sees each product either before or after a write, never
half-written, whichever process wrote it. (A picture the index holds but the snapshot does
not, written in between, is left out of that search.)
"""

from __future__ import annotations

import threading
from dataclasses import replace
from functools import partial

import numpy as np
from cachetools import LRUCache
from PIL import Image

from tongkuan.catalog.store import SearchReads
from tongkuan.domain.boxes import Box
from tongkuan.domain.categories import CategoryScore
from tongkuan.index.base import VectorIndex
from tongkuan.search.query import SearchHit, SearchOptions, SearchQuery, SearchResults
from tongkuan.search.ranking import DUPLICATE_SIMILARITY, PictureHit, ProductRanking, similarity
from tongkuan.search.text_match import TextMatch, TextReads, query_tokens
from tongkuan.search.timing import Stage, StageClock
from tongkuan.vision.classify import fuse, neighbour_vote, ranked
from tongkuan.vision.encoder import timed_inference
from tongkuan.vision.pipeline import Description, Vision
from tongkuan.vision.reading import TextReader

DEFAULT_TOP_CATEGORIES = 4
# Pictures fetched from the index before grouping by product: enough that a relevant
# product's best pictures are all among them (grocery rank-1 0.611 at 30, 0.628 at 200).
MIN_CANDIDATES = 200
# Catalog pictures nearest a query that decide whether it is read: of the grocery val photos
# searched against the studio shots, 188 of 296 are then not read (173 of the 198 on which
# nothing confident is read, 15 of the 98 on which words are), for one rank-1 answer lost
# with names as titles and none without (docs/benchmarks.md).
NEAREST_READ = 3

__all__ = ["SearchHit", "SearchOptions", "SearchQuery", "SearchResults", "Searcher"]


class Searcher:
    """Runs queries over a catalog and its vector index."""

    def __init__(
        self,
        vision: Vision,
        catalog: SearchReads,
        index: VectorIndex,
        options: SearchOptions,
        reader: TextReader | None = None,
        texts: TextReads | None = None,
        matching: TextMatch | None = None,
    ) -> None:
        self.vision = vision
        self.catalog = catalog
        self.index = index
        self.options = options
        self.reader = reader  # reads the text on query pictures (None: the catalog's show none)
        self.texts = texts
        self.matching = matching or TextMatch()
        self.lock = threading.Lock()
        # descriptions of recent query pictures, by (content key, crop, region): what the
        # model says of a picture does not change between the pages of its search
        self._described: LRUCache[tuple[str, bool, Box | None], Description] | None = (
            LRUCache(options.cached_pictures) if options.cached_pictures else None
        )
        self._read_words: LRUCache[tuple[str, Box | None], tuple[str, ...]] | None = (
            LRUCache(options.cached_pictures) if options.cached_pictures else None
        )
        self._described_lock = threading.Lock()

    def search(
        self, image: Image.Image, query: SearchQuery, clock: StageClock | None = None, key: str | None = None
    ) -> SearchResults:
        """Detect, classify and embed `image`, then rank distinct products for one page; the
        time of each stage is added to `clock`. A `key` names the picture's content (its hash):
        a picture searched again by the same key, crop and region is not described again."""
        clock = clock if clock is not None else StageClock()
        clock.start(Stage.VISION)
        with timed_inference(partial(_passes, clock)):
            described = self._describe(image, query, key)
        clock.start(Stage.READ)
        words = self._words(image, query, key, described)
        clock.stop()  # waiting for the lock is no stage's
        with self.lock:
            clock.start(Stage.INDEX)
            self.index.sync()  # before the snapshot: a shared index records its position outside it
            if described.inset is not None:
                described = self._inset_or_whole(described, described.inset)
            clock.start(Stage.CATALOG)
            with self.catalog.snapshot():
                results = self._search(described, query, clock, words)
            clock.stop()
            return results

    def _reads(self, query: SearchQuery) -> bool:
        """Whether this query's picture is read (rather than given words, or not read at all)."""
        return (
            query.words is None
            and self.reader is not None
            and self.texts is not None
            and query.read_text
            and query.distinct
        )

    def _words(
        self, image: Image.Image, query: SearchQuery, key: str | None, described: Description
    ) -> tuple[str, ...]:
        """The words read on the picture (the asked region of it) that the reader is sure of,
        where the catalog pictures it looks most like show words."""
        if query.words is not None:
            return query.words
        if not self._reads(query) or self.reader is None:
            return ()
        wanted = (key or "", query.region)
        cache = None if key is None else self._read_words
        if cache is not None:
            with self._described_lock:
                if (known := cache.get(wanted)) is not None:
                    return known
        words: tuple[str, ...] = ()  # kept for the next pages too where not worth reading
        if self._looks_worded(described):
            region = query.region
            seen = image if region is None else image.crop((region.x1, region.y1, region.x2, region.y2))
            lines = [(line.text, line.confidence) for line in self.reader.read(seen)]
            words = tuple(query_tokens(lines, self.matching.gate))
        if cache is not None:
            with self._described_lock:
                cache[wanted] = words
        return words

    def _looks_worded(self, described: Description) -> bool:
        """Whether the picture is worth reading: not when most of the catalog pictures nearest
        it were read and showed no words (fruit, clothes), where reading would cost a search
        two to three times its time for words that match nothing (docs/benchmarks.md)."""
        if self.texts is None:
            return False
        with self.lock:
            self.index.sync()  # pictures added since the last search count too
            _, ids = self.index.search(self.index.space(described.embedding[None, :]), NEAREST_READ)
        nearest = [int(i) for i in ids[0] if i >= 0]
        showed = self.texts.showed_words(nearest)
        wordless = sum(1 for vector_id in nearest if showed.get(vector_id) is False)
        return wordless <= len(nearest) // 2

    def search_words(self, words: str, query: SearchQuery, clock: StageClock | None = None) -> SearchResults:
        """Rank catalog products by how well their pictures show `words` (the model's text
        tower; raises `CannotSearchWords` for a model without one)."""
        clock = clock if clock is not None else StageClock()
        clock.start(Stage.VISION)
        described = self.vision.describe_words(words)
        clock.stop()
        with self.lock:
            clock.start(Stage.INDEX)
            self.index.sync()
            clock.start(Stage.CATALOG)
            with self.catalog.snapshot():
                results = self._search(described, query, clock)
            clock.stop()
            return results

    def _describe(self, image: Image.Image, query: SearchQuery, key: str | None) -> Description:
        """The query picture as the model sees it, from the cache where it was seen before."""
        cache = None if key is None else self._described
        wanted = (key or "", query.crop, query.region)
        if cache is not None:
            with self._described_lock:
                if (known := cache.get(wanted)) is not None:
                    return known
        regions, insets = [query.region], self.options.find_insets
        described = self.vision.describe([image], crop=query.crop, regions=regions, insets=insets)[0]
        if cache is not None:
            with self._described_lock:
                cache[wanted] = described
        return described

    def _inset_or_whole(self, whole: Description, inset: Description) -> Description:
        """The picture found inside the query, unless the query is itself (nearly) a catalog
        picture: a clean product shot whose "inset" is a panel printed on the product keeps
        its own subject. The inset stays among the regions either way. A region the caller
        chose is searched either way; this only decides which subject is the main one."""
        plain = whole.embedding if whole.plain is None else whole.plain
        scores, _ = self.index.search(self.index.space(plain[None, :]), 1)
        if scores[0, 0] < DUPLICATE_SIMILARITY:
            return inset
        extra = tuple(r for r in inset.regions[:1] if all(r.iou(kept) < 0.6 for kept in whole.regions))
        return replace(whole, regions=(*whole.regions, *extra), inset=None)

    def _search(
        self, described: Description, query: SearchQuery, clock: StageClock, words: tuple[str, ...] = ()
    ) -> SearchResults:
        """The ranking inside the snapshot; the clock runs the catalog stage except while the
        index is searched."""
        embedding = self.index.space(described.embedding[None, :])  # the index's space (a learned whitening)
        wanted = query.offset + query.limit
        vectors = self.index.count()
        deepest = min(vectors, self.index.max_k)
        k = min(deepest, max(self.options.neighbours, 4 * wanted, MIN_CANDIDATES))
        ranking = ProductRanking(self.catalog, self.index.space, embedding[0], self.options.images_per_product)
        categories: list[CategoryScore] = []
        chosen = query.category
        while True:
            # The first round sees every category, for the neighbour vote; deeper rounds ask an
            # index that stores categories (Milvus) for the chosen one only.
            narrowed = chosen if categories else None
            clock.start(Stage.INDEX)
            scores, ids = self.index.search(embedding, k, narrowed)
            clock.start(Stage.CATALOG)
            found, counts = self.catalog.hits([int(i) for i in ids[0] if i >= 0])
            ordered = [(found[int(i)], float(s)) for i, s in zip(ids[0], scores[0], strict=True) if int(i) in found]
            if not categories:
                categories = self._categories(described, ordered)
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
                hits = ranking.rank(ordered, floor, counts)
            else:
                hits = [SearchHit(product, image, similarity(score)) for (product, image), score in ordered]
            if query.min_score is not None:
                hits = [hit for hit in hits if hit.score >= query.min_score]
            complete = exhausted or (query.min_score is not None and floor < query.min_score)
            if len(hits) >= wanted or complete or k >= deepest:
                break
            k = min(deepest, k * 4)
        if words and self.texts is not None and query.distinct:
            hits = self.matching.rerank(
                self.texts,
                hits,
                words,
                ranking.score_products,
                lambda p: (chosen is None or p.category == chosen) and query.where.matches(p),
                self.catalog.count_products(),
            )
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
            words=words,
        )

    def _categories(self, described: Description, ordered: list[PictureHit]) -> list[CategoryScore]:
        """The classifier's prior fused with the vote of the nearest catalog pictures (Pailitao)."""
        vote = neighbour_vote(
            (product.category, score)
            for (product, _), score in ordered[: self.options.neighbours]
            if product.category is not None
        )
        return ranked(fuse(described.prior, vote, self.options.prior_weight), DEFAULT_TOP_CATEGORIES)


def _passes(clock: StageClock, waited_s: float, ran_s: float) -> None:
    """One inference of a search's vision work, charged to the queue and inference stages."""
    clock.spent(Stage.QUEUE, waited_s)
    clock.spent(Stage.INFERENCE, ran_s)
