"""Products and their images as the catalog holds them, in Python names and types (the API
edge spells them DAJI's way), with the conditions and orders searches take.

Words, one per concept: an *image* is a product's picture as the catalog stores it
(`NewImage`, `StoredImage`, `StagedImage`, `Engine.add_image`); a *picture* is the picture a
query searches by (`tongkuan.images.decode.decode_picture`, `Decoded`), whose boxes are given
in its own pixels; its *pixels* are what it decoded to, possibly reduced (`Decoded.image`,
`Decoded.to_pixels`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray

from tongkuan.domain.categories import Category


@dataclass(frozen=True)
class Product:
    """One catalog item. Prices are exact decimals; the API edge spells them as strings."""

    item_id: str
    title: str
    reserve_price: Decimal = Decimal("0")
    final_price: Decimal | None = None
    shop_title: str = ""
    seller_id: str = ""
    provcity: str = ""
    user_type: int = 0
    volume: int = 0
    category_name: str = ""
    level_one_category_name: str = ""
    coupon_amount: int | None = None
    coupon_start_fee: str | None = None
    url: str = ""
    category: Category | None = None
    category_predicted: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def price(self) -> Decimal:
        """The price a buyer pays: the discounted one where there is one."""
        return self.final_price if self.final_price is not None else self.reserve_price


def is_web_url(location: str) -> bool:
    """Whether a picture location is an http(s) URL, whatever the case of its scheme
    (`HTTP://a/b.jpg` is a URL, not a path), rather than a stored file's name or a local path."""
    return location[:8].lower().startswith(("http://", "https://"))


@dataclass(frozen=True)
class StoredImage:
    """One catalog image of a product, with its vector id and where its pixels are served from."""

    vector_id: int
    item_id: str
    content_hash: str
    location: str  # an absolute http(s) URL, or a file name in the data directory's image store
    name: str = ""  # the picture's name within its product (unique per product)


@dataclass(frozen=True)
class ProductFilter:
    """Attribute conditions a result must meet; None means no condition."""

    min_price: Decimal | None = None
    max_price: Decimal | None = None
    user_type: int | None = None
    shop_title: str | None = None  # the exact shop name, case-insensitive
    location: str | None = None  # a part of provcity: "上海", "成都"

    def matches(self, product: Product) -> bool:
        price = product.price
        return (
            (self.min_price is None or price >= self.min_price)
            and (self.max_price is None or price <= self.max_price)
            and (self.user_type is None or product.user_type == self.user_type)
            and (self.shop_title is None or product.shop_title.casefold() == self.shop_title.casefold())
            and (self.location is None or self.location in product.provcity)
        )


@dataclass(frozen=True)
class NewImage:
    """An image to store with its product: content hash, where it is served from, its vector,
    and its name within the product (its position when empty)."""

    content_hash: str
    location: str
    vector: NDArray[np.float32]
    name: str = ""
    words: str | None = None  # the text read on it, a line a line ("" none; None: not read)


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


@dataclass(frozen=True)
class StagedImage:
    """A catalog picture to embed with another model: its vector id, where its pixels are
    (a URL or a file name in the picture store) and the hash they must have."""

    vector_id: int
    location: str
    content_hash: str
