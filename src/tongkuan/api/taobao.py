"""The Taobao image-search family: V2 search, V1 search, image upload, stored pictures."""

from __future__ import annotations

import base64
import binascii
from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from tongkuan.api import params as rules
from tongkuan.api.auth import ParameterError
from tongkuan.api.deps import EngineDep
from tongkuan.api.envelope import ok
from tongkuan.api.request import (
    AppKey,
    AppSecret,
    Sign,
    base_url,
    checked_params,
    load_picture,
    load_uploaded,
    settings_of,
    store_upload,
)
from tongkuan.api.wire import details, item, search_data, shop
from tongkuan.catalog.product import Product
from tongkuan.engine import Engine
from tongkuan.errors import ImageTooLarge
from tongkuan.search.searcher import SearchQuery

router = APIRouter(tags=["taobao"])

V1_RESULTS = 20


@router.get("/taobao/image-search/url", summary="Image search V2.0")
def image_search_v2(
    request: Request,
    engine: EngineDep,
    appKey: AppKey = None,
    appSecret: AppSecret = None,
    sign: Sign = None,
    picUrl: Annotated[str | None, Query(description="http(s) URL of the query image.")] = None,
    categoryId: Annotated[
        str | None, Query(description="0,1,2,3,4,5,6,7,8,9,20,21,22 or 88888888; predicted if omitted.")
    ] = None,
    crop: Annotated[
        str | None, Query(description="true (default): search the main subject; false: the whole image.")
    ] = None,
    region: Annotated[str | None, Query(description="x1,x2,y1,y2 in pixels; wins over crop.")] = None,
    pageNo: Annotated[str | None, Query(description="Start index of the results, 0-499.")] = None,
    pageSize: Annotated[str | None, Query(description="Number of results, 1-20.")] = None,
    withScore: Annotated[
        str | None, Query(description="Extra: true adds each item's similarity `score` (0-1).")
    ] = None,
    scoreThreshold: Annotated[
        str | None, Query(description="Extra: leave out items whose similarity is below this (0-1).")
    ] = None,
    distinctProductId: Annotated[
        str | None, Query(description="Extra: true (default) one item per product; false one per matching picture.")
    ] = None,
    filter: Annotated[
        str | None, Query(description="Extra: price:LOW-HIGH;userType:0|1;shop:NAME;location:PLACE (any subset).")
    ] = None,
) -> dict[str, Any]:
    """Find catalog products that look like the picture at `picUrl`.

    The extras are off unless asked for, so the default answer has exactly DAJI's shape."""
    params = checked_params(request)
    page_no = rules.int_in_range(params, "pageNo", 0, 0, rules.MAX_PAGE_NO)
    page_size = rules.int_in_range(params, "pageSize", 10, 1, rules.MAX_PAGE_SIZE)
    wanted_category = rules.category(params)
    use_crop = rules.boolean(params, "crop", True)
    box = rules.region(params)
    with_score = rules.boolean(params, "withScore", False)
    query = SearchQuery(
        category=wanted_category,
        crop=use_crop,
        offset=page_no,
        limit=page_size,
        where=rules.product_filter(params),
        min_score=rules.score(params, "scoreThreshold"),
        distinct=rules.boolean(params, "distinctProductId", True),
    )
    image = load_picture(request, engine, rules.required(params, "picUrl"), "picUrl")
    if box is not None:
        query = replace(query, region=rules.fit_region(box, *image.size))
    results = engine.searcher.search(image, query)
    return ok(search_data(results, page_no, base_url(request), with_score))


