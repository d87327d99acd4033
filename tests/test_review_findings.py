"""Regressions: bad input that used to give a 500, stall the server or lose a name."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import Service, new_data_dir, serve, settings_for
from tests.utils.fileserver import FileServer
from tongkuan.api.app import create_app
from tongkuan.catalog import keywords
from tongkuan.catalog.sqlite import SqliteCatalog
from tongkuan.domain.products import NewImage, Product, SortOrder
from tongkuan.engine import Engine
from tongkuan.errors import RecordError
from tongkuan.images.store import ImageStore
from tongkuan.ingest.records import to_product

TOKEN = "review-findings-token-0123"
ICONIC = "grocery_store/iconic"


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Iterator[tuple[Service, Engine]]:
    data_dir = new_data_dir(tmp_path_factory.mktemp("review") / "data", model_cache)
    engine = Engine(settings_for(data_dir, model="efficientnet-lite0", admin_token=TOKEN))
    with serve(create_app(engine.settings, engine=engine)) as service:
        yield service, engine
    engine.close()


def admin(service: Service) -> httpx.Client:
    return httpx.Client(base_url=service.base_url, timeout=60, headers={"Authorization": f"Bearer {TOKEN}"})


def test_a_slow_picture_url_does_not_stall_other_requests(
    small: tuple[Service, Engine], file_server: FileServer
) -> None:
    service, _ = small
    slow = threading.Thread(
        target=lambda: httpx.post(
            f"{service.base_url}/web/api/upload", data={"url": file_server.url("slow?seconds=4")}, timeout=30
        )
    )
    slow.start()
    time.sleep(0.5)  # the slow fetch is in flight
    started = time.monotonic()
    assert httpx.get(f"{service.base_url}/health", timeout=30).status_code == 200
    assert time.monotonic() - started < 1.5
    slow.join()


def test_repeated_picture_names_stay_distinct(tmp_path: Path) -> None:
    catalog = SqliteCatalog(tmp_path / "c.db", "none", 4)
    vector = np.ones(4, np.float32)
    images = [NewImage("h", "x", vector, name) for name in ("x", "x-2", "x", "x-2-2", "")]
    catalog.upsert(Product(item_id="p", title="t"), images)
    names = [p.name for p in catalog.images_of("p")]
    assert len(set(names)) == len(names) == 5


@pytest.mark.parametrize(
    "fields",
    [
        {"volume": 1e30},
        {"volume": "Infinity"},
        {"couponAmount": "sNaN"},
        {"couponAmount": "NaN"},
        {"userType": "-Infinity"},
        {"volume": 2**63},
        {"url": "javascript:alert(1)"},
        {"url": "data:text/html,<script>"},
        {"url": "/relative/path"},
    ],
)
def test_out_of_range_or_unsafe_fields_are_record_errors(fields: dict[str, object]) -> None:
    with pytest.raises(RecordError) as caught:
        to_product({"itemId": "a", **fields})
    assert next(iter(fields)) in str(caught.value)


def test_bad_numbers_in_an_admin_put_are_a_400(small: tuple[Service, Engine], file_server: FileServer) -> None:
    service, _ = small
    with admin(service) as client:
        body = client.put(
            "/admin/products/n",
            json={"volume": "Infinity", "images": [file_server.url(f"{ICONIC}/Banana_Iconic.jpg")]},
        ).json()
    assert body["code"] == 400 and "volume" in body["message"]


@pytest.mark.parametrize(
    ("path", "params", "headers", "code"),
    [
        ("/alibaba/product/imageQuery", {"beginPage": "1", "imageUrl": "http://[x"}, {}, 400),
        ("/taobao/image-search/url", {"picUrl": "http://[::1"}, {}, 400),
        ("/web/api/search", {"imageId": "0" * 32}, {"Origin": "http://["}, 401),
    ],
)
def test_malformed_urls_are_refused_not_crashed(
    small: tuple[Service, Engine], path: str, params: dict[str, str], headers: dict[str, str], code: int
) -> None:
    service, _ = small
    if path.startswith("/web/"):
        response = httpx.get(service.base_url + path, params=params, headers=headers)
    else:
        response = service.get(path, params)
    assert response.status_code == code and response.json()["code"] == code, response.text


def test_underscores_in_queries_do_not_empty_the_results(tmp_path: Path) -> None:
    catalog = SqliteCatalog(tmp_path / "c.db", "none", 4)
    catalog.upsert(Product(item_id="a", title="dress_x T恤_男", shop_title="my_shop 旗舰店"), None)
    assert all(any(c.isalnum() for c in t.text) for t in keywords.query_terms("dress_x _ T恤_男"))
    for sort in SortOrder:
        assert catalog.keyword_search("dress_x", sort)[1] == 1, sort
        assert catalog.keyword_search("T恤_男", sort)[1] == 1, sort
    assert catalog.shop_search("my_shop")[1] == 1


def test_an_item_id_with_surrounding_spaces_is_refused(small: tuple[Service, Engine], file_server: FileServer) -> None:
    service, _ = small
    with admin(service) as client:
        body = client.put(
            "/admin/products/%20x%20", json={"images": [file_server.url(f"{ICONIC}/Banana_Iconic.jpg")]}
        ).json()
    assert body["code"] == 400 and "itemId" in body["message"]


def test_renaming_unchanged_pictures_takes_effect(small: tuple[Service, Engine], file_server: FileServer) -> None:
    service, _ = small
    url = file_server.url(f"{ICONIC}/Banana_Iconic.jpg")
    with admin(service) as client:
        first = client.put("/admin/products/ren", json={"images": [{"url": url, "picName": "front"}]}).json()
        assert [p["picName"] for p in first["data"]["pictures"]] == ["front"]
        again = client.put("/admin/products/ren", json={"images": [{"url": url, "picName": "side"}]}).json()
    assert [p["picName"] for p in again["data"]["pictures"]] == ["side"]


def test_default_picture_names_leave_out_the_query_string(
    small: tuple[Service, Engine], file_server: FileServer
) -> None:
    service, _ = small
    signed = file_server.url(f"{ICONIC}/Banana_Iconic.jpg") + "?X-Signature=" + "a" * 200
    with admin(service) as client:
        body = client.put("/admin/products/signed", json={"images": [signed]}).json()
    assert body["code"] == 200, body
    assert [p["picName"] for p in body["data"]["pictures"]] == ["Banana_Iconic.jpg"]


def test_another_process_keeps_fresh_part_files(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    fresh = store.root / f"{os.getpid()}-in-flight.part"  # a live writer (this process)
    fresh.write_bytes(b"being written by a running server")
    dead = store.root / "999999999-crashed.part"  # no such process
    dead.write_bytes(b"left by a crash")
    unmarked = store.root / "crashed.part"
    unmarked.write_bytes(b"left by an older version")
    old = time.time() - 2 * 3600
    os.utime(unmarked, (old, old))
    ImageStore(store.root)  # a second process opens the same store
    assert fresh.exists() and not dead.exists() and not unmarked.exists()


def test_an_import_that_is_not_utf8_is_refused_at_once(small: tuple[Service, Engine]) -> None:
    service, _ = small
    with admin(service) as client:
        body = client.post("/admin/imports", content=b"\xff\xfe not UTF-8\n").json()
    assert body["code"] == 400 and "UTF-8" in body["message"]


def test_a_truncated_backup_is_refused(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from tongkuan.cli import main

    data_dir = tmp_path / "live"
    data_dir.mkdir()
    SqliteCatalog(data_dir / "catalog.db", "none", 4).upsert(Product(item_id="a", title="t"), None)
    (data_dir / "images").mkdir()
    (data_dir / "images" / "big.bin").write_bytes(os.urandom(200_000))
    archive = tmp_path / "b.tar.gz"
    assert CliRunner().invoke(main, ["backup", str(archive), "--data-dir", str(data_dir)]).exit_code == 0
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    result = CliRunner().invoke(main, ["restore", str(archive), "--data-dir", str(tmp_path / "new")])
    assert result.exit_code == 1 and "cannot be restored" in result.output, result.output


def test_the_page_api_accepts_the_public_origin_behind_a_proxy(tmp_path: Path, model_cache: Path) -> None:
    settings = settings_for(
        new_data_dir(tmp_path / "data", model_cache), model="efficientnet-lite0", public_url="https://shop.example.com"
    )
    with serve(create_app(settings)) as service:
        ours = httpx.get(
            f"{service.base_url}/web/api/search",
            params={"imageId": "0" * 32},
            headers={"Origin": "https://shop.example.com"},
        )
        theirs = httpx.get(
            f"{service.base_url}/web/api/search",
            params={"imageId": "0" * 32},
            headers={"Origin": "https://evil.example"},
        )
    assert ours.json()["code"] == 400  # past the origin check: the image id is unknown
    assert theirs.json()["code"] == 401
