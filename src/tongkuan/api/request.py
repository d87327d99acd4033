"""Reading a DAJI-style request: its parameters (authenticated and rate-limited), the
pictures it names, and the URL prefix under which this service serves pictures. A picture
search is timed stage by stage on one `StageClock`, from getting the picture to the ranking,
for the metrics.

The objects the app holds (settings, limits, engine, metrics) are arguments here: routes get
them typed from their dependencies (`tongkuan.api.deps`) and pass them on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from urllib.parse import urlsplit

from fastapi import Request

from tongkuan.api import params as rules
from tongkuan.api.auth import authenticate
from tongkuan.api.limits import AuthThrottle, FetchSlots, RateLimiter
from tongkuan.api.metrics import Metrics
from tongkuan.api.wire import uploaded
from tongkuan.config import Settings
from tongkuan.domain.boxes import Box
from tongkuan.engine import Engine
from tongkuan.errors import BadCredentials, ParameterError
from tongkuan.images.decode import Decoded
from tongkuan.images.guard import host_key
from tongkuan.search.searcher import SearchQuery, SearchResults
from tongkuan.search.timing import Stage, StageClock

Site = tuple[str, int, str]
"""Where this service's stored pictures are reached: host (lower case), port, path prefix."""

_DEFAULT_PORTS = {"http": 80, "https": 443}
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def query_params(request: Request) -> dict[str, str]:
    """The request's query parameters, each given once."""
    return rules.single_values(request.query_params.multi_items())


def checked_params(
    request: Request,
    settings: Settings,
    limiter: RateLimiter,
    throttle: AuthThrottle,
    form: dict[str, str] | None = None,
) -> dict[str, str]:
    """The request's query (and form) parameters once its appKey is authenticated and within its rate."""
    params = query_params(request)
    for key, value in (form or {}).items():
        if key in params:
            raise ParameterError(f"{key} is given more than once (参数重复)")
        params[key] = value
    with throttled(request, throttle):
        app_key = authenticate(params, settings.access.app_secrets, settings.access.allow_app_secret)
    limiter.check(app_key)
    return params


def client_address(request: Request) -> str:
    """The client's address (the proxy's, unless its forwarded headers are trusted)."""
    return request.client.host if request.client else "unknown"


@contextmanager
def throttled(request: Request, throttle: AuthThrottle) -> Iterator[None]:
    """Around an authentication: refuse a client with too many recent failures before it
    is checked, and count its failure when the credentials it gave are wrong."""
    client = client_address(request)
    throttle.check(client)
    try:
        yield
    except BadCredentials:
        throttle.failed(client)
        raise


def fetch_query_picture(
    engine: Engine, slots: FetchSlots, url: str, anonymous_client: str | None = None, app_key: str | None = None
) -> bytes:
    """A query picture from the web, within the service's download slots and `app_key`'s
    share of them; for an anonymous caller (the search page's, with no credentials:
    `anonymous_client` is its address) also within its address's and the picture host's.
    Callers with credentials are accountable and rate-limited per appKey; their pictures
    mostly come from one CDN, which a per-host cap would throttle.

    The host is counted by `host_key`, so `127.1`, `2130706433` and `localhost`, or
    `a.example.com` and `b.example.com`, are one host."""
    host = None
    if anonymous_client is not None:
        try:
            host = host_key(urlsplit(url).hostname or "")
        except ValueError:
            host = ""  # the fetch itself says what is wrong with the URL
    with slots.slot(anonymous_client, host, app_key):
        return engine.fetch(url)


def base_url(request: Request, public: str | None) -> str:
    """`//host[:port]` under which this service's pictures are served: the `public` URL
    (TONGKUAN_PUBLIC_URL) where one is set, else the host the request reached."""
    if public:
        return "//" + public.split("://", 1)[-1].rstrip("/")
    return "//" + request.url.netloc


def own_sites(request: Request, public: str | None) -> frozenset[Site]:
    """Where this service's stored pictures are reached: the host and port the request
    reached, and the `public` URL (TONGKUAN_PUBLIC_URL, with its path) where one is set. A
    loopback host counts under each of its names (`localhost`, `127.0.0.1`, `::1`)."""
    found = [_site(request.url.scheme, request.url.netloc, "")]
    if public:
        parts = urlsplit(public if "://" in public else "https://" + public)
        found.append(_site(parts.scheme, parts.netloc, parts.path.rstrip("/")))
    sites = {site for site in found if site is not None}
    for host, port, prefix in list(sites):
        if host in _LOOPBACK_NAMES:
            sites.update((name, port, prefix) for name in _LOOPBACK_NAMES)
    return frozenset(sites)


