"""Middleware that guards every request and response: the Host check, the framing check
(no request with both Content-Length and Transfer-Encoding) and security headers.

The Host check answers only host names the operator configured (loopback, the host of
`TONGKUAN_PUBLIC_URL`, `TONGKUAN_ALLOWED_HOSTS`), so a page on another site cannot reach the
service through a DNS name rebound to its address; Starlette's `TrustedHostMiddleware`
decides, and a refusal is answered in the envelope. `/health` and `/ready` answer any host,
so load balancers' probes work; they tell nothing but the catalog's size and which kind of
backend is out.

The headers: a content security policy without inline script or style (the search page has
none), refusing framing; `nosniff`; and a referrer policy that sends no path to other sites.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tongkuan.api.envelope import ErrorKind, envelope, error_data

PAGE_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' http: https:",  # catalog pictures may live on any picture host
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
"""The content security policy of every answer but the API docs."""

DOCS_POLICY = "frame-ancestors 'none'"
"""The API docs (when `TONGKUAN_API_DOCS` is on) run inline script and a CDN's scripts."""

DOCS_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc")
ANY_HOST_PATHS = ("/health", "/ready")
_ACCEPTED = "tongkuan.host_accepted"


class SecurityHeaders:
    """ASGI middleware adding the security headers to every HTTP answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = DOCS_POLICY if scope.get("path") in DOCS_PATHS else PAGE_POLICY
        added = [
            (b"content-security-policy", policy.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"strict-origin-when-cross-origin"),
        ]

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in added if h[0] not in names)]
            await send(message)

        await self.app(scope, receive, with_headers)


class FramingCheck:
    """ASGI middleware refusing a request that declares both Content-Length and
    Transfer-Encoding (a 400 in the envelope, and the connection closed): a proxy in front
    may read its body by the other header, so what follows could be taken for another
    request (request smuggling)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        names = {name.lower() for name, _ in scope.get("headers", [])} if scope["type"] == "http" else set()
        if not {b"content-length", b"transfer-encoding"} <= names:
            await self.app(scope, receive, send)
            return
        message = "参数错误: a request may not declare both Content-Length and Transfer-Encoding"
        path = str(scope.get("path", ""))
        body = json.dumps(envelope(400, message, error_data(path, ErrorKind.BAD_PARAMETER)), ensure_ascii=False)
        await _answer(send, 400, body.encode(), [(b"connection", b"close")])


async def _accept(scope: Scope, receive: Receive, send: Send) -> None:
    scope[_ACCEPTED] = True


class HostCheck:
    """ASGI middleware answering only requests whose Host header names one of `hosts`
    (names, `*.domain` patterns, or `*` for any); others get a 400 in the envelope."""

    def __init__(self, app: ASGIApp, hosts: Sequence[str]) -> None:
        self.app = app
        self.hosts = list(hosts)
        # Starlette's check decides; its own plain-text refusal is dropped and ours sent
        self._check = TrustedHostMiddleware(_accept, allowed_hosts=self.hosts, www_redirect=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope.get("path") in ANY_HOST_PATHS:
            await self.app(scope, receive, send)
            return
        await self._check(scope, receive, _discard)
        if scope.pop(_ACCEPTED, False):
            await self.app(scope, receive, send)
        elif scope["type"] == "http":
            await _refuse(send, str(scope.get("path", "")))
        else:
            await send({"type": "websocket.close", "code": 1008})


async def _discard(message: Message) -> None:
    return None


async def _refuse(send: Send, path: str) -> None:
    message = "参数错误: the Host header names a host this service does not answer (set TONGKUAN_ALLOWED_HOSTS)"
    body = json.dumps(envelope(400, message, error_data(path, ErrorKind.BAD_PARAMETER)), ensure_ascii=False).encode()
    await _answer(send, 400, body)


async def _answer(send: Send, status: int, body: bytes, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    start = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": start})
    await send({"type": "http.response.body", "body": body})
