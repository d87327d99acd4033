"""Check sets: JSONL, one labelled query picture a line.

    {"picture": "photos/1.jpg", "itemIds": ["A17"], "region": "10,200,30,300",
     "categoryId": 4, "note": "in a shop window"}

`picture` is a path (relative to the check set's folder) or an http(s) URL; `itemIds` are
the products a search should find (any of them counts), or `productGroup` names them all
through the `productGroup`/`sameAs` key of their records' `customContent`. `region`
(x1,x2,y1,y2 in the picture's pixels) is searched instead of the subject, as the API's
`region` is; `categoryId` is the picture's right category, scored, never searched by.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tongkuan.domain.boxes import Box
from tongkuan.domain.categories import Category
from tongkuan.domain.products import Product, is_web_url
from tongkuan.errors import CheckSetError

GROUP_KEYS = ("productGroup", "sameAs")  # customContent fields that tie listings of one SKU together
_KNOWN = {"picture", "itemIds", "productGroup", "region", "categoryId", "note"}
_SHOWN_ERRORS = 10


@dataclass(frozen=True)
class Check:
    """One labelled query: the picture, the products that are right, and what else is known."""

    line: int
    picture: str  # an http(s) URL or an absolute path
    item_ids: frozenset[str]
    region: Box | None = None
    category: Category | None = None
    note: str = ""


def read_checks(path: Path, products: Iterable[Product]) -> list[Check]:
    """The checks in the JSONL file at `path`, their right products resolved against the
    catalog's `products`; raises `CheckSetError` naming every bad line (the first ten)."""
    known: set[str] = set()
    groups: dict[str, set[str]] = {}
    for product in products:
        known.add(product.item_id)
        for key in GROUP_KEYS:
            if group := product.extra.get(key):
                groups.setdefault(group, set()).add(product.item_id)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckSetError(f"check set {path} cannot be read: {exc}") from exc
    checks, errors = [], []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            checks.append(_check(number, raw, path.parent, known, groups))
        except CheckSetError as exc:
            errors.append(f"line {number}: {exc}")
    if errors:
        more = f" (and {len(errors) - _SHOWN_ERRORS} more)" if len(errors) > _SHOWN_ERRORS else ""
        raise CheckSetError(f"check set {path}: " + "; ".join(errors[:_SHOWN_ERRORS]) + more)
    if not checks:
        raise CheckSetError(f"check set {path} holds no checks")
    return checks


def _check(number: int, raw: str, folder: Path, known: set[str], groups: dict[str, set[str]]) -> Check:
    try:
        line: Any = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CheckSetError(f"not a JSON object ({exc.msg})") from exc
    if not isinstance(line, dict):
        raise CheckSetError("not a JSON object")
    if unknown := sorted(set(line) - _KNOWN):
        raise CheckSetError(f"unknown field {unknown[0]!r} (fields: {', '.join(sorted(_KNOWN))})")
    picture = line.get("picture")
    if not isinstance(picture, str) or not picture.strip():
        raise CheckSetError("picture must be a path or an http(s) URL")
    if not is_web_url(picture):
        picture = str((folder / picture).resolve())
    return Check(
        number,
        picture,
        _right_products(line, known, groups),
        _region(line.get("region")),
        _category(line.get("categoryId")),
        str(line.get("note") or ""),
    )


def _right_products(line: dict[str, Any], known: set[str], groups: dict[str, set[str]]) -> frozenset[str]:
    item_ids, group = line.get("itemIds"), line.get("productGroup")
    if item_ids is not None and group is not None:
        raise CheckSetError("give itemIds or productGroup, not both")
    if group is not None:
        if not isinstance(group, str) or group not in groups:
            raise CheckSetError(f"no product of the catalog has productGroup {group!r}")
        return frozenset(groups[group])
    if not isinstance(item_ids, list) or not item_ids or not all(isinstance(i, str) for i in item_ids):
        raise CheckSetError("itemIds must be a non-empty list of the right products' itemIds")
    if missing := [i for i in item_ids if i not in known]:
        raise CheckSetError(f"itemId {missing[0]!r} is not in the catalog")
    return frozenset(item_ids)


def _region(value: object) -> Box | None:
    if value is None:
        return None
    rule = f"region must be x1,x2,y1,y2 with x1 < x2 and y1 < y2, not {value!r}"
    parts = value.split(",") if isinstance(value, str) else value
    if not isinstance(parts, list) or len(parts) != 4:
        raise CheckSetError(rule)
    try:
        x1, x2, y1, y2 = (int(str(p).strip()) for p in parts)
    except ValueError as exc:
        raise CheckSetError(rule) from exc
    if min(x1, y1) < 0 or x1 >= x2 or y1 >= y2:
        raise CheckSetError(rule)
    return Box(x1, x2, y1, y2)


def _category(value: object) -> Category | None:
    if value is None:
        return None
    try:
        return Category(int(str(value)))
    except ValueError as exc:
        codes = ", ".join(str(int(c)) for c in Category)
        raise CheckSetError(f"categoryId must be one of {codes}, not {value!r}") from exc
