"""Starting Ray: a local node that misses its startup deadline is stopped and started again."""

from __future__ import annotations

from typing import Any

import pytest

from tongkuan.ingest.distributed import start_ray


class FakeRay:
    """Records calls; `init` fails the first `failures` times as a slow raylet does."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[str] = []

    def init(self, **options: Any) -> None:
        self.calls.append("init")
        if self.failures:
            self.failures -= 1
            raise Exception("The current node timed out during startup.")

    def shutdown(self) -> None:
        self.calls.append("shutdown")


def test_a_start_that_times_out_is_stopped_and_tried_again() -> None:
    ray = FakeRay(failures=1)
    start_ray(ray, {"num_cpus": 2}, tries=2)
    assert ray.calls == ["init", "shutdown", "init"]


def test_the_last_failed_start_is_stopped_and_raised() -> None:
    ray = FakeRay(failures=2)
    with pytest.raises(Exception, match="timed out during startup"):
        start_ray(ray, {}, tries=2)
    # nothing a failed start spawned outlives it
    assert ray.calls == ["init", "shutdown", "init", "shutdown"]


def test_a_remote_cluster_is_tried_once() -> None:
    ray = FakeRay(failures=1)
    with pytest.raises(Exception, match="timed out"):
        start_ray(ray, {"address": "ray://127.0.0.1:10001"}, tries=1)
    assert ray.calls == ["init", "shutdown"]
