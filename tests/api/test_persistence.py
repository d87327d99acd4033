"""A real `tongkuan serve` process: writes from another process are visible at once, and
everything survives a clean restart and a kill -9."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import new_data_dir
from tests.utils.fileserver import FileServer
from tests.utils.server import Server
from tongkuan.cli import main

ICONIC = ["Alpro-Fresh-Soy-Milk", "Granny-Smith", "Banana", "Arla-Ecological-Sour-Cream", "Tropicana-Apple-Juice"]
MODEL = "efficientnet-lite0"


@pytest.fixture
def server(tmp_path: Path, model_cache: Path, data_root: Path) -> Iterator[Server]:
    data_dir = new_data_dir(tmp_path / "data", model_cache)
    records = [
        {"itemId": name, "title": name, "images": [str(data_root / "grocery_store" / "iconic" / f"{name}_Iconic.jpg")]}
        for name in ICONIC[:4]
    ]
    (tmp_path / "items.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    result = CliRunner().invoke(
        main, ["ingest", str(tmp_path / "items.jsonl"), "--data-dir", str(data_dir), "--model", MODEL]
    )
    assert result.exit_code == 0, result.output
    srv = Server(data_dir, MODEL)
    srv.start()
    yield srv
    if srv.process and srv.process.poll() is None:
        srv.stop(signal.SIGKILL)


def test_writes_from_another_process_are_seen_at_once_and_survive_restarts(
    server: Server, file_server: FileServer, tmp_path: Path
) -> None:
    banana = file_server.url("grocery_store/iconic/Banana_Iconic.jpg")
    juice_path = "grocery_store/iconic/Tropicana-Apple-Juice_Iconic.jpg"
    assert server.top_ids(banana)[0] == "Banana"

    result = CliRunner().invoke(main, ["delete", "Banana", "--data-dir", str(server.data_dir)])
    assert result.exit_code == 0, result.output
    assert "Banana" not in server.top_ids(banana)

    record = {"itemId": "Juice", "images": [file_server.url(juice_path)]}  # ingest by URL
    (tmp_path / "more.jsonl").write_text(json.dumps(record))
    os.environ["TONGKUAN_ALLOW_LOOPBACK_FETCH"] = "1"
    try:
        added = CliRunner().invoke(
            main, ["ingest", str(tmp_path / "more.jsonl"), "--data-dir", str(server.data_dir), "--model", MODEL]
        )
    finally:
        del os.environ["TONGKUAN_ALLOW_LOOPBACK_FETCH"]
    assert "1 added" in added.output, added.output
    juice = file_server.url(juice_path)
    before = server.top_ids(juice)
    assert before[0] == "Juice" and len(before) == 4

    server.stop(signal.SIGTERM)
    server.start()
    assert server.top_ids(juice) == before

    server.stop(signal.SIGKILL)
    server.start()
    assert server.top_ids(juice) == before
    assert "Banana" not in server.top_ids(banana)
