"""Fetching a picUrl without becoming a proxy into the operator's network, or a hostage of it.

Each hop (the URL and every redirect) is parsed, its host resolved once, every resolved
address checked by `guard.check_address`, and the connection made to the checked address
itself (the Host header and TLS SNI keep the name), so a DNS answer that changes between
check and connect cannot redirect us. Bodies are streamed and cut at the byte limit.

The whole fetch (name lookups, connects, headers, every redirect, the body) has one
deadline. Per-read timeouts cannot give one: a host that sends its headers a byte at a
time, or answers each redirect just in time, would hold a worker for as long as it likes.
So every socket operation is given only the time left until the deadline, by the network
backend under the connection pool, and a name lookup is waited for only that long.

A lookup cannot be cut short: one the fetch stopped waiting for goes on until the resolver
gives up, on a thread of its own. `NameLookups` keeps such lookups from holding up the
others: callers of one name share its lookup, one registrable domain has at most half of
them, and past the bound a lookup is refused at once (`LookupsBusy`) instead of queued.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as LookupTimeout
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import certifi
import httpcore

from tongkuan.errors import ForbiddenAddress, ImageFetchError, ImageTooLarge, LookupsBusy
from tongkuan.images.guard import IPAddress, check_address, host_key

LOOKUP_THREADS = 16  # name lookups at once, one thread each (a thread blocked in the resolver costs little)
POOL_CONNECTIONS = 32
DEADLINE_SLACK = 0.05  # a socket timeout cut to the deadline may fire this much before it


@dataclass(frozen=True)
class FetchPolicy:
    """Limits for fetching one URL."""

    connect_timeout: float = 3.0
    total_timeout: float = 10.0
    max_bytes: int = 4 * 1024 * 1024
    max_redirects: int = 3
    allow_loopback: bool = False
    allowed_hosts: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Target:
    """A URL checked for fetching: where to connect and what to call the host."""

    url: str
    host: str
    address: IPAddress
    connect_url: str


class DeadlinePassed(Exception):
    """The fetch's deadline passed (raised where the time ran out, reported by `fetch_url`)."""


# The deadline (time.monotonic) of the fetch running in this thread; None outside a fetch.
_deadline: ContextVar[float | None] = ContextVar("fetch_deadline", default=None)
AddressInfo = list[tuple[Any, ...]]


@dataclass
class _Lookup:
    domain: str
    answer: Future[AddressInfo]


