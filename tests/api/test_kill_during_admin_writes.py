"""kill -9 the service while an operator writes through the admin API and an import job
runs: every acknowledged change survives whole, nothing is half-written, and the
interrupted import finishes after the restart."""

from __future__ import annotations

import io
import itertools
import json
import random
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from PIL import Image

from tests.conftest import new_data_dir
from tests.utils.fileserver import FileServer
from tests.utils.server import Server

TOKEN = "kill-test-admin-token-0123"
TRIALS = 4
ENV = {"TONGKUAN_ADMIN_TOKEN": TOKEN}


def picture(seed: int) -> bytes:
    out = io.BytesIO()
    Image.effect_noise((96, 96), 40 + seed % 50).convert("RGB").save(out, "PNG")
    return out.getvalue()


def write_until_stopped(
    port: int, stop: threading.Event, ids: Iterator[int], done: dict[str, str], sent: dict[str, str]
) -> None:
    """PUT a product, then PATCH its title, then DELETE every third: `done` maps each
    itemId to the last acknowledged state ("title:<t>" or "deleted"), `sent` to the state
    the last request sent would give (applied or not when a kill cut its answer)."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30, headers=headers) as client:
        while not stop.is_set():
            n = next(ids)
            item_id = f"k{n}"
            try:
                files = [("images", (f"{n}-{i}.png", picture(n * 3 + i))) for i in range(2)]
                sent[item_id] = "title:原始"
                put = client.put(
                    f"/admin/products/{item_id}", data={"product": json.dumps({"title": "原始"})}, files=files
                )
                if put.json()["code"] != 200:
                    continue
                done[item_id] = "title:原始"
                sent[item_id] = f"title:改过 {n}"
                patch = client.patch(f"/admin/products/{item_id}", json={"title": f"改过 {n}"})
                if patch.json()["code"] == 200:
                    done[item_id] = f"title:改过 {n}"
                if n % 3 == 0:
                    sent[item_id] = "deleted"
                if n % 3 == 0 and client.delete(f"/admin/products/{item_id}").json()["code"] == 200:
                    done[item_id] = "deleted"
            except httpx.HTTPError:
                return  # the server died mid-request: that change was not acknowledged


def test_admin_writes_and_imports_survive_kills(
    tmp_path: Path, model_cache: Path, file_server: FileServer, data_root: Path
) -> None:
    data_dir = new_data_dir(tmp_path / "data", model_cache)
    done: dict[str, str] = {}
    sent: dict[str, str] = {}
    rng = random.Random(8)
    ids = itertools.count()
    iconic = sorted((data_root / "grocery_store" / "iconic").glob("*.jpg"))[:30]
    records = "\n".join(
        json.dumps(
            {"itemId": f"imp-{p.stem}", "title": p.stem, "images": [file_server.url(f"grocery_store/iconic/{p.name}")]}
        )
        for p in iconic
    ).encode()
    job_id = None
    for trial in range(TRIALS):
        server = Server(data_dir, "efficientnet-lite0", ENV)
        server.start()
        if trial == 0:  # an import that the kills interrupt
            job = httpx.post(
                f"http://127.0.0.1:{server.port}/admin/imports",
                content=records,
                headers={"Authorization": f"Bearer {TOKEN}"},
            ).json()
            job_id = job["data"]["jobId"]
        stop = threading.Event()
        workers = [
            threading.Thread(target=write_until_stopped, args=(server.port, stop, ids, done, sent)) for _ in range(2)
        ]
        for worker in workers:
            worker.start()
        time.sleep(rng.uniform(1.0, 3.0))
        server.stop(signal.SIGKILL)
        stop.set()
        for worker in workers:
            worker.join()

    assert len(done) >= 4 and "deleted" in done.values()
    server = Server(data_dir, "efficientnet-lite0", ENV)
    server.start()
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{server.port}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
        ) as client:
            for item_id, state in done.items():
                body = client.get(f"/admin/products/{item_id}").json()
                found = "deleted" if body["code"] == 404 else "title:" + body["data"]["title"]
                assert found in (state, sent[item_id]), (item_id, state, sent[item_id], body)
                assert found == "deleted" or len(body["data"]["pictures"]) == 2
            deadline = time.monotonic() + 180
            while (job := client.get(f"/admin/imports/{job_id}").json()["data"])["state"] != "done":
                assert job["state"] in ("queued", "running") and time.monotonic() < deadline, job
                time.sleep(0.3)
            assert job["added"] + job["unchanged"] + job["updated"] == len(iconic) and job["failed"] == 0
    finally:
        server.stop(signal.SIGKILL)
    db = sqlite3.connect(data_dir / "catalog.db")  # nothing half-written
    assert db.execute("SELECT COUNT(*) FROM items WHERE item_id NOT IN (SELECT item_id FROM images)").fetchone() == (0,)
    assert db.execute("SELECT COUNT(*) FROM images WHERE item_id NOT IN (SELECT item_id FROM items)").fetchone() == (0,)
    words = db.execute("SELECT COUNT(*) FROM item_words").fetchone()[0]
    assert words == db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
