"""A catalog server that goes away answers 503 in the envelope (not a 500, not a hang), and
the service recovers by itself when the database comes back."""

from __future__ import annotations

import time
from pathlib import Path

from tests.conftest import new_data_dir, serve, settings_for
from tests.utils.fileserver import FileServer
from tests.utils.postgres_server import PostgresServer, available
from tongkuan.api.app import create_app

MODEL = "efficientnet-lite0"
PHOTO = "grocery_store/iconic/Banana_Iconic.jpg"
RECOVERY_S = 30  # the pool retries with backoff: clients retrying a 503 succeed within this


def test_a_lost_database_is_a_503_and_the_service_recovers(
    postgres: PostgresServer, model_cache: Path, tmp_path: Path, file_server: FileServer
) -> None:
    assert available()
    database = PostgresServer()  # one of its own: this test stops it
    database.start()
    settings = settings_for(new_data_dir(tmp_path / "data", model_cache), model=MODEL, catalog_url=database.url)
    try:
        with serve(create_app(settings)) as service:
            params = {"picUrl": file_server.url(PHOTO)}
            assert service.get("/taobao/image-search/url", params).json()["code"] == 200
            database.pause()
            response = service.get("/taobao/image-search/url", params)
            body = response.json()
            assert (response.status_code, body["code"]) == (503, 503), body
            assert "catalog" in body["message"]
            keyword = service.get("/taobao/traffic/item/search", {"keyword": "banana"})
            assert keyword.status_code == 503
            database.start()  # same folder and port: the pool reconnects on its own
            started, code = time.monotonic(), 503
            while code == 503 and time.monotonic() - started < RECOVERY_S:
                code = service.get("/taobao/image-search/url", params).json()["code"]
            assert code == 200
            print(f"recovered {time.monotonic() - started:.1f} s after the database came back")
    finally:
        database.stop()