@router.get("/taobao/traffic/item/imgsearch", summary="Image search V1.0")
def image_search_v1(
    request: Request,
    engine: EngineDep,
    appKey: AppKey = None,
    appSecret: AppSecret = None,
    sign: Sign = None,
    image_id: Annotated[
        str | None, Query(description="An imageId from the upload endpoints (wins over pic_url).")
    ] = None,
    pic_url: Annotated[str | None, Query(description="http(s) URL of the query image.")] = None,
    language: Annotated[
        str | None, Query(description="Accepted for compatibility; titles are returned as stored.")
    ] = None,
) -> dict[str, Any]:
    """The first results for an uploaded image or a URL, without paging."""
    params = checked_params(request)
    if params.get("image_id"):
        image = load_uploaded(request, engine, params["image_id"])
    elif params.get("pic_url"):
        image = load_picture(request, engine, params["pic_url"], "pic_url")
    else:
        raise ParameterError("image_id or pic_url is required (image_id 与 pic_url 不能同时为空)")
    results = engine.searcher.search(image, SearchQuery(limit=V1_RESULTS))
    base = base_url(request)
    return ok([item(hit.product, hit.image, base) for hit in results.hits])


@router.get("/taobao/upload/image", summary="Image upload by GET")
def upload_by_get(
    request: Request,
    engine: EngineDep,
    appKey: AppKey = None,
    appSecret: AppSecret = None,
    sign: Sign = None,
    pic_url: Annotated[str | None, Query(description="http(s) URL of the image to store.")] = None,
) -> dict[str, Any]:
    """Fetch an image once and keep it; search it later by `imageId` or by its picture URL."""
    params = checked_params(request)
    url = rules.http_url(rules.required(params, "pic_url"), "pic_url")
    return ok(store_upload(request, engine, engine.fetcher.fetch(url)))


UPLOAD_FORM = {
    "requestBody": {
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "appKey": {"type": "string"},
                        "appSecret": {"type": "string"},
                        "sign": {"type": "string"},
                        "image_base64": {"type": "string", "description": "JPG, PNG or WEBP, base64, at most 3 MB"},
                        "pic_url": {"type": "string", "description": "Used when image_base64 is absent"},
                    },
                }
            }
        }
    }
}


@router.post("/taobao/upload/image", summary="Image upload by POST", openapi_extra=UPLOAD_FORM)
async def upload_by_post(request: Request, engine: EngineDep) -> dict[str, Any]:
    """Store a base64 image sent as the form field `image_base64` (JPG, PNG or WEBP, at most 3 MB)."""
    limit = settings_of(request).upload_max_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isascii() and declared.isdigit() and int(declared) > limit * 4 // 3 + 64 * 1024:
        raise ImageTooLarge(f"image_base64 is over {limit} bytes (图片不能超过 {limit // 1024 // 1024} MB)")
    form = await request.form(max_part_size=limit * 2)
    fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
    if len(fields) != len(form.multi_items()):
        raise ParameterError("only text form fields are accepted; send the image as image_base64")
    params = checked_params(request, fields)
    encoded = params.get("image_base64")
    if not encoded:
        if params.get("pic_url"):
            url = rules.http_url(params["pic_url"], "pic_url")
            return ok(await run_in_threadpool(_fetch_and_store, request, engine, url))
        raise ParameterError("image_base64 is required (image_base64 不能为空)")
    if "," in encoded[:100] and encoded.startswith("data:"):
        encoded = encoded.split(",", 1)[1]
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ParameterError("image_base64 is not valid base64 (image_base64 不是有效的 base64)") from None
    if len(data) > limit:
        raise ImageTooLarge(f"image_base64 decodes to {len(data)} bytes; the limit is {limit}")
    return ok(await run_in_threadpool(store_upload, request, engine, data))


def _fetch_and_store(request: Request, engine: Engine, url: str) -> dict[str, str]:
    return store_upload(request, engine, engine.fetcher.fetch(url))


KeywordPageNo = Annotated[str | None, Query(description="Page number, from 1 (default 1).")]
KeywordPageSize = Annotated[str | None, Query(description="Results per page, 1-20 (default 20).")]
SHOP_TOP_ITEMS = 3


