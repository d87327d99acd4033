"""Values you pass in: categories, keyword sort orders, regions and attribute filters, each
spelled on the wire by `to_param` exactly as the API parses it."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import IntEnum, StrEnum
from typing import TypedDict


class Category(IntEnum):
    """DAJI's category codes (`categoryId`)."""

    TOPS = 0
    DRESSES = 1
    BOTTOMS = 2
    BAGS = 3
    SHOES = 4
    ACCESSORIES = 5
    SNACKS = 6
    BEAUTY = 7
    BOTTLED_BEVERAGES = 8
    FURNITURE = 9
    TOYS = 20
    UNDERWEAR = 21
    DIGITAL = 22
    OTHERS = 88888888


class SortOrder(StrEnum):
    """The orders of a keyword search (`sort`)."""

    RELEVANCE = "default"
    PRICE_ASC = "price_asc"
    PRICE_DESC = "price_desc"
    SALES_DESC = "sales_desc"


@dataclass(frozen=True)
class Region:
    """A pixel box in DAJI's order: x-min, x-max, y-min, y-max (not x1,y1,x2,y2)."""

    x1: int
    x2: int
    y1: int
    y2: int

    @classmethod
    def parse(cls, text: str) -> Region:
        """A region from its wire form `"x1,x2,y1,y2"`; raises ValueError otherwise."""
        parts = [part.strip() for part in text.split(",")]
        if len(parts) != 4:
            raise ValueError(f"a region is x1,x2,y1,y2, not {text!r}")
        x1, x2, y1, y2 = (int(part) for part in parts)
        return cls(x1, x2, y1, y2)

    def to_param(self) -> str:
        return f"{self.x1},{self.x2},{self.y1},{self.y2}"


Price = Decimal | int | float | str


@dataclass(frozen=True)
class Filter:
    """Attribute filters (the `filter` parameter), any subset: a price range on the price
    paid (either end may stay open), 0 Taobao / 1 Tmall, the exact shop name, a part of
    `provcity`. DAJI's own service documents no `filter`; it is this service's extra."""

    min_price: Price | None = None
    max_price: Price | None = None
    user_type: int | None = None
    shop: str | None = None
    location: str | None = None

    def to_param(self) -> str:
        """`price:LOW-HIGH;userType:N;shop:NAME;location:PLACE`; raises ValueError for a
        value the syntax cannot carry (a `;` in a name)."""
        parts = []
        if self.min_price is not None or self.max_price is not None:
            parts.append(f"price:{_price(self.min_price)}-{_price(self.max_price)}")
        if self.user_type is not None:
            parts.append(f"userType:{self.user_type}")
        for key, value in (("shop", self.shop), ("location", self.location)):
            if value is not None:
                if ";" in value:
                    raise ValueError(f"a filter's {key} cannot contain ';': {value!r}")
                parts.append(f"{key}:{value}")
        return ";".join(parts)


def _price(value: Price | None) -> str:
    if value is None:
        return ""
    # via str, so 0.1 is "0.1" rather than float's exact binary expansion
    return format(Decimal(str(value)), "f")


class ImageSearchOptions(TypedDict, total=False):
    """The options of an image search (V2.0), in Python names; any left out is not sent, so
    the service's default applies. The last four are this service's extras: DAJI's own
    service documents only the first five.

    - page_no: the offset of the first result, 0-499 (not a page number)
    - page_size: how many results, 1-20
    - category: search only this category; predicted (and reported) when left out
    - crop: True (the default) searches the main subject, False the whole picture
    - region: the box to search; wins over crop
    - filter: attribute filters, a `Filter` or its wire form
    - with_score: add each item's similarity `score`
    - score_threshold: leave out items less similar than this (0-1)
    - distinct_product_id: False lists one item per matching picture instead of per product
    """

    page_no: int
    page_size: int
    category: Category | int
    crop: bool
    region: Region | str
    filter: Filter | str
    with_score: bool
    score_threshold: float
    distinct_product_id: bool
