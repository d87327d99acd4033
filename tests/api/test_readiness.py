"""Liveness (`/health`) and readiness (`/ready`) for load balancers and Kubernetes probes, and
what a client is told when a backend is out: the kind of outage, never an address or a
backend's own error (those go to the log, under the answer's traceId). No servers here:
the backends' failures are raised through the same translations the real stores use."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from pymilvus.exceptions import MilvusException

from tests.api.test_hardening import call
from tests.conftest import APP_KEY, APP_SECRET
from tongkuan.api.app import create_app
from tongkuan.catalog.postgres.database import values_checked
from tongkuan.config import Settings
from tongkuan.engine import Engine
from tongkuan.errors import Backend, StoreUnavailable
from tongkuan.index.milvus import _reachable

MILVUS_ERROR = "<MilvusException: (code=2, message=Fail connecting to server on 127.0.0.1:44703. Timeout)>"
POSTGRES_ERROR = 'connection failed: connection to server at "10.9.8.7", port 5432 failed: Connection refused'


def milvus_down() -> None:
    with _reachable():
        raise MilvusException(code=2, message=MILVUS_ERROR)


def postgres_down() -> None:
    with values_checked():
        raise psycopg.OperationalError(POSTGRES_ERROR)


class Backends:
    """An engine whose catalog and vector index fail as told."""

    def __init__(self, catalog: Callable[[], None] | None = None, index: Callable[[], None] | None = None) -> None:
        self.catalog, self.index = catalog, index

    def reachable_counts(self) -> tuple[int, int] | None:
        try:
            if self.catalog:
                self.catalog()
        except StoreUnavailable:
            return None
        return 3, 4

    def check_ready(self) -> None:
        for failing in (self.catalog, self.index):
            if failing:
                failing()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # looked for by tools that inspect the module
            raise AttributeError(name)
        raise AssertionError(f"the engine was asked for {name}")


def app_over(tmp_path: Path, engine: Backends, **settings: Any) -> FastAPI:
    app = create_app(Settings(data_dir=tmp_path, apps=f"{APP_KEY}:{APP_SECRET}", **settings), cast(Engine, engine))
    app.state.engine = engine  # the lifespan that would set it does not run here
    return app


@pytest.mark.parametrize(
    ("failing", "kind", "leaked"),
    [
        (milvus_down, "the vector index is unavailable", ["127.0.0.1", "44703", "Milvus", "Exception"]),
        (postgres_down, "the catalog store is unavailable", ["10.9.8.7", "5432", "refused", "OperationalError"]),
    ],
)
def test_a_5xx_names_the_kind_of_outage_and_logs_the_detail_under_its_trace_id(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, failing: Callable[[], None], kind: str, leaked: list[str]
) -> None:
    caplog.set_level(logging.WARNING, logger="tongkuan.api.envelope")
    response = call(app_over(tmp_path, Backends(catalog=failing)), "GET", "/ready")
    body = response.json()
    assert (response.status_code, body["code"]) == (503, 503), body
    assert body["message"] == f"服务暂不可用: {kind}"
    assert not [word for word in leaked if word in response.text]
    logged = [r.getMessage() for r in caplog.records if body["traceId"] in r.getMessage()]
    assert len(logged) == 1 and leaked[0] in logged[0] and "/ready" in logged[0]


def test_an_unexpected_error_is_a_500_without_its_text_and_logged_with_its_trace_id(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise RuntimeError("secret detail at 10.1.1.1")

    caplog.set_level(logging.ERROR, logger="tongkuan.api.envelope")

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app_over(tmp_path, Backends(catalog=broken)), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            return await http.get("/ready")

    response = asyncio.run(get())
    body = response.json()
    assert response.status_code == 500 and "10.1.1.1" not in response.text and "secret" not in response.text
    assert [r for r in caplog.records if body["traceId"] in r.getMessage() and r.exc_info]


def test_ready_is_200_when_the_catalog_and_the_index_both_answer(tmp_path: Path) -> None:
    response = call(app_over(tmp_path, Backends()), "GET", "/ready")
    body = response.json()
    assert response.status_code == 200 and body["code"] == 200
    assert body["data"] == {"status": "ready"}


@pytest.mark.parametrize(
    ("engine", "kind"),
    [
        (Backends(index=milvus_down), "vector index"),
        (Backends(catalog=postgres_down), "catalog store"),
        (Backends(catalog=postgres_down, index=milvus_down), "catalog store"),
    ],
)
def test_ready_is_503_naming_the_backend_that_does_not_answer(tmp_path: Path, engine: Backends, kind: str) -> None:
    response = call(app_over(tmp_path, engine), "GET", "/ready")
    body = response.json()
    assert (response.status_code, body["code"]) == (503, 503)
    assert body["message"] == f"服务暂不可用: the {kind} is unavailable"


@pytest.mark.parametrize("engine", [Backends(index=milvus_down), Backends(catalog=postgres_down)])
def test_health_stays_200_while_a_backend_is_down(tmp_path: Path, engine: Backends) -> None:
    """Liveness: restarting a replica brings no backend back; only readiness takes it out."""
    health = call(app_over(tmp_path, engine), "GET", "/health")
    assert health.status_code == 200 and health.json()["data"]["status"] == "ok"
    assert call(app_over(tmp_path, engine), "GET", "/ready").status_code == 503


def test_health_tells_the_catalog_size_when_the_catalog_answers(tmp_path: Path) -> None:
    data = call(app_over(tmp_path, Backends(index=milvus_down)), "GET", "/health").json()["data"]
    assert (data["products"], data["images"]) == (3, 4)
    data = call(app_over(tmp_path, Backends(catalog=postgres_down)), "GET", "/health").json()["data"]
    assert (data["products"], data["images"]) == (None, None)


def test_ready_answers_any_host_for_probes_like_health(tmp_path: Path) -> None:
    app = app_over(tmp_path, Backends())
    assert call(app, "GET", "/ready", host="10.1.2.3:8000").status_code == 200
    assert call(app, "GET", "/ready/", host="10.1.2.3:8000").status_code == 400


def test_store_unavailable_keeps_its_backend_across_processes() -> None:
    import pickle

    again = pickle.loads(pickle.dumps(StoreUnavailable("down at 10.0.0.1", Backend.VECTOR_INDEX)))
    assert again.backend is Backend.VECTOR_INDEX and again.public_message == "the vector index is unavailable"
