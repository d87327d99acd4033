"""Bulk ingestion: records in, products with embedded images in the catalog, a report out.

Images are loaded and decoded on a thread pool, embedded in model batches, and each
product is written in one transaction together with its vectors, so a product is
searchable only when all of it is there. Reruns are idempotent: a product whose images
have the same content as stored is updated without embedding again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import numpy as np
from PIL import Image
from tqdm import tqdm

from tongkuan.catalog.store import ProductStore
from tongkuan.domain.categories import CATEGORIES
from tongkuan.domain.products import NewImage, Product, is_web_url
from tongkuan.errors import ImageError, ProductNotFound, RecordError
from tongkuan.images.decode import DecodeBudget, content_hash, decode_image
from tongkuan.images.fetch import Fetcher
from tongkuan.images.store import ImageStore
from tongkuan.ingest.readers import SourceRecord
from tongkuan.ingest.reading import CatalogReading
from tongkuan.ingest.records import is_text, to_product
from tongkuan.vision.encoder import background_inference
from tongkuan.vision.pipeline import Vision

logger = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_BATCH_SIZE = 16
DEFAULT_WORKERS = 8


@dataclass
class Failure:
    """A record that was not ingested, and why."""

    origin: str
    item_id: str | None
    reason: str


@dataclass
class IngestReport:
    """What one run did."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    images_embedded: int = 0
    processed: int = 0  # records done so far, ingested or failed
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> int:
        return self.added + self.updated + self.unchanged


@dataclass
class Fetched:
    """A checked record with its pictures' bytes, not decoded yet."""

    record: SourceRecord
    product: Product
    named_category: bool
    data: list[bytes]


@dataclass
class Loaded(Fetched):
    """A fetched record with its pictures decoded, ready to embed."""

    pixels: list[Image.Image]


