"""NUL characters: PostgreSQL text cannot hold them, SQLite can. Both backends refuse them
at the edge with a 400 naming the parameter, never a 500."""

from __future__ import annotations

import pytest

from tests.conftest import Service
from tongkuan.errors import RecordError
from tongkuan.ingest.records import to_product


@pytest.fixture
def service(service_on_each_backend: Service) -> Service:
    return service_on_each_backend


@pytest.mark.parametrize(
    ("path", "params", "named"),
    [
        ("/taobao/traffic/item/get", {"item_id": "grocery-001\x00"}, "item_id"),
        ("/taobao/traffic/item/search", {"keyword": "牛奶\x00"}, "keyword"),
        ("/taobao/traffic/item/search", {"keyword": "milk", "filter": "shop:a\x00b"}, "filter"),
        ("/taobao/traffic/item/shop/search", {"keyword": "\x00"}, "keyword"),
    ],
)
def test_nul_in_a_parameter_is_a_named_400(service: Service, path: str, params: dict[str, str], named: str) -> None:
    response = service.get(path, params)
    body = response.json()
    assert (response.status_code, body["code"]) == (400, 400), body
    assert named in body["message"] and "NUL" in body["message"]


def test_nul_in_a_record_field_is_refused_by_name() -> None:
    with pytest.raises(RecordError, match="shopTitle must not contain NUL"):
        to_product({"itemId": "a", "title": "t", "shopTitle": "a\x00b"})
    with pytest.raises(RecordError, match="customContent must not contain NUL"):
        to_product({"itemId": "a", "customContent": {"k\x00": "v"}})
