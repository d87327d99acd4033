"""The search page at `/` and the same-origin JSON routes it calls.

The page never holds an app secret. It talks to `/web/api/...`, which take no appKey: the
server runs the same parameter rules and the same search as V2 for it, limits each client
address to `TONGKUAN_WEB_RATE_LIMIT_QPS`, and refuses requests that a browser marks as
coming from another site's page, so other sites cannot borrow it from their visitors'
browsers. These routes only read the catalog; a query picture is kept in the upload store
like any upload. Turn the page off with `TONGKUAN_WEB_UI=false`.
"""

from __future__ import annotations

from dataclasses import replace
from importlib import resources
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response
from starlette.datastructures import UploadFile

from tongkuan.api import params as rules
from tongkuan.api.auth import AuthError, ParameterError
from tongkuan.api.deps import EngineDep
from tongkuan.api.envelope import ok
from tongkuan.api.request import base_url, load_uploaded, settings_of, store_upload
from tongkuan.api.wire import search_data
from tongkuan.errors import ImageTooLarge
from tongkuan.search.searcher import SearchQuery

PAGE_SIZE = 20
_ASSETS = {"app.js": "text/javascript", "app.css": "text/css", "icon.svg": "image/svg+xml"}


def _asset(name: str) -> bytes:
    return resources.files("tongkuan.api").joinpath("webui", name).read_bytes()


def same_site_client(request: Request) -> None:
    """Refuse cross-site browser requests, then take one token from this client's bucket."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise AuthError("the search page's API answers only the search page (cross-site request)")
    origin = request.headers.get("origin")
    if origin and _netloc(origin) not in _own_netlocs(request):
        raise AuthError("the search page's API answers only the search page (foreign Origin)")
    client = request.client.host if request.client else "unknown"
    request.app.state.web_limiter.check(f"web:{client}")


def _netloc(url: str) -> str | None:
    try:
        return urlsplit(url).netloc
    except ValueError:
        return None


def _own_netlocs(request: Request) -> set[str | None]:
    """The host the request reached, and the public one behind a reverse proxy (TONGKUAN_PUBLIC_URL)."""
    public = settings_of(request).public_url
    return {request.url.netloc} | ({_netloc(public)} if public else set())


router = APIRouter(tags=["web"])
api = APIRouter(prefix="/web/api", tags=["web"], dependencies=[Depends(same_site_client)])


@router.get("/", include_in_schema=False)
def page() -> HTMLResponse:
    return HTMLResponse(_asset("index.html"), headers={"Cache-Control": "no-cache"})


@router.get("/web/{name}", include_in_schema=False)
def asset(name: str) -> Response:
    if name not in _ASSETS:
        raise ParameterError(f"no page asset {name!r}")
    return Response(_asset(name), media_type=_ASSETS[name], headers={"Cache-Control": "no-cache"})


@api.post("/upload", summary="Keep the page's query picture (a file, or a URL fetched once)")
async def upload(request: Request, engine: EngineDep) -> dict[str, Any]:
    """Multipart `image` (JPG, PNG or WEBP) or form field `url`; answers `{imageId, picUrl}`."""
    limit = settings_of(request).upload_max_bytes
    async with request.form(max_files=1, max_part_size=limit + 1) as form:
        image, url = form.get("image"), form.get("url")
        if isinstance(image, UploadFile):
            data = await image.read(limit + 1)
            if len(data) > limit:
                raise ImageTooLarge(
                    f"image is over {limit // 1024 // 1024} MB (图片不能超过 {limit // 1024 // 1024} MB)"
                )
        elif isinstance(url, str) and url.strip():
            data = await run_in_threadpool(engine.fetcher.fetch, rules.http_url(url.strip(), "url"))
        else:
            raise ParameterError("image (a file) or url is required (image 与 url 不能同时为空)")
    return ok(await run_in_threadpool(store_upload, request, engine, data))


@api.get("/search", summary="The page's image search: V2 rules, scores always on")
def search(
    request: Request,
    engine: EngineDep,
    imageId: Annotated[str | None, Query(description="From /web/api/upload.")] = None,
    categoryId: Annotated[str | None, Query()] = None,
    region: Annotated[str | None, Query(description="x1,x2,y1,y2 in pixels.")] = None,
    pageNo: Annotated[str | None, Query(description="Start index, 0-499.")] = None,
) -> dict[str, Any]:
    params = rules.single_values(request.query_params.multi_items())
    page_no = rules.int_in_range(params, "pageNo", 0, 0, rules.MAX_PAGE_NO)
    query = SearchQuery(category=rules.category(params), offset=page_no, limit=PAGE_SIZE)
    box = rules.region(params)
    image = load_uploaded(request, engine, rules.required(params, "imageId"))
    if box is not None:
        query = replace(query, region=rules.fit_region(box, *image.size))
    results = engine.searcher.search(image, query)
    data = search_data(results, page_no, base_url(request), with_score=True)
    data["imageSize"] = {"width": image.size[0], "height": image.size[1]}
    data["categoryId"] = None if results.category_filter is None else int(results.category_filter)
    return ok(data)
