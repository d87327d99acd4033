"""Settings, read once at the edge (CLI or `create_app`) and passed down.

Every field can be set by an environment variable `TONGKUAN_<FIELD>` (upper case) or in
`tongkuan.toml` inside the data directory; the environment wins. An empty variable counts
as unset: the setting keeps its default (or its value in `tongkuan.toml`). A value a setting
cannot take is a `ConfigError` of one line naming the setting, the value (unless it is a
secret) and what the setting may be. Paths are made absolute when they are read, so nothing
later depends on the working directory; a folder setting must name a folder, or a place where
one can be made, and a model a shipped or tuned model or an existing `model.json`.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from enum import Enum
from pathlib import Path
from typing import Any, get_args
from urllib.parse import urlsplit

from annotated_types import Ge, Gt, Le, MinLen
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from tongkuan.domain.categories import PRIOR_WEIGHT, VOTERS
from tongkuan.domain.indexes import IndexKind
from tongkuan.domain.models import DEFAULT_MODEL, SHIPPED_MODEL_NAMES, is_shipped, is_tuned
from tongkuan.errors import ConfigError

DEFAULT_FETCH_MAX_BYTES = 4 * 1024 * 1024
DEFAULT_UPLOAD_MAX_BYTES = 3 * 1024 * 1024
DEFAULT_MAX_PIXELS = 4096 * 4096  # a 4K screenshot or a 12 MP phone photo in any format
LOOPBACK_HOSTS = ("127.0.0.1", "[::1]", "localhost")
"""Host names the service always answers to (IPv6 literals in brackets, as in a Host header)."""


SECRET_SETTINGS = frozenset({"apps", "admin_token", "catalog_url", "milvus_token"})
"""Settings whose values an error message never shows."""


class Settings(BaseSettings):
    """All of tongkuan's configuration."""

    model_config = SettingsConfigDict(env_prefix="TONGKUAN_", extra="ignore", env_ignore_empty=True)

    data_dir: Path = Field(Path("data"), description="Where the catalog, index, images and models live.")
    apps: str = Field(
        "",
        description='DAJI applications as "appKey:appSecret,appKey2:appSecret2". No apps: every request is refused.',
    )
    allow_app_secret: bool = Field(
        True,
        description="Accept the plain `appSecret` parameter (DAJI's testing mode); turn off in production.",
    )
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
        "127.0.0.1",
        description="Comma-separated proxy addresses (or networks) whose X-Forwarded-For and "
        "X-Forwarded-Proto are believed, so limits key on the real client; * trusts any peer, none no one.",
    )
    api_docs: bool = Field(
        False,
        description="Serve the interactive API docs at /docs and /redoc; they load scripts from a CDN "
        "into this service's origin. /openapi.json is served either way.",
    )
    model: str | None = Field(
        None,
        description="A shipped model (efficientnet-lite0, efficientnet-lite2), a tuned model's name "
        "(tuned-..., stored in the catalog) or a path to a model.json; "
        f"unset: the model the data directory was built with, else {DEFAULT_MODEL}.",
    )
    threads: int = Field(2, ge=1, description="ONNX Runtime threads per inference.")
    inference_slots: int = Field(1, ge=1, description="Inferences run at once; the rest wait their turn.")
    category_prior_weight: float = Field(
        PRIOR_WEIGHT, ge=0.0, le=1.0, description="Weight of the classifier prior against the neighbour vote."
    )
    category_neighbours: int = Field(VOTERS, ge=1, description="Catalog images that vote on the category.")
    images_per_product: int = Field(
        3, ge=1, description="A product scores the mean similarity of this many of its best pictures."
    )
    filter_predicted_category: bool = Field(
        False, description="Search only within the predicted category when categoryId is not given."
    )
    find_insets: bool = Field(
        True, description="In a query, a picture shown inside the picture (a screenshot) is its main subject."
    )
    query_cache: int = Field(
        1000,
        ge=0,
        description="Query pictures whose description (subjects, category prior, embedding) is kept, by "
        "content: the next page of a search by the same picture skips the model. About 10 kB each; 0: none.",
    )
    index_kind: IndexKind = Field(
        IndexKind.HNSW_SQ8,
        description="Vector index: hnsw-sq8 (HNSW over 8-bit codes, exact scan below 10k pictures), "
        "hnsw (HNSW over float32) or flat (exact scan).",
    )
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
    backend_timeout_s: float = Field(
        5.0,
        gt=0,
        description="Deadline in seconds of every call to PostgreSQL and Milvus (connecting, waiting for a "
        "pooled connection, each statement or request); past it the request answers 503.",
    )
    import_job_lease_s: float = Field(
        30.0,
        gt=0,
        description="Seconds an import job stays with the process running it without word from it; "
        "after that, another process sharing the catalog takes the job over.",
    )
    image_dir: Path | None = Field(
        None,
        description="Where pictures (catalog and uploaded) are stored; replicas must share it "
        "(a network file system). Unset: DATA_DIR/images.",
    )
    hnsw_m: int = Field(32, ge=4, le=128, description="HNSW links per node: more is more exact and larger.")
    hnsw_ef_search: int = Field(128, ge=16, description="HNSW search breadth: higher is slower and more exact.")
    allow_loopback_fetch: bool = Field(
        False, description="Let picUrl reach loopback addresses (for local testing only)."
    )
    fetch_allow_hosts: str = Field(
        "", description="Comma-separated host names picUrl may use; empty allows any public host."
    )
    fetch_connect_timeout: float = Field(3.0, gt=0, description="Seconds to connect to a picUrl host.")
    fetch_read_timeout: float = Field(10.0, gt=0, description="Seconds for the whole picUrl download.")
    fetch_max_bytes: int = Field(DEFAULT_FETCH_MAX_BYTES, gt=0, description="Largest picUrl body accepted.")
    fetch_max_redirects: int = Field(3, ge=0, description="Redirects followed for one picUrl.")
    fetch_concurrency: int = Field(
        16,
        ge=1,
        description="Query picture downloads (picUrl, the page's url) running at once; past it a request "
        "waits up to a second for a slot, then answers 503, so slow picture hosts never hold the threads "
        "searches need.",
    )
    fetch_per_client: int = Field(
        2,
        ge=1,
        description="Picture downloads one client address may have running at once through the search page, "
        "which needs no credentials (past it: 429).",
    )
    fetch_per_host: int = Field(
        4,
        ge=1,
        description="Picture downloads from one picture host at once through the search page, whoever asks "
        "(past it: 503), so one slow host cannot take every download slot.",
    )
    decode_memory_mb: int = Field(
        512,
        ge=64,
        description="Memory, in MB, that picture decodes may hold at once; a decode that would pass it waits "
        "its turn (up to TONGKUAN_DECODE_WAIT seconds, then 503), so tiny files declaring huge pictures "
        "cannot exhaust memory.",
    )
    decode_wait: float = Field(10.0, gt=0, description="Seconds a decode may wait for memory before a 503.")
    rate_limit_qps: float = Field(
        5.0, ge=0, description="Requests per second per appKey (bursts of twice that); 0: unlimited."
    )
    rate_limits: str = Field("", description='Per-app overrides as "appKey:qps,appKey2:qps".')
    max_body_bytes: int = Field(5 * 1024 * 1024, gt=0, description="Largest request body on any DAJI route.")
    web_ui: bool = Field(True, description="Serve the search page at / (and its same-origin API under /web/api).")
    web_rate_limit_qps: float = Field(
        2.0,
        ge=0,
        description="Search-page requests per second per client address (bursts of twice that); 0: unlimited.",
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
    admin_token: str | None = Field(
        None,
        min_length=16,
        description="Bearer token of the catalog admin API (/admin/...), at least 16 characters; "
        "unset: the admin API is off. Never a DAJI appKey or appSecret.",
    )
    admin_max_body_bytes: int = Field(
        512 * 1024 * 1024, gt=0, description="Largest request body on the admin API (imports, product pictures)."
    )
    metrics: bool = Field(
        False,
        description="Serve Prometheus metrics at /metrics (requests, search stage latencies, catalog and "
        "index sizes, rate limiting, the inference queue); unauthenticated, so keep it off public interfaces.",
    )
    upload_max_bytes: int = Field(DEFAULT_UPLOAD_MAX_BYTES, gt=0, description="Largest uploaded image.")
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, gt=0, description="Largest image, in pixels, ever decoded.")

    def __init__(self, **values: Any) -> None:
        """Read the settings: `values` first, then the environment, then `tongkuan.toml` in
        the data directory. Raises `ConfigError` (one line) for a value a setting cannot take
        and for a `tongkuan.toml` that is not TOML."""
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError(_describe_errors(exc, values)) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{_toml_path(values)} is not valid TOML: {exc}") from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _DataDirToml(settings_cls, init_settings, env_settings))

    @field_validator("data_dir", "image_dir")
    @classmethod
    def _check_folder(cls, value: Path | None) -> Path | None:
        # read once against the working directory of the moment: a process that changes
        # directory later (or a path joined to another) still finds the same folders
        if value is None:
            return None
        folder = Path(os.path.abspath(value.expanduser()))
        if not _can_be_folder(folder):
            raise ValueError("not a folder")
        return folder

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: str | None) -> str | None:
        if not value or is_shipped(value) or is_tuned(value):
            return value or None
        described = Path(value).expanduser()
        if described.suffix == ".json" and described.is_file():
            return os.path.abspath(described)  # like the folders: independent of the working directory
        raise ValueError("not a model")

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str | None) -> str | None:
        value = _lower_scheme(value)
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

    @field_validator("fetch_allow_hosts")
    @classmethod
    def _check_fetch_allow_hosts(cls, value: str) -> str:
        for host in _split(value):
            if not _NAME_PATTERN.fullmatch(host) and not _is_ip(host):
                raise ValueError("not host names")
        return value

    # The checks below raise ValueError, which pydantic gathers with its own errors; what
    # each setting may be is said once, in _RULES.

    @field_validator("apps")
    @classmethod
    def _check_apps(cls, value: str) -> str:
        try:
            parse_apps(value)
        except ConfigError:
            raise ValueError("not appKey:appSecret pairs") from None
        return value

    @field_validator("catalog_url")
    @classmethod
    def _check_catalog_url(cls, value: str | None) -> str | None:
        value = _lower_scheme(value)
        if value and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("not a postgresql:// URL")
        return value or None

    @field_validator("vectors_url")
    @classmethod
    def _check_vectors_url(cls, value: str | None) -> str | None:
        value = _lower_scheme(value)
        if value and not value.startswith(("milvus://", "milvus+https://", "http://", "https://")):
            raise ValueError("not a milvus:// URL")
        return value or None

    @field_validator("allowed_hosts")
    @classmethod
    def _check_allowed_hosts(cls, value: str) -> str:
        for host in _split(value):
            if not _HOST_PATTERN.fullmatch(host) and not _is_ip(host.strip("[]")):
                raise ValueError("not host names")
        return value

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _check_forwarded_allow_ips(cls, value: str) -> str:
        if value.strip().lower() in ("*", "none"):
            return value
        for entry in _split(value):
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError("not addresses") from None
        return value

    @field_validator("milvus_consistency")
    @classmethod
    def _check_consistency(cls, value: str) -> str:
        if value not in ("Session", "Strong", "Bounded", "Eventually"):
            raise ValueError("not a Milvus consistency level")
        return value

    @property
    def images_root(self) -> Path:
        """Where pictures are stored."""
        return self.image_dir if self.image_dir is not None else Path(self.data_dir) / "images"

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

    @property
    def app_secrets(self) -> dict[str, str]:
        """appKey -> appSecret."""
        return parse_apps(self.apps)

    @property
    def fetch_hosts(self) -> frozenset[str]:
        """Host names picUrl may use (subdomains included); empty: any public host."""
        return frozenset(h.lower() for h in _split(self.fetch_allow_hosts))

    @property
    def served_hosts(self) -> list[str]:
        """Host names (or `*.domain` patterns, or `*`) a request's Host header may name:
        loopback, the host of `public_url`, and `allowed_hosts`."""
        hosts = list(LOOPBACK_HOSTS)
        public = urlsplit(self.public_url).hostname if self.public_url else None
        for host in ([public] if public else []) + _split(self.allowed_hosts):
            host = host.lower()
            if _is_ip(host) and ":" in host:
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
        return value if value == "*" else ",".join(_split(value))


