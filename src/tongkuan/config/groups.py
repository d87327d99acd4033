"""The groups of settings, one per concern, each read by the parts it configures.

A group's fields have short names (`settings.fetch.max_bytes`); each keeps the flat name its
environment variable and `tongkuan.toml` key have always had (`TONGKUAN_FETCH_MAX_BYTES`,
`fetch_max_bytes`), given as the field's alias where it differs. Where a part declares a
default of its own (`FetchPolicy`, `SearchOptions`), the setting reads it from there, so each
default is written once.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tongkuan.domain.indexes import IndexKind
from tongkuan.domain.models import DEFAULT_MODEL, is_library_name, is_shipped, is_tuned
from tongkuan.errors import ConfigError
from tongkuan.images.fetch import FetchPolicy
from tongkuan.search.query import SearchOptions

DEFAULT_UPLOAD_MAX_BYTES = 3 * 1024 * 1024
DEFAULT_MAX_PIXELS = 4096 * 4096  # a 4K screenshot or a 12 MP phone photo in any format
LOOPBACK_HOSTS = ("127.0.0.1", "[::1]", "localhost")
"""Host names the service always answers to (IPv6 literals in brackets, as in a Host header)."""


def flat(name: str, default: Any, description: str, **rules: Any) -> Any:
    """A group's field whose environment variable and TOML key is `name` (`TONGKUAN_<NAME>`)."""
    return Field(default, validation_alias=name, description=description, **rules)


