"""Validating a source record into a `Product`, with defaults for missing optional fields."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from tongkuan.domain.categories import Category
from tongkuan.domain.products import Product
from tongkuan.errors import RecordError

MAX_ITEM_ID = 128
MAX_CUSTOM_CONTENT = 4096
MAX_PRICE = Decimal(10) ** 12  # any store holds these exactly
MAX_PRICE_DECIMALS = 4


def to_product(fields: dict[str, Any]) -> tuple[Product, bool]:
    """The product a record describes, and whether it named its category.

    Raises `RecordError` naming the field at fault.
    """
    if "_error" in fields:
        raise RecordError(str(fields["_error"]))
    for name, value in fields.items():
        if _holds_nul(name) or _holds_nul(value):  # PostgreSQL text cannot hold it
            raise RecordError(f"{name} must not contain NUL characters")
        if not is_text(name) or not is_text(value):  # no store can write it: the whole batch would fail
            shown = name if is_text(name) else "a field name"
            raise RecordError(f"{shown} must not contain unpaired surrogates")
    item_id = fields.get("itemId")
    if item_id is None or str(item_id).strip() == "":
        raise RecordError("itemId is missing")
    item_id = str(item_id).strip()
    if len(item_id) > MAX_ITEM_ID:
        raise RecordError(f"itemId is longer than {MAX_ITEM_ID} characters")
    reserve = _price(fields, "reservePrice") or Decimal("0")
    final = _price(fields, "zkFinalPrice")
    category = _category(fields.get("categoryId"))
    product = Product(
        item_id=item_id,
        title=str(fields.get("title") or item_id),
        reserve_price=reserve,
        final_price=final,
        shop_title=str(fields.get("shopTitle") or ""),
        seller_id=str(fields.get("sellerId") or ""),
        provcity=str(fields.get("provcity") or ""),
        user_type=_int(fields, "userType", 0),
        volume=_int(fields, "volume", 0),
        category_name=str(fields.get("categoryName") or ""),
        level_one_category_name=str(fields.get("levelOneCategoryName") or ""),
        coupon_amount=_optional_int(fields, "couponAmount"),
        coupon_start_fee=None if fields.get("couponstartFee") in (None, "") else str(fields["couponstartFee"]),
        url=_link(fields.get("url")),
        category=category,
        extra=_custom_content(fields.get("customContent")),
    )
    if product.user_type not in (0, 1):
        raise RecordError("userType must be 0 (Taobao) or 1 (Tmall)")
    if product.volume < 0:
        raise RecordError("volume must not be negative")
    return product, category is not None


def is_text(value: Any) -> bool:
    """Whether every string in `value` (a string, or lists and dicts of them) can be written
    as UTF-8: JSON's `\\ud800` escapes give strings that cannot."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(is_text(k) and is_text(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(is_text(v) for v in value)
    return True


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_holds_nul(v) for v in value)
    return False


def _link(value: Any) -> str:
    """The product page: http(s) or protocol-relative (`//host/...`, as upstream gives it)
    only, so a catalog cannot put a script link on a page."""
    url = "" if value is None else str(value).strip()
    if url and not url.lower().startswith(("http://", "https://", "//")):
        raise RecordError(f"url must be an http(s) or //host URL, not {url[:60]!r}")
    return url


def _custom_content(value: Any) -> dict[str, str]:
    """Free-form operator data kept with a product: an object of strings, 4096 characters in all."""
    if value is None or value == "" or value == {}:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise RecordError("customContent must be an object of string values")
    if sum(len(k) + len(v) for k, v in value.items()) > MAX_CUSTOM_CONTENT:
        raise RecordError(f"customContent must hold at most {MAX_CUSTOM_CONTENT} characters")
    return dict(value)


def _price(fields: dict[str, Any], name: str) -> Decimal | None:
    value = fields.get(name)
    if value is None or value == "":
        return None
    try:
        price = Decimal(str(value))
    except InvalidOperation as exc:
        raise RecordError(f"{name} must be a decimal price, not {value!r}") from exc
    if not price.is_finite() or price < 0:
        raise RecordError(f"{name} must be a non-negative price, not {value!r}")
    if price >= MAX_PRICE or price.as_tuple().exponent < -MAX_PRICE_DECIMALS:  # type: ignore[operator]
        raise RecordError(f"{name} must be below {MAX_PRICE:,} with at most {MAX_PRICE_DECIMALS} decimals")
    return price


def _int(fields: dict[str, Any], name: str, default: int) -> int:
    value = _optional_int(fields, name)
    return default if value is None else value


def _optional_int(fields: dict[str, Any], name: str) -> int | None:
    value = fields.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise RecordError(f"{name} must be an integer, not {value!r}")
    try:
        number = Decimal(str(value))
        whole = number.is_finite() and number == number.to_integral_value()
    except InvalidOperation:
        whole = False  # a signalling NaN refuses even to be compared
    if not whole or not -(2**63) <= number < 2**63:  # SQLite's INTEGER is 64-bit
        raise RecordError(f"{name} must be an integer (64-bit), not {value!r}")
    return int(number)


def _category(value: Any) -> Category | None:
    if value is None or value == "":
        return None
    try:
        return Category(int(str(value)))
    except ValueError as exc:
        raise RecordError(
            f"categoryId must be one of {', '.join(str(int(c)) for c in Category)}, not {value!r}"
        ) from exc


# Record fields that describe a product (everything but itemId and images), as an ingest
# record or an admin update spells them.
FIELDS = (
    "title",
    "reservePrice",
    "zkFinalPrice",
    "shopTitle",
    "sellerId",
    "provcity",
    "userType",
    "volume",
    "categoryName",
    "levelOneCategoryName",
    "couponAmount",
    "couponstartFee",
    "url",
    "categoryId",
    "customContent",
)


def to_record(product: Product) -> dict[str, Any]:
    """A product as the record that `to_product` reads back into the same product."""
    return {
        "itemId": product.item_id,
        "title": product.title,
        "reservePrice": str(product.reserve_price),
        "zkFinalPrice": None if product.final_price is None else str(product.final_price),
        "shopTitle": product.shop_title,
        "sellerId": product.seller_id,
        "provcity": product.provcity,
        "userType": product.user_type,
        "volume": product.volume,
        "categoryName": product.category_name,
        "levelOneCategoryName": product.level_one_category_name,
        "couponAmount": product.coupon_amount,
        "couponstartFee": product.coupon_start_fee,
        "url": product.url,
        "categoryId": None if product.category is None else int(product.category),
        "customContent": product.extra,
    }
