"""What every catalog store offers, and the values that cross it.

Two stores implement `Catalog`: the embedded one (`SqliteCatalog`, one file, zero setup) and
the server one (`PostgresCatalog`, shared by many replicas). Both keep the same contract:
a product's record, its pictures' vectors and change-log entries commit together, and the
change log is what any vector index (faiss in process, Milvus on a cluster) replays to
stay in step.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from decimal import Decimal
from enum import IntEnum, StrEnum
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from tongkuan.catalog.product import Product, ProductFilter, StoredImage
from tongkuan.errors import DimensionMismatch
from tongkuan.vision.categories import Category


@dataclass(frozen=True)
class NewImage:
    """An image to store with its product: content hash, where it is served from, its vector,
    and its name within the product (its position when empty)."""

    content_hash: str
    location: str
    vector: NDArray[np.float32]
    name: str = ""


class SortOrder(StrEnum):
    """How keyword results are ordered."""

    RELEVANCE = "default"
    PRICE_ASC = "price_asc"
    PRICE_DESC = "price_desc"
    SALES_DESC = "sales_desc"


@dataclass(frozen=True)
class Shop:
    """A shop found by name, with its item count and total sales in this catalog."""

    shop_title: str
    seller_id: str
    provcity: str
    user_type: int
    items: int
    volume: int


class ChangeKind(IntEnum):
    """What happened to a vector. A retag keeps the vector but moves its product to another
    category: an index that filters by category (Milvus) must rewrite it, faiss ignores it."""

    REMOVED = 0
    ADDED = 1
    RETAGGED = 2


@dataclass(frozen=True)
class Change:
    """One entry of the change log."""

    seq: int
    vector_id: int
    kind: ChangeKind

    @property
    def added(self) -> bool:
        return self.kind is ChangeKind.ADDED


def page_of_groups(
    groups: Sequence[tuple[str, str, int]],
    offset: int,
    limit: int,
    fetch: Callable[[str, str, int, int], list[Product]],
) -> list[Product]:
    """One page over result groups shown one after another: `groups` holds each group's
    match condition, order and size; `fetch(match, order, skip, wanted)` reads a slice of
    one group. A page that starts in one group fills up from the next."""
    found: list[Product] = []
    before = 0  # matches in the groups already passed
    for match, order, size in groups:
        skip = max(0, offset - before)
        wanted = limit - len(found)
        before += size
        if wanted <= 0 or skip >= size:
            continue
        found += fetch(match, order, skip, wanted)
    return found[:limit]


def check_vectors(images: Sequence[NewImage], dim: int) -> None:
    """Refuse, before any write, a vector another model made."""
    for image in images:
        if image.vector.shape != (dim,):
            raise DimensionMismatch(f"vector of shape {image.vector.shape}, index dim {dim}")


def named(images: Sequence[NewImage]) -> list[NewImage]:
    """Images with distinct names: a missing name becomes the position, a repeated one gets `-<position>`."""
    given = [image.name or str(position) for position, image in enumerate(images)]
    seen: set[str] = set()
    result = []
    for position, (image, name) in enumerate(zip(images, given, strict=True)):
        if name in seen:
            suffix, name = 0, f"{name}-{position}"
            while name in seen or name in given:  # never take a name another picture asked for
                suffix += 1
                name = f"{given[position]}-{position}-{suffix}"
        seen.add(name)
        result.append(replace(image, name=name))
    return result


class Catalog(Protocol):
    """Products, their pictures' vectors and the change log. Safe to share between threads."""

    model: str
    dim: int

    def snapshot(self) -> AbstractContextManager[None]:
        """Pin one consistent read view for every read this thread makes inside the block."""
        ...

    def exclusive(self, name: str, wait_s: float | None = None) -> AbstractContextManager[bool]:
        """Hold a lock named `name` across every process that shares this catalog; with
        `wait_s`, give up after that long (the block then gets False)."""
        ...

    # writes
    def upsert(self, product: Product, images: Sequence[NewImage] | None) -> None: ...
    def upsert_many(self, items: Sequence[tuple[Product, Sequence[NewImage] | None]]) -> None: ...
    def add_image(self, item_id: str, image: NewImage) -> StoredImage: ...
    def delete_image(self, item_id: str, name: str) -> None: ...
    def update(self, item_id: str, change: Callable[[Product], Product]) -> Product: ...
    def delete(self, item_id: str) -> None: ...
    def set_index_position(self, name: str, seq: int) -> None: ...
    def set_learned(self, key: str, value: str | None) -> None:
        """Store (None: remove) something learned from the catalog (a whitening), so that every
        process reads the same."""
        ...

    # reads
    def get(self, item_id: str) -> Product: ...
    def image_hashes(self, item_id: str) -> list[str]: ...
    def stored_locations(self) -> set[str]: ...
    def images_of(self, item_id: str) -> list[StoredImage]: ...
    def first_images(self, item_ids: Sequence[str]) -> dict[str, StoredImage]: ...
    def keyword_search(
        self,
        text: str,
        sort: SortOrder = SortOrder.RELEVANCE,
        where: ProductFilter | None = None,
        offset: int = 0,
        limit: int = 20,
    ) -> tuple[list[Product], int]: ...
    def shop_search(self, text: str, offset: int = 0, limit: int = 20) -> tuple[list[Shop], int]: ...
    def shop_items(self, shop_title: str, limit: int) -> list[Product]: ...
    def products(self, after: str | None = None, limit: int = 100) -> list[Product]: ...
    def count_products(self, category: Category | None = None, where: ProductFilter | None = None) -> int: ...
    def count(self) -> tuple[int, int]: ...
    def last_change(self) -> int: ...
    def changes_since(self, seq: int, limit: int | None = None) -> list[Change]: ...
    def vectors(self, vector_ids: Sequence[int] | None = None) -> tuple[NDArray[np.int64], NDArray[np.float32]]: ...
    def vector_categories(self, vector_ids: Sequence[int]) -> dict[int, int]: ...
    def image_ids(self) -> list[int]: ...
    def picture_counts(self, item_ids: Sequence[str]) -> dict[str, int]: ...
    def pictures_with_vectors(
        self, item_ids: Sequence[str]
    ) -> dict[str, tuple[list[StoredImage], NDArray[np.float32]]]: ...
    def hydrate(self, vector_ids: Sequence[int]) -> dict[int, tuple[Product, StoredImage]]: ...
    def index_position(self, name: str) -> int: ...
    def learned(self, key: str) -> str | None: ...
    def close(self) -> None: ...


