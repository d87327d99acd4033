"""What the client puts on the wire and how it reads answers, against a fake service
(httpx.MockTransport): signatures the server's own check accepts, DAJI's parameter names,
signed upload forms, DAJI's documented answer, answers that are not the envelope, picture
URLs completed with the client's own scheme, and request lines logged without secrets."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from tongkuan.api.auth import authenticate
from tongkuan.api.auth import sign as server_sign
from tongkuan.client import (
    DAJI_BASE_URL,
    NO_RETRY,
    ApiError,
    Category,
    Client,
    Filter,
    Item,
    ProtocolError,
    Region,
    ServerError,
    sign,
)

# The documented example answer of DAJI's image search V2.0, cut to one item.
DAJI_ANSWER: dict[str, Any] = {
    "code": 200,
    "message": "操作成功",
    "data": {
        "data": [
            {
                "categoryName": "钢笔",
                "couponAmount": None,
                "couponstartFee": None,
                "itemId": "o5ZMRpZH8fKx57ZyjWhAWYCntN-n4jADGXuxdmxw3aOCz",
                "levelOneCategoryName": "文具电教/文化用品/商务用品",
                "picUrl": "//img.alicdn.com/i2/2127922298/O1CN015WsfNd1SqX6IwXgED_!!0-item_pic.jpg",
                "provcity": "上海",
                "reservePrice": "50",
                "sellerId": "2127922298",
                "shopTitle": "英雄俊行专卖店",
                "title": "英雄359钢笔",
                "url": "//s.click.taobao.com/t?e=m%3D2",
                "userType": 1,
                "volume": 9,
                "zkFinalPrice": "22.8",
            }
        ],
        "picInfo": {
            "mainRegion": {
                "multiCategoryId": [{"categoryId": 88888888, "score": 0.84396}, {"categoryId": 22, "score": 0.05508}],
                "region": "222,361,34,376",
            },
            "multiRegion": [{"region": "222,361,34,376"}, {"region": "155,225,25,372"}],
        },
        "pageNo": 0,
        "pageSize": 1,
    },
    "timestamp": 1750257502215,
    "traceId": "6d010c4582bf",
}
KEYWORDS = {"code": 200, "message": "操作成功", "data": {"data": [], "pageNo": 1, "pageSize": 0, "total": 0}}


@contextmanager
def fake(
    answer: Callable[[httpx.Request], httpx.Response], base_url: str = "http://tongkuan.test", **kw: Any
) -> Iterator[tuple[Client, list[httpx.Request]]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request)

    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        yield Client(base_url, "k1", "s3", retry=NO_RETRY, http_client=http, **kw), seen


def answering(body: dict[str, Any]) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(200, json=body)


def sent_params(request: httpx.Request) -> dict[str, str]:
    if request.method == "POST":
        return dict(parse_qsl(request.content.decode("ascii"), keep_blank_values=True))
    return dict(request.url.params)


def test_sign_is_the_documented_md5_and_matches_the_server_s() -> None:
    expected = hashlib.md5(b"appKey=k1&pageNo=0&picUrl=http://a/b.jpg&secret=s3").hexdigest().upper()
    assert sign({"appKey": "k1", "picUrl": "http://a/b.jpg", "pageNo": "0"}, "s3") == expected
    for params in (
        {"appKey": "k1", "keyword": "英雄 钢笔", "filter": "price:10-;shop:A&B=C", "empty": ""},
        {"appKey": "k1", "picUrl": "https://x/y.jpg?a=1&b=%20", "region": "1,2,3,4", "skipped": None},
    ):
        assert sign(params, "秘密") == server_sign(params, "秘密")


def test_an_image_search_sends_every_option_by_its_wire_name_signed() -> None:
    with fake(answering(DAJI_ANSWER)) as (client, seen):
        client.search_url(
            "http://a/b.jpg?x=1&y=中",
            page_no=20,
            page_size=5,
            category=Category.SHOES,
            crop=False,
            region=Region(1, 2, 3, 4),
            filter=Filter(min_price=Decimal("10.50"), user_type=1, shop="A:B"),
            with_score=True,
            score_threshold=0.25,
            distinct_product_id=False,
        )
    (request,) = seen
    assert request.method == "GET" and request.url.path == "/taobao/image-search/url"
    params = sent_params(request)
    assert {k: v for k, v in params.items() if k != "sign"} == {
        "appKey": "k1",
        "picUrl": "http://a/b.jpg?x=1&y=中",
        "pageNo": "20",
        "pageSize": "5",
        "categoryId": "4",
        "crop": "false",
        "region": "1,2,3,4",
        "filter": "price:10.50-;userType:1;shop:A:B",
        "withScore": "true",
        "scoreThreshold": "0.25",
        "distinctProductId": "false",
    }
    assert authenticate(params, {"k1": "s3"}, allow_app_secret=False) == "k1"


def test_options_left_out_are_not_sent_so_daji_s_defaults_apply() -> None:
    with fake(answering(DAJI_ANSWER)) as (client, seen):
        client.search_url("http://a/b.jpg")
    assert set(sent_params(seen[0])) == {"appKey", "picUrl", "sign"}
    with fake(answering(DAJI_ANSWER)) as (client, _), pytest.raises(TypeError, match="colour"):
        client.search_url("http://a/b.jpg", colour="red")  # type: ignore[call-arg]


def test_an_upload_is_a_signed_form_with_the_picture_in_base64() -> None:
    picture = b"\xff\xd8\xff\xe0 not really a jpeg +/="
    upload = {"code": 200, "message": "操作成功", "data": {"imageId": "abc", "picUrl": "//h/images/abc.jpg"}}
    with fake(answering(upload)) as (client, seen):
        assert client.upload(picture).image_id == "abc"
    (request,) = seen
    assert request.method == "POST" and request.headers["content-type"] == "application/x-www-form-urlencoded"
    form = sent_params(request)
    assert base64.b64decode(form["image_base64"]) == picture and not request.url.params
    assert authenticate(form, {"k1": "s3"}, allow_app_secret=False) == "k1"


def test_plain_secret_mode_sends_the_secret_instead_of_a_sign() -> None:
    with fake(answering(KEYWORDS), plain_secret=True) as (client, seen):
        client.keyword_search("钢笔", page_no=2, filter=Filter(max_price=50))
    params = sent_params(seen[0])
    assert params["appSecret"] == "s3" and "sign" not in params
    assert params["filter"] == "price:-50" and params["page_no"] == "2"
    assert "s3" not in repr(client)


def test_daji_s_base_url_is_the_only_change_and_its_documented_answer_reads() -> None:
    with fake(answering(DAJI_ANSWER), base_url=DAJI_BASE_URL) as (client, seen):
        found = client.search_url("https://img.alicdn.com/a.jpg", page_size=1)
    assert str(seen[0].url).startswith("https://openapi.dajisaas.com/taobao/image-search/url?")
    (item,) = found.items
    assert item.zk_final_price == Decimal("22.8") and item.reserve_price == Decimal("50")
    assert item.coupon_amount is None and item.coupon_start_fee is None and item.user_type == 1
    assert item.picture_url().startswith("https://img.alicdn.com/")
    assert [c.category_id for c in found.categories] == [88888888, 22]
    assert found.main_region == Region(222, 361, 34, 376)
    assert found.regions == [Region(222, 361, 34, 376), Region(155, 225, 25, 372)]
    assert found.next_page_no == 1


def test_search_by_file_needs_an_upload_answer_with_a_picture_url() -> None:
    daji_upload = {"code": 200, "message": "操作成功", "data": {"imageId": "123"}}
    with fake(answering(daji_upload)) as (client, seen), pytest.raises(ProtocolError, match="no picUrl"):
        client.search_file(b"picture")
    assert len(seen) == 1


def test_answers_that_are_not_the_envelope_are_protocol_errors() -> None:
    page = lambda request: httpx.Response(200, text="<html>login</html>")  # noqa: E731
    with fake(page) as (client, _), pytest.raises(ProtocolError, match="not the DAJI envelope"):
        client.keyword_search("x")
    wrong_shape = {"code": 200, "message": "操作成功", "data": {"data": [{"title": "no itemId"}]}}
    with fake(answering(wrong_shape)) as (client, _), pytest.raises(ProtocolError, match="shape"):
        client.keyword_search("x")
    with fake(lambda request: httpx.Response(502, text="bad gateway")) as (client, _):
        with pytest.raises(ServerError) as gateway:
            client.keyword_search("x")
    assert gateway.value.code == 502 and "bad gateway" in gateway.value.message


def test_a_business_error_code_keeps_its_code() -> None:
    business = {"code": 1009, "message": "业务异常", "data": None, "traceId": "t"}
    with fake(answering(business)) as (client, _), pytest.raises(ApiError) as error:
        client.keyword_search("x")
    assert type(error.value) is ApiError and error.value.code == 1009 and error.value.status_code == 200


def test_filters_and_regions_spell_the_wire_syntax() -> None:
    assert Filter().to_param() == ""
    assert Filter(min_price=0.1, max_price=2, location="上海").to_param() == "price:0.1-2;location:上海"
    with pytest.raises(ValueError):
        Filter(shop="a;b").to_param()
    assert Region.parse(" 1, 2,3 ,4") == Region(1, 2, 3, 4) and Region(1, 2, 3, 4).to_param() == "1,2,3,4"
    with pytest.raises(ValueError):
        Region.parse("1,2,3")


def test_an_answer_is_read_as_json_whatever_its_content_type() -> None:
    body = json.dumps(KEYWORDS).encode()
    plain = lambda request: httpx.Response(200, content=body, headers={"content-type": "text/plain"})  # noqa: E731
    with fake(plain) as (client, _):
        assert client.keyword_search("x").total == 0


SERVICE_ANSWER: dict[str, Any] = {  # this service's keyword answer: picture URLs without a scheme
    "code": 200,
    "message": "操作成功",
    "data": {
        "data": [{"itemId": "1001", "title": "钢笔", "picUrl": "//127.0.0.1:8000/images/ab.jpg"}],
        "pageNo": 1,
        "pageSize": 1,
        "total": 1,
    },
}
DETAILS_ANSWER: dict[str, Any] = {
    "code": 200,
    "message": "操作成功",
    "data": {
        "itemId": "1001",
        "picUrl": "//shop.test/a.jpg",
        "pictures": [{"picName": "a", "picUrl": "//shop.test/a.jpg"}],
    },
}


def test_picture_urls_take_the_scheme_the_client_talks_to() -> None:
    with fake(answering(SERVICE_ANSWER), base_url="http://127.0.0.1:8000") as (client, _):
        (item,) = client.keyword_search("钢笔").items
    assert item.picture_url() == "http://127.0.0.1:8000/images/ab.jpg"
    assert item.picture_url("https") == "https://127.0.0.1:8000/images/ab.jpg"  # asked for: as before
    with fake(answering(DETAILS_ANSWER), base_url="http://shop.test") as (client, _):
        details = client.item("1001")
    assert details.picture_url() == details.pictures[0].picture_url() == "http://shop.test/a.jpg"
    with fake(answering(SERVICE_ANSWER), base_url="https://search.example.com") as (client, _):
        assert client.keyword_search("钢笔").items[0].picture_url().startswith("https://")


def test_an_item_read_without_a_client_keeps_https() -> None:
    assert Item.model_validate({"itemId": "1", "picUrl": "//a.test/b.jpg"}).picture_url() == "https://a.test/b.jpg"


@pytest.mark.parametrize("plain_secret", [True, False], ids=["appSecret", "sign"])
def test_the_request_line_httpx_logs_hides_the_secret_and_the_sign(
    plain_secret: bool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="httpx"):
        with fake(answering(KEYWORDS), plain_secret=plain_secret) as (client, seen):
            client.keyword_search("钢笔")
    sent = sent_params(seen[0])
    secret = sent["appSecret"] if plain_secret else sent["sign"]
    (record,) = [r for r in caplog.records if r.name == "httpx"]
    line = record.getMessage()
    assert line.startswith("HTTP Request: GET http://tongkuan.test/taobao/traffic/item/search?")
    assert secret not in line and "s3" not in line
    assert ("appSecret=***" if plain_secret else "sign=***") in line
    assert "appKey=k1" in line and "200 OK" in line
