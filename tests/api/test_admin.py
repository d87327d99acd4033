"""The catalog admin API through real HTTP: its own token, products and pictures, imports,
export, and every change seen at once by image and keyword search and after a restart."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import APP_KEY, APP_SECRET, Service, new_data_dir, serve, settings_for
from tests.utils.fileserver import FileServer
from tongkuan.api.app import create_app
from tongkuan.config import Settings

TOKEN = "admin-token-for-tests-0123"
MODEL = "efficientnet-lite0"
GROCERY = "grocery_store"
ICONIC = f"{GROCERY}/iconic"
# products and shopper photos of them (val split, never in the catalog)
MILK = ("Arla-Standard-Milk", f"{GROCERY}/images/val/Packages/Milk/Arla-Standard-Milk/Arla-Standard-Milk_001.jpg")
BANANA = ("Banana", f"{GROCERY}/images/val/Fruit/Banana/Banana_001.jpg")
JUICE = ("Bravo-Apple-Juice", f"{GROCERY}/images/val/Packages/Juice/Bravo-Apple-Juice/Bravo-Apple-Juice_001.jpg")


class Admin:
    """The service plus an admin client."""

    def __init__(self, service: Service, settings: Settings) -> None:
        self.service = service
        self.settings = settings
        self.http = httpx.Client(base_url=service.base_url, timeout=120.0, headers={"Authorization": f"Bearer {TOKEN}"})

    def call(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        body = response.json()
        assert set(body) == {"code", "message", "data", "timestamp", "traceId"}, body
        assert (response.status_code, body["code"]) == (expect, expect), body
        return body["data"] if expect == 200 else body["message"]

    def top_ids(self, picture_url: str, **params: str) -> list[str]:
        body = self.service.get("/taobao/image-search/url", {"picUrl": picture_url, "pageSize": "5", **params}).json()
        assert body["code"] == 200, body
        return [item["itemId"] for item in body["data"]["data"]]

    def best_hit(self, picture_url: str) -> dict[str, Any]:
        body = self.service.get("/taobao/image-search/url", {"picUrl": picture_url, "withScore": "true"}).json()
        assert body["code"] == 200, body
        hit: dict[str, Any] = body["data"]["data"][0]
        return hit

    def keyword_ids(self, keyword: str) -> list[str]:
        body = self.service.get("/taobao/traffic/item/search", {"keyword": keyword}).json()
        assert body["code"] == 200, body
        return [item["itemId"] for item in body["data"]["data"]]


@pytest.fixture
def data_dir(tmp_path: Path, model_cache: Path) -> Path:
    return new_data_dir(tmp_path / "data", model_cache)


@contextmanager
def running(data_dir: Path, **overrides: object) -> Iterator[Admin]:
    """The service over `data_dir`, opened (and closed) by the app itself, as `tongkuan serve` does."""
    settings = settings_for(data_dir, model=MODEL, admin_token=TOKEN, **overrides)
    with serve(create_app(settings)) as service:
        admin = Admin(service, settings)
        yield admin
        admin.http.close()


@pytest.fixture
def admin(data_dir: Path) -> Iterator[Admin]:
    with running(data_dir) as service:
        yield service


def product(name: str, file_server: FileServer, **fields: Any) -> dict[str, Any]:
    return {
        "title": name.replace("-", " "),
        "reservePrice": "12.50",
        "shopTitle": "同款测试店",
        "provcity": "浙江 杭州",
        "images": [file_server.url(f"{ICONIC}/{name}_Iconic.jpg")],
        **fields,
    }


def test_the_admin_api_takes_only_its_own_token(admin: Admin, data_dir: Path) -> None:
    anonymous = httpx.get(f"{admin.service.base_url}/admin/products")
    assert anonymous.status_code == 401 and anonymous.json()["code"] == 401
    wrong = httpx.get(f"{admin.service.base_url}/admin/products", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "wrong" in wrong.json()["message"]
    daji = admin.service.client.get("/admin/products", params=admin.service.signed({}))
    assert daji.status_code == 401
    as_secret = httpx.get(f"{admin.service.base_url}/admin/products", headers={"Authorization": f"Bearer {APP_SECRET}"})
    assert as_secret.status_code == 401
    assert APP_KEY  # the DAJI app exists and still cannot manage the catalog


def test_the_admin_api_is_off_without_a_token(tmp_path: Path, model_cache: Path) -> None:
    settings = settings_for(new_data_dir(tmp_path / "off", model_cache), model=MODEL)
    with serve(create_app(settings)) as service:
        response = httpx.get(f"{service.base_url}/admin/products", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 401 and "TONGKUAN_ADMIN_TOKEN" in response.json()["message"]


def test_products_added_by_url_and_by_upload_are_found_at_once(
    admin: Admin, file_server: FileServer, data_root: Path
) -> None:
    milk = admin.call("PUT", "/admin/products/milk", json=product(MILK[0], file_server))
    assert milk["itemId"] == "milk" and [p["picName"] for p in milk["pictures"]] == [f"{MILK[0]}_Iconic.jpg"]
    assert milk["categoryPredicted"] is True and milk["categoryId"] is not None
    files = [("images", (f"{BANANA[0]}.jpg", (data_root / ICONIC / f"{BANANA[0]}_Iconic.jpg").read_bytes()))]
    fields = {"title": "Banana 香蕉", "reservePrice": "3", "categoryId": 6}
    banana = admin.call("PUT", "/admin/products/banana", data={"product": json.dumps(fields)}, files=files)
    assert [p["picName"] for p in banana["pictures"]] == ["Banana.jpg"]
    assert banana["categoryId"] == 6 and banana["categoryPredicted"] is False
    assert banana["pictures"][0]["picUrl"].startswith("//127.0.0.1")

    assert admin.top_ids(file_server.url(MILK[1]))[0] == "milk"
    assert admin.top_ids(file_server.url(BANANA[1]))[0] == "banana"
    assert admin.keyword_ids("香蕉") == ["banana"] and admin.keyword_ids("arla milk") == ["milk"]
    assert admin.call("GET", "/admin/products/milk") == milk


def test_replacing_updating_and_deleting_show_in_search_at_once(admin: Admin, file_server: FileServer) -> None:
    admin.call("PUT", "/admin/products/p1", json=product(MILK[0], file_server))
    admin.call("PUT", "/admin/products/p2", json=product(BANANA[0], file_server))
    assert admin.top_ids(file_server.url(BANANA[1]))[0] == "p2"

    # replace p1's pictures: the milk photo no longer finds it first, the juice photo does
    admin.call("PUT", "/admin/products/p1", json=product(JUICE[0], file_server, title="苹果汁 Apple Juice"))
    assert admin.top_ids(file_server.url(JUICE[1]))[0] == "p1"
    assert admin.keyword_ids("苹果汁") == ["p1"] and admin.keyword_ids("arla") == []

    updated = admin.call("PATCH", "/admin/products/p1", json={"zkFinalPrice": "9.90", "title": "橙汁 Orange"})
    assert updated["zkFinalPrice"] == "9.9" and updated["reservePrice"] == "12.5"
    assert updated["categoryId"] is not None and updated["pictures"][0]["picName"].startswith(JUICE[0])
    found = admin.service.get("/taobao/image-search/url", {"picUrl": file_server.url(JUICE[1])}).json()
    assert found["data"]["data"][0]["zkFinalPrice"] == "9.9"
    assert admin.keyword_ids("橙汁") == ["p1"] and admin.keyword_ids("苹果汁") == []

    assert admin.call("DELETE", "/admin/products/p2") == {"itemId": "p2", "deleted": True}
    assert "p2" not in admin.top_ids(file_server.url(BANANA[1]))
    assert "p2" in admin.call("GET", "/admin/products/p2", expect=404)
    assert "p2" in admin.call("DELETE", "/admin/products/p2", expect=404)


def test_single_pictures_are_added_replaced_and_removed(admin: Admin, file_server: FileServer, data_root: Path) -> None:
    admin.call("PUT", "/admin/products/multi", json=product(MILK[0], file_server))
    juice_bytes = (data_root / ICONIC / f"{JUICE[0]}_Iconic.jpg").read_bytes()
    added = admin.call(
        "POST", "/admin/products/multi/images", data={"picName": "side"}, files={"image": ("x.jpg", juice_bytes)}
    )
    assert [p["picName"] for p in added["pictures"]] == [f"{MILK[0]}_Iconic.jpg", "side"]
    assert added["pictures"][1]["picUrl"].startswith("//127.0.0.1")

    banana = file_server.url(f"{ICONIC}/{BANANA[0]}_Iconic.jpg")
    replaced = admin.call("POST", "/admin/products/multi/images", json={"url": banana, "picName": "side"})
    assert [p["picName"] for p in replaced["pictures"]] == [f"{MILK[0]}_Iconic.jpg", "side"]
    assert replaced["pictures"][1]["picUrl"] == "//" + banana.split("://", 1)[1]
    with_banana = admin.best_hit(file_server.url(BANANA[1]))
    assert with_banana["itemId"] == "multi" and with_banana["picUrl"] == replaced["pictures"][1]["picUrl"]

    left = admin.call("DELETE", "/admin/products/multi/images/side")
    assert [p["picName"] for p in left["pictures"]] == [f"{MILK[0]}_Iconic.jpg"]
    without = admin.best_hit(file_server.url(BANANA[1]))
    assert without["picUrl"] == left["pictures"][0]["picUrl"] and without["score"] < with_banana["score"]
    assert "last picture" in admin.call("DELETE", f"/admin/products/multi/images/{MILK[0]}_Iconic.jpg", expect=409)
    assert "side" in admin.call("DELETE", "/admin/products/multi/images/side", expect=404)
    assert "nothing" in admin.call("DELETE", "/admin/products/nothing/images/side", expect=404)


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "named"),
    [
        ("PUT", "/admin/products/x", {"json": {"title": "x"}}, "images"),
        ("PUT", "/admin/products/x", {"json": {"title": "x", "images": []}}, "images"),
        ("PUT", "/admin/products/x", {"json": {"title": "x", "images": ["/etc/passwd"]}}, "images[0]"),
        (
            "PUT",
            "/admin/products/x",
            {"json": {"images": [{"url": "http://127.0.0.1:9/a.jpg", "picName": "a/b"}]}},
            "picName",
        ),
        ("PUT", "/admin/products/x", {"json": {"itemId": "y", "images": ["http://127.0.0.1:9/a.jpg"]}}, "itemId"),
        (
            "PUT",
            "/admin/products/x",
            {"content": b"[1, 2]", "headers": {"content-type": "application/json"}},
            "JSON object",
        ),
        ("PUT", "/admin/products/x", {"data": {"product": "{"}, "files": {"images": ("a.jpg", b"x")}}, "product"),
        (
            "PUT",
            "/admin/products/x",
            {"data": {"product": "{}"}, "files": {"images": ("a.jpg", b"not an image")}},
            "图片",
        ),
        ("PATCH", "/admin/products/x", {"json": {"colour": "red"}}, "colour"),
        ("PATCH", "/admin/products/x", {"json": {"itemId": "y"}}, "itemId"),
        ("POST", "/admin/products/x/images", {"json": {"url": "file:///etc/passwd"}}, "url"),
        ("POST", "/admin/imports", {"content": b""}, "empty"),
        ("GET", "/admin/imports/0123", {}, "0123"),
        ("GET", "/admin/products?limit=0", {}, "limit"),
    ],
)
def test_bad_admin_requests_are_named(admin: Admin, method: str, path: str, kwargs: dict[str, Any], named: str) -> None:
    response = admin.http.request(method, path, **kwargs)
    body = response.json()
    assert response.status_code in (400, 404) and body["code"] == response.status_code, body
    assert named in body["message"]


def test_field_rules_hold_for_updates(admin: Admin, file_server: FileServer) -> None:
    admin.call("PUT", "/admin/products/r", json=product(MILK[0], file_server))
    assert "reservePrice" in admin.call("PATCH", "/admin/products/r", json={"reservePrice": "-1"}, expect=400)
    assert "userType" in admin.call("PATCH", "/admin/products/r", json={"userType": 7}, expect=400)
    assert "categoryId" in admin.call("PATCH", "/admin/products/r", json={"categoryId": 10}, expect=400)
    assert admin.call("GET", "/admin/products/r")["reservePrice"] == "12.5"  # nothing half-applied


def test_listing_walks_every_product_once(admin: Admin, file_server: FileServer) -> None:
    for i in range(5):
        admin.call("PUT", f"/admin/products/item-{i}", json=product(MILK[0], file_server))
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = admin.call("GET", "/admin/products", params={"limit": 2, **({"cursor": cursor} if cursor else {})})
        seen += [p["itemId"] for p in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == [f"item-{i}" for i in range(5)]


def wait_for_job(admin: Admin, job_id: str, timeout: float = 180.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = admin.call("GET", f"/admin/imports/{job_id}")
        if job["state"] in ("done", "failed"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.2)


def test_a_bulk_import_runs_as_a_job_with_progress(admin: Admin, file_server: FileServer, data_dir: Path) -> None:
    names = [MILK[0], BANANA[0], JUICE[0], "Granny-Smith", "Alpro-Fresh-Soy-Milk"]
    lines = [json.dumps({"itemId": n, **product(n, file_server)}) for n in names]
    lines += [
        json.dumps({"itemId": "local", "title": "x", "images": [str(data_dir / "catalog.db")]}),  # server's disk
        json.dumps({"title": "no id", "images": [file_server.url(f"{ICONIC}/{MILK[0]}_Iconic.jpg")]}),
        "not json",
        "",
    ]
    started = admin.call("POST", "/admin/imports", content="\n".join(lines).encode())
    assert started["state"] in ("queued", "running") and started["records"] == 8
    job = wait_for_job(admin, started["jobId"])
    assert job["state"] == "done" and job["processed"] == 8
    assert (job["added"], job["failed"]) == (5, 3)
    reasons = {f["itemId"]: f["reason"] for f in job["failures"]}
    assert "http(s) URL" in reasons["local"]
    assert admin.top_ids(file_server.url(BANANA[1]))[0] == BANANA[0]
    assert [j["jobId"] for j in admin.call("GET", "/admin/imports")] == [started["jobId"]]

    again = wait_for_job(admin, admin.call("POST", "/admin/imports", content="\n".join(lines[:5]).encode())["jobId"])
    assert (again["added"], again["unchanged"], again["failed"]) == (0, 5, 0)  # idempotent


def test_an_ended_import_job_is_deleted_and_an_open_one_refused(data_dir: Path, file_server: FileServer) -> None:
    settings = settings_for(data_dir, model=MODEL, admin_token=TOKEN)
    app = create_app(settings)
    with serve(app) as service:
        admin = Admin(service, settings)
        line = json.dumps({"itemId": MILK[0], **product(MILK[0], file_server)})
        ended = wait_for_job(admin, admin.call("POST", "/admin/imports", content=line.encode())["jobId"])
        app.state.engine.imports.close()  # no worker here: a job submitted now stays queued
        queued = admin.call("POST", "/admin/imports", content=line.encode())["jobId"]
        assert "has not ended" in admin.call("DELETE", f"/admin/imports/{queued}", expect=409)
        assert admin.call("GET", f"/admin/imports/{queued}")["state"] == "queued"
        assert admin.call("DELETE", f"/admin/imports/{ended['jobId']}") == {"jobId": ended["jobId"], "deleted": True}
        admin.call("GET", f"/admin/imports/{ended['jobId']}", expect=404)
        admin.call("DELETE", f"/admin/imports/{ended['jobId']}", expect=404)
        admin.call("DELETE", "/admin/imports/not-a-job", expect=404)
        assert [j["jobId"] for j in admin.call("GET", "/admin/imports")] == [queued]
        admin.http.close()


def test_an_import_reads_pictures_from_urls_only_never_the_picture_store(
    admin: Admin, file_server: FileServer, data_dir: Path, data_root: Path
) -> None:
    """Naming a stored picture by its path would read the server's disk: an import gives URLs."""
    files = [("images", ("b.jpg", (data_root / ICONIC / f"{BANANA[0]}_Iconic.jpg").read_bytes()))]
    admin.call("PUT", "/admin/products/uploaded", data={"product": json.dumps({"title": "香蕉"})}, files=files)
    stored = next(p for p in (data_dir / "images").rglob("*.jpg"))
    refs = [str(stored), stored.name, f"../images/{stored.relative_to(data_dir / 'images')}"]
    lines = [json.dumps({"itemId": f"stored-{i}", "title": "x", "images": [ref]}) for i, ref in enumerate(refs)]
    job = wait_for_job(admin, admin.call("POST", "/admin/imports", content="\n".join(lines).encode())["jobId"])
    assert (job["added"], job["failed"]) == (0, 3), job
    assert all("http(s) URL" in failure["reason"] for failure in job["failures"])


