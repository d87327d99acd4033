"""The engine: one data directory (or one set of shared stores) opened into catalog, index,
models and searcher. The CLI and the HTTP app are two front doors onto the same `Engine`:
they call its operations and never reach into the parts it holds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from tongkuan.config import Settings
from tongkuan.domain.products import NewImage, Product, ProductFilter, Shop, SortOrder, StoredImage
from tongkuan.engine.build import (
    choose_model,
    ingester_over,
    open_catalog,
    open_fetcher,
    open_images,
    open_index,
    open_model,
    open_vision,
    query_reader,
)
from tongkuan.errors import CatalogConflict, RecordError, StoreUnavailable
from tongkuan.images.decode import (
    UPLOAD_FORMATS,
    DecodeBudget,
    Decoded,
    content_hash,
    decode_image,
    decode_picture,
    return_freed_pictures_to_the_system,
)
from tongkuan.ingest.export import export_records
from tongkuan.ingest.ingester import DEFAULT_BATCH_SIZE, Ingester, IngestReport
from tongkuan.ingest.jobs import ImportJobs
from tongkuan.ingest.readers import SourceRecord
from tongkuan.ingest.records import FIELDS, to_product, to_record
from tongkuan.search.blend import BLEND_CANDIDATES, fused
from tongkuan.search.blend import ordered as blended_order
from tongkuan.search.searcher import Searcher, SearchQuery, SearchResults
from tongkuan.search.timing import StageClock

logger = logging.getLogger(__name__)

MAX_PICTURES = 64  # pictures one product may have
MODEL_CHECK_S = 2.0  # how often a running engine looks whether the catalog switched models

ProductImages = tuple[Product, list[StoredImage]]
"""A product with all its pictures, in their order."""


class Engine:
    """Everything a data directory holds, opened for use. Close it to persist the index."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        data_dir = Path(settings.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        self.images = open_images(settings)
        self.fetcher = open_fetcher(settings)
        self.decode_budget = DecodeBudget(settings.decode.memory_mb * 1024 * 1024, settings.decode.wait)
        return_freed_pictures_to_the_system()  # else freed pictures stay resident, per thread
        self._open_model(choose_model(settings))
        self._switch_lock = threading.Lock()
        self._model_checked = time.monotonic()
        # uploaded imports read pictures from URLs only, never from the server's disk
        self.imports = ImportJobs(
            data_dir / "imports",
            lambda: self.ingester(urls_only=True),
            lambda: self.catalog,
            settings.backends.import_job_lease_s,
            lambda: self.follow_switch(at_once=True),
        )

    def _open_model(self, model: str) -> None:
        """Open the model and the parts that hold its vectors: catalog, index, searcher."""
        settings = self.settings
        spec = open_model(settings, model)
        self.vision = open_vision(settings, spec)
        self.catalog = open_catalog(settings, model, spec.dim)
        self.vector_index = open_index(settings, self.catalog, spec.name)
        self.searcher = Searcher(
            self.vision,
            self.catalog,
            self.vector_index,
            settings.search.options(),
            reader=query_reader(settings, self.catalog),
            texts=self.catalog,
        )

    def follow_switch(self, at_once: bool = False) -> bool:
        """Reopen with the catalog's model when another process switched the catalog to it
        (`tongkuan tune`), so a running service searches and writes with the model whose
        vectors the catalog holds. Checked at most every `MODEL_CHECK_S` unless `at_once` (a
        write was refused for the switch); True on a switch."""
        now = time.monotonic()
        if not at_once and now - self._model_checked < MODEL_CHECK_S:
            return False
        self._model_checked = now
        current = self.catalog.current_model()
        if current == (self.catalog.model, self.catalog.dim):
            return False
        with self._switch_lock:
            if self.catalog.current_model() == (self.catalog.model, self.catalog.dim):
                return False  # another thread reopened meanwhile
            logger.info("the catalog switched to model %s: reopening with it", current[0])
            with self.searcher.lock:
                self.vector_index.close()
            self._open_model(current[0])
            self.vision.encoder.load()
        return True

    def ingester(
        self, batch_size: int = DEFAULT_BATCH_SIZE, file_root: Path | None = None, urls_only: bool = False
    ) -> Ingester:
        """An ingester into this catalog; with `file_root`, local pictures must lie inside it;
        with `urls_only`, pictures must be http(s) URLs."""
        return ingester_over(
            self.settings,
            self.vision,
            self.catalog,
            self.images,
            self.fetcher,
            batch_size,
            file_root,
            decode_budget=self.decode_budget,
            urls_only=urls_only,
        )

    # Query pictures and searching

    def search(self, picture: Decoded, query: SearchQuery, clock: StageClock | None = None) -> SearchResults:
        """Rank catalog products for a query picture: the one search the routes and the CLI
        share; `clock` (for the metrics) gets the time of each stage. The query's region and
        the boxes answered are in the picture's own pixels, whatever size it was decoded at."""
        self.follow_switch()
        asked = query.region
        if asked is not None:
            query = replace(query, region=picture.to_pixels(asked))
        results = self.searcher.search(picture.image, query, clock, picture.key)
        return replace(
            results,
            searched=asked or picture.to_picture(results.searched),  # an asked region is answered as asked
            regions=tuple(picture.to_picture(box) for box in results.regions),
        )

    def search_words(self, words: str, query: SearchQuery) -> SearchResults:
        """Rank catalog products by how well their pictures show `words`, with the model's
        text tower (CLIP- and SigLIP-class models); raises `CannotSearchWords` without one."""
        self.follow_switch()
        return self.searcher.search_words(words, query)

    def decode(self, data: bytes) -> Decoded:
        """A query picture within the pixel limit and the decode memory budget; raises
        `ImageError`, or `ServiceBusy` while decodes hold all the memory they may. Its key, the
        bytes' hash, lets the next page of a search by the same picture skip the model (no
        key, and no hashing, where no descriptions are kept)."""
        picture = decode_picture(data, self.settings.decode.max_pixels, budget=self.decode_budget)
        return replace(picture, key=content_hash(data)) if self.settings.search.cached_pictures else picture

    def fetch(self, url: str) -> bytes:
        """A picture from the web, through the address guard and the size and time limits."""
        return self.fetcher.fetch(url)

    def stored_picture_path(self, name: str) -> Path:
        """The file of a stored picture (an upload or a catalog picture); raises `ImageNotFound`."""
        return self.images.path(name)

    def uploaded_picture(self, image_id: str) -> bytes:
        """A picture uploaded earlier, by its imageId; raises `ImageNotFound`."""
        return self.images.find(image_id).read_bytes()

    def keep_upload(self, data: bytes) -> str:
        """Keep a query picture for later searches, once it decodes as JPG, PNG or WEBP (a bad
        one is refused before it is kept); returns its stored name."""
        decode_image(data, self.settings.decode.max_pixels, UPLOAD_FORMATS, self.decode_budget)
        return self.images.put(data)

    # Reading the catalog

    def counts(self) -> tuple[int, int]:
        """How many products and pictures the catalog holds (for health checks and metrics)."""
        return self.catalog.count()

    def reachable_counts(self) -> tuple[int, int] | None:
        """`counts()`, or None when the catalog does not answer now (within about a second)."""
        try:
            self.catalog.ping()
            return self.catalog.count()
        except StoreUnavailable:
            return None

    def check_ready(self) -> None:
        """Return when the catalog and the vector index both answer now; else raise
        `StoreUnavailable` for the first that does not, within about a second (readiness)."""
        self.catalog.ping()
        self.searcher.index.ping()  # safe without the search lock: it only asks the server

    def index_size(self) -> int:
        """How many pictures the vector index holds now (it catches up with the catalog before
        each search)."""
        searcher = self.searcher  # one model's searcher and index, even across a switch
        with searcher.lock:
            return searcher.index.count()

    def inference_waiting(self) -> int:
        """How many inferences wait for a slot (`inference_slots`) at this moment."""
        return self.vision.encoder.waiting

    def product_details(self, item_id: str) -> ProductImages:
        """A product and its pictures read in one snapshot, so they agree; raises `ProductNotFound`."""
        with self.catalog.snapshot():
            return self.catalog.get(item_id), self.catalog.images_of(item_id)

    def products_page(self, after: str | None, limit: int) -> tuple[list[ProductImages], str | None]:
        """Up to `limit` products after itemId `after`, in itemId order, with their pictures, and
        the cursor of the next page (None after the last)."""
        with self.catalog.snapshot():  # the products and their pictures agree
            products = self.catalog.products(after, limit)
            pictures = self.catalog.pictures_of([p.item_id for p in products])
        next_cursor = products[-1].item_id if len(products) == limit else None
        return [(p, pictures.get(p.item_id, [])) for p in products], next_cursor

    def first_pictures(self, products: Sequence[Product]) -> dict[str, StoredImage]:
        """Each product's first picture by itemId, for listings that show one."""
        return self.catalog.first_images([p.item_id for p in products])

    @property
    def searches_words(self) -> bool:
        """Whether the catalog's model has a text tower (search by what pictures show)."""
        return self.vision.text is not None

    def keyword_page(
        self, text: str, order: SortOrder, where: ProductFilter, offset: int, limit: int, pictures: bool = False
    ) -> tuple[list[Product], int]:
        """One page of the products whose titles match `text`, and how many match in all. With
        `pictures` (a model with a text tower), also the products whose pictures show `text`,
        the two rankings fused (`tongkuan.search.blend`): a product is found by what its
        pictures show even where its title lacks the words."""
        if not pictures:
            return self.catalog.keyword_search(text, order, where, offset, limit)
        titled, _ = self.catalog.keyword_search(text, SortOrder.RELEVANCE, where, 0, BLEND_CANDIDATES)
        shown = self.search_words(text, SearchQuery(limit=BLEND_CANDIDATES, where=where)).hits
        by_id = {p.item_id: p for p in titled} | {h.product.item_id: h.product for h in shown}
        ranked = [by_id[i] for i in fused([p.item_id for p in titled], [h.product.item_id for h in shown])]
        ranked = blended_order(ranked, order)
        return ranked[offset : offset + limit], len(ranked)

    def shop_page(
        self, text: str, offset: int, limit: int, top_items: int
    ) -> tuple[list[tuple[Shop, list[Product]]], int]:
        """One page of the shops whose names hold every word of `text`, each with its
        `top_items` best sellers, and how many shops match in all."""
        shops, total = self.catalog.shop_search(text, offset, limit)
        return [(shop, self.catalog.shop_items(shop.shop_title, top_items)) for shop in shops], total

    def export_records(self, stored_picture: Callable[[str], str]) -> Iterator[dict[str, Any]]:
        """Every product as an ingest record; `stored_picture` turns a stored picture's name
        into the URL or path a later import reads it from."""
        return export_records(self.catalog, stored_picture)

    # Changing the catalog

    def keep_picture(self, data: bytes) -> str:
        """Keep a catalog picture sent as bytes, once it decodes; returns the reference that
        `put_product` reads it from: its name in the picture store, never a path that
        depends on the working directory."""
        decode_image(data, self.settings.decode.max_pixels, budget=self.decode_budget)
        return self.images.put(data)

    def put_product(self, fields: Mapping[str, Any], pictures: list[str], names: list[str]) -> IngestReport:
        """Add or replace a product (record fields with its itemId) with exactly these pictures
        (http(s) URLs, or references from `keep_picture`, read from the picture store),
        ingested like any import; a record that cannot be stored is a failure in the report."""
        self.follow_switch()
        record = SourceRecord("admin", dict(fields), pictures, self.images.root, names)
        return self.ingester(file_root=self.images.root).ingest([record])

    def update_product(self, item_id: str, changes: Mapping[str, Any]) -> Product:
        """Change some record fields of a product in one transaction; its pictures, vectors and
        (unless `categoryId` changes) category stay. Raises `RecordError` for a field that
        cannot change or a value that breaks its rule, `ProductNotFound` for no such product."""
        unknown = sorted(set(changes) - set(FIELDS))
        if unknown:
            raise RecordError(f"cannot change {', '.join(unknown)}; fields that can change: {', '.join(FIELDS)}")
        return self.catalog.update(item_id, partial(_changed, changes=changes))

    def add_image(self, item_id: str, data: bytes, name: str, location: str | None = None) -> StoredImage:
        """Add one picture to a product, or replace the one of the same name ("": the next free
        name); `location` is its URL, else the bytes are kept in the picture store. A missing or
        full product fails before any model work."""
        self.follow_switch()
        self.catalog.get(item_id)
        names = {picture.name for picture in self.catalog.images_of(item_id)}
        if len(names) >= MAX_PICTURES and name not in names:
            raise CatalogConflict(f"product {item_id!r} already has {MAX_PICTURES} pictures, the most it may have")
        pixels = decode_image(data, self.settings.decode.max_pixels, budget=self.decode_budget)
        described = self.vision.describe([pixels], crop=True)
        stored_at = location or self.images.put(data)
        return self.catalog.add_image(item_id, NewImage(content_hash(data), stored_at, described[0].embedding, name))

    def delete_product(self, item_id: str) -> None:
        """Remove a product and its vectors; raises `ProductNotFound`."""
        self.catalog.delete(item_id)

    def delete_picture(self, item_id: str, name: str) -> None:
        """Remove one picture of a product and its vector; raises `PictureNotFound`."""
        self.catalog.delete_image(item_id, name)

    # Life cycle

    def warm_up(self) -> None:
        """Load the model now rather than on the first request."""
        self.vision.encoder.load()

    def close(self) -> None:
        """Stop import jobs, bring the index up to date and persist it, so the next start is fast."""
        self.imports.close()
        with self.searcher.lock:
            self.vector_index.finish_rebuild()
            self.vector_index.save()
        self.vector_index.close()
        self.catalog.close()
        self.fetcher.close()


def _changed(old: Product, changes: Mapping[str, Any]) -> Product:
    """`old` with record fields replaced; the category stays unless `categoryId` is changed,
    and an emptied one stays too, marked as predicted."""
    new, _ = to_product({**to_record(old), **changes})
    if "categoryId" not in changes:
        return replace(new, category=old.category, category_predicted=old.category_predicted)
    if new.category is None:
        return replace(new, category=old.category, category_predicted=True)
    return new
