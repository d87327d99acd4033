"""`Settings`: the data directory and the groups of `tongkuan.config.groups` (`GROUPS`), read once at
the edge (CLI or `create_app`) and passed down.

Every setting can be set by an environment variable `TONGKUAN_<NAME>` (upper case) or in
`tongkuan.toml` inside the data directory, by its flat name (`fetch_max_bytes = 4194304`);
the environment wins. An empty variable counts as unset: the setting keeps its default (or
its value in `tongkuan.toml`). A value a setting cannot take is a `ConfigError` of one line
naming the setting, the value (unless it is a secret) and what the setting may be. Paths are
made absolute when they are read, so nothing later depends on the working directory; a
folder setting must name a folder, or a place where one can be made, and a model a shipped
or tuned model or an existing `model.json`.
"""

from __future__ import annotations

import difflib
import logging
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from tongkuan.config.base import Group
from tongkuan.config.groups import GROUPS, Backends, Index, Models, Search
from tongkuan.config.serving import Access, Decode, Fetch, Http, Limits
from tongkuan.domain.models import is_library_name
from tongkuan.errors import ConfigError

PREFIX = "TONGKUAN_"
logger = logging.getLogger(__name__)


class Settings(BaseSettings):
    """All of tongkuan's configuration: where the data lives, and one group per concern."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    data_dir: Path = Field(Path("data"), description="Where the catalog, index, images and models live.")
    image_dir: Path | None = Field(
        None,
        description="Where pictures (catalog and uploaded) are stored; replicas must share it "
        "(a network file system). Unset: DATA_DIR/images.",
    )
    access: Access = Access()
    http: Http = Http()
    limits: Limits = Limits()
    fetch: Fetch = Fetch()
    decode: Decode = Decode()
    models: Models = Models()
    search: Search = Search()
    index: Index = Index()
    backends: Backends = Backends()

    def __init__(self, **values: Any) -> None:
        """Read the settings: `values` (flat names, or whole groups) first, then the
        environment, then `tongkuan.toml` in the data directory. Raises `ConfigError` (one
        line) for a value a setting cannot take and for a `tongkuan.toml` that is not TOML."""
        try:
            super().__init__(**values)
        except ValidationError as exc:
            from tongkuan.config.messages import describe_errors

            raise ConfigError(describe_errors(exc, values)) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{toml_path(values)} is not valid TOML: {exc}") from None
        model = self.models.model
        if model and is_library_name(model) and not (self.data_dir / "models" / model / "record.json").is_file():
            from tongkuan.config.messages import refusal

            raise ConfigError(refusal("model", model, values))

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        environment = _Environment(settings_cls)
        return (init_settings, environment, _DataDirToml(settings_cls, init_settings, environment))

    @model_validator(mode="before")
    @classmethod
    def _into_groups(cls, values: Any) -> Any:
        """Flat names (as every source gives them) into their groups."""
        if not isinstance(values, Mapping):
            return values
        grouped: dict[str, Any] = {}
        for key, value in values.items():
            group = GROUP_OF.get(key)
            if group is None:
                grouped[key] = value
                continue
            into = grouped.setdefault(group, {})
            if isinstance(into, Group):
                into = grouped[group] = into.model_dump()
            if isinstance(into, dict):
                into[key] = value
        return grouped

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

    @property
    def images_root(self) -> Path:
        """Where pictures are stored."""
        return self.image_dir if self.image_dir is not None else Path(self.data_dir) / "images"

    def value(self, name: str) -> Any:
        """The value of the setting with this flat name (`fetch_max_bytes`)."""
        if name not in FIELDS:
            raise ValueError(f"no setting named {name!r}")
        group = GROUP_OF.get(name)
        return getattr(self, name) if group is None else getattr(getattr(self, group), FIELD_NAME[name])

    def changed(self, **values: Any) -> Settings:
        """These settings with some changed, by flat name (`model=...`, `catalog_url=...`),
        unchecked: for values already checked or chosen by the service itself."""
        groups: dict[str, dict[str, Any]] = {}
        top: dict[str, Any] = {}
        for name, value in values.items():
            if name not in FIELDS:
                raise ValueError(f"no setting named {name!r}")
            group = GROUP_OF.get(name)
            if group is None:
                top[name] = value
            else:
                groups.setdefault(group, {})[FIELD_NAME[name]] = value
        update = top | {g: getattr(self, g).model_copy(update=changes) for g, changes in groups.items()}
        return self.model_copy(update=update)


def _flat_fields() -> tuple[dict[str, FieldInfo], dict[str, str], dict[str, str]]:
    fields: dict[str, FieldInfo] = {}
    group_of: dict[str, str] = {}
    field_name: dict[str, str] = {}
    for name, info in Settings.model_fields.items():
        if name not in GROUPS:
            fields[name] = info
    for group, model in GROUPS.items():
        for name, info in model.model_fields.items():
            flat_name = info.validation_alias if isinstance(info.validation_alias, str) else name
            fields[flat_name], group_of[flat_name], field_name[flat_name] = info, group, name
    return fields, group_of, field_name


FIELDS, GROUP_OF, FIELD_NAME = _flat_fields()
"""Every setting by its flat name (its environment variable is `TONGKUAN_<NAME>`), the
group that holds it, and its name there."""

SECRET_SETTINGS = frozenset({"apps", "admin_token", "catalog_url", "milvus_token"})
"""Settings whose values an error message never shows."""


NOT_SETTINGS = frozenset(
    {
        "TONGKUAN_TEST_DATA",  # the tests: where the data sets are
        "TONGKUAN_TEST_CATALOG",  # the tests: a folder that keeps their catalog between runs
        "TONGKUAN_REQUIRE_SERVERS",  # the tests: fail, not skip, without PostgreSQL and Milvus
        "TONGKUAN_REQUIRE_BROWSER",  # the tests: fail, not skip, without Chromium
        "TONGKUAN_SCREENSHOTS",  # the browser tests: where to write the README's screenshots
        "TONGKUAN_MILVUS_ISOLATE",  # tests and benchmarks: the Milvus server they start
        "TONGKUAN_MILVUS_BIN_DIR",  # tests and benchmarks: where that server's files are kept
    }
)
"""`TONGKUAN_` variables that are not settings (the test suite's and the benchmarks' own):
the settings leave them alone and do not warn about them."""

_reported: set[str] = set()  # unknown variables already warned about, so each is named once


class _Environment(PydanticBaseSettingsSource):
    """`TONGKUAN_<NAME>` for every setting, matched ignoring case; empty ones are unset. A
    `TONGKUAN_` variable that names no setting is logged once, with the setting it may mean."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads every setting at once

    def __call__(self) -> dict[str, Any]:
        _warn_unknown_variables()
        return {name: value for name in FIELDS if (value := environment(name)) is not None}


def _warn_unknown_variables() -> None:
    for key in os.environ:
        variable = key.upper()
        if not variable.startswith(PREFIX) or variable in NOT_SETTINGS or key in _reported:
            continue
        name = variable.removeprefix(PREFIX).lower()
        if name in FIELDS:
            continue
        _reported.add(key)
        close = difflib.get_close_matches(name, FIELDS, n=1)
        hint = f"did you mean {PREFIX}{close[0].upper()}?" if close else "the README's Configuration lists the settings"
        logger.warning("%s is not a tongkuan setting and is ignored (%s)", key, hint)


def environment(name: str) -> str | None:
    """The non-empty environment variable of setting `name` (matched ignoring case), or None."""
    variable = f"{PREFIX}{name}".upper()
    return next((value for key, value in os.environ.items() if key.upper() == variable and value), None)


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


def toml_path(values: Mapping[str, Any]) -> Path:
    """The `tongkuan.toml` that `_DataDirToml` reads for these arguments and environment."""
    data_dir = values.get("data_dir") or environment("data_dir") or "data"
    return Path(os.path.abspath(Path(data_dir).expanduser() / "tongkuan.toml"))


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
