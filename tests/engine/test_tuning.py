"""`tongkuan tune`: a model tuned on the catalog, stored in it, switched to in one step, and undone.

CI-sized: 22 grocery products with three pictures each, one epoch of Lite0.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import as_records, new_data_dir, new_database, settings_for
from tests.utils.milvus_server import MilvusServer
from tests.utils.postgres_server import PostgresServer
from tongkuan.catalog.sqlite import SqliteCatalog
from tongkuan.cli import main
from tongkuan.domain.products import NewImage
from tongkuan.engine import Engine
from tongkuan.engine.engine import MODEL_CHECK_S
from tongkuan.engine.tuning import TuneOptions, switch_catalog, tune_catalog
from tongkuan.errors import CannotLearn, ModelSwitched
from tongkuan.sample import grocery_records
from tongkuan.search.searcher import SearchQuery

MODEL = "efficientnet-lite0"


def small_catalog(data_root: Path, data_dir: Path, products: int, photos: int = 2) -> None:
    raw = list(grocery_records(data_root, photos_per_product=photos))[:products]
    engine = Engine(settings_for(data_dir, model=MODEL))
    try:
        assert not engine.ingester().ingest(as_records(raw)).failures
    finally:
        engine.close()


def vectors(data_dir: Path) -> tuple[str, np.ndarray]:
    stored = SqliteCatalog.stored_spec(data_dir / "catalog.db")
    assert stored is not None
    catalog = SqliteCatalog(data_dir / "catalog.db", *stored)
    try:
        return stored[0], catalog.vectors()[1]
    finally:
        catalog.close()


def test_tune_switches_to_a_model_kept_in_the_catalog_and_undo_switches_back(
    data_root: Path, model_cache: Path, tmp_path: Path
) -> None:
    data_dir = new_data_dir(tmp_path / "data", model_cache)
    small_catalog(data_root, data_dir, 22)
    _, before = vectors(data_dir)
    stale = Engine(settings_for(data_dir))  # a service started before the switch

    report = tune_catalog(
        settings_for(data_dir), TuneOptions(epochs=1, threads=2, min_products=20, require_improvement=False), False
    )
    assert report.model is not None and report.model.startswith("tuned-") and report.base == MODEL
    assert report.pictures == 66 and report.index_pictures == 66
    model, after = vectors(data_dir)
    assert model == report.model and after.shape == before.shape and not np.allclose(after, before)
    assert not (data_dir / "tune").exists()  # done: nothing left to resume

    # a service started before never writes the old model's vectors into the switched catalog,
    # and its next search reopens it with the tuned model
    with pytest.raises(ModelSwitched, match=report.model):
        stale.catalog.add_image(stale.catalog.products(None, 1)[0].item_id, NewImage("h", "x.jpg", before[0], "late"))
    photo = next(grocery_records(data_root, photos_per_product=3))
    query = stale.decode(Path(str(photo["images"][2])).read_bytes())  # type: ignore[index]
    assert stale.search(query, SearchQuery(limit=5)).hits and stale.catalog.model == report.model
    stale.close()

    # a replica that never saw the model unpacks it from the catalog, and searches with it
    shutil.rmtree(data_dir / "models" / report.model)
    engine = Engine(settings_for(data_dir))
    try:
        assert engine.catalog.model == report.model and engine.vector_index.count() == 66
        assert engine.search(query, SearchQuery(limit=5)).hits
    finally:
        engine.close()

    result = CliRunner().invoke(main, ["tune", "--undo", "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    assert f"switched back to {MODEL}" in result.output
    model, undone = vectors(data_dir)
    assert model == MODEL and np.array_equal(undone, before)  # the old vectors were kept: no re-embedding


def test_a_catalog_of_one_picture_per_product_keeps_its_model_when_nothing_can_check_the_tuned_one(
    data_root: Path, model_cache: Path, tmp_path: Path
) -> None:
    data_dir = new_data_dir(tmp_path / "data", model_cache)
    small_catalog(data_root, data_dir, 20, photos=0)
    _, before = vectors(data_dir)
    result = CliRunner().invoke(main, ["tune", "--epochs", "1", "--threads", "2", "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    assert "the catalog keeps its model: its products have one picture each" in result.output
    model, after = vectors(data_dir)
    assert model == MODEL and np.array_equal(after, before)


def test_a_catalog_too_small_to_tune_is_refused_with_the_reason(
    data_root: Path, model_cache: Path, tmp_path: Path
) -> None:
    data_dir = new_data_dir(tmp_path / "data", model_cache)
    small_catalog(data_root, data_dir, 5)
    with pytest.raises(CannotLearn, match="5"):
        tune_catalog(settings_for(data_dir), TuneOptions(epochs=1, threads=2), False)
    result = CliRunner().invoke(main, ["tune", "--undo", "--data-dir", str(data_dir)])
    assert result.exit_code != 0 and "nothing to undo" in result.output


def test_a_server_catalog_switches_models_with_a_milvus_collection_of_its_own(
    data_root: Path, postgres: PostgresServer, milvus: MilvusServer, model_cache: Path, tmp_path: Path
) -> None:
    data_dir = new_data_dir(tmp_path / "data", model_cache)
    servers = {"catalog_url": new_database(postgres), "vectors_url": f"milvus://127.0.0.1:{milvus.port}/switch"}
    raw = list(grocery_records(data_root, photos_per_product=1))[:6]
    engine = Engine(settings_for(data_dir, model=MODEL, **servers))
    assert not engine.ingester().ingest(as_records(raw)).failures
    before = engine.vector_index
    photo = Path(str(raw[0]["images"][1]))  # type: ignore[index]
    query = engine.decode(photo.read_bytes())
    assert engine.search(query, SearchQuery(limit=1)).hits[0].product.item_id == raw[0]["itemId"]

    report = switch_catalog(settings_for(data_dir, **servers), "efficientnet-lite2")
    assert report.model == "efficientnet-lite2" and report.index_pictures == 12
    time.sleep(MODEL_CHECK_S)
    hits = engine.search(query, SearchQuery(limit=1)).hits  # the running engine follows the switch
    assert engine.catalog.model == "efficientnet-lite2" and engine.vision.spec.name == "efficientnet-lite2"
    assert engine.vector_index is not before and "lite2" in getattr(engine.vector_index, "name", "")
    assert hits[0].product.item_id == raw[0]["itemId"]
    engine.close()
