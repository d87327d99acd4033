"""Reading catalog sources: JSONL and CSV files of product records, and folders of images.

A record uses the V2 item field names (`itemId`, `title`, `reservePrice`, ...) plus
`images` (local paths relative to the file's folder, or http(s) URLs) and an optional
`categoryId`. In CSV, `images` holds several entries separated by `|`. In an image folder
every image is one product whose itemId is its path relative to the folder. A JSON record
nests at most `MAX_JSON_DEPTH` levels deep; a deeper line fails on its own.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tongkuan.errors import IngestError

MAX_JSON_DEPTH = 32
"""How deep a JSON record or admin body may nest; a record needs 3 levels."""

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm"})


class JsonTooDeep(ValueError):
    """JSON nested deeper than `MAX_JSON_DEPTH` levels."""


def load_json(text: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """`json.loads(text)`, refusing documents nested deeper than `max_depth`.

    Raises `JsonTooDeep` (naming the limit) for a deep document, whether or not Python
    could parse it, and `ValueError` for text that is not JSON.
    """
    try:
        value = json.loads(text)
    except RecursionError:
        raise JsonTooDeep(_too_deep(max_depth)) from None
    if _depth(value) > max_depth:
        raise JsonTooDeep(_too_deep(max_depth))
    return value


def _too_deep(max_depth: int) -> str:
    return f"JSON nests deeper than {max_depth} levels (the limit is {max_depth})"


def _depth(value: Any) -> int:
    """How many arrays and objects deep `value` goes, without recursing."""
    deepest = 0
    pending = [(value, 1)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        pending.extend((child, level + 1) for child in children)
    return deepest


@dataclass
class SourceRecord:
    """One product as read from a source, not yet validated."""

    origin: str  # "file:line" for error reports
    fields: dict[str, Any]
    images: list[str]
    base_dir: Path = field(default_factory=Path)
    names: list[str] | None = None  # picture names; None: each image's file name


def read_sources(paths: list[Path]) -> Iterator[SourceRecord]:
    """Records from every path in turn; raise `IngestError` for a path we cannot read at all."""
    for path in paths:
        if path.is_dir():
            yield from read_folder(path)
        elif path.suffix.lower() in (".jsonl", ".ndjson"):
            yield from read_jsonl(path)
        elif path.suffix.lower() == ".csv":
            yield from read_csv(path)
        elif not path.exists():
            raise IngestError(f"{path} does not exist")
        else:
            raise IngestError(f"{path}: expected a .jsonl or .csv file or an image folder")


def read_jsonl(path: Path) -> Iterator[SourceRecord]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            origin = f"{path}:{number}"
            try:
                raw = load_json(line)
            except JsonTooDeep as exc:
                yield SourceRecord(origin, {"_error": str(exc)}, [], path.parent)
                continue
            except ValueError as exc:
                yield SourceRecord(origin, {"_error": f"not valid JSON ({exc})"}, [], path.parent)
                continue
            if not isinstance(raw, dict):
                yield SourceRecord(origin, {"_error": "a record must be a JSON object"}, [], path.parent)
                continue
            images = raw.pop("images", [])
            if isinstance(images, str):
                images = [images]
            if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
                raw["_error"] = "images must be a list of paths or URLs"
                images = []
            yield SourceRecord(origin, raw, images, path.parent)


def read_csv(path: Path) -> Iterator[SourceRecord]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for number, row in enumerate(csv.DictReader(handle), 2):
            raw: dict[str, Any] = {k: v for k, v in row.items() if k and v not in (None, "")}
            images = [i.strip() for i in str(raw.pop("images", "")).split("|") if i.strip()]
            yield SourceRecord(f"{path}:{number}", raw, images, path.parent)


def read_folder(folder: Path) -> Iterator[SourceRecord]:
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            relative = path.relative_to(folder).with_suffix("").as_posix()
            yield SourceRecord(str(path), {"itemId": relative, "title": path.stem}, [path.name], path.parent)
