"""Image search V2.0 through real HTTP over the session catalog: shape, parameters, errors."""

from __future__ import annotations

import pytest

from tests.conftest import APP_KEY, APP_SECRET, Service
from tests.utils.fileserver import FileServer


@pytest.fixture
def service(service_on_each_backend: Service) -> Service:
    """Every test here runs on the embedded and on the server backends."""
    return service_on_each_backend


QUERY = "grocery_store/images/val/Packages/Milk/Arla-Standard-Milk/Arla-Standard-Milk_001.jpg"
ITEM_FIELDS = {
    "categoryName": str,
    "couponAmount": (int, type(None)),
    "couponstartFee": (str, type(None)),
    "itemId": str,
    "levelOneCategoryName": str,
    "picUrl": str,
    "provcity": str,
    "reservePrice": str,
    "sellerId": str,
    "shopTitle": str,
    "title": str,
    "url": str,
    "userType": int,
    "volume": int,
    "zkFinalPrice": str,
}


def search(service: Service, file_server: FileServer, **params: str) -> dict:  # type: ignore[type-arg]
    response = service.get("/taobao/image-search/url", {"picUrl": file_server.url(QUERY), **params})
    body = response.json()
    assert set(body) == {"code", "message", "data", "timestamp", "traceId"}
    return body  # type: ignore[no-any-return]


def test_a_search_answers_the_v2_shape_exactly(service: Service, file_server: FileServer) -> None:
    body = search(service, file_server, pageSize="5")
    assert body["code"] == 200 and body["message"] == "操作成功"
    assert len(body["traceId"]) == 12 and isinstance(body["timestamp"], int)
    data = body["data"]
    assert set(data) == {"data", "picInfo", "pageNo", "pageSize"}
    assert data["pageNo"] == 0 and data["pageSize"] == len(data["data"]) == 5
    for item in data["data"]:
        assert set(item) == set(ITEM_FIELDS)
        for name, kind in ITEM_FIELDS.items():
            assert isinstance(item[name], kind), (name, item[name])
        assert item["picUrl"].startswith("//")
        float(item["reservePrice"]), float(item["zkFinalPrice"])
    assert data["data"][0]["itemId"] == "grocery-041"  # Arla Standard Milk
    main = data["picInfo"]["mainRegion"]
    scores = [c["score"] for c in main["multiCategoryId"]]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1.0001
    assert len({c["categoryId"] for c in main["multiCategoryId"]}) == len(scores) > 1
    regions = [r["region"] for r in data["picInfo"]["multiRegion"]]
    assert regions[0] == main["region"]
    x1, x2, y1, y2 = (int(v) for v in main["region"].split(","))
    assert 0 <= x1 < x2 <= 348 and 0 <= y1 < y2 <= 348


def test_page_no_is_an_offset_into_one_ranking(service: Service, file_server: FileServer) -> None:
    first = [i["itemId"] for i in search(service, file_server, pageSize="12")["data"]["data"]]
    page = search(service, file_server, pageNo="5", pageSize="4")["data"]
    assert page["pageNo"] == 5 and page["pageSize"] == 4
    assert [i["itemId"] for i in page["data"]] == first[5:9]
    assert len(set(first)) == len(first)  # one hit per product


def test_a_page_past_the_catalog_is_empty_with_page_size_zero(service: Service, file_server: FileServer) -> None:
    data = search(service, file_server, pageNo="499", pageSize="20")["data"]
    assert data["data"] == [] and data["pageSize"] == 0 and data["pageNo"] == 499


def test_category_id_filters_the_results(service: Service, file_server: FileServer) -> None:
    items = search(service, file_server, categoryId="4", pageSize="10")["data"]["data"]
    assert items and all(i["itemId"].startswith("fashion-") for i in items)


def test_crop_false_searches_the_whole_image(service: Service, file_server: FileServer) -> None:
    data = search(service, file_server, crop="false")["data"]
    assert data["picInfo"]["mainRegion"]["region"] == "0,348,0,348"


