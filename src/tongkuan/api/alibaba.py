"""The 1688 family: image search in 1688's shape over the same engine, and its upload route."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from fastapi import APIRouter, Request

from tongkuan.api import params as rules
from tongkuan.api import taobao
from tongkuan.api.declare import Param, ParamTable
from tongkuan.api.deps import BaseUrl, EngineDep, FetchSlotsDep, MetricsDep, OwnSites, SignedParams
from tongkuan.api.envelope import Envelope, ok
from tongkuan.api.request import load_either, search_picture
from tongkuan.api.wire import offer_page
from tongkuan.errors import ParameterError
from tongkuan.search.searcher import SearchQuery
from tongkuan.search.timing import StageClock

router = APIRouter(tags=["1688"])

MAX_PAGE_SIZE = 50
DEFAULT_PAGE_SIZE = 20
# Results a query can page through: deep pages of an image ranking are noise, and each page
# further in widens the index search.
MAX_RESULTS = 2000


@dataclass(frozen=True)
class OfferParams:
    """A 1688 image search: the query picture (an upload's id or a URL) and a page that starts
    within the results a query returns."""

    image_id: str | None
    image_url: str | None
    page: int
    size: int
    with_score: bool

    def __post_init__(self) -> None:
        if self.offset >= MAX_RESULTS:
            raise ParameterError(
                f"beginPage {self.page} with pageSize {self.size} starts past result {MAX_RESULTS}, "
                f"the most a query returns (最多返回 {MAX_RESULTS} 条结果)"
            )

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.size

    def query(self) -> SearchQuery:
        """The search for this page (the last page ends at the cap), counting every hit."""
        return SearchQuery(offset=self.offset, limit=min(self.size, MAX_RESULTS - self.offset), count_total=True)


OFFERS = ParamTable(
    OfferParams,
    Param("imageId", "image_id", rules.optional, "An imageId from an upload endpoint; wins over imageUrl."),
    Param("imageUrl", "image_url", rules.optional, "http(s) URL of the query image."),
    Param("beginPage", "page", partial(rules.required_int, low=1, high=MAX_RESULTS), "Page number, from 1 (required)."),
    Param(
        "pageSize",
        "size",
        partial(rules.int_in_range, default=DEFAULT_PAGE_SIZE, low=1, high=MAX_PAGE_SIZE),
        f"Results per page, 1-{MAX_PAGE_SIZE} (default {DEFAULT_PAGE_SIZE}).",
    ),
    Param(
        "withScore",
        "with_score",
        partial(rules.boolean, default=False),
        "Extra: true adds each offer's similarity `score`.",
    ),
)


@router.get("/alibaba/product/imageQuery", summary="1688 image search", openapi_extra=OFFERS.openapi())
def image_query(
    request: Request,
    engine: EngineDep,
    params: SignedParams,
    slots: FetchSlotsDep,
    metrics: MetricsDep,
    base: BaseUrl,
    sites: OwnSites,
) -> Envelope:
    """Offers that look like the query picture, paged 1688-style with totals."""
    wanted = OFFERS.parse(params)
    clock = StageClock()
    names = ("imageId", "imageUrl")
    picture = load_either(engine, slots, sites, wanted.image_id, wanted.image_url, names, clock, params["appKey"])
    results = search_picture(engine, metrics, picture, wanted.query(), None, clock)
    total = min(results.total, MAX_RESULTS)
    return ok(offer_page(results, wanted.page, wanted.size, total, request.url.scheme, base, wanted.with_score))


router.add_api_route(
    "/alibaba/upload/image",
    taobao.upload_by_get,
    methods=["GET"],
    summary="1688 image upload by GET",
    openapi_extra=taobao.UPLOAD.openapi(),
)
router.add_api_route(
    "/alibaba/upload/image",
    taobao.upload_by_post,
    methods=["POST"],
    summary="1688 image upload by POST",
    openapi_extra=taobao.UPLOAD_FORM,
)
