"""Two `tongkuan serve` processes on one PostgreSQL catalog, one Milvus collection and one
shared picture folder: what one is told, the other knows at once, and both answer alike;
an import job posted through one is reported by the other, and finished by another when
the replica running it dies."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import Service, new_data_dir, new_database
from tests.utils.fileserver import FileServer
from tests.utils.milvus_server import MilvusServer
from tests.utils.postgres_server import PostgresServer
from tests.utils.server import Server

MODEL = "efficientnet-lite0"
TOKEN = "admin-token-for-replicas-42"
GROCERY = "grocery_store"
PRODUCTS = {
    "milk": ("Arla-Standard-Milk", "Packages/Milk", 9),
    "banana": ("Banana", "Fruit", 6),
    "juice": ("Bravo-Apple-Juice", "Packages/Juice", 9),
}


def shopper_photo(name: str, folder: str) -> str:
    return f"{GROCERY}/images/val/{folder}/{name}/{name}_001.jpg"


@pytest.fixture(scope="module")
def replicas(
    postgres: PostgresServer, milvus: MilvusServer, model_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Server]]:
    base = tmp_path_factory.mktemp("replicas")
    env = {
        "TONGKUAN_CATALOG_URL": new_database(postgres),
        "TONGKUAN_VECTORS_URL": f"milvus://127.0.0.1:{milvus.port}/replicas",
        "TONGKUAN_IMAGE_DIR": str(base / "shared-pictures"),
        "TONGKUAN_ADMIN_TOKEN": TOKEN,
        "TONGKUAN_PUBLIC_URL": "http://127.0.0.1:9",  # the load balancer's address, the same for all
    }
    servers = (
        Server(new_data_dir(base / "a", model_cache), MODEL, env),
        Server(new_data_dir(base / "b", model_cache), MODEL, env),
    )
    for server in servers:
        server.start()
    yield servers
    for server in servers:
        server.stop()


def admin(server: Server, method: str, path: str, **kwargs: Any) -> Any:
    response = httpx.request(
        method,
        f"http://127.0.0.1:{server.port}{path}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=120,
        **kwargs,
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]


def signed_get(server: Server, path: str, params: dict[str, str]) -> dict[str, Any]:
    service = Service(f"http://127.0.0.1:{server.port}")
    try:
        body: dict[str, Any] = service.get(path, params).json()
    finally:
        service.client.close()
    return body


def search(server: Server, url: str, **params: str) -> dict[str, Any]:
    body = signed_get(server, "/taobao/image-search/url", {"picUrl": url, **params})
    assert body["code"] == 200, body
    return body["data"]  # type: ignore[no-any-return]


def test_a_product_added_through_one_replica_is_found_through_the_other(
    replicas: tuple[Server, Server], file_server: FileServer, data_root: Path
) -> None:
    a, b = replicas
    for item_id, (name, _, category) in PRODUCTS.items():
        iconic = (data_root / GROCERY / "iconic" / f"{name}_Iconic.jpg").read_bytes()
        fields = {"title": f"{name} 商品", "reservePrice": "9.90", "categoryId": category}
        admin(
            a,
            "PUT",
            f"/admin/products/{item_id}",
            data={"product": json.dumps(fields)},
            files=[("images", ("i.jpg", iconic))],
        )
    for item_id, (name, _, _) in PRODUCTS.items():
        found = search(b, file_server.url(f"{GROCERY}/iconic/{name}_Iconic.jpg"), pageSize="3", withScore="true")
        assert found["data"][0]["itemId"] == item_id and found["data"][0]["score"] > 0.99
        # the picture A stored is served by B from the shared folder
        path = urlsplit("http:" + found["data"][0]["picUrl"]).path
        assert httpx.get(f"http://127.0.0.1:{b.port}{path}").status_code == 200
    keyword = signed_get(b, "/taobao/traffic/item/search", {"keyword": "Banana"})
    assert [item["itemId"] for item in keyword["data"]["data"]] == ["banana"]


def test_both_replicas_answer_alike(replicas: tuple[Server, Server], file_server: FileServer) -> None:
    a, b = replicas
    url = file_server.url(shopper_photo("Banana", "Fruit"))
    assert search(a, url, withScore="true") == search(b, url, withScore="true")


def test_an_upload_to_one_replica_is_searchable_by_id_on_the_other(
    replicas: tuple[Server, Server], file_server: FileServer
) -> None:
    a, b = replicas
    photo = file_server.url(shopper_photo("Bravo-Apple-Juice", "Packages/Juice"))
    body = signed_get(a, "/taobao/upload/image", {"pic_url": photo})
    image_id = body["data"]["imageId"]
    found = signed_get(b, "/taobao/traffic/item/imgsearch", {"image_id": image_id})
    assert found["code"] == 200 and "juice" in [item["itemId"] for item in found["data"]]  # V1: a plain list


def test_changes_through_either_replica_reach_the_other(
    replicas: tuple[Server, Server], file_server: FileServer, data_root: Path
) -> None:
    a, b = replicas
    milk = file_server.url(shopper_photo("Arla-Standard-Milk", "Packages/Milk"))
    admin(a, "PATCH", "/admin/products/milk", json={"categoryId": 3})  # retagged: Milvus moves it
    assert search(b, milk, categoryId="3")["data"][0]["itemId"] == "milk"
    assert "milk" not in [i["itemId"] for i in search(b, milk, categoryId="9")["data"]]
    admin(b, "DELETE", "/admin/products/milk")
    assert "milk" not in [item["itemId"] for item in search(a, milk)["data"]]
    # A replays its own write into Milvus; B, right after, must see it through the write stamp A recorded
    iconic = (data_root / GROCERY / "iconic" / "Arla-Standard-Milk_Iconic.jpg").read_bytes()
    admin(
        a,
        "PUT",
        "/admin/products/milk-2",
        data={"product": json.dumps({"title": "milk"})},
        files=[("images", ("m.jpg", iconic))],
    )
    assert search(a, milk)["data"][0]["itemId"] == "milk-2"
    assert search(b, milk)["data"][0]["itemId"] == "milk-2"


def import_body(file_server: FileServer, data_root: Path, count: int) -> bytes:
    iconic = sorted((data_root / GROCERY / "iconic").glob("*.jpg"))[:count]
    return "\n".join(
        json.dumps(
            {"itemId": f"imp-{p.stem}", "title": p.stem, "images": [file_server.url(f"{GROCERY}/iconic/{p.name}")]}
        )
        for p in iconic
    ).encode()


def wait_for_job(server: Server, job_id: str, seconds: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while (job := admin(server, "GET", f"/admin/imports/{job_id}"))["state"] != "done":
        assert job["state"] in ("queued", "running") and time.monotonic() < deadline, job
        time.sleep(0.3)
    return job  # type: ignore[no-any-return]


def test_an_import_posted_through_one_replica_is_reported_through_the_other(
    replicas: tuple[Server, Server], file_server: FileServer, data_root: Path
) -> None:
    a, b = replicas
    started = admin(a, "POST", "/admin/imports", content=import_body(file_server, data_root, 4))
    job = wait_for_job(b, started["jobId"])
    assert (job["records"], job["processed"], job["added"] + job["unchanged"], job["failed"]) == (4, 4, 4, 0)
    assert started["jobId"] in [each["jobId"] for each in admin(b, "GET", "/admin/imports")]
    assert admin(a, "GET", f"/admin/imports/{started['jobId']}") == job


def test_a_job_whose_replica_died_is_finished_by_another(
    replicas: tuple[Server, Server],
    file_server: FileServer,
    data_root: Path,
    model_cache: Path,
    tmp_path: Path,
) -> None:
    a, b = replicas
    # a third replica with a short lease, so the others take over its job soon after it dies
    doomed = Server(new_data_dir(tmp_path / "c", model_cache), MODEL, {**a.env, "TONGKUAN_IMPORT_JOB_LEASE_S": "3"})
    doomed.start()
    records = 40
    try:
        started = admin(doomed, "POST", "/admin/imports", content=import_body(file_server, data_root, records))
        deadline = time.monotonic() + 120
        while admin(b, "GET", f"/admin/imports/{started['jobId']}")["processed"] == 0:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        doomed.stop(signal.SIGKILL)  # mid-job: its lease is never renewed or given back
    interrupted = admin(a, "GET", f"/admin/imports/{started['jobId']}")
    job = wait_for_job(a, started["jobId"])
    print(f"interrupted at {interrupted['processed']} of {records}; finished by another replica")
    assert interrupted["state"] == "running" and interrupted["processed"] < records
    assert job["processed"] == records and job["failed"] == 0
    assert job["added"] + job["unchanged"] + job["updated"] == records
