"""Reading records: JSON nesting is capped per line (one bad line fails alone), and picture
references are URLs whatever the case of their scheme. No model, no network."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest

from tongkuan.domain.products import is_web_url
from tongkuan.errors import RecordError
from tongkuan.images.fetch import Fetcher, FetchPolicy
from tongkuan.images.store import ImageStore
from tongkuan.ingest.ingester import Fetched, Ingester
from tongkuan.ingest.readers import MAX_JSON_DEPTH, JsonTooDeep, SourceRecord, load_json, read_jsonl
from tongkuan.ingest.records import to_product


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_json_nested_up_to_the_limit_is_read() -> None:
    assert load_json(f'{{"a": {nested(MAX_JSON_DEPTH - 1)}}}') == {"a": json.loads(nested(MAX_JSON_DEPTH - 1))}


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 5_000, 200_000])
def test_json_nested_deeper_than_the_limit_is_refused_naming_the_rule(depth: int) -> None:
    with pytest.raises(JsonTooDeep, match=f"nests deeper than {MAX_JSON_DEPTH}"):
        load_json('{"customContent": ' + nested(depth) + "}")


def test_a_deeply_nested_line_fails_alone(tmp_path: Path) -> None:
    lines = [
        json.dumps({"itemId": "a", "images": ["a.jpg"]}),
        '{"itemId": "deep", "x": ' + nested(100_000) + "}",
        json.dumps({"itemId": "b", "images": ["b.jpg"]}),
    ]
    path = tmp_path / "items.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    records = list(read_jsonl(path))
    assert [r.fields.get("itemId") for r in records] == ["a", None, "b"]
    assert f"nests deeper than {MAX_JSON_DEPTH}" in records[1].fields["_error"]
    assert records[1].origin.endswith(":2")


@pytest.mark.parametrize("ref", ["http://a/b.jpg", "HTTP://a/b.jpg", "Https://a/b.jpg"])
def test_web_urls_are_known_in_any_case(ref: str) -> None:
    assert is_web_url(ref)


@pytest.mark.parametrize("ref", ["a/b.jpg", "/srv/http://x.jpg", "httpx://a", "0123abcd.jpg", ""])
def test_files_are_not_web_urls(ref: str) -> None:
    assert not is_web_url(ref)


class RecordingFetcher(Fetcher):
    """Answers every URL with the same bytes and remembers what it was asked (no network)."""

    def __init__(self) -> None:
        super().__init__(FetchPolicy())
        self.asked: list[str] = []

    def fetch(self, url: str) -> bytes:
        self.asked.append(url)
        return b"picture"


def test_an_upper_case_scheme_is_fetched_not_read_from_disk(tmp_path: Path) -> None:
    fetcher = RecordingFetcher()
    ingester = Ingester(
        vision=cast(Any, None),
        catalog=cast(Any, None),
        images=ImageStore(tmp_path / "images"),
        fetcher=fetcher,
        max_pixels=1_000_000,
        file_root=tmp_path / "images",
    )
    record = SourceRecord("t:1", {"itemId": "x"}, ["HTTP://img.example/a.jpg"], tmp_path)
    fetched = ingester.fetch(record)
    fetcher.close()
    assert isinstance(fetched, Fetched), fetched
    assert fetcher.asked == ["HTTP://img.example/a.jpg"]


def test_a_record_with_an_unpaired_surrogate_is_a_record_error_not_a_failed_batch(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text('{"itemId": "s", "title": "half \\ud800 a character", "images": ["a.jpg"]}\n', encoding="utf-8")
    (record,) = read_jsonl(path)
    with pytest.raises(RecordError, match="title"):
        to_product(record.fields)


def test_a_picture_reference_with_an_unpaired_surrogate_fails_its_record(tmp_path: Path) -> None:
    fetcher = RecordingFetcher()
    ingester = Ingester(cast(Any, None), cast(Any, None), ImageStore(tmp_path / "images"), fetcher, 1_000_000)
    failure = ingester.fetch(SourceRecord("t:1", {"itemId": "x"}, ["http://img.example/\ud800.jpg"], tmp_path))
    fetcher.close()
    assert not isinstance(failure, Fetched) and "surrogates" in failure.reason
    assert fetcher.asked == []