def _keyword_page(params: dict[str, str]) -> tuple[int, int]:
    """`page_no` (from 1) and `page_size` (1-20) of the keyword routes."""
    page = rules.int_in_range(params, "page_no", 1, 1, rules.MAX_KEYWORD_PAGE)
    return page, rules.int_in_range(params, "page_size", rules.MAX_PAGE_SIZE, 1, rules.MAX_PAGE_SIZE)


def _items(engine: Engine, products: list[Product], base: str) -> list[dict[str, Any]]:
    """Products in the 15-field item shape, each with its first picture."""
    pictures = engine.catalog.first_images([p.item_id for p in products])
    return [item(p, pictures.get(p.item_id), base) for p in products]


@router.get("/taobao/traffic/item/search", summary="Keyword search")
def keyword_search(
    request: Request,
    engine: EngineDep,
    appKey: AppKey = None,
    appSecret: AppSecret = None,
    sign: Sign = None,
    keyword: Annotated[str | None, Query(description="Words to find in titles, Chinese or English.")] = None,
    page_no: KeywordPageNo = None,
    page_size: KeywordPageSize = None,
    sort: Annotated[str | None, Query(description="default (relevance), price_asc, price_desc or sales_desc.")] = None,
    filter: Annotated[
        str | None, Query(description="price:LOW-HIGH;userType:0|1;shop:NAME;location:PLACE (any subset).")
    ] = None,
) -> dict[str, Any]:
    """Catalog products whose titles match `keyword`, most relevant first (or sorted)."""
    params = checked_params(request)
    text = rules.required(params, "keyword")
    page, size = _keyword_page(params)
    products, total = engine.catalog.keyword_search(
        text, rules.sort_order(params), rules.product_filter(params), (page - 1) * size, size
    )
    items = _items(engine, products, base_url(request))
    return ok({"data": items, "pageNo": page, "pageSize": len(items), "total": total})


@router.get("/taobao/traffic/item/shop/search", summary="Shop search")
def shop_search(
    request: Request,
    engine: EngineDep,
    appKey: AppKey = None,
    appSecret: AppSecret = None,
    sign: Sign = None,
    keyword: Annotated[str | None, Query(description="Words of the shop's name.")] = None,
    page_no: KeywordPageNo = None,
    page_size: KeywordPageSize = None,
) -> dict[str, Any]:
    """Shops whose names hold every word of `keyword`, best sellers first, with their top items."""
    params = checked_params(request)
    text = rules.required(params, "keyword")
    page, size = _keyword_page(params)
    shops, total = engine.catalog.shop_search(text, (page - 1) * size, size)
    base = base_url(request)
    found = [
        shop(each, _items(engine, engine.catalog.shop_items(each.shop_title, SHOP_TOP_ITEMS), base)) for each in shops
    ]
    return ok({"data": found, "pageNo": page, "pageSize": len(found), "total": total})


@router.get("/taobao/traffic/item/get", summary="Product details")
def item_details(
    request: Request,
    engine: EngineDep,
    appKey: AppKey = None,
    appSecret: AppSecret = None,
    sign: Sign = None,
    item_id: Annotated[str | None, Query(description="The product's itemId.")] = None,
    language: Annotated[
        str | None, Query(description="Accepted for compatibility; titles are returned as stored.")
    ] = None,
) -> dict[str, Any]:
    """The full record of one product with all its pictures."""
    params = checked_params(request)
    item_id = rules.required(params, "item_id")
    with engine.catalog.snapshot():
        product = engine.catalog.get(item_id)
        pictures = engine.catalog.images_of(item_id)
    return ok(details(product, pictures, base_url(request)))


@router.get("/images/{name}", summary="A stored picture (uploads and catalog images)")
def stored_image(name: str, engine: EngineDep) -> FileResponse:
    return FileResponse(engine.images.path(name), headers={"Cache-Control": "public, max-age=31536000, immutable"})
