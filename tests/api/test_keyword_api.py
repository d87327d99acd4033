"""Keyword search, shop search and product details through real HTTP, over real Taobao
cocktail listings (titles, prices, sales, shops, cities)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from tests.api.test_image_search import ITEM_FIELDS
from tests.conftest import Service, new_data_dir, serve, settings_for
from tests.utils.keywords import cocktail_listings
from tongkuan.api.app import create_app
from tongkuan.domain.products import NewImage
from tongkuan.engine import Engine

SEARCH, SHOPS, DETAILS = "/taobao/traffic/item/search", "/taobao/traffic/item/shop/search", "/taobao/traffic/item/get"


@pytest.fixture(scope="module")
def listings(data_root: Path, tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Iterator[Service]:
    data_dir = new_data_dir(tmp_path_factory.mktemp("listings") / "data", model_cache)
    engine = Engine(settings_for(data_dir, model="efficientnet-lite0"))
    rng = np.random.default_rng(0)
    engine.catalog.upsert_many(
        [
            (
                product,
                [
                    NewImage(f"h{r['row']}-{i}", f"{r['image_url']}?{i}", rng.random(engine.catalog.dim, np.float32))
                    for i in range(2)
                ],
            )
            for product, r in cocktail_listings(data_root)
        ]
    )
    with serve(create_app(engine.settings, engine=engine)) as svc:
        yield svc
    engine.close()


def body_of(service: Service, path: str, **params: str) -> dict:  # type: ignore[type-arg]
    response = service.get(path, params)
    body = response.json()
    assert set(body) == {"code", "message", "data", "timestamp", "traceId"}
    assert response.status_code == (200 if body["code"] == 200 else body["code"])
    return body  # type: ignore[no-any-return]


def test_keyword_search_answers_items_in_the_v2_shape(listings: Service) -> None:
    data = body_of(listings, SEARCH, keyword="锐澳 微醺", page_size="5")["data"]
    assert set(data) == {"data", "pageNo", "pageSize", "total"}
    assert data["pageNo"] == 1 and data["pageSize"] == 5 and data["total"] > 20
    for item in data["data"]:
        assert set(item) == set(ITEM_FIELDS)
        for name, kind in ITEM_FIELDS.items():
            assert isinstance(item[name], kind), (name, item[name])
        assert "锐澳" in item["title"] and "微醺" in item["title"]
        assert item["picUrl"].startswith("//")


def test_keyword_pages_sorts_and_filters(listings: Service) -> None:
    first = body_of(listings, SEARCH, keyword="鸡尾酒", page_size="20")["data"]
    second = body_of(listings, SEARCH, keyword="鸡尾酒", page_no="2", page_size="20")["data"]
    assert second["pageNo"] == 2 and not {i["itemId"] for i in first["data"]} & {i["itemId"] for i in second["data"]}
    cheap = body_of(listings, SEARCH, keyword="鸡尾酒", sort="price_asc", filter="price:20-60;location:上海")["data"]
    prices = [Decimal(i["zkFinalPrice"]) for i in cheap["data"]]
    assert prices == sorted(prices) and all(20 <= p <= 60 for p in prices)
    assert all("上海" in i["provcity"] for i in cheap["data"]) and cheap["total"] < first["total"]
    top = body_of(listings, SEARCH, keyword="鸡尾酒", sort="sales_desc", filter="userType:1")["data"]["data"]
    assert [i["volume"] for i in top] == sorted((i["volume"] for i in top), reverse=True)
    assert all(i["userType"] == 1 for i in top)


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({}, "keyword"),
        ({"keyword": " "}, "keyword"),
        ({"keyword": "酒", "page_no": "0"}, "page_no"),
        ({"keyword": "酒", "page_size": "21"}, "page_size"),
        ({"keyword": "酒", "sort": "cheapest"}, "sort"),
        ({"keyword": "酒", "filter": "colour:red"}, "filter"),
        ({"keyword": "酒", "filter": "price:100-10"}, "price"),
        ({"keyword": "酒", "filter": "price:abc"}, "price"),
        ({"keyword": "酒", "filter": "userType:2"}, "userType"),
        ({"keyword": "酒", "filter": "shop:a;shop:b"}, "shop"),
    ],
)
def test_bad_keyword_parameters_are_named(listings: Service, params: dict[str, str], named: str) -> None:
    body = body_of(listings, SEARCH, **params)
    assert body["code"] == 400 and named in body["message"]


LONGEST = "鸡尾酒" * 66 + "酒酒"  # 200 characters: the longest keyword searched


@pytest.mark.parametrize("path", [SEARCH, SHOPS])
def test_a_keyword_over_200_characters_is_refused_naming_the_rule(listings: Service, path: str) -> None:
    assert body_of(listings, path, keyword=LONGEST)["code"] == 200
    body = body_of(listings, path, keyword=LONGEST + "酒")
    assert body["code"] == 400 and body["data"] is None
    assert body["message"].endswith("keyword must be at most 200 characters, not 201 (keyword 不能超过 200 个字符)")


def test_the_search_page_refuses_a_keyword_over_200_characters_the_same_way(listings: Service) -> None:
    response = listings.client.get("/web/api/keyword", params={"keyword": "a" * 4096})
    body = response.json()
    assert response.status_code == 400 and body["code"] == 400
    assert body["data"] == {"error": "bad_parameter"}
    assert "keyword must be at most 200 characters, not 4096" in body["message"]


def test_a_keyword_without_matches_is_an_empty_page(listings: Service) -> None:
    data = body_of(listings, SEARCH, keyword="量子计算机")["data"]
    assert data == {"data": [], "pageNo": 1, "pageSize": 0, "total": 0}


def test_shop_search_finds_shops_with_their_best_sellers(listings: Service) -> None:
    data = body_of(listings, SHOPS, keyword="锐澳")["data"]
    assert data["total"] == len(data["data"]) >= 2
    first = data["data"][0]
    assert set(first) == {"shopTitle", "sellerId", "provcity", "userType", "itemCount", "volume", "items"}
    assert "锐澳" in first["shopTitle"] and first["itemCount"] >= len(first["items"]) > 0
    assert all(i["shopTitle"] == first["shopTitle"] and set(i) == set(ITEM_FIELDS) for i in first["items"])
    assert body_of(listings, SHOPS)["code"] == 400


def test_item_details_give_the_full_record_with_every_picture(listings: Service) -> None:
    hit = body_of(listings, SEARCH, keyword="锐澳", page_size="1")["data"]["data"][0]
    data = body_of(listings, DETAILS, item_id=hit["itemId"], language="en")["data"]
    assert {k: data[k] for k in ITEM_FIELDS} == hit
    assert [p["picName"] for p in data["pictures"]] == ["0", "1"]
    assert data["pictures"][0]["picUrl"] == hit["picUrl"]
    assert set(data) == set(ITEM_FIELDS) | {"categoryId", "categoryPredicted", "pictures", "customContent"}
    missing = body_of(listings, DETAILS, item_id="no-such-item")
    assert missing["code"] == 400 and "no-such-item" in missing["message"]
    assert "item_id" in body_of(listings, DETAILS)["message"]


def test_keyword_routes_need_a_valid_signature(listings: Service) -> None:
    response = listings.client.get(SEARCH, params={"appKey": "test-app", "keyword": "酒", "sign": "0" * 32})
    assert response.status_code == 401 and response.json()["code"] == 401
