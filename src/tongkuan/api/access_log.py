"""Access logging without secrets: method, path, status, time and appKey, never the query.

Uvicorn's own access log prints the whole query string, `appSecret` and `sign` included;
`tongkuan serve` turns it off and uses this instead.
"""

from __future__ import annotations

import logging
import time
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("tongkuan.access")


class AccessLog:
    """ASGI middleware writing one line per request to the `tongkuan.access` logger."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            logger.info(
                "%s %s %d %.1f ms appKey=%s",
                scope["method"],
                scope["path"],
                status,
                (time.perf_counter() - started) * 1000,
                query.get("appKey", "-")[:64],
            )