_NAME = r"[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?"
_NAME_PATTERN = re.compile(_NAME, re.IGNORECASE)
# a host name, or *.domain (Starlette's TrustedHostMiddleware takes nothing else), or * alone
_HOST_PATTERN = re.compile(rf"\*|(\*\.)?{_NAME}", re.IGNORECASE)


def _split(value: str) -> list[str]:
    return [entry.strip() for entry in value.split(",") if entry.strip()]


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _can_be_folder(path: Path) -> bool:
    """Whether `path` is a folder, or one can be made there: its nearest existing ancestor
    is a folder this process may write into. Looks only; makes nothing."""
    try:
        existing = path
        while not os.path.lexists(existing):  # a dangling link counts: no folder can be made there
            if existing.parent == existing:
                return False
            existing = existing.parent
        if existing == path:
            return path.is_dir()
        return existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)
    except OSError:  # a path that cannot even be looked at cannot hold the data either
        return False


def _lower_scheme(url: str | None) -> str | None:
    """`url` with its scheme in lower case (schemes are case-insensitive; libpq's is not)."""
    if not url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme.lower()}://{rest}"


class _DataDirToml(TomlConfigSettingsSource):
    """`tongkuan.toml` inside whichever data directory the other sources name."""

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        init: PydanticBaseSettingsSource,
        env: PydanticBaseSettingsSource,
    ) -> None:
        data_dir = init().get("data_dir") or env().get("data_dir") or "data"
        super().__init__(settings_cls, toml_file=Path(data_dir) / "tongkuan.toml")


