"""What a catalog offers, one role at a time, and `Catalog`, every role together.

A catalog holds products, their pictures' vectors and a change log. Two stores implement
every role: the embedded one (`SqliteCatalog`, one file, zero setup) and the server one
(`PostgresCatalog`, shared by many replicas). Both keep the same contract: a product's
record, its pictures' vectors and change-log entries commit together, and the change log
is what any vector index (faiss in process, Milvus on a cluster) replays to stay in step.

Each caller asks for the role it uses: an export reads products (`ProductReader`), ingestion
reads and writes them (`ProductStore`), a search makes the reads of `SearchReads`, a vector
index reads the change log and the stored vectors (`IndexSource`, in `tongkuan.domain.changes`).
A test fakes just that role. `Catalog` is what a store implements and what the engine opens
and passes around. Every role is safe to share between threads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from tongkuan.domain.categories import Category
from tongkuan.domain.changes import IndexSource
from tongkuan.domain.products import NewImage, Product, ProductFilter, Shop, SortOrder, StagedImage, StoredImage


class ProductWriter(Protocol):
    """Writes products and their pictures. Each call is one transaction: a product's record,
    its pictures' vectors and their change-log entries commit together or not at all."""

    model: str
    dim: int  # every vector written has this many components (else `DimensionMismatch`, before any write)

    def upsert(self, product: Product, images: Sequence[NewImage] | None) -> None:
        """Insert or replace `product`; with `images`, replace its pictures (None keeps them)."""
        ...

    def upsert_many(self, items: Sequence[tuple[Product, Sequence[NewImage] | None]]) -> None:
        """`upsert` for many products in one transaction (all or none); a product given twice
        ends as if the batch were written in order."""
        ...

    def add_image(self, item_id: str, image: NewImage) -> StoredImage:
        """Add one picture to a product, replacing its picture of the same name."""
        ...

    def delete_image(self, item_id: str, name: str) -> None:
        """Remove one picture of a product. The last one cannot go: delete the product instead."""
        ...

    def update(self, item_id: str, change: Callable[[Product], Product]) -> Product:
        """Apply `change` to a stored product's fields in one transaction; pictures stay."""
        ...

    def delete(self, item_id: str) -> None:
        """Remove a product and its pictures; raise `ProductNotFound` if it is not there."""
        ...


class ProductReader(Protocol):
    """Reads products and their pictures by itemId."""

    model: str
    dim: int  # the width of the vectors `pictures_with_vectors` returns

    def snapshot(self) -> AbstractContextManager[None]:
        """Pin one consistent read view for every read this thread makes inside the block."""
        ...

    def get(self, item_id: str) -> Product:
        """A stored product; raise `ProductNotFound` if it is not there."""
        ...

    def products(self, after: str | None = None, limit: int = 100) -> list[Product]:
        """Products in itemId order, starting after the itemId `after` (a cursor)."""
        ...

    def images_of(self, item_id: str) -> list[StoredImage]:
        """A product's pictures in order (empty if it is not there)."""
        ...

    def pictures_of(self, item_ids: Sequence[str]) -> dict[str, list[StoredImage]]:
        """Each of the given products' pictures in order (products without any left out)."""
        ...

    def image_hashes(self, item_id: str) -> list[str]:
        """Content hashes of a product's pictures in order (empty if it is not there)."""
        ...

    def first_images(self, item_ids: Sequence[str]) -> dict[str, StoredImage]:
        """The first picture of each of the given products."""
        ...

    def pictures_with_vectors(
        self, item_ids: Sequence[str]
    ) -> dict[str, tuple[list[StoredImage], NDArray[np.float32]]]:
        """Every picture of the given products with their vectors, one matrix per product."""
        ...

    def stored_locations(self) -> set[str]:
        """Every picture location the catalog names (file names in the image store, or URLs)."""
        ...

    def count(self) -> tuple[int, int]:
        """Products and pictures."""
        ...


class ProductStore(ProductReader, ProductWriter, Protocol):
    """Products read and written: what ingestion needs (it compares what is stored before it
    writes, and reuses stored vectors when only a picture's name or location changes)."""


class SearchReads(Protocol):
    """The reads a search makes, all inside one `snapshot`: the products behind the vectors
    an index found, and whole products' pictures for ranking them."""

    def snapshot(self) -> AbstractContextManager[None]:
        """Pin one consistent read view for every read this thread makes inside the block."""
        ...

    def hydrate(self, vector_ids: Sequence[int]) -> dict[int, tuple[Product, StoredImage]]:
        """Products and picture info for the given vector ids; ids that are gone are left out."""
        ...

    def hits(self, vector_ids: Sequence[int]) -> tuple[dict[int, tuple[Product, StoredImage]], dict[str, int]]:
        """What `hydrate` reads, and how many pictures each of those products has, in one query."""
        ...

    def picture_counts(self, item_ids: Sequence[str]) -> dict[str, int]:
        """How many pictures each of the given products has (no vectors read)."""
        ...

    def pictures_with_vectors(
        self, item_ids: Sequence[str]
    ) -> dict[str, tuple[list[StoredImage], NDArray[np.float32]]]:
        """Every picture of the given products with their vectors, one matrix per product."""
        ...

    def count_products(self, category: Category | None = None, where: ProductFilter | None = None) -> int:
        """Products in a category (all if None) that pass a filter."""
        ...


