"""The search page at `/` and the same-origin JSON routes it calls.

The page never holds an app secret. It talks to `/web/api/...`, which take no appKey: the
server runs the same parameter rules and the same searches as V2 and the keyword route for
it, limits each client address to `TONGKUAN_WEB_RATE_LIMIT_QPS`, and refuses requests that
a browser marks as coming from another site's page, so other sites cannot borrow it from
their visitors' browsers; every route on `api` gets both guards from the router. These
routes only read the catalog; a query picture is kept in the upload store like any upload.
Turn the page off with `TONGKUAN_WEB_UI=false`.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response
from starlette.datastructures import UploadFile

from tongkuan.api import params as rules
from tongkuan.api import taobao
from tongkuan.api.declare import Param, ParamTable
from tongkuan.api.deps import BaseUrl, EngineDep, FetchSlotsDep, MetricsDep, QueryParams, SettingsDep, WebLimiterDep
from tongkuan.api.envelope import Envelope, ok
from tongkuan.api.request import (
    client_address,
    fetch_query_picture,
    load_uploaded,
    page_caller,
    search_picture,
    store_upload,
)
from tongkuan.api.wire import page_search_data
from tongkuan.domain.boxes import Box
from tongkuan.domain.categories import Category
from tongkuan.errors import AuthError, ImageTooLarge, ParameterError
from tongkuan.search.searcher import SearchQuery
from tongkuan.search.timing import StageClock

PAGE_SIZE = 20
_ASSETS = {"app.js": "text/javascript", "app.css": "text/css", "icon.svg": "image/svg+xml"}


def _asset(name: str) -> bytes:
    return resources.files("tongkuan.api").joinpath("webui", name).read_bytes()


def same_site_client(request: Request, settings: SettingsDep, limiter: WebLimiterDep) -> None:
    """Refuse cross-site browser requests, then take one token from this client's bucket."""
    if request.headers.get("sec-fetch-site", "").strip().lower() == "cross-site":
        raise AuthError("the search page's API answers only the search page (cross-site request)")
    origin = request.headers.get("origin")
    if origin and _origin(origin) not in _own_origins(request, settings.http.public_url):
        raise AuthError("the search page's API answers only the search page (foreign Origin)")
    limiter.check(f"web:{client_address(request)}")


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: str) -> str | None:
    """`url`'s origin as a browser writes it (`scheme://host[:port]`, lower case, no default
    port): scheme, host and port all count, so `http://` is not the origin of an `https://`
    page. None for what is no origin."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in _DEFAULT_PORTS or not host or parts.username is not None or "@" in parts.netloc:
        return None
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}" + (f":{port}" if port is not None and port != _DEFAULT_PORTS[scheme] else "")


def _own_origins(request: Request, public: str | None) -> set[str | None]:
    """The origin the request reached, and the `public` one behind a reverse proxy
    (TONGKUAN_PUBLIC_URL); never None, so what is no origin matches neither."""
    own = {_origin(str(request.base_url)), _origin(public) if public else None}
    return own - {None}


router = APIRouter(tags=["web"])
api = APIRouter(prefix="/web/api", tags=["web"], dependencies=[Depends(same_site_client)])


# The page's footer links the machine-readable API description, served whatever the
# settings; with TONGKUAN_API_DOCS on, the interactive docs instead.
_SPEC_LINK = b'<a id="api-link" href="/openapi.json">'
_DOCS_LINK = b'<a id="api-link" href="/docs">'


@router.get("/", include_in_schema=False)
def page(settings: SettingsDep) -> HTMLResponse:
    html = _asset("index.html")
    if settings.http.api_docs:
        html = html.replace(_SPEC_LINK, _DOCS_LINK)
    return HTMLResponse(html, headers={"Cache-Control": "no-cache"})


@router.get("/web/{name}", include_in_schema=False)
def asset(name: str) -> Response:
    if name not in _ASSETS:
        raise ParameterError(f"no page asset {name!r}")
    return Response(_asset(name), media_type=_ASSETS[name], headers={"Cache-Control": "no-cache"})


@api.post("/upload", summary="Keep the page's query picture (a file, or a URL fetched once)")
async def upload(
    request: Request, engine: EngineDep, settings: SettingsDep, slots: FetchSlotsDep, base: BaseUrl
) -> Envelope:
    """Multipart `image` (JPG, PNG or WEBP) or form field `url`; answers `{imageId, picUrl}`."""
    limit = settings.limits.upload_max_bytes
    async with request.form(max_files=1, max_part_size=limit + 1) as form:
        image, url = form.get("image"), form.get("url")
        if isinstance(image, UploadFile):
            data = await image.read(limit + 1)
            if len(data) > limit:
                raise ImageTooLarge(
                    f"image is over {limit // 1024 // 1024} MB (图片不能超过 {limit // 1024 // 1024} MB)"
                )
        elif isinstance(url, str) and url.strip():
            picture_url = rules.http_url(url.strip(), "url")
            client = client_address(request)
            data = await run_in_threadpool(fetch_query_picture, engine, slots, picture_url, client)
        else:
            raise ParameterError("image (a file) or url is required (image 与 url 不能同时为空)")
    return ok(await run_in_threadpool(store_upload, engine, data, base))


@dataclass(frozen=True)
class PageSearch:
    """The search page's query: an uploaded picture, optionally a category and a region."""

    page_no: int
    category: Category | None
    region: Box | None
    image_id: str
    words: tuple[str, ...] | None


PAGE_SEARCH = ParamTable(
    PageSearch,
    taobao.START,
    taobao.CATEGORY,
    taobao.REGION,
    Param("imageId", "image_id", rules.required, "From /web/api/upload."),
    Param(
        "words",
        "words",
        rules.word_list,
        "Comma-separated words to rank by instead of those read on the picture (empty: none).",
    ),
)


@api.get("/search", summary="The page's image search: V2 rules, scores always on", openapi_extra=PAGE_SEARCH.openapi())
def search(request: Request, engine: EngineDep, params: QueryParams, metrics: MetricsDep, base: BaseUrl) -> Envelope:
    wanted = PAGE_SEARCH.parse(params)
    clock = StageClock()
    picture = load_uploaded(engine, wanted.image_id, clock, page_caller(request))
    query = SearchQuery(category=wanted.category, offset=wanted.page_no, limit=PAGE_SIZE, words=wanted.words)
    results = search_picture(engine, metrics, picture, query, wanted.region, clock)
    return ok(page_search_data(results, wanted.page_no, base, picture.size))


@api.get(
    "/keyword",
    summary="The page's keyword search: the keyword route's parameters and answer",
    openapi_extra=taobao.KEYWORD.openapi(),
)
def keyword(engine: EngineDep, params: QueryParams, base: BaseUrl) -> Envelope:
    """Titles matching `keyword`, answered as `GET /taobao/traffic/item/search` answers them;
    with a model that has a text tower, also what the products' pictures show (`pictures`)."""
    if engine.searches_words and not params.get("pictures"):
        params = {**params, "pictures": "true"}
    return ok(taobao.keyword_answer(engine, params, base))
