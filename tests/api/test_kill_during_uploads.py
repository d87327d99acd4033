"""kill -9 the service while clients upload: every acknowledged upload survives whole."""

from __future__ import annotations

import base64
import io
import itertools
import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from PIL import Image

from tests.conftest import APP_KEY, APP_SECRET, new_data_dir
from tests.utils.server import Server
from tongkuan.api.auth import sign

TRIALS = 5


def picture(seed: int) -> bytes:
    out = io.BytesIO()
    Image.effect_noise((96, 96), 40 + seed % 50).convert("RGB").save(out, "PNG")
    return out.getvalue()


def upload_until_stopped(
    port: int, stop: threading.Event, seeds: Iterator[int], acknowledged: dict[str, bytes]
) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        while not stop.is_set():
            data = picture(next(seeds))
            fields = {"appKey": APP_KEY, "image_base64": base64.b64encode(data).decode()}
            try:
                body = client.post("/taobao/upload/image", data={**fields, "sign": sign(fields, APP_SECRET)}).json()
            except httpx.HTTPError:
                return  # the server died mid-request: nothing was acknowledged
            if body["code"] == 200:
                acknowledged[body["data"]["imageId"]] = data


def test_uploads_acknowledged_before_a_kill_are_kept_whole(tmp_path: Path, model_cache: Path) -> None:
    data_dir = new_data_dir(tmp_path / "data", model_cache)
    acknowledged: dict[str, bytes] = {}
    rng = random.Random(5)
    seeds = itertools.count()
    for _ in range(TRIALS):
        server = Server(data_dir, "efficientnet-lite0")
        server.start()
        stop = threading.Event()
        workers = [
            threading.Thread(target=upload_until_stopped, args=(server.port, stop, seeds, acknowledged))
            for _ in range(3)
        ]
        for worker in workers:
            worker.start()
        time.sleep(rng.uniform(0.5, 2.0))
        server.stop(signal.SIGKILL)
        stop.set()
        for worker in workers:
            worker.join()

    assert acknowledged
    server = Server(data_dir, "efficientnet-lite0")
    server.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}") as client:
            for image_id, data in acknowledged.items():
                stored = client.get(f"/images/{image_id}.png")
                assert stored.status_code == 200 and stored.content == data
        assert not list((data_dir / "images").glob("*.part"))
    finally:
        server.stop(signal.SIGKILL)
