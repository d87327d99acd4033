"""Parsing DAJI query parameters: each rule in one function, each failure naming its parameter."""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation

from tongkuan.domain.boxes import Box
from tongkuan.domain.categories import Category
from tongkuan.domain.products import ProductFilter, SortOrder, is_web_url
from tongkuan.errors import ParameterError

MAX_PAGE_NO = 499
MAX_PAGE_SIZE = 20
MAX_KEYWORD_PAGE = 10_000
MAX_PARAM_LENGTH = 4096
# Keyword and shop searches cost about in proportion to the words and pairs a keyword yields:
# 4,096 characters cost 50 times a usual query. Product titles are 60 characters at most.
MAX_KEYWORD_LENGTH = 200
FILTER_KEYS = ("price", "userType", "shop", "location")
# ASCII digits only: str.isdigit() also accepts "²" (which int() refuses) and other scripts' digits
_INTEGER = re.compile(r"-?[0-9]{1,9}")
_NATURAL = re.compile(r"[0-9]{1,9}")


def single_values(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Query or form pairs as a dict; a parameter given twice is an error, not a guess."""
    params: dict[str, str] = {}
    for key, value in items:
        if key in params:
            raise ParameterError(f"{key} is given more than once (参数重复)")
        if len(value) > MAX_PARAM_LENGTH and key != "image_base64":
            raise ParameterError(f"{key} is longer than {MAX_PARAM_LENGTH} characters (参数过长)")
        if "\x00" in key or "\x00" in value:  # no text store can hold it (PostgreSQL refuses it)
            raise ParameterError(f"{key!r} must not contain NUL characters (参数含有非法字符)")
        params[key] = value
    return params


def int_in_range(params: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    """An integer from `low` to `high` (ASCII digits, an optional minus); `default` when absent or empty."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    text = raw.strip()
    if not _INTEGER.fullmatch(text):
        raise ParameterError(
            f"{name} must be an integer from {low} to {high}, not {raw!r} ({name} 必须是 {low}–{high} 的整数)"
        )
    value = int(text)
    if not low <= value <= high:
        raise ParameterError(
            f"{name} must be an integer from {low} to {high}, not {value} ({name} 必须是 {low}–{high} 的整数)"
        )
    return value


def boolean(params: dict[str, str], name: str, default: bool) -> bool:
    """true/1 or false/0, in any case; `default` when absent or empty."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise ParameterError(f"{name} must be true or false, not {raw!r} ({name} 必须是 true 或 false)")


def category(params: dict[str, str], name: str = "categoryId") -> Category | None:
    """One of DAJI's category codes; None (predict it) when absent or blank."""
    raw = params.get(name)
    if raw is None or raw.strip() == "":
        return None
    codes = ", ".join(str(int(c)) for c in Category)
    try:
        return Category(int(raw.strip()))
    except ValueError:
        raise ParameterError(f"{name} must be one of {codes}, not {raw!r} ({name} 不是有效的类目)") from None


def region(params: dict[str, str], name: str = "region") -> Box | None:
    """`x1,x2,y1,y2` in pixels (x-min, x-max, y-min, y-max), with x1 < x2 and y1 < y2."""
    raw = params.get(name)
    if raw is None or raw.strip() == "":
        return None
    parts = [p.strip() for p in raw.split(",")]
    rule = (
        f"{name} must be x1,x2,y1,y2: four non-negative integers with x1 < x2 and y1 < y2, "
        f"not {raw!r} ({name} 格式应为 x1,x2,y1,y2)"
    )
    if len(parts) != 4 or not all(_NATURAL.fullmatch(p) for p in parts):
        raise ParameterError(rule)
    x1, x2, y1, y2 = (int(p) for p in parts)
    if x1 >= x2 or y1 >= y2:
        raise ParameterError(rule)
    return Box(x1, x2, y1, y2)


def fit_region(box: Box, width: int, height: int, name: str = "region") -> Box:
    """Clip a region to the image; raise if nothing usable is left."""
    clipped = box.clipped(width, height)
    if clipped.x2 - clipped.x1 < 8 or clipped.y2 - clipped.y1 < 8:
        raise ParameterError(
            f"{name} {box.to_param()} leaves less than 8x8 pixels inside the {width}x{height} image "
            f"({name} 超出图片范围)"
        )
    return clipped


def http_url(value: object, name: str) -> str:
    """`value` if it is an http or https URL; the error names `name`."""
    if not isinstance(value, str) or not is_web_url(value):
        raise ParameterError(f"{name} must be an http or https URL ({name} 必须是 http/https 地址)")
    return value


def required(params: dict[str, str], name: str) -> str:
    """A value that must be given, without surrounding spaces."""
    value = (params.get(name) or "").strip()
    if not value:
        raise ParameterError(f"{name} is required ({name} 不能为空)")
    return value


def words(params: dict[str, str], name: str) -> str:
    """Words to search for: required, at most `MAX_KEYWORD_LENGTH` characters without the
    surrounding spaces."""
    value = required(params, name)
    if len(value) > MAX_KEYWORD_LENGTH:
        raise ParameterError(
            f"{name} must be at most {MAX_KEYWORD_LENGTH} characters, not {len(value)} "
            f"({name} 不能超过 {MAX_KEYWORD_LENGTH} 个字符)"
        )
    return value


MAX_READ_WORDS = 20


def word_list(params: dict[str, str], name: str) -> tuple[str, ...] | None:
    """Comma-separated words (at most `MAX_READ_WORDS`, each within the keyword length);
    None when absent, () when sent empty."""
    raw = params.get(name)
    if raw is None:
        return None
    found = tuple(dict.fromkeys(w.strip() for w in raw.split(",") if w.strip()))
    if len(found) > MAX_READ_WORDS or any(len(w) > MAX_KEYWORD_LENGTH for w in found):
        raise ParameterError(
            f"{name} must be at most {MAX_READ_WORDS} comma-separated words of at most {MAX_KEYWORD_LENGTH} "
            f"characters ({name} 最多 {MAX_READ_WORDS} 个词)"
        )
    return found


def optional(params: dict[str, str], name: str) -> str | None:
    """A value as sent, or None when absent or empty (for values another rule checks later)."""
    return params.get(name) or None


def required_int(params: dict[str, str], name: str, low: int, high: int) -> int:
    """An integer from `low` to `high` that must be given (there is no default to fall back on)."""
    if not params.get(name):
        raise ParameterError(f"{name} is required, from {low} ({name} 不能为空)")
    return int_in_range(params, name, low, low, high)


def required_url(params: dict[str, str], name: str) -> str:
    """An http or https URL that must be given."""
    return http_url(required(params, name), name)


def score(params: dict[str, str], name: str) -> float | None:
    """A similarity threshold from 0 to 1, or None."""
    raw = params.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:  # also false for nan
        raise ParameterError(f"{name} must be a number from 0 to 1, not {raw!r} ({name} 必须是 0–1 之间的数)")
    return value


def sort_order(params: dict[str, str], name: str = "sort") -> SortOrder:
    """A keyword search's order; relevance when absent or blank."""
    raw = (params.get(name) or "").strip()
    if not raw:
        return SortOrder.RELEVANCE
    try:
        return SortOrder(raw)
    except ValueError:
        allowed = ", ".join(o.value for o in SortOrder)
        raise ParameterError(f"{name} must be one of {allowed}, not {raw!r} ({name} 排序方式无效)") from None


def product_filter(params: dict[str, str], name: str = "filter") -> ProductFilter:
    """`price:10-100;userType:1;shop:<exact shop name>;location:<part of provcity>`, any subset.

    A price range may leave either end open (`price:10-`, `price:-100`).
    """
    raw = (params.get(name) or "").strip()
    if not raw:
        return ProductFilter()
    rule = f"{name} must be key:value pairs joined by ';' with keys {', '.join(FILTER_KEYS)} ({name} 格式无效)"
    found: dict[str, str] = {}
    for part in raw.split(";"):
        key, sep, value = part.partition(":")
        key, value = key.strip(), value.strip()
        if not part.strip():
            continue
        if not sep or key not in FILTER_KEYS or not value:
            raise ParameterError(f"{rule}; not {part!r}")
        if key in found:
            raise ParameterError(f"{name} gives {key} more than once ({name} 条件重复)")
        found[key] = value
    low = high = None
    if "price" in found:
        low, high = _price_range(found["price"], name)
    user_type = None
    if "userType" in found:
        if found["userType"] not in ("0", "1"):
            raise ParameterError(f"{name} userType must be 0 (Taobao) or 1 (Tmall) ({name} userType 只能是 0 或 1)")
        user_type = int(found["userType"])
    return ProductFilter(
        min_price=low, max_price=high, user_type=user_type, shop_title=found.get("shop"), location=found.get("location")
    )


def _price_range(text: str, name: str) -> tuple[Decimal | None, Decimal | None]:
    rule = f"{name} price must be LOW-HIGH with non-negative prices, LOW <= HIGH, not {text!r} ({name} 价格区间无效)"
    low_text, sep, high_text = text.partition("-")
    if not sep or not (low_text.strip() or high_text.strip()):
        raise ParameterError(rule)
    try:
        low = Decimal(low_text.strip()) if low_text.strip() else None
        high = Decimal(high_text.strip()) if high_text.strip() else None
    except InvalidOperation:
        raise ParameterError(rule) from None
    for bound in (low, high):
        if bound is not None and (not bound.is_finite() or bound < 0):
            raise ParameterError(rule)
    if low is not None and high is not None and low > high:
        raise ParameterError(rule)
    return low, high
