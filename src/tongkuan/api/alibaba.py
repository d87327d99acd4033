"""The 1688 family: image search in 1688's shape over the same engine, and its upload route."""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi import Query as Q

from tongkuan.api import params as rules
from tongkuan.api import taobao
from tongkuan.api.auth import ParameterError
from tongkuan.api.deps import EngineDep
from tongkuan.api.envelope import ok
from tongkuan.api.request import AppKey, AppSecret, Sign, base_url, checked_params, load_picture, load_uploaded
from tongkuan.api.wire import offer
from tongkuan.search.searcher import SearchQuery

router = APIRouter(tags=["1688"])

MAX_PAGE_SIZE = 50
DEFAULT_PAGE_SIZE = 20
# Results a query can page through: deep pages of an image ranking are noise, and each page
# further in widens the index search.
MAX_RESULTS = 2000


@router.get("/alibaba/product/imageQuery", summary="1688 image search")
def image_query(
    request: Request,
    engine: EngineDep,
    appKey: AppKey = None,
    appSecret: AppSecret = None,
    sign: Sign = None,
    imageId: Annotated[str | None, Q(description="An imageId from an upload endpoint; wins over imageUrl.")] = None,
    imageUrl: Annotated[str | None, Q(description="http(s) URL of the query image.")] = None,
    beginPage: Annotated[str | None, Q(description="Page number, from 1 (required).")] = None,
    pageSize: Annotated[str | None, Q(description=f"Results per page, 1-{MAX_PAGE_SIZE} (default 20).")] = None,
    withScore: Annotated[str | None, Q(description="Extra: true adds each offer's similarity `score`.")] = None,
) -> dict[str, Any]:
    """Offers that look like the query picture, paged 1688-style with totals."""
    params = checked_params(request)
    if not params.get("beginPage"):
        raise ParameterError("beginPage is required, from 1 (beginPage 不能为空)")
    page = rules.int_in_range(params, "beginPage", 1, 1, MAX_RESULTS)
    size = rules.int_in_range(params, "pageSize", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    with_score = rules.boolean(params, "withScore", False)
    if (page - 1) * size >= MAX_RESULTS:
        raise ParameterError(
            f"beginPage {page} with pageSize {size} starts past result {MAX_RESULTS}, the most a query returns "
            f"(最多返回 {MAX_RESULTS} 条结果)"
        )
    if params.get("imageId"):
        image = load_uploaded(request, engine, params["imageId"])
    elif params.get("imageUrl"):
        image = load_picture(request, engine, params["imageUrl"], "imageUrl")
    else:
        raise ParameterError("imageId or imageUrl is required (imageId 与 imageUrl 不能同时为空)")
    offset = (page - 1) * size
    limit = min(size, MAX_RESULTS - offset)
    results = engine.searcher.search(image, SearchQuery(offset=offset, limit=limit, count_total=True))
    total = min(results.total, MAX_RESULTS)
    base = base_url(request)
    return ok(
        {
            "totalRecords": total,
            "totalPage": math.ceil(total / size),
            "pageSize": size,
            "currentPage": page,
            "data": [offer(hit, request.url.scheme, base, with_score) for hit in results.hits],
        }
    )


router.add_api_route("/alibaba/upload/image", taobao.upload_by_get, methods=["GET"], summary="1688 image upload by GET")
router.add_api_route(
    "/alibaba/upload/image",
    taobao.upload_by_post,
    methods=["POST"],
    summary="1688 image upload by POST",
    openapi_extra=taobao.UPLOAD_FORM,
)