class KeywordSearch(Protocol):
    """Products by the words of their titles, and shops by their names (`catalog.keywords`
    turns text into the terms both stores match)."""

    def keyword_search(
        self,
        text: str,
        sort: SortOrder = SortOrder.RELEVANCE,
        where: ProductFilter | None = None,
        offset: int = 0,
        limit: int = 20,
    ) -> tuple[list[Product], int]:
        """Products whose titles match `text`, one page of them, and how many match in all.

        Sorted by price or sales, a title must hold every query term. By relevance, titles
        holding every term come first and then those holding some (see `keywords.query_terms`).
        """
        ...

    def shop_search(self, text: str, offset: int = 0, limit: int = 20) -> tuple[list[Shop], int]:
        """Shops whose names hold every query term, best sellers first, and how many match."""
        ...

    def shop_items(self, shop_title: str, limit: int) -> list[Product]:
        """A shop's best-selling products."""
        ...


class LearnedMetadata(Protocol):
    """What was learned from the catalog (a whitening of its vectors), stored with it so that
    every process reads the same."""

    model: str  # what is learned holds for this model's vectors
    dim: int

    def learned(self, key: str) -> str | None:
        """What is stored under `key`, or None."""
        ...

    def set_learned(self, key: str, value: str | None) -> None:
        """Store `value` under `key` (None: remove it)."""
        ...

    def learned_keys(self) -> list[str]:
        """The keys of everything learned, in order."""
        ...


class JobStore(Protocol):
    """Bulk import jobs kept with the catalog, so that every process sharing it reports them
    and one takes over a job whose runner stopped. A job is its records (`body`), a status
    (text its runner writes; the store does not read it) and a lease: the process that holds
    an unexpired lease runs the job; any may take one whose lease expired. Lease times are
    the store's own clock (the database server's for a shared store)."""

    def add_job(self, job_id: str, created: float, status: str, body: bytes, done: bool = False) -> None:
        """Keep a new job, unleased and open (the next `claim_job` may take it) unless `done`."""
        ...

    def job_status(self, job_id: str) -> str | None:
        """A job's status, or None if there is no such job."""
        ...

    def job_statuses(self) -> list[str]:
        """Every job's status, oldest job first."""
        ...

    def claim_job(self, owner: str, lease_s: float) -> tuple[str, str, bytes] | None:
        """Take the oldest open job that nobody holds (never leased, or its lease expired)
        for `lease_s` seconds, in one transaction: its id, status and records; None if none."""
        ...

    def update_job(self, job_id: str, owner: str, status: str, lease_s: float, done: bool = False) -> bool:
        """Store a job's status and extend `owner`'s lease by `lease_s` from now (0: let it
        go at once), closing the job when `done`; False (nothing stored) when `owner` no
        longer holds the lease: another process took the job over."""
        ...

    def delete_job(self, job_id: str) -> bool:
        """Delete a job that ended; False, deleting nothing, when there is no such job or it
        is still open."""
        ...


class Reachable(Protocol):
    """Whether the store answers now: what a readiness probe asks."""

    def ping(self) -> None:
        """Return once the store answers; raise `StoreUnavailable` within about a second
        when it does not."""
        ...


class ModelVersions(Protocol):
    """Switching the catalog to another model: its vectors are staged beside the ones
    searches use, then swapped in with one transaction (`switch_model`), so every reader sees
    all of one model or all of the other; the replaced vectors stay staged for a switch back."""

    model: str
    dim: int

    def unstaged(self, model: str, limit: int = 1000) -> list[StagedImage]:
        """Pictures with no staged vector of `model` yet, oldest first."""
        ...

    def stage(self, model: str, dim: int, vectors: Sequence[tuple[int, NDArray[np.float32]]]) -> None:
        """Keep vectors of `model` for the given pictures (by vector id) until a switch."""
        ...

    def switch_model(self, model: str, dim: int) -> bool:
        """Swap `model`'s staged vectors in; False (nothing changed) while some are missing."""
        ...

    def current_model(self) -> tuple[str, int]:
        """The model searches use now, as stored (another process may have switched)."""
        ...

    def previous_model(self) -> tuple[str, int] | None:
        """The model used before the last switch."""
        ...


class PictureWords(Protocol):
    """The text read on each picture (`NULL` until read): kept per picture, and searched by
    keyword with its product's title."""

    def unread_pictures(self, after: int = 0, limit: int = 1000) -> list[StagedImage]:
        """Pictures not read yet with vector ids above `after`, in vector id order."""
        ...

    def set_picture_words(self, words: Sequence[tuple[int, str]]) -> None:
        """Keep what was read on pictures (by vector id; "" for none) and make it searchable."""
        ...

    def searched_texts(self, item_ids: Sequence[str]) -> dict[str, str]:
        """Each product's title with the words read on its pictures."""
        ...

    def picture_words(self, item_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """What was read on each of the given products' pictures, by picture name (pictures
        read only; "" for one that showed no words)."""
        ...

    def reading_counts(self) -> tuple[int, int]:
        """Pictures read so far, and how many of them showed words."""
        ...

    def showed_words(self, vector_ids: Sequence[int]) -> dict[int, bool]:
        """Whether each of the given pictures showed words when read (unread ones left out)."""
        ...


class Catalog(
    ProductStore,
    SearchReads,
    KeywordSearch,
    LearnedMetadata,
    IndexSource,
    ModelVersions,
    PictureWords,
    JobStore,
    Reachable,
    Protocol,
):
    """Every role: what a store implements. Safe to share between threads."""
