"""Distributed ingestion with Ray Data into PostgreSQL: same vectors as in process, reruns
skip what is stored, and the local Ray node stays on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import as_records, new_data_dir, new_database, settings_for, skip_or_fail
from tests.utils.postgres_server import PostgresServer
from tongkuan.catalog.postgres import PostgresCatalog
from tongkuan.engine import Engine
from tongkuan.engine.build import build_ingester, with_model
from tongkuan.ingest.distributed import LOCAL_START_TRIES, ingest_with_ray, start_ray
from tongkuan.sample import grocery_records

MODEL = "efficientnet-lite0"
PRODUCTS = 12


@pytest.fixture(scope="module")
def ray_options(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    os.environ["RAY_AUTH_MODE"] = "disabled"
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # as `ingest_with_ray` does for "local"
    try:
        import ray.data  # noqa: F401
    except ImportError as exc:
        skip_or_fail(f"Ray Data missing ({exc}): pip install -e '.[scale]'")
    return {
        "num_cpus": 2,
        "_node_ip_address": "127.0.0.1",  # never the machine's external address
        "include_dashboard": False,
        "_temp_dir": str(tmp_path_factory.mktemp("ray")),
    }


def test_ray_ingestion_matches_in_process_and_resumes(
    data_root: Path,
    postgres: PostgresServer,
    model_cache: Path,
    tmp_path: Path,
    ray_options: dict[str, object],
) -> None:
    raw = list(grocery_records(data_root, photos_per_product=1))[:PRODUCTS]
    records = as_records(raw)
    data_dir = new_data_dir(tmp_path / "ray-data", model_cache)
    settings = settings_for(
        data_dir, model=MODEL, catalog_url=new_database(postgres), image_dir=tmp_path / "shared-images"
    )
    # a crash after the first half: the rerun below must embed only the rest
    workers = partial(build_ingester, with_model(settings))  # as `tongkuan ingest --ray` builds them
    first = ingest_with_ray(workers, records[: PRODUCTS // 2], "local", actors=1, ray_options=ray_options)
    assert first.added == PRODUCTS // 2 and not first.failures
    # the rerun through the command line, on a local Ray cluster of its own
    source = tmp_path / "items.jsonl"
    source.write_text("\n".join(json.dumps(r, default=str) for r in raw))
    env = {
        **os.environ,
        "TONGKUAN_CATALOG_URL": settings.backends.catalog_url or "",
        "TONGKUAN_IMAGE_DIR": str(settings.images_root),
        "RAY_TMPDIR": str(ray_options["_temp_dir"]),  # Ray's files stay in the test's folder
    }
    args = ["ingest", str(source), "--data-dir", str(data_dir), "--model", MODEL, "--ray", "local", "--actors", "2"]
    # a process of its own, as a user runs it (a second Ray in this process is not what users do)
    result = subprocess.run([sys.executable, "-m", "tongkuan.cli", *args], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    half = PRODUCTS - PRODUCTS // 2
    # iconic + one photo each, embedded only for the products not stored before
    assert f"{half} added, 0 updated, {PRODUCTS // 2} unchanged, 0 failed; {2 * half} images embedded" in result.stdout

    # the same records ingested in this process give the same vectors
    local = Engine(settings_for(new_data_dir(tmp_path / "local", model_cache), model=MODEL))
    local.ingester().ingest(records)
    shared = PostgresCatalog(settings.backends.catalog_url or "", MODEL, local.catalog.dim)
    assert shared.count() == local.catalog.count() == (PRODUCTS, 2 * PRODUCTS)
    for record in records[:3]:
        item_id = record.fields["itemId"]
        _, ours = shared.pictures_with_vectors([item_id])[item_id]
        _, theirs = local.catalog.pictures_with_vectors([item_id])[item_id]
        assert np.allclose(ours, theirs, atol=1e-5)
        assert shared.get(item_id) == local.catalog.get(item_id)
    assert all(
        (tmp_path / "shared-images" / p.location).is_file() for p in shared.images_of(records[0].fields["itemId"])
    )
    shared.close()
    local.close()


def test_the_local_ray_node_stays_on_loopback(ray_options: dict[str, object]) -> None:
    import ray

    start_ray(ray, ray_options, tries=LOCAL_START_TRIES)
    try:
        addresses = {node["NodeManagerAddress"] for node in ray.nodes()}
        listening = subprocess.run(["ss", "-tlnpH"], capture_output=True, text=True, check=True).stdout
    finally:
        ray.shutdown()
    assert addresses == {"127.0.0.1"}
    ray_sockets = [line.split()[3] for line in listening.splitlines() if re.search(r"ray|gcs_server|raylet", line)]
    assert ray_sockets and all(re.match(r"(\[::ffff:)?127\.0\.0\.1\]?:", s) for s in ray_sockets), ray_sockets