class Ingester:
    """Loads records into a catalog with one vision model."""

    def __init__(
        self,
        vision: Vision,
        catalog: ProductStore,
        images: ImageStore,
        fetcher: Fetcher,
        max_pixels: int,
        batch_size: int = DEFAULT_BATCH_SIZE,
        workers: int = DEFAULT_WORKERS,
        file_root: Path | None = None,
        decode_budget: DecodeBudget | None = None,
        urls_only: bool = False,
        reading: CatalogReading | None = None,
    ) -> None:
        self.vision = vision
        self.catalog = catalog
        self.images = images
        self.fetcher = fetcher
        self.max_pixels = max_pixels
        self.batch_size = batch_size
        self.workers = workers
        self.file_root = file_root  # local images must lie inside it (None: anywhere, for the CLI)
        self.decode_budget = decode_budget  # shared with the queries of a serving process
        self.urls_only = urls_only  # records from outside (imports over HTTP) name no files at all
        self.reading = reading  # reads the text on the pictures it embeds (None: never)

    def ingest(
        self,
        records: Iterable[SourceRecord],
        progress: bool = False,
        on_commit: Callable[[list[str]], None] | None = None,
        report: IngestReport | None = None,
        stop: threading.Event | None = None,
    ) -> IngestReport:
        """Ingest every record; failures are reported per record and never stop the run.

        `on_commit` is called with the itemIds of each batch once it is durably written.
        `report`, when given, is filled in as the run goes (for progress); `stop`, when set,
        ends the run after the batch in hand.
        """
        started = time.perf_counter()
        report = report or IngestReport()
        pending = list(records)
        bar = tqdm(total=len(pending), unit="item", disable=not progress)
        with ThreadPoolExecutor(self.workers) as pool:
            for batch in _batches(pending, self.batch_size):
                loaded = list(pool.map(self._load, batch))
                good = [result for result in loaded if not isinstance(result, Failure)]
                self.write(good, report)
                # counted once the batch is written: a batch whose write raised is tried again
                # whole (after a model switch, by an import job), and must not count twice
                for result in loaded:
                    if isinstance(result, Failure):
                        report.failures.append(result)
                        logger.warning("%s: %s", result.origin, result.reason)
                report.processed += len(batch)
                if on_commit is not None:
                    on_commit([item.product.item_id for item in good])
                bar.update(len(batch))
                if stop is not None and stop.is_set():
                    break
        bar.close()
        report.seconds = time.perf_counter() - started
        return report

    def _load(self, record: SourceRecord) -> Loaded | Failure:
        fetched = self.fetch(record)
        return fetched if isinstance(fetched, Failure) else self.decode(fetched)

    def fetch(self, record: SourceRecord) -> Fetched | Failure:
        """Check a record and read its pictures' bytes (the I/O half of loading)."""
        item_id = record.fields.get("itemId")
        try:
            product, named = to_product(record.fields)
            if not record.images:
                raise RecordError("images is empty: a product needs at least one image")
            if not is_text(record.images):
                raise RecordError("images must not contain unpaired surrogates")
            data = [self._read(ref, record.base_dir) for ref in record.images]
        except (RecordError, ImageError, OSError) as exc:
            return Failure(record.origin, None if item_id is None else str(item_id), str(exc))
        return Fetched(record, product, named, data)

    def decode(self, fetched: Fetched) -> Loaded | Failure:
        """Decode a fetched record's pictures (the CPU half of loading)."""
        try:
            pixels = [decode_image(d, self.max_pixels, budget=self.decode_budget) for d in fetched.data]
        except (ImageError, OSError) as exc:
            return Failure(fetched.record.origin, fetched.product.item_id, str(exc))
        return Loaded(fetched.record, fetched.product, fetched.named_category, fetched.data, pixels)

    def _read(self, ref: str, base_dir: Path) -> bytes:
        if is_web_url(ref):
            return self.fetcher.fetch(ref)
        if self.urls_only:
            raise ImageError(f"image {ref!r} must be an http(s) URL")
        path = Path(ref) if Path(ref).is_absolute() else base_dir / ref
        if self.file_root is not None and not path.resolve().is_relative_to(self.file_root.resolve()):
            raise ImageError(f"image {ref!r} must be an http(s) URL")
        try:
            return path.read_bytes()
        except OSError as exc:
            raise ImageError(f"image {ref!r} cannot be read ({exc.strerror or exc})") from exc

    def write(self, loaded: list[Loaded], report: IngestReport) -> None:
        """Embed the pictures that changed (only those) and store the batch in one transaction."""
        changed = []
        writes: list[tuple[Product, list[NewImage] | None]] = []
        for item in loaded:
            hashes = [content_hash(d) for d in item.data]
            stored = self.catalog.image_hashes(item.product.item_id)
            if stored == hashes:
                product = item.product
                if not item.named_category:
                    product = self._keep_predicted(product)
                writes.append((product, self._renamed(item, hashes)))
                report.unchanged += 1
            else:
                changed.append((item, hashes, bool(stored)))
        pixels = [p for item, _, _ in changed for p in item.pixels]
        described = []
        with background_inference():  # searches in the same process go first
            for chunk in _batches(pixels, self.vision.batch(self.batch_size)):
                described += self.vision.describe(chunk, crop=True)
        report.images_embedded += len(described)
        read = self.reading.words(pixels) if self.reading is not None else [None] * len(pixels)
        position = 0
        for item, hashes, existed in changed:
            mine = described[position : position + len(item.pixels)]
            words = read[position : position + len(item.pixels)]
            position += len(item.pixels)
            product = item.product
            if not item.named_category:
                prior = np.mean([d.prior for d in mine], axis=0)
                product = replace(product, category=CATEGORIES[int(np.argmax(prior))], category_predicted=True)
            new_images = [
                NewImage(h, location, d.embedding, name, w)
                for h, d, w, (name, location) in zip(hashes, mine, words, self._names_and_locations(item), strict=True)
            ]
            writes.append((product, new_images))
            if existed:
                report.updated += 1
            else:
                report.added += 1
        self.catalog.upsert_many(writes)  # one transaction per batch, each product whole

    def _names_and_locations(self, item: Loaded) -> list[tuple[str, str]]:
        names = item.record.names or [picture_name(ref) for ref in item.record.images]
        locations = [self._location(ref, data) for ref, data in zip(item.record.images, item.data, strict=True)]
        return list(zip(names, locations, strict=True))

    def _renamed(self, item: Loaded, hashes: list[str]) -> list[NewImage] | None:
        """The same pictures under new names or locations, with their stored vectors (no model
        work); None when nothing about them changed."""
        wanted = self._names_and_locations(item)
        if [(p.name, p.location) for p in self.catalog.images_of(item.product.item_id)] == wanted:
            return None
        _, vectors = self.catalog.pictures_with_vectors([item.product.item_id])[item.product.item_id]
        return [
            NewImage(h, location, vector, name)
            for h, vector, (name, location) in zip(hashes, vectors, wanted, strict=True)
        ]

    def _keep_predicted(self, product: Product) -> Product:
        try:
            stored = self.catalog.get(product.item_id)
        except ProductNotFound:
            return product
        return replace(product, category=stored.category, category_predicted=stored.category_predicted)

    def _location(self, ref: str, data: bytes) -> str:
        if is_web_url(ref):
            return ref
        return self.images.put(data)


def picture_name(ref: str) -> str:
    """A picture's default name: the last part of its path or URL path ("a/b/c.jpg" -> "c.jpg")."""
    if "://" not in ref:
        return Path(ref).name
    try:
        return urlsplit(ref).path.rstrip("/").rsplit("/", 1)[-1]
    except ValueError:  # not a URL at all; fetching it fails on its own
        return ""


def _batches(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