def test_region_wins_over_crop_and_is_clipped_to_the_image(service: Service, file_server: FileServer) -> None:
    data = search(service, file_server, crop="false", region="50,200,60,300")["data"]
    assert data["picInfo"]["mainRegion"]["region"] == "50,200,60,300"
    data = search(service, file_server, region="100,900,0,900")["data"]
    assert data["picInfo"]["mainRegion"]["region"] == "100,348,0,348"


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"pageNo": "-1"}, "pageNo"),
        ({"pageNo": "500"}, "pageNo"),
        ({"pageNo": "abc"}, "pageNo"),
        ({"pageNo": "1.5"}, "pageNo"),
        ({"pageNo": "²"}, "pageNo"),  # str.isdigit() says yes, int() says no
        ({"pageSize": "١"}, "pageSize"),  # a digit, but not an ASCII one
        ({"pageSize": "0"}, "pageSize"),
        ({"pageSize": "21"}, "pageSize"),
        ({"pageSize": "ten"}, "pageSize"),
        ({"categoryId": "10"}, "categoryId"),
        ({"categoryId": "tops"}, "categoryId"),
        ({"crop": "yes"}, "crop"),
        ({"region": "1,2,3"}, "region"),
        ({"region": "10,5,0,20"}, "region"),
        ({"region": "0,20,30,30"}, "region"),
        ({"region": "-1,20,0,20"}, "region"),
        ({"region": "a,b,c,d"}, "region"),
        ({"region": "0,²0,0,20"}, "region"),
        ({"region": "900,1000,0,100"}, "region"),
        ({"picUrl": ""}, "picUrl"),
        ({"picUrl": "ftp://127.0.0.1/a.jpg"}, "picUrl"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(
    service: Service, file_server: FileServer, params: dict[str, str], named: str
) -> None:
    response = service.get("/taobao/image-search/url", {"picUrl": file_server.url(QUERY), **params})
    body = response.json()
    assert response.status_code == 400 and body["code"] == 400, body
    assert named in body["message"] and body["data"] is None


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("redirect?to=http://192.168.0.1/a.jpg", 400),
        ("no/such/image.jpg", 400),
        ("grocery_store/classes.csv", 400),
        ("big?bytes=6000000", 400),
    ],
)
def test_bad_pictures_are_clear_client_errors(service: Service, file_server: FileServer, path: str, code: int) -> None:
    response = service.get("/taobao/image-search/url", {"picUrl": file_server.url(path)})
    assert response.status_code == code and response.json()["code"] == code


def test_authentication_failures_are_401_in_the_envelope(service: Service, file_server: FileServer) -> None:
    url = file_server.url(QUERY)
    cases = [
        {"picUrl": url},
        {"appKey": "stranger", "appSecret": "x", "picUrl": url},
        {"appKey": APP_KEY, "sign": "A" * 32, "picUrl": url},
        {"appKey": APP_KEY, "appSecret": "wrong", "picUrl": url},
    ]
    for params in cases:
        response = service.client.get("/taobao/image-search/url", params=params)
        assert response.status_code == 401 and response.json()["code"] == 401, params


def test_testing_mode_app_secret_is_accepted(service: Service, file_server: FileServer) -> None:
    params = {"appKey": APP_KEY, "appSecret": APP_SECRET, "picUrl": file_server.url(QUERY), "pageSize": "1"}
    assert service.client.get("/taobao/image-search/url", params=params).json()["code"] == 200


def test_a_duplicated_parameter_is_refused(service: Service, file_server: FileServer) -> None:
    query = service.signed({"picUrl": file_server.url(QUERY)})
    pairs = [*query.items(), ("pageSize", "3"), ("pageSize", "4")]
    body = service.client.get("/taobao/image-search/url", params=pairs).json()
    assert body["code"] == 400 and "pageSize" in body["message"]


def test_unknown_routes_and_methods_answer_in_the_envelope(service: Service) -> None:
    missing = service.client.get("/no/such/route")
    assert missing.status_code == 404 and missing.json()["code"] == 404 and "traceId" in missing.json()
    wrong = service.client.delete("/taobao/image-search/url")
    assert wrong.status_code == 405 and wrong.json()["code"] == 405


def test_openapi_docs_list_every_route(service: Service) -> None:
    assert service.client.get("/docs").status_code == 404  # the interactive docs are off by default
    paths = service.client.get("/openapi.json").json()["paths"]
    for path in ("/taobao/image-search/url", "/taobao/upload/image", "/taobao/traffic/item/imgsearch"):
        assert path in paths
    names = {p["name"] for p in paths["/taobao/image-search/url"]["get"]["parameters"]}
    assert {"appKey", "sign", "picUrl", "categoryId", "crop", "region", "pageNo", "pageSize"} <= names


def test_secrets_never_reach_the_logs(
    service: Service, file_server: FileServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    params = {"appKey": APP_KEY, "appSecret": APP_SECRET, "picUrl": file_server.url(QUERY), "pageSize": "1"}
    service.client.get("/taobao/image-search/url", params=params)
    service.get("/taobao/image-search/url", {"picUrl": file_server.url(QUERY), "pageSize": "1"})
    signed = service.signed({"picUrl": file_server.url(QUERY), "pageSize": "1"})["sign"]
    server_side = "\n".join(
        r.getMessage() for r in caplog.records if r.name.startswith(("tongkuan", "uvicorn"))
    )  # the test's own client (httpx) logs its URLs in this process too
    assert "/taobao/image-search/url 200" in server_side  # the access log is there
    assert APP_SECRET not in server_side and signed not in server_side


def test_bytes_that_are_not_utf8_are_a_client_error(service: Service) -> None:
    for query in ("appKey=%FF%FE&appSecret=x", f"appKey={APP_KEY}&appSecret={APP_SECRET}&picUrl=%FF%C0%AF"):
        response = service.client.get(f"/taobao/image-search/url?{query}")
        assert response.status_code in (400, 401) and response.json()["code"] in (400, 401)
