"""DAJI wire shapes: products and search results in camelCase with string prices."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tongkuan.catalog.product import Product, StoredImage
from tongkuan.search.searcher import SearchResults


def price(value: Decimal) -> str:
    """Prices as DAJI spells them: "50", "22.8" (no trailing zeros, no exponent)."""
    text = format(value.normalize(), "f")
    return text


def picture_url(image: StoredImage, base: str) -> str:
    """Protocol-relative picture URL, as upstream gives it: `//host/path`."""
    location = image.location
    if location.startswith(("http://", "https://")):
        return "//" + location.split("://", 1)[1]
    return f"{base}/images/{location}"


def item(product: Product, image: StoredImage, base: str) -> dict[str, Any]:
    """Exactly the 15 fields of a V2 result item."""
    return {
        "categoryName": product.category_name,
        "couponAmount": product.coupon_amount,
        "couponstartFee": product.coupon_start_fee,
        "itemId": product.item_id,
        "levelOneCategoryName": product.level_one_category_name,
        "picUrl": picture_url(image, base),
        "provcity": product.provcity,
        "reservePrice": price(product.reserve_price),
        "sellerId": product.seller_id,
        "shopTitle": product.shop_title,
        "title": product.title,
        "url": product.url,
        "userType": product.user_type,
        "volume": product.volume,
        "zkFinalPrice": price(product.price),
    }


def search_data(results: SearchResults, page_no: int, base: str) -> dict[str, Any]:
    items = [item(hit.product, hit.image, base) for hit in results.hits]
    return {
        "data": items,
        "picInfo": {
            "mainRegion": {
                "multiCategoryId": [
                    {"categoryId": int(c.category), "score": round(c.score, 5)} for c in results.categories
                ],
                "region": results.searched.to_param(),
            },
            "multiRegion": [{"region": box.to_param()} for box in results.regions],
        },
        "pageNo": page_no,
        "pageSize": len(items),
    }
