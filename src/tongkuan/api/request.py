"""Reading a DAJI-style request: its parameters (authenticated and rate-limited), the
pictures it names, and the URL prefix under which this service serves pictures."""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Query, Request
from PIL import Image

from tongkuan.api import params as rules
from tongkuan.api.auth import ParameterError, authenticate
from tongkuan.config import Settings
from tongkuan.engine import Engine
from tongkuan.images.decode import UPLOAD_FORMATS, decode_image

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


def checked_params(request: Request, form: dict[str, str] | None = None) -> dict[str, str]:
    """The request's query (and form) parameters once its appKey is authenticated and within its rate."""
    params = rules.single_values(request.query_params.multi_items())
    for key, value in (form or {}).items():
        if key in params:
            raise ParameterError(f"{key} is given more than once (参数重复)")
        params[key] = value
    settings = settings_of(request)
    app_key = authenticate(params, settings.app_secrets, settings.allow_app_secret)
    request.app.state.limiter.check(app_key)
    return params


def base_url(request: Request) -> str:
    """`//host[:port]` under which this service's pictures are served."""
    public = settings_of(request).public_url
    if public:
        return "//" + public.split("://", 1)[-1].rstrip("/")
    return "//" + request.url.netloc


def load_picture(request: Request, engine: Engine, url: str, name: str) -> Image.Image:
    """Pixels of a picture URL: one of our own stored pictures, or a guarded fetch."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ParameterError(f"{name} is not a valid URL ({name} 不是有效的地址)") from None
    own = _OWN_IMAGE.match(parts.path)
    if own and base_url(request) == "//" + parts.netloc:
        data = engine.images.path(own.group(1)).read_bytes()
    else:
        data = engine.fetcher.fetch(rules.http_url(url, name))
    return decode_image(data, settings_of(request).max_pixels)


def load_uploaded(request: Request, engine: Engine, image_id: str) -> Image.Image:
    """Pixels of an image uploaded earlier, by its imageId."""
    return decode_image(engine.images.find(image_id).read_bytes(), settings_of(request).max_pixels)


def store_upload(request: Request, engine: Engine, data: bytes) -> dict[str, str]:
    """Keep an uploaded picture (after checking it decodes) and say how to refer to it."""
    decode_image(data, settings_of(request).max_pixels, UPLOAD_FORMATS)  # reject before keeping
    name = engine.images.put(data)
    return {"imageId": name.split(".")[0], "picUrl": f"{base_url(request)}/images/{name}"}
