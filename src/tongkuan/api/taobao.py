"""The Taobao image-search family: V2 search, V1 search, image upload, keyword and shop
search, product details and stored pictures.

Each route's parameters are one table (`tongkuan.api.declare`): its docs and its parsing.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from tongkuan.api import params as rules
from tongkuan.api.declare import Param, ParamTable, accepted
from tongkuan.api.deps import (
    CREDENTIALS,
    AuthThrottleDep,
    BaseUrl,
    EngineDep,
    FetchSlotsDep,
    LimiterDep,
    MetricsDep,
    OwnSites,
    SettingsDep,
    SignedParams,
)
from tongkuan.api.envelope import Envelope, ok
from tongkuan.api.limits import FetchSlots
from tongkuan.api.request import (
    checked_params,
    fetch_query_picture,
    load_either,
    load_picture,
    search_picture,
    store_upload,
)
from tongkuan.api.wire import details, keyword_data, search_data, shop_data, v1_data
from tongkuan.domain.boxes import Box
from tongkuan.domain.categories import Category
from tongkuan.domain.products import ProductFilter, SortOrder
from tongkuan.engine import Engine
from tongkuan.errors import ImageTooLarge, ParameterError
from tongkuan.search.searcher import SearchQuery
from tongkuan.search.timing import StageClock

router = APIRouter(tags=["taobao"])

V1_RESULTS = 20
SHOP_TOP_ITEMS = 3

LANGUAGE = accepted("language", "Accepted for compatibility; titles are returned as stored.")
FILTER = Param(
    "filter", "where", rules.product_filter, "price:LOW-HIGH;userType:0|1;shop:NAME;location:PLACE (any subset)."
)
# The rows of an image search that the search page shares
START = Param(
    "pageNo",
    "page_no",
    partial(rules.int_in_range, default=0, low=0, high=rules.MAX_PAGE_NO),
    f"Start index of the results, 0-{rules.MAX_PAGE_NO}.",
)
CATEGORY = Param(
    "categoryId", "category", rules.category, "0,1,2,3,4,5,6,7,8,9,20,21,22 or 88888888; predicted if omitted."
)
REGION = Param("region", "region", rules.region, "x1,x2,y1,y2 in pixels; wins over crop.")


@dataclass(frozen=True)
class V2Params:
    """An image search: which page, which options, and the picture's URL."""

    page_no: int
    page_size: int
    category: Category | None
    crop: bool
    region: Box | None
    with_score: bool
    where: ProductFilter
    min_score: float | None
    distinct: bool
    pic_url: str

    def query(self) -> SearchQuery:
        """The search this asks for (the region is added once it is fitted to the picture)."""
        return SearchQuery(
            category=self.category,
            crop=self.crop,
            offset=self.page_no,
            limit=self.page_size,
            where=self.where,
            min_score=self.min_score,
            distinct=self.distinct,
        )


V2 = ParamTable(
    V2Params,
    START,
    Param(
        "pageSize",
        "page_size",
        partial(rules.int_in_range, default=10, low=1, high=rules.MAX_PAGE_SIZE),
        f"Number of results, 1-{rules.MAX_PAGE_SIZE}.",
    ),
    CATEGORY,
    Param(
        "crop",
        "crop",
        partial(rules.boolean, default=True),
        "true (default): search the main subject; false: the whole image.",
    ),
    REGION,
    Param(
        "withScore",
        "with_score",
        partial(rules.boolean, default=False),
        "Extra: true adds each item's similarity `score` (0-1).",
    ),
    replace(FILTER, description="Extra: " + FILTER.description),
    Param("scoreThreshold", "min_score", rules.score, "Extra: leave out items whose similarity is below this (0-1)."),
    Param(
        "distinctProductId",
        "distinct",
        partial(rules.boolean, default=True),
        "Extra: true (default) one item per product; false one per matching picture.",
    ),
    Param("picUrl", "pic_url", rules.required, "http(s) URL of the query image."),
)


@router.get("/taobao/image-search/url", summary="Image search V2.0", openapi_extra=V2.openapi())
def image_search_v2(
    engine: EngineDep,
    params: SignedParams,
    slots: FetchSlotsDep,
    metrics: MetricsDep,
    base: BaseUrl,
    sites: OwnSites,
) -> Envelope:
    """Find catalog products that look like the picture at `picUrl`.

    The extras are off unless asked for, so the default answer has exactly DAJI's shape."""
    wanted = V2.parse(params)
    clock = StageClock()
    picture = load_picture(engine, slots, sites, wanted.pic_url, "picUrl", clock, params["appKey"])
    results = search_picture(engine, metrics, picture, wanted.query(), wanted.region, clock)
    return ok(search_data(results, wanted.page_no, base, wanted.with_score))


