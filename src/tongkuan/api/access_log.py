"""Access logging without secrets: method, path, status, time, appKey and client address,
never the query.

Uvicorn's own access log prints the whole query string, `appSecret` and `sign` included;
`tongkuan serve` turns it off and uses this instead. What a caller controls (the path, the
appKey) is made safe to write first (`loggable`): one line always, however many newlines or
terminal escape codes the caller sends, and nothing that looks like a secret. The client
address is the one the per-address limits used: the peer's, or what a proxy named in
`TONGKUAN_FORWARDED_ALLOW_IPS` forwarded (uvicorn puts it in the scope before this runs).
"""

from __future__ import annotations

import logging
import re
import time
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("tongkuan.access")

MAX_PATH = 256
MAX_APP_KEY = 64
MAX_CLIENT = 64  # an IPv6 address with a zone fits
REDACTED = "[redacted]"
# `appSecret=...`, `secret:...`, `sign=...` and whatever follows, in any case
_SECRET_TAIL = re.compile(r"(app)?secret\s*[=:]|sign\s*[=:]", re.IGNORECASE)
# a DAJI signature (MD5 in hex) sent where another value belongs
_SIGNATURE = re.compile(r"[0-9a-fA-F]{32}")


def loggable(value: str, limit: int) -> str:
    """`value` as one printable line of at most about `limit` characters, with anything
    that looks like a secret replaced by `[redacted]`.

    Control, format and separator characters become `\\xNN`/`\\uNNNN` escapes and a
    backslash becomes two, so a written line cannot be forged or taken for another.
    """
    found = _SECRET_TAIL.search(value)
    if found:
        value = value[: found.start()] + REDACTED
    elif _SIGNATURE.fullmatch(value):
        value = REDACTED
    shown = "".join(_escape(c) for c in value[: limit + 1])
    return shown if len(shown) <= limit and len(value) <= limit else shown[:limit] + "..."


def _escape(char: str) -> str:
    if char == "\\":
        return "\\\\"
    if char.isprintable():  # false for control, format and separator characters, except " "
        return char
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


class ResponseStatus:
    """The status code of the answer an ASGI app sends through `send`; 500 until it starts
    one (an exception that escapes every handler is answered 500)."""

    def __init__(self, send: Send) -> None:
        self.code = 500
        self._send = send

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.code = int(message["status"])
        await self._send(message)


class AccessLog:
    """ASGI middleware writing one line per request to the `tongkuan.access` logger."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = ResponseStatus(send)
        try:
            await self.app(scope, receive, status.send)
        finally:
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            client = scope.get("client")
            logger.info(
                "%s %s %d %.1f ms appKey=%s client=%s",
                loggable(str(scope["method"]), 16),
                loggable(str(scope["path"]), MAX_PATH),
                status.code,
                (time.perf_counter() - started) * 1000,
                loggable(query.get("appKey", "-"), MAX_APP_KEY),
                loggable(str(client[0]) if client else "-", MAX_CLIENT),
            )
