"""Query picture downloads are capped overall, and on the search page (no credentials) per
client address and per picture host, so slow picture hosts cannot hold the threads other
requests need: past a cap the answer comes at once, not after a wait."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import APP_KEY, APP_SECRET, Service, serve
from tests.utils.fileserver import FileServer
from tongkuan.api.app import create_app
from tongkuan.api.limits import FetchSlots
from tongkuan.config import Settings
from tongkuan.engine import Engine
from tongkuan.errors import ServiceBusy

SLOW = "late?seconds=3"  # a picture host that answers after 3 s


@pytest.fixture(scope="module")
def capped(catalog_engine: Engine) -> Iterator[Service]:
    settings = Settings(
        data_dir=catalog_engine.settings.data_dir,
        apps=f"{APP_KEY}:{APP_SECRET}",
        rate_limit_qps=0,
        web_rate_limit_qps=0,
        allow_loopback_fetch=True,
        fetch_concurrency=3,
        fetch_per_client=1,
        fetch_per_host=2,
    )
    with serve(create_app(settings, engine=catalog_engine)) as svc:
        yield svc


def search(svc: Service, url: str, client: str) -> httpx.Response:
    """A V2 search by picUrl: with credentials."""
    params = svc.signed({"picUrl": url, "pageSize": "1"})
    return svc.client.get("/taobao/image-search/url", params=params, headers={"X-Forwarded-For": client})


def page_upload(svc: Service, url: str, client: str) -> httpx.Response:
    """The search page's upload of a picture by URL: no credentials."""
    return svc.client.post("/web/api/upload", data={"url": url}, headers={"X-Forwarded-For": client})


def in_background(svc: Service, url: str, client: str, call: object = page_upload) -> threading.Thread:
    thread = threading.Thread(target=call, args=(svc, url, client))  # type: ignore[arg-type]
    thread.start()
    return thread


def by_name(url: str) -> str:
    """The same file server under another host name."""
    return url.replace("127.0.0.1", "localhost")


def timed(call: object) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    answer = call()  # type: ignore[operator]
    return answer, time.monotonic() - started


def test_a_page_client_has_one_download_at_a_time_and_others_are_not_held_up(
    capped: Service, file_server: FileServer
) -> None:
    slow = in_background(capped, file_server.url(SLOW), "203.0.113.1")
    time.sleep(0.5)
    photo = by_name(file_server.url("grocery_store/iconic/Kiwi_Iconic.jpg"))
    again, seconds = timed(lambda: page_upload(capped, photo, "203.0.113.1"))
    assert again.status_code == 429 and again.json()["code"] == 429
    assert "at most 1 picture downloads at once" in again.json()["message"]
    assert seconds < 1.0
    other, _ = timed(lambda: page_upload(capped, photo, "203.0.113.2"))
    assert other.json()["code"] == 200
    # an API client with credentials is not held to one download per address
    assert search(capped, photo, "203.0.113.1").json()["code"] == 200
    slow.join()


def test_one_slow_host_cannot_take_every_slot(capped: Service, file_server: FileServer) -> None:
    holders = [in_background(capped, file_server.url(SLOW), f"192.0.2.{i}") for i in range(2)]
    time.sleep(0.5)
    photo = file_server.url("grocery_store/iconic/Kiwi_Iconic.jpg")
    refused, seconds = timed(lambda: page_upload(capped, photo, "192.0.2.9"))
    assert refused.status_code == 503 and "one picture host" in refused.json()["message"] and seconds < 1.0
    assert page_upload(capped, by_name(photo), "192.0.2.9").json()["code"] == 200  # pictures elsewhere still come
    for holder in holders:
        holder.join()


def test_when_every_slot_is_taken_the_answer_is_503_at_once(capped: Service, file_server: FileServer) -> None:
    slow = [file_server.url(SLOW), file_server.url(SLOW), by_name(file_server.url(SLOW))]
    holders = [in_background(capped, url, f"198.51.100.{i}", search) for i, url in enumerate(slow)]
    time.sleep(0.5)
    photo = by_name(file_server.url("grocery_store/iconic/Kiwi_Iconic.jpg"))
    refused, seconds = timed(lambda: search(capped, photo, "198.51.100.9"))
    assert refused.status_code == 503 and refused.json()["code"] == 503
    assert "all 3 picture download slots" in refused.json()["message"]
    assert refused.headers["retry-after"] == "1" and 1.0 <= seconds < 2.0  # waited a second for a slot
    health, seconds = timed(lambda: capped.client.get("/health"))
    assert health.status_code == 200 and seconds < 1.0
    for holder in holders:
        holder.join()
    assert search(capped, photo, "198.51.100.9").json()["code"] == 200  # the slots are free again


def test_slots_are_given_back_whatever_the_download_did() -> None:
    slots = FetchSlots(total=2, per_client=2, per_host=2, wait=0.1)
    with pytest.raises(ValueError), slots.slot("a", "h"):
        raise ValueError("the host sent garbage")
    with slots.slot("a", "h"), slots.slot(), pytest.raises(ServiceBusy):
        with slots.slot("c", "j"):
            pass
    assert slots.running() == 0 and slots.refused == 1
    with slots.slot(), slots.slot(), pytest.raises(ServiceBusy):  # the overall cap holds for everyone
        with slots.slot():
            pass


def test_a_burst_waits_briefly_for_a_slot_instead_of_failing() -> None:
    slots = FetchSlots(total=2, per_client=2, wait=5.0)
    done: list[int] = []

    def download(i: int) -> None:
        with slots.slot():
            time.sleep(0.05)  # a responsive host
            done.append(i)

    threads = [threading.Thread(target=download, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(done) == list(range(10)) and slots.refused == 0
