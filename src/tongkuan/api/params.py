"""Parsing DAJI query parameters: each rule in one function, each failure naming its parameter."""

from __future__ import annotations

from collections.abc import Iterable

from tongkuan.api.auth import ParameterError
from tongkuan.vision.categories import Category
from tongkuan.vision.detect import Box

MAX_PAGE_NO = 499
MAX_PAGE_SIZE = 20
MAX_PARAM_LENGTH = 4096


def single_values(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Query or form pairs as a dict; a parameter given twice is an error, not a guess."""
    params: dict[str, str] = {}
    for key, value in items:
        if key in params:
            raise ParameterError(f"{key} is given more than once (参数重复)")
        if len(value) > MAX_PARAM_LENGTH and key != "image_base64":
            raise ParameterError(f"{key} is longer than {MAX_PARAM_LENGTH} characters (参数过长)")
        params[key] = value
    return params


def int_in_range(params: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    text = raw.strip()
    if not (text.isdigit() or (text.startswith("-") and text[1:].isdigit())):
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
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        raise ParameterError(rule)
    x1, x2, y1, y2 = (int(p) for p in parts)
    if x1 >= x2 or y1 >= y2:
        raise ParameterError(rule)
    return Box(x1, x2, y1, y2)


def fit_region(box: Box, width: int, height: int, name: str = "region") -> Box:
    """Clip a region to the image; raise if nothing usable is left."""
    clipped = Box(min(box.x1, width), min(box.x2, width), min(box.y1, height), min(box.y2, height))
    if clipped.x2 - clipped.x1 < 8 or clipped.y2 - clipped.y1 < 8:
        raise ParameterError(
            f"{name} {box.to_param()} leaves less than 8x8 pixels inside the {width}x{height} image "
            f"({name} 超出图片范围)"
        )
    return clipped
