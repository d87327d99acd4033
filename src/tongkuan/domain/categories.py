"""The 14 categories of Taobao Image Search V2.0 and their English names."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Category(IntEnum):
    """The category codes of Taobao Image Search V2.0."""

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
    OTHER = 88888888


CATEGORIES: tuple[Category, ...] = tuple(Category)
CATEGORY_POSITION = {c: i for i, c in enumerate(CATEGORIES)}

# English names as used by the API documentation and by data sets' `service_category`.
CATEGORY_NAMES: dict[Category, str] = {
    Category.TOPS: "tops",
    Category.DRESSES: "dresses",
    Category.BOTTOMS: "bottoms",
    Category.BAGS: "bags",
    Category.SHOES: "shoes",
    Category.ACCESSORIES: "accessories",
    Category.SNACKS: "snacks",
    Category.BEAUTY: "beauty products",
    Category.BOTTLED_BEVERAGES: "bottled beverages",
    Category.FURNITURE: "furniture",
    Category.TOYS: "toys",
    Category.UNDERWEAR: "underwear",
    Category.DIGITAL: "digital devices",
    Category.OTHER: "other",
}
CATEGORY_BY_NAME = {name: cat for cat, name in CATEGORY_NAMES.items()}


@dataclass(frozen=True)
class CategoryScore:
    """One category and its probability."""

    category: Category
    score: float


# How a picture's category is predicted (Pailitao's fusion): the classifier's prior, weighted
# PRIOR_WEIGHT, fused with the vote of the VOTERS nearest catalog pictures. The service's
# defaults (TONGKUAN_CATEGORY_PRIOR_WEIGHT, TONGKUAN_CATEGORY_NEIGHBOURS), which tuning checks
# its category head with.
PRIOR_WEIGHT = 0.35
VOTERS = 30