class Group(BaseModel):
    """A group of settings: frozen, built from flat names or its own."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


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
            if not _HOST_PATTERN.fullmatch(host) and not is_ip(host.strip("[]")):
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
            if not _NAME_PATTERN.fullmatch(host) and not is_ip(host):
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


class Models(Group):
    """The model and how it runs."""

    model: str | None = Field(
        None,
        description="A shipped model (efficientnet-lite0, efficientnet-lite2), a tuned model's name "
        "(tuned-..., stored in the catalog), an imported or pulled model's name (tongkuan models list) "
        "or a path to a model.json; "
        f"unset: the model the data directory was built with, else {DEFAULT_MODEL}.",
    )
    threads: int = Field(2, ge=1, description="ONNX Runtime threads per inference.")
    inference_slots: int = Field(1, ge=1, description="Inferences run at once; the rest wait their turn.")
    search_batch: int = Field(
        4,
        ge=1,
        le=64,
        description="Searches' pictures that wait for the model at the same time run in one pass, up to "
        "this many (1: each alone).",
    )
    read_text: Literal["auto", "on", "off"] = Field(
        "off",
        description="Read the text on pictures (PP-OCRv5) and rank by it: auto where a catalog's first 64 "
        "pictures show words in a quarter of them or more, on, or off.",
    )

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: str | None) -> str | None:
        import os
        from pathlib import Path

        if not value or is_shipped(value) or is_tuned(value) or is_library_name(value):
            return value or None  # an imported model's name is checked against the data directory
        described = Path(value).expanduser()
        if described.suffix == ".json" and described.is_file():
            return os.path.abspath(described)  # like the folders: independent of the working directory
        raise ValueError("not a model")


_SEARCH = SearchOptions()


class Search(Group):
    """How a query is answered (`tongkuan.search.query.SearchOptions`, field for field)."""

    prior_weight: float = flat(
        "category_prior_weight",
        _SEARCH.prior_weight,
        "Weight of the classifier prior against the neighbour vote.",
        ge=0.0,
        le=1.0,
    )
    neighbours: int = flat("category_neighbours", _SEARCH.neighbours, "Catalog images that vote on the category.", ge=1)
    images_per_product: int = Field(
        _SEARCH.images_per_product,
        ge=1,
        description="A product scores the mean similarity of this many of its best pictures.",
    )
    filter_predicted_category: bool = Field(
        _SEARCH.filter_predicted_category,
        description="Search only within the predicted category when categoryId is not given.",
    )
    find_insets: bool = Field(
        _SEARCH.find_insets,
        description="In a query, a picture shown inside the picture (a screenshot) is its main subject.",
    )
    cached_pictures: int = flat(
        "query_cache",
        _SEARCH.cached_pictures,
        "Query pictures whose description (subjects, category prior, embedding) is kept, by "
        "content: the next page of a search by the same picture skips the model. About 10 kB each; 0: none.",
        ge=0,
    )

    def options(self) -> SearchOptions:
        return SearchOptions(**self.model_dump())


class Index(Group):
    """The embedded vector index (faiss); Milvus has its own in `Backends`."""

    kind: IndexKind = flat(
        "index_kind",
        IndexKind.HNSW_SQ8,
        "Vector index: hnsw-sq8 (HNSW over 8-bit codes, exact scan below 10k pictures), "
        "hnsw (HNSW over float32) or flat (exact scan).",
    )
    hnsw_m: int = Field(32, ge=4, le=128, description="HNSW links per node: more is more exact and larger.")
    hnsw_ef_search: int = Field(128, ge=16, description="HNSW search breadth: higher is slower and more exact.")


class Backends(Group):
    """The server stores many replicas share: PostgreSQL for the catalog, Milvus for vectors."""

    catalog_url: str | None = Field(
        None,
        description="PostgreSQL URL (postgresql://user:password@host:port/db) for a catalog shared by "
        "many replicas; unset: the embedded SQLite catalog in the data directory.",
    )
    catalog_pool_size: int = Field(8, ge=1, description="PostgreSQL connections per process.")
    vectors_url: str | None = Field(
        None,
        description="Milvus address (milvus://host:19530[/collection-prefix]) for vectors shared by "
        "many replicas; unset: the embedded faiss index.",
    )
    milvus_token: str = Field("", description='Milvus credentials ("user:password" or an API key).')
    milvus_consistency: str = Field(
        "Session",
        description="Milvus read consistency: Session (every acknowledged write is seen by every replica, "
        "waiting only while Milvus applies it), Strong (also waits for a fresh timestamp, ~200 ms), "
        "Bounded or Eventually (never wait; may miss the last seconds of writes).",
    )
    timeout_s: float = flat(
        "backend_timeout_s",
        5.0,
        "Deadline in seconds of every call to PostgreSQL and Milvus (connecting, waiting for a "
        "pooled connection, each statement or request); past it the request answers 503.",
        gt=0,
    )
    import_job_lease_s: float = Field(
        30.0,
        gt=0,
        description="Seconds an import job stays with the process running it without word from it; "
        "after that, another process sharing the catalog takes the job over.",
    )

    @field_validator("catalog_url")
    @classmethod
    def _check_catalog_url(cls, value: str | None) -> str | None:
        value = lower_scheme(value)
        if value and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("not a postgresql:// URL")
        return value or None

    @field_validator("vectors_url")
    @classmethod
    def _check_vectors_url(cls, value: str | None) -> str | None:
        value = lower_scheme(value)
        if value and not value.startswith(("milvus://", "milvus+https://", "http://", "https://")):
            raise ValueError("not a milvus:// URL")
        return value or None

    @field_validator("milvus_consistency")
    @classmethod
    def _check_consistency(cls, value: str) -> str:
        if value not in ("Session", "Strong", "Bounded", "Eventually"):
            raise ValueError("not a Milvus consistency level")
        return value


GROUPS: dict[str, type[Group]] = {
    "access": Access,
    "http": Http,
    "limits": Limits,
    "fetch": Fetch,
    "decode": Decode,
    "models": Models,
    "search": Search,
    "index": Index,
    "backends": Backends,
}
"""Each group under the name `Settings` holds it by, in the order the README lists them."""


_NAME = r"[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?"
_NAME_PATTERN = re.compile(_NAME, re.IGNORECASE)
# a host name, or *.domain (Starlette's TrustedHostMiddleware takes nothing else), or * alone
_HOST_PATTERN = re.compile(rf"\*|(\*\.)?{_NAME}", re.IGNORECASE)


def split(value: str) -> list[str]:
    return [entry.strip() for entry in value.split(",") if entry.strip()]


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def lower_scheme(url: str | None) -> str | None:
    """`url` with its scheme in lower case (schemes are case-insensitive; libpq's is not)."""
    if not url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme.lower()}://{rest}"


def _pairs(value: str, variable: str, shape: str) -> Iterator[tuple[str, str, str]]:
    """(key, value, entry) for each `key:value` entry of a comma-separated list; the key is
    everything before the first colon (secrets may hold colons)."""
    for entry in (e.strip() for e in value.split(",")):
        if not entry:
            continue
        key, sep, rest = entry.partition(":")
        if not sep or not key or not rest:
            raise ConfigError(f"{variable} entry {entry!r} is not {shape}")
        yield key, rest, entry


def parse_apps(value: str) -> dict[str, str]:
    """Parse `key:secret,key2:secret2`; raise `ConfigError` naming the bad entry."""
    return {key: secret for key, secret, _ in _pairs(value, "TONGKUAN_APPS", "appKey:appSecret")}


def parse_rate_limits(value: str) -> dict[str, float]:
    """Parse `key:qps,key2:qps`; raise `ConfigError` naming the bad entry."""
    limits: dict[str, float] = {}
    for key, qps, entry in _pairs(value, "TONGKUAN_RATE_LIMITS", "appKey:qps"):
        try:
            limits[key] = float(qps)
        except ValueError:
            raise ConfigError(f"TONGKUAN_RATE_LIMITS entry {entry!r} is not appKey:qps") from None
        if limits[key] < 0:
            raise ConfigError(f"TONGKUAN_RATE_LIMITS entry {entry!r} is not appKey:qps")
    return limits
