"""V2's opt-in extras (score, threshold, per-picture hits, attribute filters) and the 1688
image search over the same session catalog, through real HTTP."""

from __future__ import annotations

import base64
import math
from decimal import Decimal

import pytest

from tests.api.test_image_search import ITEM_FIELDS, QUERY, search
from tests.conftest import Service
from tests.utils.fileserver import FileServer


@pytest.fixture
def service(service_on_each_backend: Service) -> Service:
    """Every test here runs on the embedded and on the server backends."""
    return service_on_each_backend


IMAGE_QUERY = "/alibaba/product/imageQuery"


def test_the_default_shape_has_no_extras(service: Service, file_server: FileServer) -> None:
    items = search(service, file_server, pageSize="20")["data"]["data"]
    assert all(set(item) == set(ITEM_FIELDS) for item in items)
    assert len({item["itemId"] for item in items}) == len(items)  # one hit per product


def test_scores_are_similarities_best_first(service: Service, file_server: FileServer) -> None:
    items = search(service, file_server, pageSize="20", withScore="true")["data"]["data"]
    assert all(set(item) == set(ITEM_FIELDS) | {"score"} for item in items)
    scores = [item["score"] for item in items]
    assert scores == sorted(scores, reverse=True) and 0 < scores[-1] <= scores[0] <= 1


def test_a_threshold_keeps_only_hits_that_similar(service: Service, file_server: FileServer) -> None:
    scores = [i["score"] for i in search(service, file_server, pageSize="20", withScore="true")["data"]["data"]]
    cut = (scores[2] + scores[3]) / 2
    items = search(service, file_server, pageSize="20", withScore="true", scoreThreshold=f"{cut:.6f}")["data"]["data"]
    assert [i["score"] for i in items] == scores[:3]
    assert search(service, file_server, scoreThreshold="1")["data"]["data"] == []


def test_per_picture_hits_repeat_products(service: Service, file_server: FileServer) -> None:
    items = search(service, file_server, pageSize="20", distinctProductId="false", withScore="true")["data"]["data"]
    ids = [i["itemId"] for i in items]
    assert len(set(ids)) < len(ids)  # several pictures of the same product
    assert len({i["picUrl"] for i in items}) == len(items)  # each hit is its own picture
    assert [i["score"] for i in items] == sorted((i["score"] for i in items), reverse=True)


def test_attribute_filters_hold_on_every_hit(service: Service, file_server: FileServer) -> None:
    everything = search(service, file_server, pageSize="20")["data"]["data"]
    shop = everything[0]["shopTitle"]
    items = search(service, file_server, pageSize="20", filter=f"shop:{shop};price:10-400;userType:0")["data"]["data"]
    assert items and all(i["shopTitle"] == shop and i["userType"] == 0 for i in items)
    assert all(10 <= Decimal(i["zkFinalPrice"]) <= 400 for i in items)
    near = search(service, file_server, pageSize="20", filter="location:上海")["data"]["data"]
    assert near and all("上海" in i["provcity"] for i in near)


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"withScore": "maybe"}, "withScore"),
        ({"scoreThreshold": "1.5"}, "scoreThreshold"),
        ({"scoreThreshold": "nan"}, "scoreThreshold"),
        ({"distinctProductId": "2"}, "distinctProductId"),
        ({"filter": "price:-"}, "price"),
    ],
)
def test_bad_extras_are_named(service: Service, file_server: FileServer, params: dict[str, str], named: str) -> None:
    body = search(service, file_server, **params)
    assert body["code"] == 400 and named in body["message"]


def query_1688(service: Service, **params: str) -> dict:  # type: ignore[type-arg]
    response = service.get(IMAGE_QUERY, params)
    body = response.json()
    assert set(body) == {"code", "message", "data", "timestamp", "traceId"}
    return body  # type: ignore[no-any-return]


def test_1688_image_query_pages_with_totals(service: Service, file_server: FileServer) -> None:
    url = file_server.url(QUERY)
    first = query_1688(service, imageUrl=url, beginPage="1", pageSize="10")["data"]
    assert set(first) == {"totalRecords", "totalPage", "pageSize", "currentPage", "data"}
    assert first["currentPage"] == 1 and first["pageSize"] == 10 and len(first["data"]) == 10
    assert first["totalPage"] == math.ceil(first["totalRecords"] / 10) and first["totalRecords"] >= 100
    offer = first["data"][0]
    assert offer["offerId"] == "grocery-041" and offer["imageUrl"].startswith("http://")
    assert set(offer["priceInfo"]) == {"price", "consignPrice"} and isinstance(offer["monthSold"], int)
    assert {"subject", "companyName"} <= set(offer)
    second = query_1688(service, imageUrl=url, beginPage="2", pageSize="10")["data"]
    assert second["totalRecords"] == first["totalRecords"]
    both = query_1688(service, imageUrl=url, beginPage="1", pageSize="20")["data"]["data"]
    assert [o["offerId"] for o in both] == [o["offerId"] for o in first["data"] + second["data"]]


def test_1688_image_id_wins_over_image_url(service: Service, file_server: FileServer, data_root) -> None:  # type: ignore[no-untyped-def]
    banana = (data_root / "grocery_store/iconic/Banana_Iconic.jpg").read_bytes()
    uploaded = service.client.post(
        "/alibaba/upload/image", data=service.signed({"image_base64": base64.b64encode(banana).decode()})
    ).json()
    assert uploaded["code"] == 200
    image_id = uploaded["data"]["imageId"]
    data = query_1688(service, imageId=image_id, imageUrl=file_server.url(QUERY), beginPage="1")["data"]
    assert data["data"][0]["subject"].startswith("Banana") and data["pageSize"] == 20


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({}, "beginPage"),
        ({"beginPage": "0"}, "beginPage"),
        ({"beginPage": "1"}, "imageId or imageUrl"),
        ({"beginPage": "1", "pageSize": "51"}, "pageSize"),
        ({"beginPage": "101", "pageSize": "20"}, "2000"),
        ({"beginPage": "1", "imageId": "f" * 32}, "imageId"),
    ],
)
def test_1688_errors_are_named(service: Service, params: dict[str, str], named: str) -> None:
    body = query_1688(service, **params)
    assert body["code"] == 400 and named in body["message"]


def test_1688_upload_by_get_feeds_image_query(service: Service, file_server: FileServer) -> None:
    banana = file_server.url("grocery_store/images/val/Fruit/Banana/Banana_002.jpg")
    uploaded = query_1688_upload(service, banana)
    data = query_1688(service, imageId=uploaded["imageId"], beginPage="1", pageSize="3")["data"]
    assert data["data"][0]["subject"].startswith("Banana")


def query_1688_upload(service: Service, url: str) -> dict:  # type: ignore[type-arg]
    body = service.get("/alibaba/upload/image", {"pic_url": url}).json()
    assert body["code"] == 200, body
    assert set(body["data"]) == {"imageId", "picUrl"}
    return body["data"]  # type: ignore[no-any-return]
