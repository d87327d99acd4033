"""Fetching a picUrl without becoming a proxy into the operator's network.

Each hop (the URL and every redirect) is parsed, its host resolved once, every resolved
address checked by `guard.check_address`, and the connection made to the checked address
itself (the Host header and TLS SNI keep the name), so a DNS answer that changes between
check and connect cannot redirect us. Bodies are streamed and cut at the byte limit; the
whole download has a deadline.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

from tongkuan.errors import ForbiddenAddress, ImageFetchError, ImageTooLarge
from tongkuan.images.guard import IPAddress, check_address


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


def resolve(host: str, port: int) -> list[IPAddress]:
    """All addresses `host` resolves to (an IP literal resolves to itself)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ImageFetchError(f"picUrl host {host!r} does not resolve") from exc
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def check_url(url: str, policy: FetchPolicy) -> Target:
    """Validate one URL and pick the checked address to connect to.

    Raises `ForbiddenAddress` for a scheme, host or address we refuse, `ImageFetchError`
    for a URL that is malformed or does not resolve.
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
        if _is_literal(host):  # the caller wrote the address: naming its kind tells them nothing new
            raise
        # never say what a name resolved to: that would map the operator's network for the caller
        raise ForbiddenAddress(f"picUrl host {host!r} is not a public address") from None
    address = addresses[0]
    literal = f"[{address}]" if address.version == 6 else str(address)
    connect_url = parts._replace(netloc=f"{literal}:{port}").geturl()
    return Target(url=url, host=host, address=address, connect_url=connect_url)


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class Fetcher:
    """Fetches URLs under one policy over one pooled client (building a client, with its TLS
    context, costs more than a small download). Thread-safe; close it when done."""

    def __init__(self, policy: FetchPolicy) -> None:
        self.policy = policy
        self._client = new_client(policy)

    def fetch(self, url: str) -> bytes:
        """See `fetch_url`."""
        return fetch_url(url, self.policy, self._client)

    def close(self) -> None:
        self._client.close()


def new_client(policy: FetchPolicy) -> httpx.Client:
    timeout = httpx.Timeout(policy.total_timeout, connect=policy.connect_timeout)
    return httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False)


def fetch_url(url: str, policy: FetchPolicy, client: httpx.Client | None = None) -> bytes:
    """Download `url` under `policy` and return the body.

    Raises `ForbiddenAddress`, `ImageFetchError` (network, status, timeout, redirect loop)
    or `ImageTooLarge` (body over `policy.max_bytes`).
    """
    deadline = time.monotonic() + policy.total_timeout
    own = client is None
    client = client or new_client(policy)
    try:
        for _ in range(policy.max_redirects + 1):
            target = check_url(url, policy)
            location = _fetch_once(client, target, policy, deadline)
            if isinstance(location, bytes):
                return location
            url = urljoin(url, location)
        raise ImageFetchError(f"picUrl redirected more than {policy.max_redirects} times")
    finally:
        if own:
            client.close()


def _fetch_once(client: httpx.Client, target: Target, policy: FetchPolicy, deadline: float) -> bytes | str:
    parts = urlsplit(target.url)
    host_header = parts.netloc.rsplit("@", 1)[-1]
    try:
        with client.stream(
            "GET",
            target.connect_url,
            headers={"Host": host_header, "Accept": "image/*"},
            extensions={"sni_hostname": target.host},
        ) as response:
            if response.is_redirect:
                location: str | None = response.headers.get("location")
                if not location:
                    raise ImageFetchError("picUrl redirect has no Location")
                return location
            if response.status_code != 200:
                raise ImageFetchError(f"picUrl answered HTTP {response.status_code}")
            declared = response.headers.get("content-length")
            if declared and declared.isascii() and declared.isdigit() and int(declared) > policy.max_bytes:
                raise ImageTooLarge(f"picUrl body is {declared} bytes; the limit is {policy.max_bytes}")
            body = bytearray()
            for chunk in response.iter_raw():
                body += chunk
                if len(body) > policy.max_bytes:
                    raise ImageTooLarge(f"picUrl body exceeds {policy.max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise ImageFetchError(f"picUrl took longer than {policy.total_timeout} s")
            return bytes(body)
    except httpx.TimeoutException as exc:
        raise ImageFetchError(f"picUrl timed out ({type(exc).__name__})") from exc
    except httpx.HTTPError as exc:
        raise ImageFetchError(f"picUrl could not be fetched ({type(exc).__name__})") from exc