def test_a_deeply_nested_import_line_fails_alone_and_the_job_goes_on(admin: Admin, file_server: FileServer) -> None:
    deep = '{"itemId": "deep", "customContent": ' + "[" * 100_000 + "]" * 100_000 + "}"
    lines = [json.dumps({"itemId": n, **product(n, file_server)}) for n in (MILK[0], BANANA[0])]
    started = admin.call("POST", "/admin/imports", content="\n".join([lines[0], deep, lines[1]]).encode())
    job = wait_for_job(admin, started["jobId"])
    assert job["state"] == "done" and (job["processed"], job["added"], job["failed"]) == (3, 2, 1), job
    (failure,) = job["failures"]
    assert "deeper than 32" in failure["reason"] and failure["origin"].endswith(":2")


def test_export_is_jsonl_that_another_tongkuan_imports(
    admin: Admin, file_server: FileServer, data_root: Path, tmp_path: Path, model_cache: Path
) -> None:
    admin.call("PUT", "/admin/products/by-url", json=product(MILK[0], file_server, customContent={"sku": "A-1"}))
    files = [("images", ("b.jpg", (data_root / ICONIC / f"{BANANA[0]}_Iconic.jpg").read_bytes()))]
    admin.call("PUT", "/admin/products/uploaded", data={"product": json.dumps({"title": "香蕉"})}, files=files)
    response = admin.http.get("/admin/export")
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/x-ndjson")
    records = [json.loads(line) for line in response.text.splitlines()]
    assert [r["itemId"] for r in records] == ["by-url", "uploaded"]
    assert records[0]["customContent"] == {"sku": "A-1"} and records[0]["reservePrice"] == "12.50"
    assert records[1]["images"][0].startswith(admin.service.base_url + "/images/")

    other = new_data_dir(tmp_path / "other", model_cache)
    with running(other) as other_admin:
        job_id = other_admin.call("POST", "/admin/imports", content=response.content)["jobId"]
        job = wait_for_job(other_admin, job_id)
        assert (job["added"], job["failed"]) == (2, 0), job
        copy = other_admin.call("GET", "/admin/products/by-url")
        original = admin.call("GET", "/admin/products/by-url")
        assert {k: v for k, v in copy.items() if k != "pictures"} == {
            k: v for k, v in original.items() if k != "pictures"
        }


