"""Ingestion from JSONL, CSV and folders: per-record failures, idempotent reruns, predictions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import new_data_dir, settings_for
from tests.utils.data import read_rows
from tongkuan.cli import main
from tongkuan.engine import Engine
from tongkuan.errors import IngestError
from tongkuan.ingest.readers import read_sources
from tongkuan.vision.whitening import MIN_PRODUCTS

ICONIC = "grocery_store/iconic"


@pytest.fixture
def engine(tmp_path: Path, model_cache: Path) -> Engine:
    return Engine(settings_for(new_data_dir(tmp_path / "data", model_cache), model="efficientnet-lite0"))


def write_jsonl(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n")
    return path


def test_jsonl_records_are_ingested_with_defaults_and_bad_ones_reported(
    engine: Engine, data_root: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "src"
    folder.mkdir()
    shutil.copy(data_root / ICONIC / "Alpro-Fresh-Soy-Milk_Iconic.jpg", folder / "milk.jpg")
    shutil.copy(data_root / ICONIC / "Golden-Delicious_Iconic.jpg", folder / "apple.jpg")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 this is not really a jpeg")
    source = write_jsonl(
        folder / "items.jsonl",
        [
            {"itemId": "milk-1", "title": "豆奶", "reservePrice": "12.5", "zkFinalPrice": "9.9",
             "categoryId": "8", "images": ["milk.jpg"]},
            {"itemId": "apple-1", "images": ["apple.jpg", "milk.jpg"]},
            {"title": "no id", "images": ["apple.jpg"]},
            {"itemId": "broken-1", "images": ["broken.jpg"]},
            {"itemId": "missing-1", "images": ["nowhere.jpg"]},
            {"itemId": "bad-price", "reservePrice": "cheap", "images": ["apple.jpg"]},
        ],
    )  # fmt: skip
    report = engine.ingester().ingest(read_sources([source]))
    assert (report.added, report.updated, report.unchanged) == (2, 0, 0)
    reasons = {f.item_id: f.reason for f in report.failures}
    assert set(reasons) == {None, "broken-1", "missing-1", "bad-price"}
    assert "itemId" in reasons[None] and "readable image" in reasons["broken-1"]
    assert "cannot be read" in reasons["missing-1"] and "reservePrice" in reasons["bad-price"]

    milk = engine.catalog.get("milk-1")
    assert str(milk.reserve_price) == "12.5" and str(milk.final_price) == "9.9" and not milk.category_predicted
    apple = engine.catalog.get("apple-1")
    assert apple.title == "apple-1" and apple.volume == 0 and apple.coupon_amount is None
    assert apple.category is not None and apple.category_predicted
    assert engine.catalog.count() == (2, 3)

    again = engine.ingester().ingest(read_sources([source]))
    assert (again.added, again.updated, again.unchanged, again.images_embedded) == (0, 0, 2, 0)
    assert engine.catalog.get("apple-1").category == apple.category


def test_changing_a_products_images_replaces_its_vectors(engine: Engine, data_root: Path, tmp_path: Path) -> None:
    first = write_jsonl(
        tmp_path / "a.jsonl", [{"itemId": "x", "images": [str(data_root / ICONIC / "Oatly-Oat-Milk_Iconic.jpg")]}]
    )
    second = write_jsonl(
        tmp_path / "b.jsonl", [{"itemId": "x", "images": [str(data_root / ICONIC / "Lemon_Iconic.jpg")]}]
    )
    engine.ingester().ingest(read_sources([first]))
    report = engine.ingester().ingest(read_sources([second]))
    assert report.updated == 1 and engine.catalog.count() == (1, 1)
    engine.vector_index.sync()
    assert engine.vector_index.count() == 1


def test_csv_and_image_folders_are_read(engine: Engine, data_root: Path, tmp_path: Path) -> None:
    csv_file = tmp_path / "items.csv"
    lemon, lime = (data_root / ICONIC / n for n in ("Lemon_Iconic.jpg", "Lime_Iconic.jpg"))
    csv_file.write_text(f"itemId,title,volume,images\nc1,柠檬,12,{lemon}|{lime}\n", encoding="utf-8")
    folder = tmp_path / "folder" / "fruit"
    folder.mkdir(parents=True)
    shutil.copy(lemon, folder / "lemon.jpg")
    (folder / "notes.txt").write_text("ignored")
    report = engine.ingester().ingest(read_sources([csv_file, tmp_path / "folder"]))
    assert report.added == 2 and not report.failures
    assert engine.catalog.get("c1").volume == 12
    assert engine.catalog.get("fruit/lemon").title == "lemon"


def test_unknown_source_kinds_are_refused(tmp_path: Path) -> None:
    (tmp_path / "items.xml").write_text("<items/>")
    with pytest.raises(IngestError):
        list(read_sources([tmp_path / "items.xml"]))


def test_the_ingest_command_reports_and_is_idempotent(data_root: Path, tmp_path: Path, model_cache: Path) -> None:
    data_dir = new_data_dir(tmp_path / "data", model_cache)
    source = write_jsonl(
        tmp_path / "c.jsonl", [{"itemId": "k", "images": [str(data_root / ICONIC / "Kiwi_Iconic.jpg")]}]
    )
    runner = CliRunner()
    args = ["ingest", str(source), "--data-dir", str(data_dir), "--model", "efficientnet-lite0"]
    first = runner.invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "1 added" in first.output
    second = runner.invoke(main, args)
    assert "1 unchanged" in second.output and "0 images embedded" in second.output


def test_the_ingest_command_fails_when_every_record_fails(data_root: Path, tmp_path: Path, model_cache: Path) -> None:
    data_dir = new_data_dir(tmp_path / "data", model_cache)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    source = write_jsonl(
        tmp_path / "bad.jsonl",
        [{"itemId": "gone", "images": ["nowhere.jpg"]}, {"itemId": "broken", "images": ["broken.jpg"]}],
    )
    result = CliRunner().invoke(
        main, ["ingest", str(source), "--data-dir", str(data_dir), "--model", "efficientnet-lite0"]
    )
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # a message, not a traceback
    assert "Traceback" not in result.output
    assert result.output.splitlines()[-1] == "Error: 2 of 2 records failed"


def test_the_ingest_command_acknowledges_the_good_records_and_fails_for_the_bad_ones(
    data_root: Path, tmp_path: Path, model_cache: Path
) -> None:
    data_dir = new_data_dir(tmp_path / "data", model_cache)
    source = write_jsonl(
        tmp_path / "mixed.jsonl",
        [
            {"itemId": "kiwi", "images": [str(data_root / ICONIC / "Kiwi_Iconic.jpg")]},
            {"itemId": "gone", "images": ["nowhere.jpg"]},
            {"itemId": "lime", "images": [str(data_root / ICONIC / "Lime_Iconic.jpg")]},
        ],
    )
    args = ["ingest", str(source), "--data-dir", str(data_dir), "--model", "efficientnet-lite0", "--ack"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert {"committed kiwi", "committed lime"} <= set(lines) and "committed gone" not in lines
    assert any(line.startswith("failed ") and "itemId=gone" in line for line in lines)
    assert "2 added, 0 updated, 0 unchanged, 1 failed" in result.output
    assert lines[-1] == "Error: 1 of 3 records failed"
    engine = Engine(settings_for(data_dir))
    try:
        assert engine.catalog.count() == (2, 2)
    finally:
        engine.close()


def test_the_first_ingestion_with_enough_grouped_products_learns_a_whitening(
    data_root: Path, tmp_path: Path, model_cache: Path
) -> None:
    """20 grocery products with two shoppers' photos each: the ingest command learns a
    whitening once, builds its index, and leaves it alone on later runs."""
    rows = [r for r in read_rows(data_root / "grocery_store" / "labels.csv") if r["split"] == "train"]
    by_product: dict[str, list[str]] = {}
    for row in rows:
        by_product.setdefault(row["class_id"], []).append(str(data_root / "grocery_store" / row["path"]))
    records = [{"itemId": f"g{k}", "images": paths[:2]} for k, paths in list(by_product.items())[:MIN_PRODUCTS]]
    data_dir = new_data_dir(tmp_path / "data", model_cache)
    runner = CliRunner()
    base = ["--data-dir", str(data_dir), "--model", "efficientnet-lite0"]
    few = runner.invoke(main, ["ingest", str(write_jsonl(tmp_path / "a.jsonl", records[:5])), *base])
    assert few.exit_code == 0 and "no whitening learned yet" in few.output and "the catalog has 5" in few.output
    skipped = runner.invoke(main, ["ingest", str(write_jsonl(tmp_path / "b.jsonl", records)), *base, "--no-whiten"])
    assert skipped.exit_code == 0 and "whitening" not in skipped.output
    learned = runner.invoke(main, ["ingest", str(write_jsonl(tmp_path / "b.jsonl", records)), *base])
    assert learned.exit_code == 0, learned.output
    assert (
        f"from {MIN_PRODUCTS} products with several pictures" in learned.output and "index ready (40" in learned.output
    )
    again = runner.invoke(main, ["ingest", str(write_jsonl(tmp_path / "b.jsonl", records)), *base])
    assert again.exit_code == 0 and "learned" not in again.output  # one whitening until `tongkuan whiten`
    engine = Engine(settings_for(data_dir))
    try:
        assert (
            engine.vector_index.space.key and engine.vector_index.space.dim == 256 and engine.vector_index.count() == 40
        )
    finally:
        engine.close()