def _toml_path(values: Mapping[str, Any]) -> Path:
    """The `tongkuan.toml` that `_DataDirToml` reads for these arguments and environment."""
    data_dir = values.get("data_dir") or _environment("data_dir") or "data"
    return Path(os.path.abspath(Path(data_dir).expanduser() / "tongkuan.toml"))


def _environment(name: str) -> str | None:
    """The non-empty environment variable of setting `name` (matched as pydantic-settings
    matches them, ignoring case), or None."""
    variable = f"TONGKUAN_{name}".upper()
    return next((value for key, value in os.environ.items() if key.upper() == variable and value), None)


# What the settings with a check of their own may be (the rest follow from their types).
_RULES = {
    "apps": "appKey:appSecret pairs separated by commas",
    "rate_limits": "appKey:qps pairs separated by commas, qps a number, at least 0",
    "catalog_url": "a postgresql:// URL",
    "vectors_url": "a milvus://HOST:PORT URL",
    "milvus_consistency": "Session, Strong, Bounded or Eventually",
    "allowed_hosts": "host names or *.domain patterns separated by commas, or * for any host",
    "forwarded_allow_ips": "IP addresses or networks separated by commas, * for any, or none",
    "data_dir": "a folder that exists or can be created",
    "image_dir": "a folder that exists or can be created",
    "model": ", ".join(SHIPPED_MODEL_NAMES)
    + ", a tuned model's name (tuned-...) or the path of an existing model.json",
    "public_url": "an http:// or https:// URL with a host name",
    "fetch_allow_hosts": "host names or IP addresses separated by commas",
}


