"""The one line a setting's wrong value is refused with: where the value came from, the
value (unless it is secret), what the setting may be and what leaving it empty means."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any, get_args

from annotated_types import Ge, Gt, Le, MinLen
from pydantic import ValidationError

from tongkuan.config.groups import GROUPS
from tongkuan.config.settings import FIELDS, SECRET_SETTINGS, environment, toml_path
from tongkuan.domain.models import SHIPPED_MODEL_NAMES

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
    + ", a tuned model's name (tuned-...), the name of a model in the data directory (tongkuan models list)"
    " or the path of an existing model.json",
    "public_url": "an http:// or https:// URL with a host name",
    "fetch_allow_hosts": "host names or IP addresses separated by commas",
}


def _either(choices: list[str]) -> str:
    return choices[0] if len(choices) == 1 else f"{', '.join(choices[:-1])} or {choices[-1]}"


def setting_rule(name: str) -> str:
    """What setting `name` may be, in words ("a whole number, at least 1")."""
    if name in _RULES:
        return _RULES[name]
    field = FIELDS[name]
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


def default_text(name: str) -> str:
    """The default of setting `name` as one would write it, or "" where it is empty or None."""
    default = FIELDS[name].default
    if default is None or default == "":
        return ""
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, Enum):
        return str(default.value)
    if isinstance(default, float):
        return f"{default:g}"
    return str(default)


def _setting_named(location: tuple[int | str, ...]) -> str:
    """The flat name of the setting an error's location points at."""
    if len(location) >= 2 and location[0] in GROUPS:
        return str(location[1])
    return str(location[0]) if location else ""


def refusal(name: str, value: Any, given: Mapping[str, Any]) -> str:
    """The line that refuses `value` for setting `name`, saying where the value came from."""
    shown = " (value not shown)" if name in SECRET_SETTINGS else f"={value!r}"
    if name in given:
        where = f"{name}{shown}"
    elif environment(name) is not None:
        where = f"TONGKUAN_{name.upper()}{shown}"
    else:
        where = f"{name}{shown} in {toml_path(given)}"
    default = default_text(name)
    unset = f"the default, {default}" if default else "the default"
    return f"{where} is not valid: use {setting_rule(name)} (empty or unset: {unset})"


def describe_errors(exc: ValidationError, given: Mapping[str, Any]) -> str:
    """One line for every setting `exc` refuses: where its value came from (an argument, its
    environment variable or `tongkuan.toml`), the value (unless secret), what it may be and
    what an empty value means."""
    described = []
    for error in exc.errors():
        name = _setting_named(error["loc"])
        if name not in FIELDS:
            described.append(error["msg"])
            continue
        value = str(error["input"]) if hasattr(error["input"], "__fspath__") else error["input"]
        described.append(refusal(name, value, given))
    return "; ".join(described)
