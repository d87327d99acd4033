"""The groups that configure the service's edge: who may call (`Access`), the HTTP server
(`Http`), request limits (`Limits`), fetching pictures (`Fetch`) and decoding them (`Decode`)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from tongkuan.config.base import (
    HOST_PATTERN,
    NAME_PATTERN,
    Group,
    flat,
    lower_scheme,
    parse_apps,
    parse_rate_limits,
    split,
)
from tongkuan.errors import ConfigError
from tongkuan.images.fetch import FetchPolicy, is_ip

DEFAULT_UPLOAD_MAX_BYTES = 3 * 1024 * 1024
DEFAULT_MAX_PIXELS = 4096 * 4096  # a 4K screenshot or a 12 MP phone photo in any format
LOOPBACK_HOSTS = ("127.0.0.1", "[::1]", "localhost")
"""Host names the service always answers to (IPv6 literals in brackets, as in a Host header)."""


class Access(Group):
    """Who may call: DAJI applications, the admin token, the throttle on failed logins."""

    apps: str = Field(
        "",
        description='DAJI applications as "appKey:appSecret,appKey2:appSecret2". No apps: every request is refused.',
    )
    allow_app_secret: bool = Field(
        True,
        description="Accept the plain `appSecret` parameter (DAJI's testing mode); turn off in production.",
    )
    admin_token: str | None = Field(
        None,
        min_length=16,
        description="Bearer token of the catalog admin API (/admin/...), at least 16 characters; "
        "unset: the admin API is off. Never a DAJI appKey or appSecret.",
    )
    auth_failure_limit: int = Field(
        10,
        ge=0,
        description="Failed authentications (DAJI credentials or the admin token) one client address may "
        "make within TONGKUAN_AUTH_FAILURE_WINDOW before it is answered 429 for that long; 0: no limit.",
    )
    auth_failure_window: float = Field(
        60.0, gt=0, description="Seconds over which failed authentications are counted, and a refusal lasts."
    )

    @field_validator("apps")
    @classmethod
    def _check_apps(cls, value: str) -> str:
        try:
            parse_apps(value)
        except ConfigError:
            raise ValueError("not appKey:appSecret pairs") from None
        return value

    @property
    def app_secrets(self) -> dict[str, str]:
        """appKey -> appSecret."""
        return parse_apps(self.apps)


class Http(Group):
    """The HTTP edge: the names it answers to, the proxies it believes, what else it serves."""

    public_url: str | None = Field(
        None,
        description="Base URL clients reach this service at, for item and upload picture URLs; "
        "its host is one the service answers to.",
    )
    allowed_hosts: str = Field(
        "",
        description="Comma-separated host names (or *.domain patterns) requests may name in their Host "
        "header, besides 127.0.0.1, ::1, localhost and the host of TONGKUAN_PUBLIC_URL; * allows any host.",
    )
    forwarded_allow_ips: str = Field(
        "none",
        description="Comma-separated addresses (or networks) of your reverse proxies, whose X-Forwarded-For "
        "and X-Forwarded-Proto are believed, so limits key on the real client; none (the default) believes "
        "no one, * any peer. Name only proxies that replace the header: whoever it believes picks the "
        "address the per-address limits count.",
    )
    api_docs: bool = Field(
        False,
        description="Serve the interactive API docs at /docs and /redoc; they load scripts from a CDN "
        "into this service's origin. /openapi.json is served either way.",
    )
    web_ui: bool = Field(True, description="Serve the search page at / (and its same-origin API under /web/api).")
    metrics: bool = Field(
        False,
        description="Serve Prometheus metrics at /metrics (requests, search stage latencies, catalog and "
        "index sizes, rate limiting, the inference queue); unauthenticated, so keep it off public interfaces.",
    )

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str | None) -> str | None:
        value = lower_scheme(value)
        if not value:
            return None
        try:
            parts = urlsplit(value)
            port = parts.port  # a port that is not a number raises ValueError
        except ValueError:
            raise ValueError("not an http(s) URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
            raise ValueError("not an http(s) URL")
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _check_allowed_hosts(cls, value: str) -> str:
        for host in split(value):
            if not HOST_PATTERN.fullmatch(host) and not is_ip(host.strip("[]")):
                raise ValueError("not host names")
        return value

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _check_forwarded_allow_ips(cls, value: str) -> str:
        if value.strip().lower() in ("*", "none"):
            return value
        for entry in split(value):
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError("not addresses") from None
        return value

    @property
    def served_hosts(self) -> list[str]:
        """Host names (or `*.domain` patterns, or `*`) a request's Host header may name:
        loopback, the host of `public_url`, and `allowed_hosts`."""
        hosts = list(LOOPBACK_HOSTS)
        public = urlsplit(self.public_url).hostname if self.public_url else None
        for host in ([public] if public else []) + split(self.allowed_hosts):
            host = host.lower()
            if is_ip(host) and ":" in host:
                host = f"[{host}]"
            if host not in hosts:
                hosts.append(host)
        return hosts

    @property
    def proxy_addresses(self) -> str | None:
        """The proxies whose forwarded headers are believed, as uvicorn takes them; None: none."""
        value = self.forwarded_allow_ips.strip()
        if value.lower() == "none":
            return None
        return value if value == "*" else ",".join(split(value))


class Limits(Group):
    """How much one client may ask: request rates and body sizes."""

    rate_limit_qps: float = Field(
        5.0, ge=0, description="Requests per second per appKey (bursts of twice that); 0: unlimited."
    )
    rate_limits: str = Field("", description='Per-app overrides as "appKey:qps,appKey2:qps".')
    web_rate_limit_qps: float = Field(
        2.0,
        ge=0,
        description="Search-page requests per second per client address (bursts of twice that); 0: unlimited.",
    )
    max_body_bytes: int = Field(5 * 1024 * 1024, gt=0, description="Largest request body on any DAJI route.")
    admin_max_body_bytes: int = Field(
        512 * 1024 * 1024, gt=0, description="Largest request body on the admin API (imports, product pictures)."
    )
    upload_max_bytes: int = Field(DEFAULT_UPLOAD_MAX_BYTES, gt=0, description="Largest uploaded image.")

    @field_validator("rate_limits")
    @classmethod
    def _check_rate_limits(cls, value: str) -> str:
        try:
            parse_rate_limits(value)
        except ConfigError:
            raise ValueError("not appKey:qps pairs") from None
        return value

    @property
    def app_rate_limits(self) -> dict[str, float]:
        """appKey -> requests per second, where it differs from `rate_limit_qps`."""
        return parse_rate_limits(self.rate_limits)


_POLICY = FetchPolicy()


class Fetch(Group):
    """Downloading query pictures (`picUrl`, the page's URL upload) and pictures to ingest."""

    allow_loopback: bool = flat(
        "allow_loopback_fetch",
        _POLICY.allow_loopback,
        "Let picUrl reach loopback addresses (for local testing only).",
    )
    allow_hosts: str = flat(
        "fetch_allow_hosts", "", "Comma-separated host names picUrl may use; empty allows any public host."
    )
    connect_timeout: float = flat(
        "fetch_connect_timeout", _POLICY.connect_timeout, "Seconds to connect to a picUrl host.", gt=0
    )
    read_timeout: float = flat(
        "fetch_read_timeout", _POLICY.total_timeout, "Seconds for the whole picUrl download.", gt=0
    )
    max_bytes: int = flat("fetch_max_bytes", _POLICY.max_bytes, "Largest picUrl body accepted.", gt=0)
    max_redirects: int = flat("fetch_max_redirects", _POLICY.max_redirects, "Redirects followed for one picUrl.", ge=0)
    concurrency: int = flat(
        "fetch_concurrency",
        16,
        "Query picture downloads (picUrl, the page's url) running at once; past it a request "
        "waits up to a second for a slot, then answers 503, so slow picture hosts never hold the threads "
        "searches need. One appKey holds at most three quarters of them (at least one; past it: 429 after "
        "the same wait), so another app always finds one.",
        ge=1,
    )
    per_client: int = flat(
        "fetch_per_client",
        2,
        "Picture downloads one client address may have running at once through the search page, "
        "which needs no credentials (past it: 429).",
        ge=1,
    )
    per_host: int = flat(
        "fetch_per_host",
        4,
        "Picture downloads from one picture host at once through the search page, whoever asks "
        "(past it: 503), so one slow host cannot take every download slot. A host is its address however "
        "spelt (127.1 and localhost are 127.0.0.1; IPv6 by /64) or its registrable domain (a.example.com "
        "and b.example.com are example.com).",
        ge=1,
    )

    @field_validator("allow_hosts")
    @classmethod
    def _check_allow_hosts(cls, value: str) -> str:
        for host in split(value):
            if not NAME_PATTERN.fullmatch(host) and not is_ip(host):
                raise ValueError("not host names")
        return value

    @property
    def hosts(self) -> frozenset[str]:
        """Host names picUrl may use (subdomains included); empty: any public host."""
        return frozenset(h.lower() for h in split(self.allow_hosts))

    def policy(self) -> FetchPolicy:
        """The limits of one download."""
        return FetchPolicy(
            connect_timeout=self.connect_timeout,
            total_timeout=self.read_timeout,
            max_bytes=self.max_bytes,
            max_redirects=self.max_redirects,
            allow_loopback=self.allow_loopback,
            allowed_hosts=self.hosts,
        )


class Decode(Group):
    """Turning bytes into pixels: the pixel limit and the memory decodes may hold."""

    memory_mb: int = flat(
        "decode_memory_mb",
        512,
        "Memory, in MB, that picture decodes may hold at once; a decode that would pass it waits "
        "its turn (up to TONGKUAN_DECODE_WAIT seconds, then 503), so tiny files declaring huge pictures "
        "cannot exhaust memory.",
        ge=64,
    )
    wait: float = flat("decode_wait", 10.0, "Seconds a decode may wait for memory before a 503.", gt=0)
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, gt=0, description="Largest image, in pixels, ever decoded.")