def _either(choices: list[str]) -> str:
    return choices[0] if len(choices) == 1 else f"{', '.join(choices[:-1])} or {choices[-1]}"


def _setting_rule(name: str) -> str:
    """What setting `name` may be, in words ("a whole number, at least 1")."""
    if name in _RULES:
        return _RULES[name]
    field = Settings.model_fields[name]
    kind = next(k for k in get_args(field.annotation) or (field.annotation,) if k is not type(None))
    if kind is bool:
        return "true or false"
    if isinstance(kind, type) and issubclass(kind, Enum):
        return _either([str(member.value) for member in kind])
    limits = []
    for rule in field.metadata:
        if isinstance(rule, Ge):
            limits.append(f"at least {rule.ge:g}")
        elif isinstance(rule, Gt):
            limits.append(f"more than {rule.gt:g}")
        elif isinstance(rule, Le):
            limits.append(f"at most {rule.le:g}")
        elif isinstance(rule, MinLen):
            limits.append(f"at least {rule.min_length} characters")
    described = {int: "a whole number", float: "a number"}.get(kind)
    if described is None:
        return " and ".join(limits) or "text"
    return ", ".join([described, " and ".join(limits)]) if limits else described


def _default(name: str) -> str:
    """The default of setting `name` as one would write it, or "" where it is empty or None."""
    default = Settings.model_fields[name].default
    if default is None or default == "":
        return ""
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, Enum):
        return str(default.value)
    if isinstance(default, float):
        return f"{default:g}"
    return str(default)


def _describe_errors(exc: ValidationError, given: Mapping[str, Any]) -> str:
    """One line for every setting `exc` refuses: where its value came from (an argument, its
    environment variable or `tongkuan.toml`), the value (unless secret), what it may be and
    what an empty value means."""
    described = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else ""
        if name not in Settings.model_fields:
            described.append(error["msg"])
            continue
        value = str(error["input"]) if isinstance(error["input"], Path) else error["input"]
        shown = " (value not shown)" if name in SECRET_SETTINGS else f"={value!r}"
        if name in given:
            where = f"{name}{shown}"
        elif _environment(name) is not None:
            where = f"TONGKUAN_{name.upper()}{shown}"
        else:
            where = f"{name}{shown} in {_toml_path(given)}"
        default = _default(name)
        described.append(
            f"{where} is not valid: use {_setting_rule(name)} "
            f"(empty or unset: the default{', ' + default if default else ''})"
        )
    return "; ".join(described)


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
