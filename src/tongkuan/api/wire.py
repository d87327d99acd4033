"""DAJI wire shapes: products and search results in camelCase with string prices."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tongkuan.catalog.product import Product, StoredImage
from tongkuan.catalog.store import Shop
from tongkuan.search.searcher import SearchHit, SearchResults


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


def item(product: Product, image: StoredImage | None, base: str) -> dict[str, Any]:
    """Exactly the 15 fields of a V2 result item."""
    return {
        "categoryName": product.category_name,
        "couponAmount": product.coupon_amount,
        "couponstartFee": product.coupon_start_fee,
        "itemId": product.item_id,
        "levelOneCategoryName": product.level_one_category_name,
        "picUrl": "" if image is None else picture_url(image, base),
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


def hit_item(hit: SearchHit, base: str, with_score: bool) -> dict[str, Any]:
    """A V2 item, plus its similarity `score` (0-1) when asked for."""
    fields = item(hit.product, hit.image, base)
    if with_score:
        fields["score"] = round(hit.score, 5)
    return fields


def search_data(results: SearchResults, page_no: int, base: str, with_score: bool = False) -> dict[str, Any]:
    items = [hit_item(hit, base, with_score) for hit in results.hits]
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


def details(product: Product, images: list[StoredImage], base: str) -> dict[str, Any]:
    """The full record of a product: the 15 item fields, its category and every picture."""
    fields = item(product, images[0] if images else None, base)
    fields.update(
        {
            "categoryId": None if product.category is None else int(product.category),
            "categoryPredicted": product.category_predicted,
            "pictures": [{"picName": image.name, "picUrl": picture_url(image, base)} for image in images],
            "customContent": product.extra,
        }
    )
    return fields


def shop(found: Shop, top_items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "shopTitle": found.shop_title,
        "sellerId": found.seller_id,
        "provcity": found.provcity,
        "userType": found.user_type,
        "itemCount": found.items,
        "volume": found.volume,
        "items": top_items,
    }


def offer(hit: SearchHit, scheme: str, base: str, with_score: bool) -> dict[str, Any]:
    """A 1688 image-search result: absolute imageUrl, subject, offerId, priceInfo, monthSold."""
    product = hit.product
    fields: dict[str, Any] = {
        "imageUrl": f"{scheme}:{picture_url(hit.image, base)}",
        "subject": product.title,
        "subjectTrans": product.title,
        "offerId": product.item_id,
        "priceInfo": {"price": price(product.price), "consignPrice": price(product.reserve_price)},
        "monthSold": product.volume,
        "companyName": product.shop_title,
        "sellerId": product.seller_id,
        "provcity": product.provcity,
        "detailUrl": product.url,
    }
    if with_score:
        fields["score"] = round(hit.score, 5)
    return fields
