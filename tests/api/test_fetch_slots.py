"""Query picture downloads are capped overall, per appKey, and on the search page (no
credentials) per client address and per picture host (however its URL spells it), so slow
picture hosts cannot hold the threads other requests need, nor one app every slot: past a
client's or a host's cap the answer comes at once, not after a wait."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import APP_KEY, APP_SECRET, Service, serve
from tests.utils.fileserver import FileServer
from tongkuan.api.app import create_app
from tongkuan.api.envelope import ErrorKind, classify
from tongkuan.api.limits import FetchSlots
from tongkuan.config import Settings
from tongkuan.engine import Engine
from tongkuan.errors import ImageError, LookupsBusy, RateLimited, ServiceBusy

SLOW = "late?seconds=3"  # a picture host that answers after 3 s
OTHER_KEY, OTHER_SECRET = "other-app", "other-secret"
LOOPBACK_SPELLINGS = ["127.1", "2130706433", "0x7f000001", "127.0.0.1.", "localhost", "LOCALHOST"]


@pytest.fixture(scope="module")
def capped(catalog_engine: Engine) -> Iterator[Service]:
    settings = Settings(
        data_dir=catalog_engine.settings.data_dir,
        apps=f"{APP_KEY}:{APP_SECRET},{OTHER_KEY}:{OTHER_SECRET}",
        rate_limit_qps=0,
        web_rate_limit_qps=0,
        allow_loopback_fetch=True,
        fetch_concurrency=4,
        fetch_per_client=1,
        fetch_per_host=2,
    )
    with serve(create_app(settings, engine=catalog_engine)) as svc:
        yield svc


def search(svc: Service, url: str, client: str) -> httpx.Response:
    """A V2 search by picUrl: with credentials."""
    params = svc.signed({"picUrl": url, "pageSize": "1"})
    return svc.client.get("/taobao/image-search/url", params=params, headers={"X-Forwarded-For": client})


def other_search(svc: Service, url: str, client: str) -> httpx.Response:
    """A V2 search by picUrl from another app."""
    params = svc.signed({"appKey": OTHER_KEY, "picUrl": url, "pageSize": "1"}, OTHER_SECRET)
    return svc.client.get("/taobao/image-search/url", params=params, headers={"X-Forwarded-For": client})


def page_upload(svc: Service, url: str, client: str) -> httpx.Response:
    """The search page's upload of a picture by URL: no credentials."""
    return svc.client.post("/web/api/upload", data={"url": url}, headers={"X-Forwarded-For": client})


def in_background(svc: Service, url: str, client: str, call: object = page_upload) -> threading.Thread:
    thread = threading.Thread(target=call, args=(svc, url, client))  # type: ignore[arg-type]
    thread.start()
    return thread


def by_name(url: str, spelling: str = "localhost") -> str:
    """The same file server under another spelling of its host."""
    return url.replace("127.0.0.1", spelling)


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


def test_one_slow_host_cannot_take_every_slot_under_any_spelling(capped: Service, file_server: FileServer) -> None:
    holders = [in_background(capped, file_server.url(SLOW), f"192.0.2.{i}") for i in range(2)]
    time.sleep(0.5)
    photo = file_server.url("grocery_store/iconic/Kiwi_Iconic.jpg")
    for spelling in ["127.0.0.1", *LOOPBACK_SPELLINGS]:
        refused, seconds = timed(lambda: page_upload(capped, by_name(photo, spelling), "192.0.2.9"))  # noqa: B023
        assert refused.status_code == 503, (spelling, refused.json())
        assert "one picture host" in refused.json()["message"] and seconds < 1.0
    # an API client with credentials is not held to the host's share
    assert search(capped, by_name(photo, "127.1"), "192.0.2.9").json()["code"] == 200
    for holder in holders:
        holder.join()
    assert page_upload(capped, by_name(photo, "2130706433"), "192.0.2.9").json()["code"] == 200  # free again


def test_one_app_cannot_take_every_download_slot(capped: Service, file_server: FileServer) -> None:
    holders = [in_background(capped, file_server.url(SLOW), f"198.18.0.{i}", search) for i in range(4)]
    time.sleep(0.5)
    photo = file_server.url("grocery_store/iconic/Kiwi_Iconic.jpg")
    other, seconds = timed(lambda: other_search(capped, photo, "198.18.0.9"))
    assert other.json()["code"] == 200 and seconds < 1.0  # three of the four slots are the most one app holds
    mine, seconds = timed(lambda: search(capped, photo, "198.18.0.9"))
    assert mine.status_code == 429 and "at most 3 picture downloads at once for one appKey" in mine.json()["message"]
    assert mine.headers["retry-after"] == "1" and 1.0 <= seconds < 2.0  # waited a second for one of its own
    for holder in holders:
        holder.join()
    assert search(capped, photo, "198.18.0.9").json()["code"] == 200


def test_when_every_slot_is_taken_the_answer_is_503_at_once(capped: Service, file_server: FileServer) -> None:
    calls = [search, search, search, other_search]  # one app's share (3 of 4), and another app's download
    holders = [in_background(capped, file_server.url(SLOW), f"198.51.100.{i}", c) for i, c in enumerate(calls)]
    time.sleep(0.5)
    photo = by_name(file_server.url("grocery_store/iconic/Kiwi_Iconic.jpg"))
    refused, seconds = timed(lambda: other_search(capped, photo, "198.51.100.9"))
    assert refused.status_code == 503 and refused.json()["code"] == 503
    assert "all 4 picture download slots" in refused.json()["message"]
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


def test_an_app_has_a_share_of_the_slots_and_hosts_count_apart() -> None:
    slots = FetchSlots(total=4, per_client=1, per_host=1, wait=0.1)
    assert slots.per_app == 3  # three quarters of the slots, at least one
    with slots.slot(app="a"), slots.slot(app="a"), slots.slot(app="a"):
        with pytest.raises(RateLimited, match="for one appKey"), slots.slot(app="a"):
            pass
        with slots.slot(app="b"):
            assert slots.running() == 4
    with slots.slot("c1", "example.com"), slots.slot("c2", "example.org"), pytest.raises(ServiceBusy):
        with slots.slot("c3", "example.com"):
            pass
    assert slots.running() == 0 and FetchSlots(total=1, per_client=1).per_app == 1


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


def test_a_refused_name_lookup_is_busy_to_a_request_and_a_failed_picture_to_an_import() -> None:
    refused = LookupsBusy("all 16 name lookups for picture hosts are in use; try again shortly")
    code, message, kind = classify(refused)
    assert (code, kind) == (503, ErrorKind.BUSY) and "name lookups" in message
    assert isinstance(refused, ImageError)  # what an import counts as a picture not fetched