def _site(scheme: str, netloc: str, prefix: str) -> Site | None:
    try:
        parts = urlsplit(f"{scheme.lower()}://{netloc}")
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None
    host = (parts.hostname or "").rstrip(".")
    return (host, port, prefix) if host and port and parts.username is None else None


def _own_picture(sites: frozenset[Site], url: str) -> str | None:
    """The stored picture name a URL under one of `sites` + `/images/` names, else None."""
    try:
        parts = urlsplit(url.strip())
        site = _site(parts.scheme, parts.netloc, "")
    except ValueError:
        return None
    if site is None:
        return None
    host, port, _ = site
    for own_host, own_port, prefix in sites:
        if (host, port) == (own_host, own_port) and parts.path.startswith(f"{prefix}/images/"):
            return parts.path.removeprefix(f"{prefix}/images/")
    return None


def load_picture(
    engine: Engine,
    slots: FetchSlots,
    sites: frozenset[Site],
    url: str,
    name: str,
    clock: StageClock,
    app_key: str | None = None,
) -> Decoded:
    """A picture URL decoded: one of our own stored pictures (under one of `sites`, see
    `own_sites`), read from the store and never fetched (one missing raises `ImageNotFound`),
    or a guarded fetch within `app_key`'s share of the download slots."""
    try:
        urlsplit(url)
    except ValueError:
        raise ParameterError(f"{name} is not a valid URL ({name} 不是有效的地址)") from None
    own = _own_picture(sites, url)
    clock.start(Stage.FETCH)
    if own is not None:
        data = engine.stored_picture_path(own).read_bytes()
    else:
        data = fetch_query_picture(engine, slots, rules.http_url(url, name), app_key=app_key)
    return _decode(engine, data, clock, app_caller(app_key))


def load_uploaded(engine: Engine, image_id: str, clock: StageClock, caller: str | None = None) -> Decoded:
    """An image uploaded earlier, by its imageId, decoded; `caller` (`app_caller`,
    `page_caller`) scopes its description cache key."""
    clock.start(Stage.FETCH)
    return _decode(engine, engine.uploaded_picture(image_id), clock, caller)


def app_caller(app_key: str | None) -> str | None:
    """The description cache scope of a signed request's appKey."""
    return None if app_key is None else f"app:{app_key}"


def page_caller(request: Request) -> str:
    """The description cache scope of a search page request: its client address."""
    return f"web:{client_address(request)}"


def _decode(engine: Engine, data: bytes, clock: StageClock, caller: str | None) -> Decoded:
    """Decode a query picture. Its cache key is scoped by `caller`: a picture that another
    caller searched is described again, so how fast an answer comes tells nobody what
    others searched."""
    clock.start(Stage.DECODE)
    image = engine.decode(data)
    clock.stop()
    if caller is not None and image.key is not None:
        image = replace(image, key=f"{caller}:{image.key}")
    return image


def load_either(
    engine: Engine,
    slots: FetchSlots,
    sites: frozenset[Site],
    image_id: str | None,
    url: str | None,
    names: tuple[str, str],
    clock: StageClock,
    app_key: str | None = None,
) -> Decoded:
    """The query picture named by an upload's id (which wins) or a URL; `names` are
    the two parameters' names, for the error when neither is given."""
    if image_id:
        return load_uploaded(engine, image_id, clock, app_caller(app_key))
    if url:
        return load_picture(engine, slots, sites, url, names[1], clock, app_key)
    raise ParameterError(f"{names[0]} or {names[1]} is required ({names[0]} 与 {names[1]} 不能同时为空)")


def search_picture(
    engine: Engine,
    metrics: Metrics | None,
    picture: Decoded,
    query: SearchQuery,
    region: Box | None,
    clock: StageClock,
) -> SearchResults:
    """Search `picture`; a requested `region` is first clipped to the picture, the one place a
    region meets the pixels (so it is checked here, not when parsed). The search's stages,
    with the fetch and decode already on `clock`, go to the `metrics` where they are on."""
    if region is not None:
        query = replace(query, region=rules.fit_region(region, *picture.size))
    results = engine.search(picture, query, clock)
    if metrics is not None:
        metrics.observe(clock)
    return results


def store_upload(engine: Engine, data: bytes, base: str) -> dict[str, str]:
    """Keep an uploaded picture (after checking it decodes) and say how to refer to it."""
    return uploaded(engine.keep_upload(data), base)
