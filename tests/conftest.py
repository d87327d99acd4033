"""Shared fixtures: the real data sets, a loopback file server, a catalog built from the data
sets, and the HTTP service running over it on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from tests.utils.fileserver import FileServer
from tongkuan.api.app import create_app
from tongkuan.api.auth import sign
from tongkuan.cli.common import server_options
from tongkuan.config import Settings
from tongkuan.engine import Engine
from tongkuan.ingest.readers import SourceRecord
from tongkuan.sample import fashion_records, grocery_records

if TYPE_CHECKING:
    from tests.utils.milvus_server import MilvusServer
    from tests.utils.postgres_server import PostgresServer

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


def copy_of_catalog(engine: Engine, data_dir: Path) -> Path:
    """A data directory holding a copy of `engine`'s embedded catalog (its model linked, its
    index rebuilt on open), for tests that change the catalog."""
    data_dir.mkdir(parents=True)
    (data_dir / "models").symlink_to(Path(engine.settings.data_dir).resolve() / "models")
    source = sqlite3.connect(Path(engine.settings.data_dir) / "catalog.db")
    target = sqlite3.connect(data_dir / "catalog.db")
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    return data_dir


def settings_for(data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "apps": f"{APP_KEY}:{APP_SECRET}",
        "allow_loopback_fetch": True,
        "rate_limit_qps": 0,
        "web_rate_limit_qps": 0,
        "auth_failure_limit": 0,  # every test client is 127.0.0.1; tests/api/test_hardening.py covers it
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
def serve(app: FastAPI, settings: Settings | None = None) -> Iterator[Service]:
    """Run `app` with uvicorn in a thread on a free loopback port: with uvicorn's settings as
    `tongkuan serve` makes them from `settings` where given, else uvicorn's defaults."""
    port = free_port()
    options = {"host": "127.0.0.1", "port": port} if settings is None else server_options(settings, "127.0.0.1", port)
    server = uvicorn.Server(uvicorn.Config(app, **{**options, "log_level": "warning"}))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "service did not start"
        time.sleep(0.05)
    svc = Service(f"http://127.0.0.1:{port}")
    try:
        yield svc
    finally:
        svc.client.close()
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def embedded_service(catalog_engine: Engine) -> Iterator[Service]:
    """The HTTP API over the session catalog, served by uvicorn in a thread."""
    with serve(create_app(catalog_engine.settings, engine=catalog_engine)) as svc:
        yield svc


@pytest.fixture(scope="session")
def service(embedded_service: Service) -> Service:
    """The HTTP API over the embedded session catalog (contract modules swap in both backends)."""
    return embedded_service


@pytest.fixture(scope="session", params=["embedded", "server"], name="service_on_each_backend")
def _service_on_each_backend(request: pytest.FixtureRequest) -> Service:
    """The same catalog served from SQLite + faiss and from PostgreSQL + Milvus."""
    return request.getfixturevalue(f"{request.param}_service")  # type: ignore[no-any-return]


def require_servers() -> bool:
    """Whether the server-backend tests must run (CI) rather than skip where a server is missing."""
    return os.environ.get("TONGKUAN_REQUIRE_SERVERS") == "1"


def skip_or_fail(reason: str) -> None:
    if require_servers():
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 for the whole session."""
    from tests.utils import postgres_server

    if not postgres_server.available():
        skip_or_fail("PostgreSQL server binaries not installed (Debian: postgresql)")
    with postgres_server.PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def milvus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusServer]:
    """A Milvus standalone server on 127.0.0.1 for the whole session."""
    try:
        import pymilvus  # noqa: F401

        from tests.utils.milvus_server import MilvusServer as Milvus
    except ImportError as exc:
        skip_or_fail(f"Milvus packages missing ({exc}): pip install -e '.[scale]'")
    with Milvus(tmp_path_factory.mktemp("milvus")) as server:
        yield server


_databases = iter(range(1, 1_000_000))


def new_database(postgres: PostgresServer) -> str:
    """A fresh, empty database on the session's cluster."""
    return postgres.create_database(f"test{next(_databases)}")


@pytest.fixture(scope="session")
def server_engine(
    catalog_engine: Engine, postgres: PostgresServer, milvus: MilvusServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """The session catalog moved into PostgreSQL + Milvus (no re-embedding), opened like a replica."""
    from tongkuan.migrate import migrate_catalog

    settings = catalog_engine.settings
    data_dir = new_data_dir(tmp_path_factory.mktemp("replica") / "data", catalog_engine.settings.data_dir)
    url = new_database(postgres)
    engine = Engine(
        settings.changed(
            data_dir=data_dir,
            catalog_url=url,
            vectors_url=f"milvus://127.0.0.1:{milvus.port}/session",
            image_dir=settings.images_root,
            model=catalog_engine.catalog.model,
        )
    )
    migrate_catalog(catalog_engine.catalog, engine.catalog)
    engine.vector_index.sync()
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def server_service(server_engine: Engine) -> Iterator[Service]:
    """The HTTP API over PostgreSQL + Milvus."""
    with serve(create_app(server_engine.settings, engine=server_engine)) as svc:
        yield svc
