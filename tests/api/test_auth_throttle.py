"""The failed-authentication throttle, as a function of a fake clock: per client address, a
window of failures, a refusal with the seconds to wait."""

from __future__ import annotations

import pytest

from tongkuan.api.limits import AuthThrottle
from tongkuan.errors import RateLimited


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_client_is_refused_after_the_limit_of_failures_and_others_are_not() -> None:
    clock = Clock()
    throttle = AuthThrottle(limit=3, window=60, clock=clock)
    for _ in range(3):
        throttle.check("198.51.100.7")
        throttle.failed("198.51.100.7")
    with pytest.raises(RateLimited, match="failed authentications") as refused:
        throttle.check("198.51.100.7")
    assert refused.value.retry_after == 60
    throttle.check("203.0.113.9")  # another client is not affected


def test_the_refusal_ends_after_the_window_and_says_how_long_is_left() -> None:
    clock = Clock()
    throttle = AuthThrottle(limit=2, window=30, clock=clock)
    throttle.failed("a")
    throttle.failed("a")
    clock.now += 20.5
    with pytest.raises(RateLimited) as refused:
        throttle.check("a")
    assert refused.value.retry_after == 10  # rounded up
    clock.now += 10
    throttle.check("a")


def test_failures_older_than_the_window_are_forgotten() -> None:
    clock = Clock()
    throttle = AuthThrottle(limit=2, window=10, clock=clock)
    throttle.failed("a")
    clock.now += 11
    throttle.failed("a")
    throttle.check("a")


def test_a_limit_of_zero_never_refuses() -> None:
    throttle = AuthThrottle(limit=0, window=60)
    for _ in range(100):
        throttle.failed("a")
    throttle.check("a")


def test_memory_stays_bounded_under_many_addresses() -> None:
    clock = Clock()
    throttle = AuthThrottle(limit=5, window=10, clock=clock, max_clients=100)
    for i in range(1000):
        throttle.failed(f"client-{i}")
        clock.now += 0.1
    assert throttle.tracked() <= 101