@dataclass(frozen=True)
class V1Params:
    """A V1 search: an uploaded picture's id or a picture URL."""

    image_id: str | None
    pic_url: str | None


V1 = ParamTable(
    V1Params,
    Param("image_id", "image_id", rules.optional, "An imageId from the upload endpoints (wins over pic_url)."),
    Param("pic_url", "pic_url", rules.optional, "http(s) URL of the query image."),
    LANGUAGE,
)


@router.get("/taobao/traffic/item/imgsearch", summary="Image search V1.0", openapi_extra=V1.openapi())
def image_search_v1(
    engine: EngineDep,
    params: SignedParams,
    slots: FetchSlotsDep,
    metrics: MetricsDep,
    base: BaseUrl,
    sites: OwnSites,
) -> Envelope:
    """The first results for an uploaded image or a URL, without paging."""
    wanted = V1.parse(params)
    clock = StageClock()
    names = ("image_id", "pic_url")
    picture = load_either(engine, slots, sites, wanted.image_id, wanted.pic_url, names, clock, params["appKey"])
    results = search_picture(engine, metrics, picture, SearchQuery(limit=V1_RESULTS), None, clock)
    return ok(v1_data(results, base))


@dataclass(frozen=True)
class UploadParams:
    """An upload by URL."""

    pic_url: str


UPLOAD = ParamTable(UploadParams, Param("pic_url", "pic_url", rules.required_url, "http(s) URL of the image to store."))


@router.get("/taobao/upload/image", summary="Image upload by GET", openapi_extra=UPLOAD.openapi())
def upload_by_get(engine: EngineDep, params: SignedParams, slots: FetchSlotsDep, base: BaseUrl) -> Envelope:
    """Fetch an image once and keep it; search it later by `imageId` or by its picture URL."""
    return ok(_fetch_and_store(engine, slots, UPLOAD.parse(params).pic_url, base, params["appKey"]))


@dataclass(frozen=True)
class UploadForm:
    """An upload by POST: the picture itself, or a URL to fetch it from."""

    image_base64: str | None
    pic_url: str | None


UPLOAD_FIELDS = ParamTable(
    UploadForm,
    Param("image_base64", "image_base64", rules.optional, "JPG, PNG or WEBP, base64, at most 3 MB"),
    Param("pic_url", "pic_url", rules.optional, "Used when image_base64 is absent"),
)
UPLOAD_FORM = UPLOAD_FIELDS.form_body(*CREDENTIALS)


@router.post("/taobao/upload/image", summary="Image upload by POST", openapi_extra=UPLOAD_FORM)
async def upload_by_post(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    limiter: LimiterDep,
    throttle: AuthThrottleDep,
    slots: FetchSlotsDep,
    base: BaseUrl,
) -> Envelope:
    """Store a base64 image sent as the form field `image_base64` (JPG, PNG or WEBP, at most 3 MB)."""
    limit = settings.limits.upload_max_bytes
    declared = request.headers.get("content-length")
    # base64 is 4/3 of the picture, and a URL-encoded form spells its + and / in three bytes
    # each (1/32 of the characters): 2x the limit refuses only what cannot be a picture
    # within it (the decoded size is checked exactly below)
    if declared and declared.isascii() and declared.isdigit() and int(declared) > limit * 2 + 64 * 1024:
        raise ImageTooLarge(f"image_base64 is over {limit} bytes (图片不能超过 {limit // 1024 // 1024} MB)")
    form = await request.form(max_part_size=limit * 2)
    fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
    if len(fields) != len(form.multi_items()):
        raise ParameterError("only text form fields are accepted; send the image as image_base64")
    checked = checked_params(request, settings, limiter, throttle, fields)
    sent = UPLOAD_FIELDS.parse(checked)
    encoded = sent.image_base64
    if not encoded:
        if sent.pic_url:
            url = rules.http_url(sent.pic_url, "pic_url")
            return ok(await run_in_threadpool(_fetch_and_store, engine, slots, url, base, checked["appKey"]))
        raise ParameterError("image_base64 is required (image_base64 不能为空)")
    if "," in encoded[:100] and encoded.startswith("data:"):
        encoded = encoded.split(",", 1)[1]
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ParameterError("image_base64 is not valid base64 (image_base64 不是有效的 base64)") from None
    if len(data) > limit:
        raise ImageTooLarge(f"image_base64 decodes to {len(data)} bytes; the limit is {limit}")
    return ok(await run_in_threadpool(store_upload, engine, data, base))


def _fetch_and_store(engine: Engine, slots: FetchSlots, url: str, base: str, app_key: str) -> dict[str, str]:
    return store_upload(engine, fetch_query_picture(engine, slots, url, app_key=app_key), base)


