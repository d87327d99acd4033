"""`tongkuan models`: a model folder in the Hugging Face ONNX layout (and Immich's) imported,
listed, made the catalog's model and switched back, with the subject still found by the
shipped model; and every bad input refused in one line, the catalog serving on as before."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import as_records, new_database, settings_for
from tests.models.test_tuning import MODEL, small_catalog, vectors
from tests.utils.milvus_server import MilvusServer
from tests.utils.postgres_server import PostgresServer
from tests.utils.tiny_models import tiny_hf_onnx, tiny_immich
from tongkuan.cli import main
from tongkuan.config import Settings
from tongkuan.engine import Engine
from tongkuan.engine.build import Builder
from tongkuan.engine.engine import MODEL_CHECK_S
from tongkuan.errors import ConfigError
from tongkuan.models.switch import switch_catalog
from tongkuan.sample import grocery_records
from tongkuan.search.searcher import SearchQuery


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_a_hugging_face_onnx_folder_is_imported_listed_used_and_switched_back(
    data_root: Path, data_dir: Path, tmp_path: Path
) -> None:
    small_catalog(data_root, data_dir, 6)
    _, before = vectors(data_dir)
    folder = tiny_hf_onnx(tmp_path / "dinov2-tiny")

    code, out = run("models", "import", str(folder), "--name", "dinov2-tiny", "--data-dir", str(data_dir))
    assert code == 0, out
    assert "imported dinov2-tiny (hf-onnx layout, 24 dimensions" in out and "licence apache-2.0" in out
    code, out = run("models", "list", "--data-dir", str(data_dir), "--json")
    listed = {row["name"]: row for row in map(json.loads, out.splitlines())}
    assert listed["dinov2-tiny"]["kind"] == "imported" and listed["dinov2-tiny"]["dim"] == 24
    assert listed[MODEL]["current"] and not listed["dinov2-tiny"]["current"]

    code, out = run("models", "use", "dinov2-tiny", "--data-dir", str(data_dir))
    assert code == 0, out
    assert "switched to dinov2-tiny: 18 pictures indexed" in out
    model, after = vectors(data_dir)
    assert model == "dinov2-tiny" and after.shape == (18, 24)

    engine = Engine(settings_for(data_dir))
    try:
        assert engine.vision.finder is not None  # the shipped model finds the subjects
        for record in list(grocery_records(data_root, photos_per_product=2))[:6]:
            picture = Path(record["images"][0])  # type: ignore[index]
            found = engine.search(engine.decode(picture.read_bytes()), SearchQuery(limit=3))
            assert found.hits[0].product.item_id == record["itemId"]  # its own picture, first
            assert found.regions and found.regions[0] == found.searched  # the subject it searched by
    finally:
        engine.close()
    code, out = run("models", "list", "--data-dir", str(data_dir))
    assert "* dinov2-tiny" in out
    code, out = run("tune", "--data-dir", str(data_dir))
    assert code == 1 and "tuning trains the shipped EfficientNet-Lite models" in out and len(out.splitlines()) == 1

    code, out = run("models", "use", MODEL, "--data-dir", str(data_dir))
    assert code == 0, out
    model, back = vectors(data_dir)
    assert model == MODEL and np.array_equal(back, before)  # the old vectors were kept
    code, out = run("models", "use", "--undo", "--data-dir", str(data_dir))
    assert code == 0 and vectors(data_dir)[0] == "dinov2-tiny", out


def test_an_immich_folder_is_imported_with_its_own_preprocessing(data_dir: Path, tmp_path: Path) -> None:
    code, out = run(
        "models", "import", str(tiny_immich(tmp_path / "clip")), "--name", "clip-tiny", "--data-dir", str(data_dir)
    )
    assert code == 0, out
    described = json.loads((data_dir / "models" / "clip-tiny" / "model.json").read_text())
    assert described["onnx"] == "visual/model.onnx" and described["input_name"] == "image"
    assert described["dim"] == 16 and described["interpolation"] == "bicubic" and described["resize"] == "shortest"
    assert described["mean"][0] == pytest.approx(0.48145466 * 255)


def test_bad_model_folders_are_refused_in_one_line_and_nothing_is_kept(data_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out = run("models", "import", str(empty), "--name", "nothing", "--data-dir", str(data_dir))
    assert code == 1 and out.startswith("Error: ") and "is not a model folder" in out and len(out.splitlines()) == 1

    corrupt = tiny_hf_onnx(tmp_path / "corrupt")
    (corrupt / "onnx" / "model.onnx").write_bytes(b"not an onnx file at all")
    code, out = run("models", "import", str(corrupt), "--name", "corrupt", "--data-dir", str(data_dir))
    assert code == 1 and "is not a readable ONNX model" in out

    unread = tiny_hf_onnx(tmp_path / "no-size")
    processor = json.loads((unread / "preprocessor_config.json").read_text())
    del processor["size"]
    (unread / "preprocessor_config.json").write_text(json.dumps(processor))
    code, out = run("models", "import", str(unread), "--name", "no-size", "--data-dir", str(data_dir))
    assert code == 1 and "preprocessor_config.json has no size" in out  # never guessed

    good = tiny_hf_onnx(tmp_path / "good")
    for name in ("Bad Name", "efficientnet-lite0", "tuned-abc"):
        code, out = run("models", "import", str(good), "--name", name, "--data-dir", str(data_dir))
        assert code == 1, (name, out)
    assert run("models", "import", str(good), "--name", "good", "--data-dir", str(data_dir))[0] == 0
    code, out = run("models", "import", str(good), "--name", "good", "--data-dir", str(data_dir))
    assert code == 1 and "already holds a model named 'good'" in out
    leftovers = sorted(p.name for p in (data_dir / "models").iterdir() if not p.is_symlink())
    assert leftovers == ["good"]  # no half-imported folder


def test_a_model_name_the_data_directory_lacks_is_a_bad_setting(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="model='not-here' is not valid: use .*tongkuan models list"):
        Settings(data_dir=data_dir, model="not-here")
    tiny_hf_onnx(tmp_path / "here")
    assert run("models", "import", str(tmp_path / "here"), "--name", "here", "--data-dir", str(data_dir))[0] == 0
    assert Settings(data_dir=data_dir, model="here").models.model == "here"


def test_the_catalogs_own_model_cannot_be_removed(data_root: Path, data_dir: Path, tmp_path: Path) -> None:
    small_catalog(data_root, data_dir, 3, photos=0)
    assert (
        run("models", "import", str(tiny_hf_onnx(tmp_path / "m")), "--name", "m", "--data-dir", str(data_dir))[0] == 0
    )
    assert run("models", "use", "m", "--data-dir", str(data_dir))[0] == 0
    code, out = run("models", "remove", "m", "--data-dir", str(data_dir))
    assert code == 1 and "the catalog uses m" in out
    assert run("models", "use", MODEL, "--data-dir", str(data_dir))[0] == 0
    code, out = run("models", "remove", "m", "--data-dir", str(data_dir))
    assert code == 0 and not (data_dir / "models" / "m").exists()
    code, out = run("models", "remove", MODEL, "--data-dir", str(data_dir))
    assert code == 1 and "only imported and pulled models can be removed" in out
    shutil.rmtree(tmp_path / "m")


def test_a_server_catalog_switches_to_an_imported_model_and_back(
    data_root: Path, data_dir: Path, tmp_path: Path, postgres: PostgresServer, milvus: MilvusServer
) -> None:
    servers = {"catalog_url": new_database(postgres), "vectors_url": f"milvus://127.0.0.1:{milvus.port}/imported"}
    raw = list(grocery_records(data_root, photos_per_product=1))[:5]
    engine = Engine(settings_for(data_dir, model=MODEL, **servers))
    try:
        assert not engine.ingester().ingest(as_records(raw)).failures
        assert (
            run("models", "import", str(tiny_hf_onnx(tmp_path / "m")), "--name", "m", "--data-dir", str(data_dir))[0]
            == 0
        )
        switched = switch_catalog(Builder(settings_for(data_dir, **servers)), "m")
        assert switched.model == "m" and switched.index_pictures == 10
        time.sleep(MODEL_CHECK_S)
        picture = Path(str(raw[2]["images"][0]))  # type: ignore[index]
        found = engine.search(engine.decode(picture.read_bytes()), SearchQuery(limit=1))  # the engine follows
        assert engine.vision.spec.name == "m" and engine.vision.dim == 24
        assert found.hits[0].product.item_id == raw[2]["itemId"]
        assert "m" in getattr(engine.vector_index, "name", "")  # a Milvus collection of its own
        back = switch_catalog(Builder(settings_for(data_dir, **servers)), MODEL)
        assert back.model == MODEL and back.index_pictures == 10
    finally:
        engine.close()


def test_an_imported_model_is_quantized_and_switched_back_to_float(
    data_root: Path, data_dir: Path, tmp_path: Path
) -> None:
    assert (
        run("models", "import", str(tiny_hf_onnx(tmp_path / "m")), "--name", "m", "--data-dir", str(data_dir))[0] == 0
    )
    raw = list(grocery_records(data_root, photos_per_product=2))[:12]
    engine = Engine(settings_for(data_dir, model="m"))
    try:
        assert not engine.ingester().ingest(as_records(raw)).failures
    finally:
        engine.close()
    code, out = run("quantize", "--pictures", "30", "--data-dir", str(data_dir))
    assert code == 0, out
    assert "quantized m to 8 bits, calibrated on 30 catalog pictures" in out
    model, vectors_int8 = vectors(data_dir)
    assert model.startswith("tuned-") and vectors_int8.shape == (36, 24)
    described = json.loads((data_dir / "models" / model / "model.json").read_text())
    assert described["precision"] == "int8" and described["onnx"] == "model.onnx"
    assert described["resize"] == "shortest" and described["resize_to"] == 40  # its preprocessing kept
    code, out = run("tune", "--data-dir", str(data_dir))
    assert code == 1 and "tuning trains the shipped EfficientNet-Lite models" in out
    assert run("tune", "--undo", "--data-dir", str(data_dir))[0] == 0
    assert vectors(data_dir)[0] == "m"