NO_CATEGORY = -1  # how an index that filters by category stores a product without one


def chunks(items: Sequence[object], size: int) -> Iterator[list]:  # type: ignore[type-arg]
    """`items` in lists of at most `size` (SQL parameter lists have limits)."""
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def free_name(taken: set[str], position: int) -> str:
    """A name for an unnamed picture added at `position`: its position, made unique."""
    name = str(position)
    while name in taken:
        name += "+"
    return name


def product_from_row(row: Sequence[object]) -> Product:
    """A product from its 17 stored columns, as either store returns them (prices as text
    or decimals, flags as integers or booleans, extra fields as JSON text)."""
    (item_id, title, reserve, final, shop, seller, provcity, user_type, volume, cat_name,
     level_one, coupon, coupon_fee, url, category_id, predicted, extra) = row  # fmt: skip
    return Product(
        item_id=str(item_id),
        title=str(title),
        reserve_price=Decimal(str(reserve)),
        final_price=None if final is None else Decimal(str(final)),
        shop_title=str(shop),
        seller_id=str(seller),
        provcity=str(provcity),
        user_type=int(user_type),  # type: ignore[call-overload]
        volume=int(volume),  # type: ignore[call-overload]
        category_name=str(cat_name),
        level_one_category_name=str(level_one),
        coupon_amount=None if coupon is None else int(coupon),  # type: ignore[call-overload]
        coupon_start_fee=None if coupon_fee is None else str(coupon_fee),
        url=str(url),
        category=None if category_id is None else Category(int(category_id)),  # type: ignore[call-overload]
        category_predicted=bool(predicted),
        extra={} if extra == "{}" else json.loads(str(extra)),  # most products have none: skip the parser
    )


def product_row(p: Product) -> tuple[object, ...]:
    """A product as its 17 stored columns (the inverse of `product_from_row`)."""
    return (
        p.item_id,
        p.title,
        str(p.reserve_price),
        None if p.final_price is None else str(p.final_price),
        p.shop_title,
        p.seller_id,
        p.provcity,
        p.user_type,
        p.volume,
        p.category_name,
        p.level_one_category_name,
        p.coupon_amount,
        p.coupon_start_fee,
        p.url,
        None if p.category is None else int(p.category),
        int(p.category_predicted),
        json.dumps(p.extra, ensure_ascii=False),
    )


def stacked(
    pictures: dict[str, list[tuple[StoredImage, bytes]]], dim: int
) -> dict[str, tuple[list[StoredImage], NDArray[np.float32]]]:
    """Each product's pictures with their stored float32 vectors as one matrix."""
    return {
        item_id: (
            [image for image, _ in found],
            np.frombuffer(b"".join(vector for _, vector in found), dtype=np.float32).reshape(len(found), dim),
        )
        for item_id, found in pictures.items()
    }
