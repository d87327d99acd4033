"""The search page's own routes under /web/api, without a browser: keyword search, the
guards they share with the picture routes, errors that name their kind, and where the
page's API link leads."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import APP_KEY, APP_SECRET, Service, serve
from tongkuan.api.app import create_app
from tongkuan.config import Settings
from tongkuan.engine import Engine

KEYWORD = "/web/api/keyword"
ITEM_FIELDS = {
    "categoryName",
    "couponAmount",
    "couponstartFee",
    "itemId",
    "levelOneCategoryName",
    "picUrl",
    "provcity",
    "reservePrice",
    "sellerId",
    "shopTitle",
    "title",
    "url",
    "userType",
    "volume",
    "zkFinalPrice",
}


@pytest.fixture(scope="module")
def limited(catalog_engine: Engine) -> Iterator[Service]:
    """The service with a search page limited to one request a second per client."""
    settings = Settings(data_dir=catalog_engine.settings.data_dir, apps=f"{APP_KEY}:{APP_SECRET}", web_rate_limit_qps=1)
    with serve(create_app(settings, engine=catalog_engine)) as svc:
        yield svc


def test_the_keyword_route_answers_like_the_daji_route_without_an_app_key(service: Service) -> None:
    params = {"keyword": "Milk", "sort": "price_asc", "filter": "price:10-400", "page_size": "5"}
    body = service.client.get(KEYWORD, params=params).json()
    assert body["code"] == 200, body
    data = body["data"]
    assert set(data) == {"data", "pageNo", "pageSize", "total"}
    assert data["pageNo"] == 1 and data["pageSize"] == len(data["data"]) == 5 and data["total"] >= 5
    assert all(set(item) == ITEM_FIELDS for item in data["data"])
    prices = [float(item["zkFinalPrice"]) for item in data["data"]]
    assert prices == sorted(prices) and all(10 <= p <= 400 for p in prices)
    signed = service.get("/taobao/traffic/item/search", params).json()["data"]
    assert [i["itemId"] for i in data["data"]] == [i["itemId"] for i in signed["data"]]
    assert data["total"] == signed["total"]
    page_two = service.client.get(KEYWORD, params={**params, "page_no": "2"}).json()["data"]
    assert page_two["pageNo"] == 2 and not {i["itemId"] for i in page_two["data"]} & {i["itemId"] for i in data["data"]}


def test_the_keyword_route_refuses_other_sites_like_the_picture_routes(service: Service) -> None:
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        refused = httpx.get(service.base_url + KEYWORD, params={"keyword": "Milk"}, headers=headers)
        assert refused.status_code == 401 and refused.json()["code"] == 401
    own = httpx.get(service.base_url + KEYWORD, params={"keyword": "Milk"}, headers={"Origin": service.base_url})
    assert own.json()["code"] == 200


def test_keyword_and_picture_searches_share_the_pages_rate_limit(limited: Service) -> None:
    codes = [limited.client.get(KEYWORD, params={"keyword": "Milk"}).json()["code"] for _ in range(2)]
    assert codes == [200, 200]  # a burst of twice the rate
    picture = limited.client.get("/web/api/search", params={"imageId": "0" * 32}).json()
    assert picture["code"] == 429 and picture["data"] == {"error": "rate_limited"}
    assert limited.client.get(KEYWORD, params={"keyword": "Milk"}).json()["code"] == 429


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "Cross-Site"},
        {"Sec-Fetch-Site": "CROSS-SITE"},
        {"Origin": "https://{netloc}"},  # the service's own host and port under another scheme
        {"Origin": "ws://{netloc}"},
        {"Origin": "http://user@{netloc}"},
    ],
)
def test_other_sites_are_refused_whatever_the_case_or_scheme(service: Service, headers: dict[str, str]) -> None:
    netloc = service.base_url.split("://", 1)[1]
    sent = {name: value.format(netloc=netloc) for name, value in headers.items()}
    refused = httpx.get(service.base_url + KEYWORD, params={"keyword": "Milk"}, headers=sent)
    assert refused.status_code == 401 and refused.json()["code"] == 401


@pytest.mark.parametrize("origin", ["{base}", "{base_upper}", "{base}/"])
def test_the_pages_own_origin_is_accepted_in_any_case(service: Service, origin: str) -> None:
    base = service.base_url
    sent = origin.format(base=base, base_upper=base.upper())
    own = httpx.get(
        base + KEYWORD, params={"keyword": "Milk"}, headers={"Origin": sent, "Sec-Fetch-Site": "Same-Origin"}
    )
    assert own.json()["code"] == 200


@pytest.mark.parametrize(
    ("method", "path", "params", "kind"),
    [
        ("GET", "/web/api/search", {"imageId": "0" * 32}, "image_not_found"),
        ("GET", "/web/api/search", {}, "bad_parameter"),
        ("GET", KEYWORD, {"keyword": "Milk", "filter": "price:100-10"}, "bad_parameter"),
        ("POST", "/web/api/upload", {"url": "http://10.1.2.3/photo.jpg"}, "forbidden_address"),
        ("POST", "/web/api/upload", {"url": "http://127.0.0.1:9/nothing.jpg"}, "fetch_failed"),
        ("GET", "/web/api/nothing", {}, "not_found"),
    ],
)
def test_the_pages_errors_name_their_kind(
    service: Service, method: str, path: str, params: dict[str, str], kind: str
) -> None:
    if method == "POST":
        response = service.client.post(path, data=params)
    else:
        response = service.client.get(path, params=params)
    body = response.json()
    assert body["code"] == response.status_code != 200
    assert body["data"] == {"error": kind}


def test_the_daji_routes_keep_errors_without_data(service: Service) -> None:
    body = service.get("/taobao/traffic/item/search", {"keyword": "Milk", "filter": "price:100-10"}).json()
    assert body["code"] == 400 and body["data"] is None


def api_link(service: Service) -> str:
    found = re.search(r'<a id="api-link" href="([^"]+)"', httpx.get(service.base_url + "/").text)
    assert found, "the page has no API link"
    return found.group(1)


def test_the_pages_api_link_leads_to_the_spec_while_the_docs_are_off(service: Service) -> None:
    assert httpx.get(service.base_url + "/docs").status_code == 404
    link = api_link(service)
    assert link == "/openapi.json"
    assert httpx.get(service.base_url + link).json()["info"]["title"] == "tongkuan"


def test_the_pages_api_link_leads_to_the_docs_when_they_are_on(catalog_engine: Engine) -> None:
    settings = Settings(data_dir=catalog_engine.settings.data_dir, apps=f"{APP_KEY}:{APP_SECRET}", api_docs=True)
    with serve(create_app(settings, engine=catalog_engine)) as svc:
        link = api_link(svc)
        assert link == "/docs" and httpx.get(svc.base_url + link).status_code == 200
