"""kill -9 during ingestion, again and again: what was acknowledged stays, nothing is torn,
and a rerun completes."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import new_data_dir, settings_for
from tongkuan.engine import Engine
from tongkuan.images.decode import decode_image
from tongkuan.search.searcher import SearchQuery

TRIALS = 20
MODEL = "efficientnet-lite0"


def consistency(db_path: Path) -> tuple[int, int, int]:
    """(products, products without pictures, pictures without a product)."""
    with sqlite3.connect(db_path) as db:
        products = db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        bare = db.execute("SELECT COUNT(*) FROM items WHERE item_id NOT IN (SELECT item_id FROM images)").fetchone()[0]
        orphans = db.execute("SELECT COUNT(*) FROM images WHERE item_id NOT IN (SELECT item_id FROM items)").fetchone()[
            0
        ]
    return int(products), int(bare), int(orphans)


def test_kill_minus_nine_at_random_points_loses_nothing_acknowledged(
    tmp_path: Path, model_cache: Path, data_root: Path
) -> None:
    iconic = sorted((data_root / "grocery_store" / "iconic").glob("*.jpg"))[:48]
    source = tmp_path / "items.jsonl"
    source.write_text("\n".join(json.dumps({"itemId": p.stem, "images": [str(p)]}) for p in iconic))
    data_dir = new_data_dir(tmp_path / "data", model_cache)
    command = [sys.executable, "-m", "tongkuan.cli", "ingest", str(source), "--data-dir", str(data_dir),
               "--model", MODEL, "--batch-size", "4", "--ack"]  # fmt: skip
    rng = random.Random(11)
    acknowledged: set[str] = set()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for _ in range(TRIALS):
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
        time.sleep(rng.uniform(0.5, 5.0))  # start-up takes ~1.5 s: some trials die before any commit
        process.send_signal(signal.SIGKILL)
        out, _ = process.communicate()
        acknowledged |= {line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("committed ")}
        if (data_dir / "catalog.db").exists():
            products, bare, orphans = consistency(data_dir / "catalog.db")
            assert bare == 0 and orphans == 0
            assert products >= len(acknowledged)

    finished = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert consistency(data_dir / "catalog.db") == (len(iconic), 0, 0)

    engine = Engine(settings_for(data_dir, model=MODEL))
    try:
        assert engine.vector_index.count() == len(iconic)
        for path in iconic:
            if path.stem in acknowledged:
                hits = engine.searcher.search(decode_image(path.read_bytes(), 10**8), SearchQuery(limit=1)).hits
                assert hits[0].product.item_id == path.stem
    finally:
        engine.close()
    assert acknowledged, "no trial lived long enough to commit anything"
