"""Product records: every field a V2 search hit needs, in Python names and types."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from tongkuan.vision.categories import Category


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


@dataclass(frozen=True)
class StoredImage:
    """One catalog image of a product, with its vector id and where its pixels are served from."""

    vector_id: int
    item_id: str
    content_hash: str
    location: str  # an absolute http(s) URL, or a file name in the data directory's image store
