"""Per-appKey rate limits (token buckets), a throttle on failed authentications per client
address, caps on the query picture downloads running at once (overall, per appKey, per client
address and per picture host), and a request body cap, at the HTTP edge."""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tongkuan.api.envelope import ErrorKind, envelope, error_data
from tongkuan.errors import RateLimited, ServiceBusy

MAX_BUCKETS = 10_000  # past this many keys, buckets idle long enough to be full again are dropped


class RateLimiter:
    """One token bucket per key (an appKey, or a client address): `qps` tokens a second,
    bursts up to twice that.

    `qps` of 0 means unlimited. Thread-safe. `refused` counts the requests turned away, for
    the metrics.
    """

    def __init__(self, default_qps: float, per_app: Mapping[str, float] | None = None) -> None:
        self.default_qps = default_qps
        self.per_app = dict(per_app or {})
        self._buckets: dict[str, tuple[float, float]] = {}
        self.refused = 0
        self._lock = threading.Lock()

    def check(self, app_key: str) -> None:
        """Take one token for `app_key` or raise `RateLimited`."""
        qps = self.per_app.get(app_key, self.default_qps)
        if qps <= 0:
            return
        burst = max(1.0, 2 * qps)
        now = time.monotonic()
        with self._lock:
            if len(self._buckets) > MAX_BUCKETS:
                self._forget_idle(now)
            tokens, last = self._buckets.get(app_key, (burst, now))
            tokens = min(burst, tokens + (now - last) * qps)
            if tokens < 1.0:
                self._buckets[app_key] = (tokens, now)
                self.refused += 1
                raise RateLimited(f"appKey {app_key} is over its limit of {qps:g} requests per second")
            self._buckets[app_key] = (tokens - 1.0, now)

    def _forget_idle(self, now: float) -> None:
        """Drop buckets that have refilled: forgetting them changes no answer."""
        for key, (tokens, last) in list(self._buckets.items()):
            qps = self.per_app.get(key, self.default_qps)
            if qps > 0 and tokens + (now - last) * qps >= max(1.0, 2 * qps):
                del self._buckets[key]


