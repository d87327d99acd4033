"""Dependencies routes declare: the engine the app was created with, and a request's
single-valued parameters (a DAJI request's once its credentials check out)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from tongkuan.api.declare import Param, accepted
from tongkuan.api.request import checked_params, query_params
from tongkuan.engine import Engine

APP_KEY = accepted("appKey", "Your application key.")
APP_SECRET = accepted("appSecret", "Your app secret, in testing mode only.")
SIGN = accepted("sign", "MD5 signature of the sorted parameters plus the secret, upper-case hex.")
CREDENTIALS: tuple[Param, ...] = (APP_KEY, APP_SECRET, SIGN)
"""What authenticates a DAJI request, in the query string or (uploads by POST) the form."""


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def signed_params(
    request: Request,
    app_key: Annotated[str | None, Query(alias=APP_KEY.name, description=APP_KEY.description)] = None,
    app_secret: Annotated[str | None, Query(alias=APP_SECRET.name, description=APP_SECRET.description)] = None,
    signature: Annotated[str | None, Query(alias=SIGN.name, description=SIGN.description)] = None,
) -> dict[str, str]:
    """The query parameters of a DAJI request, once its appKey is authenticated and within its
    rate. The credentials are declared here for the docs; they are read from the request, so
    that one given twice is refused rather than guessed."""
    return checked_params(request)


EngineDep = Annotated[Engine, Depends(get_engine)]
SignedParams = Annotated[dict[str, str], Depends(signed_params)]
QueryParams = Annotated[dict[str, str], Depends(query_params)]
"""The query parameters of a request that needs no appKey (the search page), each given once."""