PAGE_NO = Param(
    "page_no",
    "page",
    partial(rules.int_in_range, default=1, low=1, high=rules.MAX_KEYWORD_PAGE),
    "Page number, from 1 (default 1).",
)
PAGE_SIZE = Param(
    "page_size",
    "size",
    partial(rules.int_in_range, default=rules.MAX_PAGE_SIZE, low=1, high=rules.MAX_PAGE_SIZE),
    f"Results per page, 1-{rules.MAX_PAGE_SIZE} (default {rules.MAX_PAGE_SIZE}).",
)


@dataclass(frozen=True)
class KeywordParams:
    """A keyword search: the words, the page, the order and the filter."""

    keyword: str
    page: int
    size: int
    order: SortOrder
    where: ProductFilter
    pictures: bool


KEYWORD = ParamTable(
    KeywordParams,
    Param(
        "keyword",
        "keyword",
        rules.words,
        f"Words to find in titles, Chinese or English; at most {rules.MAX_KEYWORD_LENGTH} characters.",
    ),
    PAGE_NO,
    PAGE_SIZE,
    Param("sort", "order", rules.sort_order, "default (relevance), price_asc, price_desc or sales_desc."),
    FILTER,
    Param(
        "pictures",
        "pictures",
        partial(rules.boolean, default=False),
        "tongkuan's extension: true also finds products whose pictures show the words (a model with a "
        "text tower, such as CLIP or SigLIP), fused with the title matches; default false (titles only).",
    ),
)


@router.get("/taobao/traffic/item/search", summary="Keyword search", openapi_extra=KEYWORD.openapi())
def keyword_search(engine: EngineDep, params: SignedParams, base: BaseUrl) -> Envelope:
    """Catalog products whose titles match `keyword`, most relevant first (or sorted)."""
    return ok(keyword_answer(engine, params, base))


def keyword_answer(engine: Engine, params: dict[str, str], base: str) -> dict[str, Any]:
    """The keyword search's `data` for parameters already let through (signed, or from the
    search page): one table and one answer for both routes."""
    wanted = KEYWORD.parse(params)
    if wanted.pictures and not engine.searches_words:
        raise ParameterError(
            f"pictures=true needs a model with a text tower (CLIP, SigLIP); this catalog searches with "
            f"{engine.vision.spec.name} (pictures=true 需要带文本编码器的模型)"
        )
    offset = (wanted.page - 1) * wanted.size
    products, total = engine.keyword_page(
        wanted.keyword, wanted.order, wanted.where, offset, wanted.size, pictures=wanted.pictures
    )
    return keyword_data(products, engine.first_pictures(products), wanted.page, total, base)


@dataclass(frozen=True)
class ShopParams:
    """A shop search: the words of the shop's name and the page."""

    keyword: str
    page: int
    size: int


SHOP = ParamTable(
    ShopParams,
    Param(
        "keyword", "keyword", rules.words, f"Words of the shop's name; at most {rules.MAX_KEYWORD_LENGTH} characters."
    ),
    PAGE_NO,
    PAGE_SIZE,
)


@router.get("/taobao/traffic/item/shop/search", summary="Shop search", openapi_extra=SHOP.openapi())
def shop_search(engine: EngineDep, params: SignedParams, base: BaseUrl) -> Envelope:
    """Shops whose names hold every word of `keyword`, best sellers first, with their top items."""
    wanted = SHOP.parse(params)
    offset = (wanted.page - 1) * wanted.size
    shops, total = engine.shop_page(wanted.keyword, offset, wanted.size, SHOP_TOP_ITEMS)
    pictures = engine.first_pictures([p for _, top in shops for p in top])
    return ok(shop_data(shops, pictures, wanted.page, total, base))


@dataclass(frozen=True)
class DetailsParams:
    """Which product to describe."""

    item_id: str


DETAILS = ParamTable(DetailsParams, Param("item_id", "item_id", rules.required, "The product's itemId."), LANGUAGE)


@router.get("/taobao/traffic/item/get", summary="Product details", openapi_extra=DETAILS.openapi())
def item_details(engine: EngineDep, params: SignedParams, base: BaseUrl) -> Envelope:
    """The full record of one product with all its pictures."""
    product, pictures = engine.product_details(DETAILS.parse(params).item_id)
    return ok(details(product, pictures, base))


@router.get("/images/{name}", summary="A stored picture (uploads and catalog images)")
def stored_image(name: str, engine: EngineDep) -> FileResponse:
    return FileResponse(
        engine.stored_picture_path(name), headers={"Cache-Control": "public, max-age=31536000, immutable"}
    )