class NameLookups:
    """Name lookups (`socket.getaddrinfo`) that slow names cannot hold up for the others.

    Each lookup runs on a thread of its own, since a caller may stop waiting but cannot
    stop the resolver: the thread ends when the resolver answers or gives up. So that such
    lookups cannot take every thread, callers of a name being looked up wait for that
    lookup instead of starting another; at most `threads` lookups run at once, and at most
    `per_domain` for one registrable domain (`host_key`: wildcard subdomains of one slow
    domain are one); past either a new lookup is refused at once with `LookupsBusy`, never
    queued behind lookups nobody may be waiting for. Thread-safe.
    """

    def __init__(self, threads: int = LOOKUP_THREADS, per_domain: int | None = None) -> None:
        self.threads = threads
        self.per_domain = per_domain or max(1, threads // 2)
        self._running: dict[str, _Lookup] = {}
        self._lock = threading.Lock()

    def resolve(self, host: str, port: int, timeout: float | None = None) -> AddressInfo:
        """`getaddrinfo(host, port)` for TCP, waited for at most `timeout` seconds.

        Raises `LookupsBusy` when no lookup can start now, `concurrent.futures.TimeoutError`
        when the answer is late (the lookup goes on, for later callers of `host`), and what
        the resolver raises. A caller sharing a lookup gets the answer with the first
        caller's port: the addresses are the same."""
        with self._lock:
            lookup = self._running.get(host)
            if lookup is None:
                lookup = self._start(host, port)
        return lookup.answer.result(timeout)

    def in_flight(self) -> int:
        """Lookups running now, waited for or not (for tests and the metrics)."""
        with self._lock:
            return len(self._running)

    def _start(self, host: str, port: int) -> _Lookup:
        if len(self._running) >= self.threads:
            raise LookupsBusy(f"all {self.threads} name lookups for picture hosts are in use; try again shortly")
        domain = host_key(host)
        if sum(1 for running in self._running.values() if running.domain == domain) >= self.per_domain:
            raise LookupsBusy(f"at most {self.per_domain} name lookups at once under {domain}; try again shortly")
        lookup = _Lookup(domain, Future())
        self._running[host] = lookup
        thread = threading.Thread(target=self._run, args=(host, port, lookup), name="picurl-lookup", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # no thread to be had
            del self._running[host]
            raise LookupsBusy("no thread for a name lookup; try again shortly") from None
        return lookup

    def _run(self, host: str, port: int, lookup: _Lookup) -> None:
        answer: AddressInfo = []
        error: Exception | None = None
        try:
            answer = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except Exception as exc:  # handed to the callers, who raise it
            error = exc
        finally:
            with self._lock:  # counted out before anyone hears: the next caller asks afresh
                del self._running[host]
        if error is None:
            lookup.answer.set_result(answer)
        else:
            lookup.answer.set_exception(error)


_lookups = NameLookups()


@contextmanager
def _until(deadline: float) -> Iterator[None]:
    token = _deadline.set(deadline)
    try:
        yield
    finally:
        _deadline.reset(token)


def time_left(timeout: float | None = None) -> float | None:
    """`timeout` cut to what is left of the current fetch's deadline; raises `DeadlinePassed`."""
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlinePassed()
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read, write and TLS handshake ends by the fetch's deadline.

    The deadline is looked up at each call, not kept: a pooled connection serves many fetches."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, time_left(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, time_left(timeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, time_left(timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """Plain sockets (httpcore's own backend) under the fetch's deadline."""

    def __init__(self) -> None:
        self._backend = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._backend.connect_tcp(host, port, time_left(timeout), local_address, socket_options)
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise ImageFetchError("picUrl cannot name a local socket")

    def sleep(self, seconds: float) -> None:
        time.sleep(min(seconds, time_left(seconds) or 0.0))


def resolve(host: str, port: int) -> list[IPAddress]:
    """All addresses `host` resolves to (an IP literal resolves to itself), waited for no
    longer than the current fetch's deadline; raises `LookupsBusy` when slow names hold the
    lookups (see `NameLookups`)."""
    try:  # a literal in its usual form needs none of the few lookup threads
        return [ipaddress.ip_address(host)]
    except ValueError:  # a name, or a literal only the resolver reads (127.1, 0x7f.0.0.1)
        pass
    try:
        infos = _lookups.resolve(host, port, time_left())
    except LookupTimeout:
        raise DeadlinePassed() from None
    except (OSError, UnicodeError) as exc:  # socket.gaierror is an OSError
        raise ForbiddenAddress(_not_public(host)) from exc
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def _not_public(host: str) -> str:
    # One message whether the name is unknown or names a private address: which names exist
    # inside the operator's network, and where they point, is not for callers to learn.
    return f"picUrl host {host!r} does not resolve to a public address"


def check_url(url: str, policy: FetchPolicy) -> Target:
    """Validate one URL and pick the checked address to connect to.

    Raises `ForbiddenAddress` for a scheme, host or address we refuse (or a name that does
    not resolve), `ImageFetchError` for a URL that is malformed.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ImageFetchError(f"picUrl {url!r} is not a valid URL") from exc
    if parts.scheme not in ("http", "https"):
        raise ForbiddenAddress(f"picUrl must be http or https, not {parts.scheme or 'empty'!r}")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ForbiddenAddress("picUrl must not carry user credentials")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise ImageFetchError(f"picUrl {url!r} has no host")
    if policy.allowed_hosts and not any(
        host == allowed or host.endswith("." + allowed) for allowed in policy.allowed_hosts
    ):
        raise ForbiddenAddress(f"picUrl host {host} is not in the operator's allow-list")
    port = port or (443 if parts.scheme == "https" else 80)
    addresses = resolve(host, port)
    try:
        for address in addresses:  # every answer must be acceptable, not just the first
            check_address(address, policy.allow_loopback)
    except ForbiddenAddress:
        if is_ip(host):  # the caller wrote the address: naming its kind tells them nothing new
            raise
        raise ForbiddenAddress(_not_public(host)) from None
    address = addresses[0]
    literal = f"[{address}]" if address.version == 6 else str(address)
    connect_url = parts._replace(netloc=f"{literal}:{port}").geturl()
    return Target(url=url, host=host, address=address, connect_url=connect_url)


def is_ip(host: str) -> bool:
    """Whether `host` is an IP address written out (not a name to resolve)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class Fetcher:
    """Fetches URLs under one policy over one connection pool (building a connection, with
    its TLS context, costs more than a small download). Thread-safe; close it when done."""

    def __init__(self, policy: FetchPolicy) -> None:
        self.policy = policy
        self._pool = new_pool()

    def fetch(self, url: str) -> bytes:
        """See `fetch_url`."""
        return fetch_url(url, self.policy, self._pool)

    def close(self) -> None:
        self._pool.close()


def new_pool() -> httpcore.ConnectionPool:
    context = ssl.create_default_context(cafile=certifi.where())
    return httpcore.ConnectionPool(
        ssl_context=context, max_connections=POOL_CONNECTIONS, network_backend=_DeadlineBackend()
    )


def fetch_url(url: str, policy: FetchPolicy, pool: httpcore.ConnectionPool | None = None) -> bytes:
    """Download `url` under `policy` and return the body.

    Raises `ForbiddenAddress`, `ImageFetchError` (network, status, deadline, redirect loop)
    or `ImageTooLarge` (body over `policy.max_bytes`).
    """
    own = pool is None
    pool = pool or new_pool()
    try:
        with _until(time.monotonic() + policy.total_timeout):
            for _ in range(policy.max_redirects + 1):
                target = check_url(url, policy)
                location = _fetch_once(pool, target, policy)
                if isinstance(location, bytes):
                    return location
                url = urljoin(url, location)
        raise ImageFetchError(f"picUrl redirected more than {policy.max_redirects} times")
    except DeadlinePassed:
        raise ImageFetchError(f"picUrl took longer than {policy.total_timeout:g} s") from None
    finally:
        if own:
            pool.close()


def _fetch_once(pool: httpcore.ConnectionPool, target: Target, policy: FetchPolicy) -> bytes | str:
    parts = urlsplit(target.url)
    host_header = parts.netloc.rsplit("@", 1)[-1]
    left = time_left(policy.total_timeout)
    timeouts = {"connect": time_left(policy.connect_timeout), "read": left, "write": left, "pool": left}
    try:
        with pool.stream(
            "GET",
            target.connect_url,
            headers=[("Host", host_header), ("Accept", "image/*")],
            extensions={"sni_hostname": target.host, "timeout": timeouts},
        ) as response:
            headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in response.headers}
            if response.status in (301, 302, 303, 307, 308):
                location = headers.get("location")
                if not location:
                    raise ImageFetchError("picUrl redirect has no Location")
                return location
            if response.status != 200:
                raise ImageFetchError(f"picUrl answered HTTP {response.status}")
            declared = headers.get("content-length")
            if declared and declared.isascii() and declared.isdigit() and int(declared) > policy.max_bytes:
                raise ImageTooLarge(f"picUrl body is {declared} bytes; the limit is {policy.max_bytes}")
            body = bytearray()
            for chunk in response.iter_stream():
                body += chunk
                if len(body) > policy.max_bytes:
                    raise ImageTooLarge(f"picUrl body exceeds {policy.max_bytes} bytes")
            return bytes(body)
    except httpcore.TimeoutException as exc:
        deadline = _deadline.get()
        if deadline is not None and deadline - time.monotonic() < DEADLINE_SLACK:
            raise DeadlinePassed() from None  # the fetch's own deadline is what ran out
        raise ImageFetchError(f"picUrl timed out ({type(exc).__name__})") from exc
    except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as exc:
        raise ImageFetchError(f"picUrl could not be fetched ({type(exc).__name__})") from exc
