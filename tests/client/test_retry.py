"""Retries on 429 and 503, against a fake service (httpx.MockTransport): how many tries,
how long between them (exponential, jittered, Retry-After honoured), and when they stop."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from tongkuan.client import (
    AsyncClient,
    BadRequestError,
    Client,
    RateLimitError,
    RetryPolicy,
    ServiceUnavailableError,
)
from tongkuan.client.retry import retry_after

BASE = "http://tongkuan.test"
OK = {"code": 200, "message": "操作成功", "data": {"data": [], "pageNo": 1, "pageSize": 0, "total": 0}}


@dataclass(frozen=True)
class RecordingPolicy(RetryPolicy):
    """The real policy's waits, recorded and then skipped, so the tests take no time."""

    waits: list[float] = field(default_factory=list)

    def delay(self, attempt: int, retry_after: float | None) -> float | None:
        wait = super().delay(attempt, retry_after)
        if wait is None:
            return None
        self.waits.append(wait)
        return 0.0


class FakeService:
    """Answers each request with the next of `answers` (status, headers, body); the last repeats."""

    def __init__(self, *answers: tuple[int, dict[str, str], dict[str, Any] | str]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status, headers, body = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if isinstance(body, str):
            return httpx.Response(status, headers=headers, text=body)
        return httpx.Response(status, headers=headers, json=body)


def refused(code: int) -> dict[str, Any]:
    return {"code": code, "message": f"refused with {code}", "data": None, "traceId": "abc123abc123"}


@contextmanager
def sync_client(service: FakeService, policy: RetryPolicy) -> Iterator[Client]:
    with httpx.Client(transport=httpx.MockTransport(service)) as http:
        yield Client(BASE, "k1", "s3", retry=policy, http_client=http)


def test_429_then_503_are_retried_with_growing_jittered_waits() -> None:
    service = FakeService((429, {}, refused(429)), (503, {}, refused(503)), (200, {}, OK))
    policy = RecordingPolicy(attempts=4, backoff=1.0, jitter=0.5, draw=lambda: 0.5)
    with sync_client(service, policy) as client:
        assert client.keyword_search("x").total == 0
    assert len(service.requests) == 3
    assert policy.waits == [0.75, 1.5]  # 1 and 2 seconds, each less a quarter


def test_retry_after_is_honoured_in_seconds_and_as_a_date() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    service = FakeService(
        (429, {"Retry-After": "7"}, refused(429)), (503, {"Retry-After": later}, "busy"), (200, {}, OK)
    )
    policy = RecordingPolicy(attempts=3)
    with sync_client(service, policy) as client:
        client.keyword_search("x")
    assert policy.waits[0] == 7.0 and 25 < policy.waits[1] <= 30


def test_retries_are_bounded_and_the_last_refusal_is_raised() -> None:
    service = FakeService((429, {}, refused(429)))
    policy = RecordingPolicy(attempts=3)
    with sync_client(service, policy) as client, pytest.raises(RateLimitError) as error:
        client.keyword_search("x")
    assert len(service.requests) == 3 and len(policy.waits) == 2
    assert error.value.code == 429 and error.value.message == "refused with 429"
    assert error.value.trace_id == "abc123abc123"


def test_a_retry_after_longer_than_allowed_stops_at_once() -> None:
    service = FakeService((503, {"Retry-After": "3600"}, refused(503)), (200, {}, OK))
    with sync_client(service, RecordingPolicy(max_retry_after=60)) as client:
        with pytest.raises(ServiceUnavailableError) as error:
            client.keyword_search("x")
    assert len(service.requests) == 1 and error.value.retry_after == 3600


def test_other_errors_and_a_proxy_s_503_page() -> None:
    service = FakeService((400, {}, refused(400)))
    with sync_client(service, RecordingPolicy()) as client, pytest.raises(BadRequestError):
        client.keyword_search("x")
    assert len(service.requests) == 1
    # not the envelope, but a 503: still a refusal worth retrying
    proxy = FakeService((503, {}, "<html>upstream unavailable</html>"), (200, {}, OK))
    with sync_client(proxy, RecordingPolicy()) as client:
        assert client.keyword_search("x").total == 0
    assert len(proxy.requests) == 2


def test_an_envelope_code_429_under_http_200_is_retried_too() -> None:
    service = FakeService((200, {}, refused(429)), (200, {}, OK))
    with sync_client(service, RecordingPolicy()) as client:
        client.keyword_search("x")
    assert len(service.requests) == 2


def test_the_async_client_retries_the_same_way() -> None:
    service = FakeService((429, {"Retry-After": "2"}, refused(429)), (503, {}, refused(503)), (200, {}, OK))
    policy = RecordingPolicy(attempts=4, backoff=0.5, jitter=0.0)

    async def main() -> int | None:
        http = httpx.AsyncClient(transport=httpx.MockTransport(service))
        async with http, AsyncClient(BASE, "k1", "s3", retry=policy, http_client=http) as client:
            return (await client.keyword_search("x")).total

    assert asyncio.run(main()) == 0
    assert len(service.requests) == 3 and policy.waits == [2.0, 1.0]

    exhausted = FakeService((503, {}, refused(503)))
    bounded = RecordingPolicy(attempts=2)

    async def fail() -> None:
        http = httpx.AsyncClient(transport=httpx.MockTransport(exhausted))
        async with http, AsyncClient(BASE, "k1", "s3", retry=bounded, http_client=http) as client:
            await client.keyword_search("x")

    with pytest.raises(ServiceUnavailableError):
        asyncio.run(fail())
    assert len(exhausted.requests) == 2


def test_the_policy_s_waits_double_up_to_the_cap_and_jitter_stays_in_bounds() -> None:
    steady = RetryPolicy(attempts=10, backoff=0.5, max_backoff=3.0, jitter=0.0)
    assert [steady.delay(n, None) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert steady.delay(10, None) is None
    jittered = RetryPolicy(attempts=10, backoff=2.0, jitter=0.5)
    assert all(1.0 <= (jittered.delay(1, None) or 0) <= 2.0 for _ in range(200))
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)


def test_retry_after_headers_are_read_as_seconds_or_dates() -> None:
    now = datetime(2025, 6, 18, 12, 0, tzinfo=UTC)
    assert retry_after({"retry-after": "12"}) == 12.0
    assert retry_after({"retry-after": "Wed, 18 Jun 2025 12:00:09 GMT"}, now) == 9.0
    assert retry_after({"retry-after": "Wed, 18 Jun 2025 11:00:00 GMT"}, now) == 0.0
    assert retry_after({"retry-after": "soon"}) is None and retry_after({}) is None