def test_admin_changes_survive_a_restart(data_dir: Path, file_server: FileServer) -> None:
    with running(data_dir) as admin:
        admin.call("PUT", "/admin/products/kept", json=product(MILK[0], file_server))
        admin.call("PUT", "/admin/products/gone", json=product(BANANA[0], file_server))
        admin.call("PATCH", "/admin/products/kept", json={"title": "保留的牛奶"})
        admin.call("DELETE", "/admin/products/gone")
    with running(data_dir) as admin:
        assert admin.top_ids(file_server.url(MILK[1])) == ["kept"]
        assert admin.keyword_ids("牛奶") == ["kept"]
        assert "gone" in admin.call("GET", "/admin/products/gone", expect=404)


def test_uploaded_pictures_are_stored_when_the_data_dir_is_relative(
    tmp_path: Path, model_cache: Path, data_root: Path, file_server: FileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`tongkuan serve --data-dir shop` from the folder holding shop: uploads, a replacement
    and a single added picture are stored and searchable, even after the working directory
    changes under the running service."""
    new_data_dir(tmp_path / "shop", model_cache)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path)
    picture = {name: (data_root / ICONIC / f"{name}_Iconic.jpg").read_bytes() for name in (MILK[0], BANANA[0])}
    with running(Path("shop")) as admin:
        uploaded = admin.call(
            "PUT", "/admin/products/up", data={"product": json.dumps({"title": "牛奶"})},
            files=[("images", ("milk.jpg", picture[MILK[0]]))],
        )  # fmt: skip
        assert [p["picName"] for p in uploaded["pictures"]] == ["milk.jpg"]
        monkeypatch.chdir(tmp_path / "elsewhere")
        replaced = admin.call(
            "PUT", "/admin/products/up", data={"product": json.dumps({"title": "香蕉"})},
            files=[("images", ("banana.jpg", picture[BANANA[0]]))],
        )  # fmt: skip
        assert [p["picName"] for p in replaced["pictures"]] == ["banana.jpg"]
        added = admin.call(
            "POST", "/admin/products/up/images", data={"picName": "side"}, files={"image": ("m.jpg", picture[MILK[0]])}
        )
        assert [p["picName"] for p in added["pictures"]] == ["banana.jpg", "side"]
        assert admin.top_ids(file_server.url(BANANA[1]))[0] == "up"
        for stored in added["pictures"]:
            served = admin.http.get(f"http:{stored['picUrl']}")
            assert served.status_code == 200 and served.content in picture.values()
        assert admin.settings.data_dir == tmp_path / "shop"  # read once, as an absolute path
    assert len(list((tmp_path / "shop" / "images").iterdir())) == 2  # the two pictures, stored once each
