"""DAJI wire shapes: products, search results and every other answer in camelCase with
string prices. The only module that knows DAJI's response names; the command line's search
summary is shaped here too, so a search reads the same wherever it is printed."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict
from decimal import Decimal
from typing import Any

from tongkuan.domain.products import Product, Shop, StoredImage, is_web_url
from tongkuan.evaluation.service import EvaluationRun
from tongkuan.ingest.jobs import Job
from tongkuan.search.searcher import SearchHit, SearchResults


def price(value: Decimal) -> str:
    """Prices as DAJI spells them: "50", "22.8" (no trailing zeros, no exponent)."""
    text = format(value.normalize(), "f")
    return text


def picture_url(image: StoredImage, base: str) -> str:
    """Protocol-relative picture URL, as upstream gives it: `//host/path`."""
    location = image.location
    if is_web_url(location):
        return "//" + location.split("://", 1)[1]
    return stored_url(location, base)


def stored_url(name: str, base: str) -> str:
    """Protocol-relative URL under which this service serves a stored picture."""
    return f"{base}/images/{name}"


def uploaded(name: str, base: str) -> dict[str, str]:
    """How to refer to a kept upload: its `imageId` (the name without extension) and `picUrl`."""
    return {"imageId": name.split(".")[0], "picUrl": stored_url(name, base)}


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
    """A V2 image-search answer: the page of items and what vision saw in the picture."""
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


def page_search_data(results: SearchResults, page_no: int, base: str, image_size: tuple[int, int]) -> dict[str, Any]:
    """The search page's answer: V2's, with scores, plus the query picture's size (to draw
    regions on it) and the category the search kept to (None: every category)."""
    data = search_data(results, page_no, base, with_score=True)
    data["imageSize"] = {"width": image_size[0], "height": image_size[1]}
    data["categoryId"] = None if results.category_filter is None else int(results.category_filter)
    data["words"] = list(results.words)  # read on the picture and used to rank (empty: none)
    return data


def v1_data(results: SearchResults, base: str) -> list[dict[str, Any]]:
    """A V1 image-search answer: the items alone, without paging or picture information."""
    return [item(hit.product, hit.image, base) for hit in results.hits]


def search_summary(results: SearchResults) -> dict[str, Any]:
    """A short account of a search for the command line: region, categories and hits."""
    return {
        "region": results.searched.to_param(),
        "categories": [{"categoryId": int(c.category), "score": round(c.score, 4)} for c in results.categories],
        "words": list(results.words),
        "hits": [
            {"itemId": h.product.item_id, "title": h.product.title, "score": round(h.score, 4)} for h in results.hits
        ],
    }


def items(products: list[Product], pictures: Mapping[str, StoredImage], base: str) -> list[dict[str, Any]]:
    """Products in the 15-field item shape, each with its first picture from `pictures`."""
    return [item(p, pictures.get(p.item_id), base) for p in products]


def keyword_data(
    products: list[Product], pictures: Mapping[str, StoredImage], page: int, total: int, base: str
) -> dict[str, Any]:
    """A keyword-search answer: one page of items and how many match in all."""
    found = items(products, pictures, base)
    return {"data": found, "pageNo": page, "pageSize": len(found), "total": total}


def shop_data(
    shops: list[tuple[Shop, list[Product]]], pictures: Mapping[str, StoredImage], page: int, total: int, base: str
) -> dict[str, Any]:
    """A shop-search answer: one page of shops, each with its top items, and how many match."""
    found = [shop(each, items(top, pictures, base)) for each, top in shops]
    return {"data": found, "pageNo": page, "pageSize": len(found), "total": total}


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


def products_data(
    products: list[tuple[Product, list[StoredImage]]], next_cursor: str | None, base: str
) -> dict[str, Any]:
    """A page of the admin product list: full records and the cursor of the next page."""
    return {"items": [details(p, pictures, base) for p, pictures in products], "nextCursor": next_cursor}


def deleted(item_id: str) -> dict[str, Any]:
    """The answer to a product's deletion."""
    return {"itemId": item_id, "deleted": True}


def job(found: Job) -> dict[str, Any]:
    """An import job's progress, its fields in camelCase."""
    fields = asdict(found)
    return {
        "jobId": fields.pop("job_id"),
        **{_camel(k): v for k, v in fields.items()},
    }


def evaluation(run: EvaluationRun) -> dict[str, Any]:
    """An evaluation's progress, and its figures and misses once done."""
    return {
        "evaluationId": run.evaluation_id,
        "state": run.state,
        "model": run.model,
        "total": run.total,
        "done": run.done,
        "figures": None if run.scores is None else run.scores.to_json(),
        "misses": [{"line": o.line, "rank": o.rank, "first": o.first, "failed": o.failed} for o in run.misses],
        "error": run.error,
    }


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def shop(found: Shop, top_items: list[dict[str, Any]]) -> dict[str, Any]:
    """A shop with its top items (already in the item shape)."""
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


def offer_page(
    results: SearchResults, page: int, size: int, total: int, scheme: str, base: str, with_score: bool
) -> dict[str, Any]:
    """A 1688 image-search answer: one page of offers with the totals (`total` already capped)."""
    return {
        "totalRecords": total,
        "totalPage": math.ceil(total / size),
        "pageSize": size,
        "currentPage": page,
        "data": [offer(hit, scheme, base, with_score) for hit in results.hits],
    }
