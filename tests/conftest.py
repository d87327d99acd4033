"""Shared fixtures: the real data sets, a loopback file server, a catalog built from the data
sets, and the HTTP service running over it on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from tests.utils.fileserver import FileServer
from tongkuan.api.app import create_app
from tongkuan.api.auth import sign
from tongkuan.config import Settings
from tongkuan.engine import Engine
from tongkuan.ingest.readers import SourceRecord
from tongkuan.sample import fashion_records, grocery_records

REPO = Path(__file__).resolve().parent.parent
APP_KEY, APP_SECRET = "test-app", "test-secret"
FASHION_PER_CATEGORY = 40


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real data sets (`shared/data`); TONGKUAN_TEST_DATA overrides the location."""
    if "TONGKUAN_TEST_DATA" in os.environ:
        candidates = [Path(os.environ["TONGKUAN_TEST_DATA"])]
    else:
        candidates = [parent / "shared" / "data" for parent in REPO.parents]
    for root in candidates:
        if (root / "grocery_store" / "labels.csv").exists():
            return root
    raise AssertionError(f"test data not found in {[str(c) for c in candidates]}; set TONGKUAN_TEST_DATA")


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data directory whose exported models other data directories link to (export once)."""
    return tmp_path_factory.mktemp("models-home")


def new_data_dir(base: Path, model_cache: Path) -> Path:
    """A fresh data directory sharing the session's exported-model cache."""
    base.mkdir(parents=True, exist_ok=True)
    (model_cache / "models").mkdir(exist_ok=True)
    (base / "models").symlink_to(model_cache / "models")
    return base


def settings_for(data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "apps": f"{APP_KEY}:{APP_SECRET}",
        "allow_loopback_fetch": True,
        "rate_limit_qps": 0,
        "web_rate_limit_qps": 0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def as_records(raw: list[dict[str, object]]) -> list[SourceRecord]:
    records = []
    for i, fields in enumerate(raw):
        fields = dict(fields)
        images = [str(p) for p in fields.pop("images")]  # type: ignore[union-attr]
        records.append(SourceRecord(f"sample:{i}", fields, images, Path("/")))
    return records


@pytest.fixture(scope="session")
def catalog_engine(data_root: Path, tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Iterator[Engine]:
    """The grocery products (iconic + every train photo) and fashion shots, ingested once.

    Set TONGKUAN_TEST_CATALOG to a folder to keep this catalog between runs (ingestion is
    idempotent, so a rerun only checks it).
    """
    kept = os.environ.get("TONGKUAN_TEST_CATALOG")
    if kept:
        data_dir = Path(kept)
        data_dir.mkdir(parents=True, exist_ok=True)
    else:
        data_dir = new_data_dir(tmp_path_factory.mktemp("catalog") / "data", model_cache)
    engine = Engine(settings_for(data_dir))
    raw = [*grocery_records(data_root), *fashion_records(data_root, FASHION_PER_CATEGORY)]
    report = engine.ingester().ingest(as_records(raw))
    assert not report.failures, report.failures[:3]
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def file_server(data_root: Path) -> Iterator[FileServer]:
    """A loopback HTTP server for picUrl: the data sets plus hostile endpoints."""
    server = FileServer(data_root)
    server.start()
    yield server
    server.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    """A running tongkuan API on 127.0.0.1 and a client that signs requests."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.client = httpx.Client(base_url=base_url, timeout=60.0)

    def signed(self, params: dict[str, str], secret: str = APP_SECRET) -> dict[str, str]:
        params = {"appKey": APP_KEY, **params}
        return {**params, "sign": sign(params, secret)}

    def get(self, path: str, params: dict[str, str]) -> httpx.Response:
        return self.client.get(path, params=self.signed(params))


@contextmanager
def serve(app: FastAPI) -> Iterator[Service]:
    """Run `app` with uvicorn in a thread on a free loopback port."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline, "service did not start"
        time.sleep(0.05)
    svc = Service(f"http://127.0.0.1:{port}")
    try:
        yield svc
    finally:
        svc.client.close()
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def service(catalog_engine: Engine) -> Iterator[Service]:
    """The HTTP API over the session catalog, served by uvicorn in a thread."""
    with serve(create_app(catalog_engine.settings, engine=catalog_engine)) as svc:
        yield svc
