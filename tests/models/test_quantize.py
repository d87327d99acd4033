"""`tongkuan quantize`: an 8-bit copy of the catalog's model, calibrated on the catalog,
stored in it and switched to in one step; `tongkuan tune --undo` switches back.

CI-sized: 22 grocery products with three pictures each, Lite0."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import new_data_dir, settings_for
from tests.models.test_tuning import MODEL, small_catalog, vectors
from tongkuan.cli import main
from tongkuan.engine import Engine
from tongkuan.engine.build import Builder
from tongkuan.errors import CannotLearn
from tongkuan.models.quantizing import quantize_catalog
from tongkuan.models.switch import undo_switch
from tongkuan.sample import grocery_records
from tongkuan.search.searcher import SearchQuery, SearchResults


def test_quantize_switches_to_an_8_bit_model_that_finds_the_same_products(
    data_root: Path, model_cache: Path, tmp_path: Path
) -> None:
    data_dir = new_data_dir(tmp_path / "data", model_cache)
    small_catalog(data_root, data_dir, 22)
    _, before = vectors(data_dir)
    # a shopper photo of each product that the catalog (iconic + two photos) does not hold
    records = [r for r in list(grocery_records(data_root, photos_per_product=3))[:22] if len(r["images"]) > 3]
    photos = [r["images"][3] for r in records]
    engine = Engine(settings_for(data_dir))
    try:
        found_before = [engine.search(engine.decode(Path(str(p)).read_bytes()), SearchQuery(limit=1)) for p in photos]
    finally:
        engine.close()

    # an interrupted `tongkuan tune` resumes from what it left in DATA_DIR/tune
    resumable = data_dir / "tune" / "checkpoint.pt"
    resumable.parent.mkdir()
    resumable.write_bytes(b"an interrupted tune's checkpoint")

    report = quantize_catalog(Builder(settings_for(data_dir)), pictures=40)
    assert report.quantized_from == MODEL and report.calibration_pictures == 40 and report.index_pictures == 66
    described = json.loads((data_dir / "models" / report.model / "model.json").read_text())
    assert described["precision"] == "int8" and described["tuned_from"] == MODEL
    model, after = vectors(data_dir)
    assert model == report.model and after.shape == before.shape
    # the same pictures, embedded in 8 bits, point the same way (a few less so: the main
    # subject is found on the 8-bit feature map, and a box a little off crops differently)
    cosines = np.sum(before * after, axis=1)
    assert cosines.mean() > 0.98 and np.percentile(cosines, 10) > 0.95, (cosines.mean(), np.sort(cosines)[:8])
    assert not (data_dir / "quantize").exists()  # its own download cache is gone
    assert resumable.read_bytes() == b"an interrupted tune's checkpoint"  # the tune's is not its to remove

    engine = Engine(settings_for(data_dir))
    try:
        assert engine.catalog.model == report.model
        found_after = [engine.search(engine.decode(Path(str(p)).read_bytes()), SearchQuery(limit=1)) for p in photos]
    finally:
        engine.close()

    def right(found: list[SearchResults]) -> int:
        return sum(f.hits[0].product.item_id == r["itemId"] for f, r in zip(found, records, strict=True))

    # shopper photos the catalog never saw find their product as often (within one photo)
    assert right(found_after) >= right(found_before) - 1, (right(found_before), right(found_after))

    with pytest.raises(CannotLearn, match="8-bit already"):
        quantize_catalog(Builder(settings_for(data_dir)), pictures=40)
    assert undo_switch(Builder(settings_for(data_dir))).model == MODEL  # back to float
    assert vectors(data_dir)[0] == MODEL


def test_too_few_pictures_to_calibrate_on_is_a_clear_error(data_root: Path, model_cache: Path, tmp_path: Path) -> None:
    data_dir = new_data_dir(tmp_path / "data", model_cache)
    small_catalog(data_root, data_dir, 4, photos=1)  # 8 pictures
    result = CliRunner().invoke(main, ["quantize", "--data-dir", str(data_dir)])
    assert result.exit_code == 1 and "needs at least 16 pictures to calibrate on; got 8" in result.output
    assert vectors(data_dir)[0] == MODEL  # nothing switched
