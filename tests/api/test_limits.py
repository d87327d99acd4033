"""Rate limits per appKey (429) and the request body cap (413), through real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import APP_KEY, APP_SECRET, Service, serve
from tongkuan.api.app import create_app
from tongkuan.api.auth import sign
from tongkuan.config import Settings
from tongkuan.engine import Engine


@pytest.fixture(scope="module")
def limited(catalog_engine: Engine) -> Iterator[Service]:
    settings = Settings(
        data_dir=catalog_engine.settings.data_dir,
        apps=f"{APP_KEY}:{APP_SECRET},fast:fast-secret",
        rate_limit_qps=1,
        rate_limits="fast:1000",
        max_body_bytes=64 * 1024,
    )
    with serve(create_app(settings, engine=catalog_engine)) as svc:
        yield svc


def upload_missing(svc: Service, app: str, secret: str) -> int:
    return int(upload_answer(svc, app, secret).json()["code"])


def upload_answer(svc: Service, app: str, secret: str) -> httpx.Response:
    params = {"appKey": app}
    return svc.client.get("/taobao/upload/image", params={**params, "sign": sign(params, secret)})


def test_an_app_over_its_rate_is_answered_429_and_others_are_not(limited: Service) -> None:
    answers = [upload_answer(limited, APP_KEY, APP_SECRET) for _ in range(6)]
    codes = [int(a.json()["code"]) for a in answers]
    assert codes[:2] == [400, 400]  # a burst of twice the rate passes (then pic_url is missing)
    assert 429 in codes[2:]
    refused = answers[codes.index(429)]
    assert refused.status_code == 429 and "1 requests per second" in refused.json()["message"]
    assert refused.headers["retry-after"] == "1"  # clients back off without guessing
    assert [upload_missing(limited, "fast", "fast-secret") for _ in range(6)] == [400] * 6


def test_bodies_over_the_cap_are_413_declared_or_streamed(limited: Service) -> None:
    big = limited.client.post("/taobao/upload/image", content=b"x" * (65 * 1024))
    assert big.status_code == 413 and big.json()["code"] == 413

    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b"y" * 1024

    streamed = limited.client.post(
        "/taobao/upload/image", content=chunks(), headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert streamed.status_code == 413 and streamed.json()["code"] == 413
