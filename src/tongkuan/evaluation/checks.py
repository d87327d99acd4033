"""Check sets: JSONL, one labelled query picture a line.

    {"picture": "photos/1.jpg", "itemIds": ["A17"], "region": "10,200,30,300",
     "categoryId": 4, "note": "in a shop window"}

`picture` is a path (relative to the check set's folder) or an http(s) URL, or `imageId`
names a picture uploaded to the service (the page saves its checks so); `itemIds` are
the products a search should find (any of them counts), or `productGroup` names them all
through the `productGroup`/`sameAs` key of their records' `customContent`. `region`
(x1,x2,y1,y2 in the picture's pixels) is searched instead of the subject, as the API's
`region` is; `categoryId` is the picture's right category, scored, never searched by.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tongkuan.domain.boxes import Box
from tongkuan.domain.categories import Category
from tongkuan.domain.products import Product, is_web_url
from tongkuan.errors import CheckSetError
from tongkuan.models.tuning import GROUP_KEYS  # the keys tune groups listings by

_KNOWN = {"picture", "imageId", "itemIds", "productGroup", "region", "categoryId", "note"}
_SHOWN_ERRORS = 10
_IMAGE_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class Check:
    """One labelled query: the picture, the products that are right, and what else is known."""

    line: int
    picture: str  # an http(s) URL, an absolute path, or an uploaded picture's imageId
    item_ids: frozenset[str]
    region: Box | None = None
    category: Category | None = None
    note: str = ""
    uploaded: bool = False  # `picture` is an imageId


def read_checks(path: Path, products: Iterable[Product]) -> list[Check]:
    """The checks in the JSONL file at `path`, their right products resolved against the
    catalog's `products`; raises `CheckSetError` naming every bad line (the first ten)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckSetError(f"check set {path} cannot be read: {exc}") from exc
    return parse_checks(text, products, path.parent, f"check set {path}")


def parse_checks(
    text: str, products: Iterable[Product], folder: Path | None, name: str = "the check set"
) -> list[Check]:
    """The checks in JSONL `text`; a `picture` that is a path is relative to `folder` (None:
    paths are refused, as where a check set is sent to the service)."""
    known: set[str] = set()
    groups: dict[str, set[str]] = {}
    for product in products:
        known.add(product.item_id)
        for key in GROUP_KEYS:
            if group := product.extra.get(key):
                groups.setdefault(group, set()).add(product.item_id)
    checks, errors = [], []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            checks.append(_check(number, raw, folder, known, groups))
        except CheckSetError as exc:
            errors.append(f"line {number}: {exc}")
    if errors:
        more = f" (and {len(errors) - _SHOWN_ERRORS} more)" if len(errors) > _SHOWN_ERRORS else ""
        raise CheckSetError(f"{name}: " + "; ".join(errors[:_SHOWN_ERRORS]) + more)
    if not checks:
        raise CheckSetError(f"{name} holds no checks")
    return checks


def _check(number: int, raw: str, folder: Path | None, known: set[str], groups: dict[str, set[str]]) -> Check:
    try:
        line: Any = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CheckSetError(f"not a JSON object ({exc.msg})") from exc
    if not isinstance(line, dict):
        raise CheckSetError("not a JSON object")
    if unknown := sorted(set(line) - _KNOWN):
        raise CheckSetError(f"unknown field {unknown[0]!r} (fields: {', '.join(sorted(_KNOWN))})")
    picture, image_id = line.get("picture"), line.get("imageId")
    if (picture is None) == (image_id is None):
        raise CheckSetError("give a picture (a path or an http(s) URL) or the imageId of an uploaded one")
    if image_id is not None:
        if not isinstance(image_id, str) or not _IMAGE_ID.fullmatch(image_id):
            raise CheckSetError(f"imageId must be the 32 hex digits an upload answers, not {image_id!r}")
        picture = image_id
    elif not isinstance(picture, str) or not picture.strip():
        raise CheckSetError("picture must be a path or an http(s) URL")
    elif not is_web_url(picture):
        if folder is None:
            raise CheckSetError("picture must be an http(s) URL here (or give the imageId of an uploaded picture)")
        picture = str((folder / picture).resolve())
    return Check(
        number,
        picture,
        _right_products(line, known, groups),
        _region(line.get("region")),
        _category(line.get("categoryId")),
        str(line.get("note") or ""),
        uploaded=image_id is not None,
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
