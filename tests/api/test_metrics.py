"""Prometheus metrics at /metrics over a small real catalog, through real HTTP: requests by
route template and code, every stage of a picture search timed, catalog and index sizes read
at each scrape, rate-limited requests, waiting inferences, and a 404 when metrics are off.

Each test builds its own app over one engine: counts start at zero in each, because every app
keeps its own registry."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import APP_KEY, APP_SECRET, Service, as_records, new_data_dir, serve, settings_for
from tests.utils.fileserver import FileServer
from tongkuan.api.app import create_app
from tongkuan.api.auth import sign
from tongkuan.config import Settings
from tongkuan.engine import Engine
from tongkuan.errors import ConfigError
from tongkuan.sample import grocery_records
from tongkuan.search.timing import Stage

MODEL = "efficientnet-lite0"
PRODUCTS = 6  # each with its iconic picture and one shopper photo
IMAGE_SEARCH, KEYWORD_SEARCH = "/taobao/image-search/url", "/taobao/traffic/item/search"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def engine(data_root: Path, tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Iterator[Engine]:
    data_dir = new_data_dir(tmp_path_factory.mktemp("metrics") / "data", model_cache)
    engine = Engine(settings_for(data_dir, model=MODEL))
    raw = list(islice(grocery_records(data_root, photos_per_product=1), PRODUCTS))
    report = engine.ingester().ingest(as_records(raw))
    assert not report.failures, report.failures[:3]
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def query_url(file_server: FileServer) -> str:
    """A shopper photo of an apple the catalog sells, served over loopback HTTP (so it is fetched)."""
    return file_server.url("grocery_store/images/val/Fruit/Apple/Pink-Lady/Pink-Lady_001.jpg")


@contextmanager
def running(engine: Engine, **overrides: object) -> Iterator[Service]:
    """A fresh app (its own registry) over the module's engine."""
    settings = settings_for(Path(engine.settings.data_dir), model=MODEL, **overrides)
    with serve(create_app(settings, engine=engine)) as service:
        yield service


def scrape(service: Service) -> Samples:
    """Every sample of /metrics by (name, labels), parsed as Prometheus parses the text format."""
    response = service.client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def image_search(service: Service, url: str) -> None:
    body = service.get(IMAGE_SEARCH, {"picUrl": url, "pageSize": "3"}).json()
    assert body["code"] == 200 and body["data"]["data"], body


def test_requests_are_counted_by_route_template_and_code(engine: Engine, query_url: str) -> None:
    with running(engine, metrics=True, max_body_bytes=1024) as service:
        image_search(service, query_url)
        assert service.get(KEYWORD_SEARCH, {"keyword": "milk"}).json()["code"] == 200
        assert service.get(KEYWORD_SEARCH, {}).json()["code"] == 400  # no keyword
        assert service.client.get("/no/such/route/42").status_code == 404
        assert service.client.get("/images/0123456789abcdef0123456789abcdef.jpg").status_code == 400
        assert service.client.delete(IMAGE_SEARCH).status_code == 405
        assert service.client.get("/web/api/search").status_code == 400  # a router with a prefix
        assert service.client.post("/taobao/upload/image", content=b"x" * 2048).status_code == 413  # before routing
        samples = scrape(service)
        assert "/metrics" not in service.client.get("/openapi.json").json()["paths"]  # not part of the API
    requests = "tongkuan_http_requests_total"
    assert sample(samples, requests, route=IMAGE_SEARCH, method="GET", code="200") == 1
    assert sample(samples, requests, route=KEYWORD_SEARCH, method="GET", code="200") == 1
    assert sample(samples, requests, route=KEYWORD_SEARCH, method="GET", code="400") == 1
    assert sample(samples, requests, route="/images/{name}", method="GET", code="400") == 1  # the template
    assert sample(samples, requests, route=IMAGE_SEARCH, method="DELETE", code="405") == 1
    assert sample(samples, requests, route="/web/api/search", method="GET", code="400") == 1
    assert sample(samples, requests, route="unmatched", method="GET", code="404") == 1
    assert sample(samples, requests, route="unmatched", method="POST", code="413") == 1
    routes = {dict(labels)["route"] for name, labels in samples if name == requests}
    assert not any("42" in route or "0123" in route for route in routes)  # never a raw path


def search_by_route(service: Service, route: str, url: str) -> None:
    """One picture search through `route`, with its own parameter names."""
    if route == "/web/api/search":
        uploaded = service.client.post("/web/api/upload", data={"url": url}).json()
        body = service.client.get(route, params={"imageId": uploaded["data"]["imageId"]}).json()
    else:
        names = {IMAGE_SEARCH: "picUrl", "/taobao/traffic/item/imgsearch": "pic_url"}
        params = {names.get(route, "imageUrl"): url} | ({"beginPage": "1"} if route.startswith("/alibaba") else {})
        body = service.get(route, params).json()
    assert body["code"] == 200, body


@pytest.mark.parametrize(
    "route", [IMAGE_SEARCH, "/taobao/traffic/item/imgsearch", "/alibaba/product/imageQuery", "/web/api/search"]
)
def test_every_stage_of_a_picture_search_is_timed(engine: Engine, query_url: str, route: str) -> None:
    with running(engine, metrics=True) as service:
        before = scrape(service)
        search_by_route(service, route, query_url)
        after = scrape(service)
    for stage in Stage:
        assert sample(before, "tongkuan_search_stage_seconds_count", stage=stage) == 0
        assert sample(after, "tongkuan_search_stage_seconds_count", stage=stage) == 1, stage
        # the module's engine described the picture in an earlier test: no pass, no queue
        # (tests/search/test_repeat_pictures.py times the passes of a picture seen first)
        passes = stage in (Stage.QUEUE, Stage.INFERENCE)
        assert sample(after, "tongkuan_search_stage_seconds_sum", stage=stage) > 0 or passes, stage
        assert sample(after, "tongkuan_search_stage_seconds_bucket", stage=stage, le="+Inf") == 1


def test_catalog_and_index_sizes_are_read_at_each_scrape(engine: Engine, query_url: str) -> None:
    with running(engine, metrics=True) as service:
        image_search(service, query_url)  # the index catches up with the catalog before a search
        samples = scrape(service)
        products, pictures = engine.counts()
        assert (products, pictures) == (PRODUCTS, 2 * PRODUCTS)
        assert sample(samples, "tongkuan_catalog_products") == products
        assert sample(samples, "tongkuan_catalog_pictures") == pictures
        assert sample(samples, "tongkuan_index_vectors") == engine.vector_index.count() == pictures

        engine.delete_product("grocery-001")
        samples = scrape(service)
        assert sample(samples, "tongkuan_catalog_products") == PRODUCTS - 1
        assert sample(samples, "tongkuan_catalog_pictures") == 2 * (PRODUCTS - 1)
        assert sample(samples, "tongkuan_index_vectors") == pictures  # the index replays it at the next search
        image_search(service, query_url)
        assert sample(scrape(service), "tongkuan_index_vectors") == 2 * (PRODUCTS - 1)


def test_a_request_over_its_rate_limit_is_counted(engine: Engine) -> None:
    apps = f"{APP_KEY}:{APP_SECRET},slow:slow-secret"
    with running(engine, metrics=True, apps=apps, rate_limits="slow:0.5") as service:  # a burst of one
        params = {"appKey": "slow", "keyword": "milk"}
        codes = [service.client.get(KEYWORD_SEARCH, params={**params, "sign": sign(params, "slow-secret")}).status_code]
        codes.append(
            service.client.get(KEYWORD_SEARCH, params={**params, "sign": sign(params, "slow-secret")}).status_code
        )
        samples = scrape(service)
    assert codes == [200, 429]
    assert sample(samples, "tongkuan_rate_limited_requests_total", limit="app") == 1
    assert sample(samples, "tongkuan_rate_limited_requests_total", limit="web") == 0
    assert sample(samples, "tongkuan_http_requests_total", route=KEYWORD_SEARCH, method="GET", code="429") == 1


def test_inferences_waiting_for_a_slot_are_counted(engine: Engine, file_server: FileServer) -> None:
    # a picture no other test here searches: one searched before is described from the cache
    query_url = file_server.url("grocery_store/images/val/Fruit/Apple/Pink-Lady/Pink-Lady_002.jpg")
    encoder = engine.vision.encoder  # hold the only slot, as a long inference would
    with running(engine, metrics=True) as service:
        assert sample(scrape(service), "tongkuan_inference_waiting") == 0
        encoder._take_slot(background=False)
        try:
            search = threading.Thread(target=image_search, args=(service, query_url))
            search.start()
            deadline = time.monotonic() + 30
            while sample(scrape(service), "tongkuan_inference_waiting") != 1:
                assert time.monotonic() < deadline, "the search never waited for the slot"
                time.sleep(0.05)
        finally:
            encoder._give_slot(background=False)
        search.join(timeout=60)
        assert sample(scrape(service), "tongkuan_inference_waiting") == 0


def test_metrics_are_an_unknown_route_when_off(engine: Engine) -> None:
    with running(engine) as service:
        response = service.client.get("/metrics")
        assert response.status_code == 404 and response.json()["code"] == 404 and "traceId" in response.json()


def test_the_setting_is_read_from_the_environment_and_a_bad_value_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Settings(data_dir=tmp_path).http.metrics is False
    monkeypatch.setenv("TONGKUAN_METRICS", "true")
    assert Settings(data_dir=tmp_path).http.metrics is True
    monkeypatch.setenv("TONGKUAN_METRICS", "maybe")
    with pytest.raises(ConfigError) as refused:
        Settings(data_dir=tmp_path)
    assert str(refused.value) == (
        "TONGKUAN_METRICS='maybe' is not valid: use true or false (empty or unset: the default, false)"
    )