class AuthThrottle:
    """Counts failed authentications per client address; after `limit` of them within
    `window` seconds, the client is refused (`RateLimited`) for `window` seconds, whatever
    it sends. Other clients are not affected.

    `limit` of 0 turns the throttle off. Thread-safe; at most about `max_clients` addresses
    are remembered (the least recently failing are forgotten first).
    """

    def __init__(
        self,
        limit: int,
        window: float,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = MAX_BUCKETS,
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self.max_clients = max_clients
        self.refused = 0
        self._failures: dict[str, deque[float]] = {}
        self._blocked: dict[str, float] = {}
        self._lock = threading.Lock()

    def check(self, client: str) -> None:
        """Raise `RateLimited` (with the seconds left) if `client` is refused just now."""
        if self.limit <= 0:
            return
        with self._lock:
            until = self._blocked.get(client)
            if until is None:
                return
            left = until - self.clock()
            if left <= 0:
                del self._blocked[client]
                return
            self.refused += 1
        raise RateLimited(
            f"too many failed authentications from this address; try again in {math.ceil(left)} s",
            retry_after=math.ceil(left),
        )

    def failed(self, client: str) -> None:
        """Count one failed authentication of `client`."""
        if self.limit <= 0:
            return
        now = self.clock()
        with self._lock:
            times = self._failures.pop(client, None) or deque()
            while times and times[0] <= now - self.window:
                times.popleft()
            times.append(now)
            if len(times) >= self.limit:
                self._blocked[client] = now + self.window
                times.clear()
            else:
                self._failures[client] = times  # re-inserted: the dict stays in order of last failure
            self._forget(now)

    def tracked(self) -> int:
        """How many client addresses are remembered (for tests of the memory bound)."""
        with self._lock:
            return len(self._failures) + len(self._blocked)

    def _forget(self, now: float) -> None:
        if len(self._failures) + len(self._blocked) <= self.max_clients:
            return
        for client in [c for c, until in self._blocked.items() if until <= now]:
            del self._blocked[client]
        while len(self._failures) + len(self._blocked) > self.max_clients and self._failures:
            del self._failures[next(iter(self._failures))]


class FetchSlots:
    """How many query picture downloads run at once: at most `total`, `per_app` of them for
    one appKey, and for anonymous callers `per_client` for one client address and
    `per_host` from one picture host.

    A download may take its whole deadline on a slow host, on a worker thread searches
    need too. Past a client's or a host's share a request is refused at once (429 for the
    client, 503 for the host); when every slot is taken, or its app's share, it waits up to
    `wait` seconds for one (a burst of ordinary searches fetches at once; a download from a
    responsive host takes milliseconds), then is refused (503, or 429 for the app's share):
    a longer queue would hold threads too. The host cap keeps one slow host, however many
    clients name it, from taking the slots of pictures elsewhere; the app's share keeps one
    app's slow pictures from taking every slot another app needs (`per_app` defaults to
    three quarters of `total`, at least one). `host` is compared as given: pass one key per
    host (`tongkuan.images.guard.host_key`), or spellings of one host count apart.
    Thread-safe.
    """

    def __init__(
        self,
        total: int,
        per_client: int,
        per_host: int | None = None,
        wait: float = 1.0,
        per_app: int | None = None,
    ) -> None:
        self.total = total
        self.per_client = per_client
        self.per_host = per_host or total
        self.per_app = per_app or max(1, total * 3 // 4)
        self.wait = wait
        self.refused = 0
        self._clients: dict[str, int] = {}
        self._hosts: dict[str, int] = {}
        self._apps: dict[str, int] = {}
        self._running = 0
        self._lock = threading.Condition()

    @contextmanager
    def slot(self, client: str | None = None, host: str | None = None, app: str | None = None) -> Iterator[None]:
        """Hold one download slot for `client` fetching from `host` for `app` while the block
        runs (None: not counted against a client's, a host's or an app's share)."""
        with self._lock:
            self._check_shares(client, host)
            if not self._lock.wait_for(lambda: self._free_for(app), timeout=self.wait):
                self.refused += 1
                if self._running < self.total:
                    raise RateLimited(f"at most {self.per_app} picture downloads at once for one appKey")
                raise ServiceBusy(f"all {self.total} picture download slots are taken; try again shortly")
            self._check_shares(client, host)  # others may have taken them while this one waited
            _count(self._clients, client, 1)
            _count(self._hosts, host, 1)
            _count(self._apps, app, 1)
            self._running += 1
        try:
            yield
        finally:
            with self._lock:
                _count(self._clients, client, -1)
                _count(self._hosts, host, -1)
                _count(self._apps, app, -1)
                self._running -= 1
                self._lock.notify_all()  # a waiter at its app's share cannot use every freed slot

    def _free_for(self, app: str | None) -> bool:
        return self._running < self.total and (app is None or self._apps.get(app, 0) < self.per_app)

    def _check_shares(self, client: str | None, host: str | None) -> None:
        if client is not None and self._clients.get(client, 0) >= self.per_client:
            self.refused += 1
            raise RateLimited(f"at most {self.per_client} picture downloads at once from one address")
        if host is not None and self._hosts.get(host, 0) >= self.per_host:
            self.refused += 1
            raise ServiceBusy(f"at most {self.per_host} downloads at once from one picture host; try again shortly")

    def running(self) -> int:
        """Downloads running now (for tests and the metrics)."""
        with self._lock:
            return self._running


def _count(counts: dict[str, int], key: str | None, step: int) -> None:
    """Add `step` to `counts[key]` (None: not counted), forgetting keys that reach 0."""
    if key is None:
        return
    value = counts.get(key, 0) + step
    if value:
        counts[key] = value
    else:
        counts.pop(key, None)


class BodyLimit:
    """ASGI middleware: refuse request bodies over `max_bytes` with a 413 in the envelope,
    whether the size is declared (Content-Length) or only discovered while streaming.
    Paths under `wide_prefix` (the admin API: imports, pictures) get `wide_max_bytes`."""

    def __init__(self, app: ASGIApp, max_bytes: int, wide_prefix: str = "/admin/", wide_max_bytes: int = 0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.wide_prefix = wide_prefix
        self.wide_max_bytes = max(wide_max_bytes, max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        limit = self.wide_max_bytes if path.startswith(self.wide_prefix) else self.max_bytes
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await self._refuse(send, limit, path)
            return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(send, limit, path)

    async def _refuse(self, send: Send, limit: int, path: str) -> None:
        message = f"请求体过大: the request body is over {limit} bytes"
        body = json.dumps(
            envelope(413, message, error_data(path, ErrorKind.BODY_TOO_LARGE)), ensure_ascii=False
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass
