"""What every group of settings is built from: the `Group` model, `flat` fields, and the
parsers of the values settings hold (lists, addresses, `key:value` pairs).

A group's fields have short names (`settings.fetch.max_bytes`); each keeps the flat name its
environment variable and `tongkuan.toml` key have always had (`TONGKUAN_FETCH_MAX_BYTES`,
`fetch_max_bytes`), given as the field's alias where it differs. Where a part declares a
default of its own (`FetchPolicy`, `SearchOptions`), the setting reads it from there, so each
default is written once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tongkuan.errors import ConfigError


def flat(name: str, default: Any, description: str, **rules: Any) -> Any:
    """A group's field whose environment variable and TOML key is `name` (`TONGKUAN_<NAME>`)."""
    return Field(default, validation_alias=name, description=description, **rules)


class Group(BaseModel):
    """A group of settings: frozen, built from flat names or its own."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


_NAME = r"[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?"
NAME_PATTERN = re.compile(_NAME, re.IGNORECASE)
# a host name, or *.domain (Starlette's TrustedHostMiddleware takes nothing else), or * alone
HOST_PATTERN = re.compile(rf"\*|(\*\.)?{_NAME}", re.IGNORECASE)


def split(value: str) -> list[str]:
    return [entry.strip() for entry in value.split(",") if entry.strip()]


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
