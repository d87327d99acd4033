"""The Taobao image-search family: V2 search, V1 search, image upload, stored pictures."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from PIL import Image

from tongkuan.api import params as rules
from tongkuan.api.auth import ParameterError, authenticate
from tongkuan.api.deps import EngineDep
from tongkuan.api.envelope import ok
from tongkuan.api.wire import item, search_data
from tongkuan.config import Settings
from tongkuan.engine import Engine
from tongkuan.errors import ImageTooLarge
from tongkuan.images.decode import UPLOAD_FORMATS, decode_image
from tongkuan.search.searcher import SearchQuery

router = APIRouter(tags=["taobao"])

V1_RESULTS = 20
_OWN_IMAGE = re.compile(r"^/images/([0-9a-f]{32}\.[a-z]{3,4})$")

AppKey = Annotated[str | None, Query(description="Your application key.")]
AppSecret = Annotated[str | None, Query(description="Your app secret, in testing mode only.")]
Sign = Annotated[
    str | None, Query(description="MD5 signature of the sorted parameters plus the secret, upper-case hex.")
]


def settings_of(request: Request) -> Settings:
    """The settings this app was created with (auth, limits and URLs are the edge's business)."""
    settings: Settings = request.app.state.settings
    return settings


def _params(request: Request, engine: Engine, form: dict[str, str] | None = None) -> dict[str, str]:
    params = rules.single_values(request.query_params.multi_items())
    for key, value in (form or {}).items():
        if key in params:
            raise ParameterError(f"{key} is given more than once (参数重复)")
        params[key] = value
    settings = settings_of(request)
    app_key = authenticate(params, settings.app_secrets, settings.allow_app_secret)
    request.app.state.limiter.check(app_key)
    return params


def base_url(request: Request, engine: Engine) -> str:
    """`//host[:port]` under which this service's pictures are served."""
    public = settings_of(request).public_url
    if public:
        return "//" + public.split("://", 1)[-1].rstrip("/")
    return "//" + request.url.netloc


def _own_host(request: Request, engine: Engine, netloc: str) -> bool:
    return base_url(request, engine) == "//" + netloc


def load_picture(request: Request, engine: Engine, url: str, name: str) -> Image.Image:
    """Pixels of a picture URL: one of our own stored pictures, or a guarded fetch."""
    settings = settings_of(request)
    parts = urlsplit(url)
    own = _OWN_IMAGE.match(parts.path)
    if own and _own_host(request, engine, parts.netloc):
        data = engine.images.path(own.group(1)).read_bytes()
    else:
        if not url.startswith(("http://", "https://")):
            raise ParameterError(f"{name} must be an http or https URL ({name} 必须是 http/https 地址)")
        data = engine.fetcher.fetch(url)
    return decode_image(data, settings.max_pixels)


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
) -> dict[str, Any]:
    """Find catalog products that look like the picture at `picUrl`."""
    params = _params(request, engine)
    page_no = rules.int_in_range(params, "pageNo", 0, 0, rules.MAX_PAGE_NO)
    page_size = rules.int_in_range(params, "pageSize", 10, 1, rules.MAX_PAGE_SIZE)
    wanted_category = rules.category(params)
    use_crop = rules.boolean(params, "crop", True)
    box = rules.region(params)
    url = params.get("picUrl")
    if not url:
        raise ParameterError("picUrl is required (picUrl 不能为空)")
    image = load_picture(request, engine, url, "picUrl")
    if box is not None:
        box = rules.fit_region(box, *image.size)
    results = engine.searcher.search(
        image,
        SearchQuery(category=wanted_category, crop=use_crop, region=box, offset=page_no, limit=page_size),
    )
    return ok(search_data(results, page_no, base_url(request, engine)))


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
    params = _params(request, engine)
    if params.get("image_id"):
        data = engine.images.find(params["image_id"]).read_bytes()
        image = decode_image(data, settings_of(request).max_pixels)
    elif params.get("pic_url"):
        image = load_picture(request, engine, params["pic_url"], "pic_url")
    else:
        raise ParameterError("image_id or pic_url is required (image_id 与 pic_url 不能同时为空)")
    results = engine.searcher.search(image, SearchQuery(limit=V1_RESULTS))
    base = base_url(request, engine)
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
    params = _params(request, engine)
    url = params.get("pic_url")
    if not url:
        raise ParameterError("pic_url is required (pic_url 不能为空)")
    if not url.startswith(("http://", "https://")):
        raise ParameterError("pic_url must be an http or https URL (pic_url 必须是 http/https 地址)")
    return ok(_store(request, engine, engine.fetcher.fetch(url)))


_UPLOAD_FORM = {
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


@router.post("/taobao/upload/image", summary="Image upload by POST", openapi_extra=_UPLOAD_FORM)
async def upload_by_post(request: Request, engine: EngineDep) -> dict[str, Any]:
    """Store a base64 image sent as the form field `image_base64` (JPG, PNG or WEBP, at most 3 MB)."""
    limit = settings_of(request).upload_max_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit * 4 // 3 + 64 * 1024:
        raise ImageTooLarge(f"image_base64 is over {limit} bytes (图片不能超过 {limit // 1024 // 1024} MB)")
    form = await request.form(max_part_size=limit * 2)
    fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
    if len(fields) != len(form.multi_items()):
        raise ParameterError("only text form fields are accepted; send the image as image_base64")
    params = _params(request, engine, fields)
    encoded = params.get("image_base64")
    if not encoded:
        if params.get("pic_url"):
            return ok(_store(request, engine, engine.fetcher.fetch(params["pic_url"])))
        raise ParameterError("image_base64 is required (image_base64 不能为空)")
    if "," in encoded[:100] and encoded.startswith("data:"):
        encoded = encoded.split(",", 1)[1]
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ParameterError("image_base64 is not valid base64 (image_base64 不是有效的 base64)") from None
    if len(data) > limit:
        raise ImageTooLarge(f"image_base64 decodes to {len(data)} bytes; the limit is {limit}")
    return ok(_store(request, engine, data))


def _store(request: Request, engine: Engine, data: bytes) -> dict[str, str]:
    decode_image(data, settings_of(request).max_pixels, UPLOAD_FORMATS)  # reject before keeping
    name = engine.images.put(data)
    return {"imageId": name.split(".")[0], "picUrl": f"{base_url(request, engine)}/images/{name}"}


@router.get("/images/{name}", summary="A stored picture (uploads and catalog images)")
def stored_image(name: str, engine: EngineDep) -> FileResponse:
    return FileResponse(engine.images.path(name), headers={"Cache-Control": "public, max-age=31536000, immutable"})
