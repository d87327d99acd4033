"""What both stores share below SQL dialects: a product's stored columns and the conversions
to and from them, picture naming, vector checks and packing, and paging over result groups.

Keeping these in one place is what keeps the two stores' answers the same to the byte
(a product read back from either equals the one written).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from decimal import Decimal
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tongkuan.domain.categories import Category
from tongkuan.domain.products import NewImage, Product, Shop, StoredImage
from tongkuan.errors import CatalogConflict, DimensionMismatch, ModelSwitched, PictureNotFound

ITEM_FIELDS = (
    "item_id, title, reserve_price, final_price, shop_title, seller_id, provcity, user_type,"
    " volume, category_name, level_one_category_name, coupon_amount, coupon_start_fee, url,"
    " category_id, category_predicted, extra"
)
ITEM_COLUMNS = [c.strip() for c in ITEM_FIELDS.split(",")]
ITEM_FIELDS_P = ", ".join("p." + c for c in ITEM_COLUMNS)  # the same, on items aliased `p`
PICTURE_FIELDS = "vector_id, item_id, content_hash, location, name"  # a `StoredImage`, in its order

# A shop's row for `shops`, grouped from its products (aliased `p`).
SHOP_FIELDS = "p.shop_title, MIN(p.seller_id), MIN(p.provcity), MAX(p.user_type), COUNT(*), SUM(p.volume)"
SHOP_ORDER = "SUM(p.volume) DESC, p.shop_title"  # best sellers first


def new_model_record(stored: str | None, model: str, dim: int, catalog: str, advice: str) -> str | None:
    """What to record in a catalog's `meta` under `model` (its vectors' model and dimension),
    given what is recorded there now: the record for a new catalog (`stored` None), None when
    it records this model already. A catalog built with another model raises
    `DimensionMismatch` ("<catalog> was built with ..., not ...; <advice>")."""
    wanted = json.dumps({"model": model, "dim": dim})
    if stored is None:
        return wanted
    if stored != wanted:
        raise DimensionMismatch(f"{catalog} was built with {stored}, not {wanted}; {advice}")
    return None


@contextmanager
def held(
    lock: Callable[[], None], try_lock: Callable[[], bool], unlock: Callable[[], None], wait_s: float | None
) -> Iterator[bool]:
    """Hold a lock for the block: wait for it (`lock`) or, with `wait_s`, try for it
    (`try_lock`) every 20 ms and give up after that long (the block then gets False)."""
    if wait_s is None:
        lock()
    else:
        deadline = time.monotonic() + wait_s
        while not try_lock():
            if time.monotonic() >= deadline:
                yield False
                return
            time.sleep(0.02)
    try:
        yield True
    finally:
        unlock()


def check_vectors(images: Sequence[NewImage], dim: int) -> None:
    """Refuse, before any write, a vector another model made."""
    for image in images:
        if image.vector.shape != (dim,):
            raise DimensionMismatch(f"vector of shape {image.vector.shape}, index dim {dim}")


def require_model(stored: str | None, model: str, dim: int) -> None:
    """Raise `ModelSwitched` when the catalog records another model than (`model`, `dim`)."""
    if stored is not None and model_of(stored) != (model, dim):
        name, _ = model_of(stored)
        raise ModelSwitched(f"the catalog now searches with model {name}, not {model}: reopen it (restart)")


def model_of(record: str) -> tuple[str, int]:
    """A model record (`{"model": ..., "dim": ...}`, as `meta` holds it) as (name, dimension)."""
    parsed = json.loads(record)
    return str(parsed["model"]), int(parsed["dim"])


def check_dim(vector: NDArray[np.float32], dim: int) -> None:
    """Refuse, before any write, a vector of another dimension."""
    if vector.shape != (dim,):
        raise DimensionMismatch(f"vector of shape {vector.shape}, expected ({dim},)")


def vector_bytes(vector: NDArray[np.float32]) -> bytes:
    """A vector as it is stored: its float32 components, packed."""
    return np.ascontiguousarray(vector, dtype=np.float32).tobytes()


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


def free_name(taken: set[str], position: int) -> str:
    """A name for an unnamed picture added at `position`: its position, made unique."""
    name = str(position)
    while name in taken:
        name += "+"
    return name


def picture_to_delete(item_id: str, name: str, pictures: dict[str, Any]) -> Any:
    """What `pictures` (a product's, by name) holds for the picture `name`, which may go: it
    must be there and must not be the product's last."""
    if name not in pictures:
        raise PictureNotFound(f"product {item_id!r} has no picture named {name!r}")
    if len(pictures) == 1:
        raise CatalogConflict(f"{name!r} is the last picture of product {item_id!r}; delete the product instead")
    return pictures[name]


def changed(item_id: str, before: Product, change: Callable[[Product], Product]) -> Product:
    """`change` applied to a stored product, which must keep its itemId."""
    product = change(before)
    if product.item_id != item_id:
        raise CatalogConflict("itemId cannot be changed")
    return product


def chunks(items: Sequence[object], size: int) -> Iterator[list]:  # type: ignore[type-arg]
    """`items` in lists of at most `size` (SQL parameter lists have limits)."""
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


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


def price_text(price: Decimal) -> str:
    """A price as stored: positional digits with the scale it was given (1E+3 is 1000, 12.50
    stays 12.50) and no negative zero, as PostgreSQL's NUMERIC keeps it, so that both stores
    read back the same text."""
    return format(price.copy_abs() if price.is_zero() else price, "f")


def product_row(p: Product) -> tuple[object, ...]:
    """A product as its 17 stored columns (the inverse of `product_from_row`)."""
    return (
        p.item_id,
        p.title,
        price_text(p.reserve_price),
        None if p.final_price is None else price_text(p.final_price),
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


def pictures_from_rows(rows: Sequence[Sequence[Any]]) -> list[StoredImage]:
    """Pictures from rows of `PICTURE_FIELDS`."""
    return [StoredImage(int(v), item_id, h, loc, name) for v, item_id, h, loc, name in rows]


def pictures_by_product(rows: Sequence[Sequence[Any]]) -> dict[str, list[StoredImage]]:
    """Each product's pictures, in the rows' order, from rows of `PICTURE_FIELDS`."""
    found: dict[str, list[StoredImage]] = {}
    for picture in pictures_from_rows(rows):
        found.setdefault(picture.item_id, []).append(picture)
    return found


# Products `BuiltProducts` keeps (a few kB each): a busy catalog's recent candidates.
PRODUCTS_KEPT = 8192


def hits_query(pictures: str = "images i") -> str:
    """Search hits: each picture, its product and how many pictures the product has, in one
    row (`PICTURE_FIELDS`, `ITEM_FIELDS`, the count), as `hits_from_rows` reads them, from
    `pictures` (the images table aliased `i`, where a store names the index to read it by);
    each store adds its own condition on `i.vector_id`."""
    return (
        "SELECT " + ", ".join("i." + c.strip() for c in PICTURE_FIELDS.split(",")) + ", " + ITEM_FIELDS_P
        + ", (SELECT COUNT(*) FROM images c WHERE c.item_id = i.item_id)"
        f" FROM {pictures} JOIN items p ON p.item_id = i.item_id"
    )  # fmt: skip


class BuiltProducts:
    """Products by the stored row they were built from, most recently read kept: searches
    read the same candidates again (the next pages of a picture, similar pictures), and a
    product is built in 4 µs but found in 0.2 µs (`functools.lru_cache`, in C; cachetools'
    cache took 1 µs). A row that changed is another key, so a product is never stale.
    Thread-safe."""

    def __init__(self, size: int = PRODUCTS_KEPT) -> None:
        self._built = functools.lru_cache(maxsize=size)(product_from_row)

    def from_rows(self, rows: Sequence[tuple[Any, ...]]) -> list[Product]:
        """The product of each row of `ITEM_FIELDS`."""
        built = self._built
        return [built(row) for row in rows]


def words_by_picture(rows: Iterable[Sequence[Any]]) -> dict[str, dict[str, str]]:
    """Each product's read pictures' words by picture name, from (item_id, name, words) rows."""
    found: dict[str, dict[str, str]] = {}
    for item_id, name, words in rows:
        found.setdefault(str(item_id), {})[str(name)] = str(words)
    return found


def hits_from_rows(
    rows: Sequence[Sequence[Any]], built: BuiltProducts
) -> tuple[dict[int, tuple[Product, StoredImage]], dict[str, int]]:
    """Pictures by vector id with their products, and each product's picture count, from
    rows of `hits_query()` (a product with several pictures among them is built once)."""
    first = {row[1]: tuple(row[5:-1]) for row in reversed(rows)}  # each product's row
    products = dict(zip(first, built.from_rows(list(first.values())), strict=True))
    counts = {row[1]: int(row[-1]) for row in rows}
    found = {
        int(vector_id): (products[item_id], StoredImage(int(vector_id), item_id, content_hash, location, name))
        for vector_id, item_id, content_hash, location, name, *_ in rows
    }
    return found, counts


def shops_from_rows(rows: Sequence[Sequence[Any]]) -> list[Shop]:
    """Shops from rows of `SHOP_FIELDS`."""
    return [Shop(str(t), str(s), str(c), int(u), int(n), int(v or 0)) for t, s, c, u, n, v in rows]


def id_vectors(rows: Sequence[Sequence[Any]], dim: int) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """Vector ids and vectors from rows of (vector id, stored vector)."""
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim)
    return ids, vecs


def grouped_pictures(
    rows: Iterable[Sequence[Any]], dim: int
) -> dict[str, tuple[list[StoredImage], NDArray[np.float32]]]:
    """Each product's pictures with their stored float32 vectors as one matrix, from rows of
    `PICTURE_FIELDS` and `vector`, in order."""
    grouped: dict[str, list[tuple[StoredImage, bytes]]] = {}
    for v, item_id, h, loc, name, vector in rows:
        grouped.setdefault(item_id, []).append((StoredImage(int(v), item_id, h, loc, name), bytes(vector)))
    return {
        item_id: (
            [image for image, _ in found],
            np.frombuffer(b"".join(vector for _, vector in found), dtype=np.float32).reshape(len(found), dim),
        )
        for item_id, found in grouped.items()
    }
