"""Backend outages, on a real PostgreSQL and Milvus of this module's own (it stops and kills
them): every request answers within the backend deadline (`TONGKUAN_BACKEND_TIMEOUT_S`), a
refusal is a 503 that names the kind of outage and never an address or a backend's error,
`/ready` turns 503 within a second and back to 200 when the backend returns, `/health`
stays 200, and searches come back within seconds of the database answering again, however
long it was away."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import Service, new_data_dir, serve, settings_for
from tests.utils.fileserver import FileServer
from tests.utils.milvus_server import MilvusServer
from tests.utils.postgres_server import PostgresServer, available
from tongkuan.api.app import create_app

MODEL = "efficientnet-lite0"
PHOTO = "grocery_store/iconic/Banana_Iconic.jpg"
TOKEN = "admin-token-for-outages-42"
TIMEOUT_S = 2.0  # the backend deadline these replicas run with
SLACK_S = 1.5  # fetching and embedding the query around the backend calls, on a busy 2-core machine
NOTICED_S = 1.0  # /ready turns 503 within this of a backend going away
RECOVERY_S = 5.0  # searches succeed again within this of the database answering
OUTAGE_S = 20.0  # how long the database stays away, under traffic


@dataclass
class Stack:
    service: Service
    database: PostgresServer
    milvus: MilvusServer
    photo: str

    def search(self) -> tuple[httpx.Response, float]:
        started = time.monotonic()
        response = self.service.get("/taobao/image-search/url", {"picUrl": self.photo})
        return response, time.monotonic() - started

    def probe(self, path: str = "/ready") -> httpx.Response:
        return self.service.client.get(path)

    def leaks(self, response: httpx.Response) -> list[str]:
        """What a 5xx body must never hold: addresses, ports, backend names and errors."""
        words = ["127.0.0.1", str(self.database.port), str(self.milvus.port), "milvus", "psycopg", "exception"]
        words += ["error", "refused", "timeout", "grpc"]
        return [word for word in words if word in response.text.lower()]


@pytest.fixture(scope="module")
def stack(
    model_cache: Path, file_server: FileServer, data_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    assert available()
    base = tmp_path_factory.mktemp("outages")
    database = PostgresServer()  # of their own: these tests stop and kill them
    milvus = MilvusServer(base / "milvus")
    database.start()
    try:
        milvus.start()
        settings = settings_for(
            new_data_dir(base / "data", model_cache),
            model=MODEL,
            catalog_url=database.url,
            vectors_url=f"milvus://127.0.0.1:{milvus.port}/outages",
            backend_timeout_s=TIMEOUT_S,
            admin_token=TOKEN,
        )
        with serve(create_app(settings)) as service:
            added = service.client.put(
                "/admin/products/banana",
                headers={"Authorization": f"Bearer {TOKEN}"},
                data={"product": json.dumps({"title": "Banana", "reservePrice": "1.00"})},
                files=[("images", ("b.jpg", (data_root / PHOTO).read_bytes()))],
            )
            assert added.status_code == 200, added.text
            yield Stack(service, database, milvus, file_server.url(PHOTO))
    finally:
        milvus.stop()
        database.stop()


def assert_refused(stack: Stack, response: httpx.Response, kind: str) -> None:
    body = response.json()
    assert (response.status_code, body["code"]) == (503, 503), body
    assert body["message"] == f"服务暂不可用: the {kind} is unavailable"
    assert not stack.leaks(response), response.text


def wait_for_refusal(stack: Stack, kind: str) -> float:
    """Seconds until /ready answers 503 naming `kind`."""
    started = time.monotonic()
    while (probe := stack.probe()).status_code == 200:
        assert time.monotonic() - started < 10, "/ready never noticed the outage"
    noticed = time.monotonic() - started
    assert_refused(stack, probe, kind)
    return noticed


class Traffic(threading.Thread):
    """Searches one after another until stopped, keeping each one's time and refusals."""

    def __init__(self, stack: Stack, kind: str) -> None:
        super().__init__(daemon=True)
        self.stack, self.kind = stack, kind
        self.slowest, self.refusals, self.problems = 0.0, 0, list[str]()
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            response, took = self.stack.search()
            self.slowest = max(self.slowest, took)
            if response.status_code != 200:
                self.refusals += 1
                try:
                    assert_refused(self.stack, response, self.kind)
                except AssertionError as exc:
                    self.problems.append(str(exc))

    def stop(self) -> None:
        self.done.set()
        self.join()


def test_a_killed_and_restarted_milvus_never_holds_a_search_past_the_deadline(stack: Stack) -> None:
    assert stack.probe().status_code == 200
    assert stack.search()[0].json()["code"] == 200
    traffic = Traffic(stack, "vector index")
    traffic.start()
    stack.milvus.kill()
    noticed = wait_for_refusal(stack, "vector index")
    assert stack.probe("/health").status_code == 200  # liveness: restarting the replica would not help
    stack.milvus.start()  # from this thread: the server is tied to the thread that starts it
    began = time.monotonic()
    while stack.probe().status_code != 200:
        assert time.monotonic() - began < 120, "the replica did not find Milvus again"
    ready = time.monotonic() - began
    traffic.stop()
    print(
        f"/ready 503 after {noticed:.2f} s, 200 {ready:.2f} s after Milvus restarted; "
        f"slowest search meanwhile {traffic.slowest:.2f} s ({traffic.refusals} refused)"
    )
    assert noticed <= NOTICED_S
    assert traffic.refusals and not traffic.problems, traffic.problems[:3]
    assert traffic.slowest <= TIMEOUT_S + SLACK_S
    assert stack.search()[0].json()["code"] == 200


def test_searches_return_within_seconds_of_the_database_after_a_long_outage(stack: Stack) -> None:
    assert stack.search()[0].json()["code"] == 200
    stack.database.pause()
    noticed = wait_for_refusal(stack, "catalog store")
    assert noticed <= NOTICED_S
    assert stack.probe("/health").json()["data"] == {"status": "ok", "products": None, "images": None}
    slowest, began = 0.0, time.monotonic()
    while time.monotonic() - began < OUTAGE_S:  # traffic all along, as in production
        response, took = stack.search()
        slowest = max(slowest, took)
        assert_refused(stack, response, "catalog store")
        keyword = stack.service.get("/taobao/traffic/item/search", {"keyword": "banana"})
        assert_refused(stack, keyword, "catalog store")
    stack.database.start()  # same folder and port
    back = time.monotonic()
    while (response := stack.search()[0]).status_code != 200:
        assert time.monotonic() - back < 30, response.text
    recovered = time.monotonic() - back
    while stack.probe().status_code != 200:
        assert time.monotonic() - back < 30
    ready = time.monotonic() - back
    print(
        f"/ready 503 after {noticed:.2f} s; slowest refusal {slowest:.2f} s; after a {OUTAGE_S:.0f} s outage "
        f"searches back {recovered:.2f} s and /ready 200 {ready:.2f} s after the database"
    )
    assert slowest <= TIMEOUT_S + SLACK_S
    assert recovered <= RECOVERY_S and ready <= RECOVERY_S
