"""Dependencies routes declare: the objects the app holds, and a request's single-valued
parameters (a DAJI request's once its credentials check out).

`request.app.state` is untyped; the one accessor per object below is the only place that
reads it, so routes get each object typed, by declaring it as a parameter. None of them
takes more than the request, so they add nothing to the OpenAPI document. They are
coroutines only to run on the event loop rather than take a worker thread for an
attribute read.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from tongkuan.api.declare import Param, accepted
from tongkuan.api.limits import AuthThrottle, FetchSlots, RateLimiter
from tongkuan.api.metrics import Metrics
from tongkuan.api.request import Site, base_url, checked_params, own_sites, query_params
from tongkuan.config import Settings
from tongkuan.engine import Engine
from tongkuan.evaluation.service import Evaluations

APP_KEY = accepted("appKey", "Your application key.")
APP_SECRET = accepted("appSecret", "Your app secret, in testing mode only.")
SIGN = accepted("sign", "MD5 signature of the sorted parameters plus the secret, upper-case hex.")
CREDENTIALS: tuple[Param, ...] = (APP_KEY, APP_SECRET, SIGN)
"""What authenticates a DAJI request, in the query string or (uploads by POST) the form."""


async def get_settings(request: Request) -> Settings:
    """The settings the app was created with (auth, limits and URLs are the edge's business)."""
    settings: Settings = request.app.state.settings
    return settings


async def get_engine(request: Request) -> Engine:
    """The engine the app opened when it started."""
    engine: Engine = request.app.state.engine
    return engine


async def get_limiter(request: Request) -> RateLimiter:
    """The rate limit per appKey of the DAJI routes."""
    limiter: RateLimiter = request.app.state.limiter
    return limiter


async def get_web_limiter(request: Request) -> RateLimiter:
    """The rate limit per client address of the search page's routes."""
    limiter: RateLimiter = request.app.state.web_limiter
    return limiter


async def get_auth_throttle(request: Request) -> AuthThrottle:
    """The throttle on client addresses that fail to authenticate."""
    throttle: AuthThrottle = request.app.state.auth_throttle
    return throttle


async def get_fetch_slots(request: Request) -> FetchSlots:
    """The caps on query picture downloads running at once."""
    slots: FetchSlots = request.app.state.fetch_slots
    return slots


async def get_metrics(request: Request) -> Metrics | None:
    """The app's metrics, or None where they are off."""
    metrics: Metrics | None = request.app.state.metrics
    return metrics


async def get_evaluations(request: Request) -> Evaluations:
    """The evaluations the service runs on its catalog, and the checks the page saved."""
    evaluations: Evaluations = request.app.state.evaluations
    return evaluations


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
LimiterDep = Annotated[RateLimiter, Depends(get_limiter)]
WebLimiterDep = Annotated[RateLimiter, Depends(get_web_limiter)]
AuthThrottleDep = Annotated[AuthThrottle, Depends(get_auth_throttle)]
FetchSlotsDep = Annotated[FetchSlots, Depends(get_fetch_slots)]
MetricsDep = Annotated[Metrics | None, Depends(get_metrics)]
EvaluationsDep = Annotated[Evaluations, Depends(get_evaluations)]


async def served_base(request: Request, settings: SettingsDep) -> str:
    """`//host[:port]` under which this service serves pictures, for this request."""
    return base_url(request, settings.http.public_url)


BaseUrl = Annotated[str, Depends(served_base)]


async def served_sites(request: Request, settings: SettingsDep) -> frozenset[Site]:
    """Where this service's stored pictures are reached, for recognising its own picture URLs."""
    return own_sites(request, settings.http.public_url)


OwnSites = Annotated[frozenset[Site], Depends(served_sites)]


async def signed_params(
    request: Request,
    settings: SettingsDep,
    limiter: LimiterDep,
    throttle: AuthThrottleDep,
    app_key: Annotated[str | None, Query(alias=APP_KEY.name, description=APP_KEY.description)] = None,
    app_secret: Annotated[str | None, Query(alias=APP_SECRET.name, description=APP_SECRET.description)] = None,
    signature: Annotated[str | None, Query(alias=SIGN.name, description=SIGN.description)] = None,
) -> dict[str, str]:
    """The query parameters of a DAJI request, once its appKey is authenticated and within its
    rate. The credentials are declared here for the docs; they are read from the request, so
    that one given twice is refused rather than guessed. On the event loop: it only reads and
    counts, and each dependency run in the thread pool costs a hop there and back."""
    return checked_params(request, settings, limiter, throttle)


async def single_params(request: Request) -> dict[str, str]:
    """The request's query parameters, each given once (on the event loop, as above)."""
    return query_params(request)


SignedParams = Annotated[dict[str, str], Depends(signed_params)]
QueryParams = Annotated[dict[str, str], Depends(single_params)]
"""The query parameters of a request that needs no appKey (the search page), each given once."""
