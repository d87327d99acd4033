"""The command line's answers to a new user's mistakes: a file that is not a picture, items
that are not in the catalog, a file that is not a backup, a data directory without a
catalog. Each is one line and exit status 1, never a traceback; and the commands print no
lines from faiss's loader."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tests.conftest import new_data_dir
from tongkuan.cli import main

MODEL = "efficientnet-lite0"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No TONGKUAN_ variable from the developer's shell leaks into these runs."""
    for name in list(os.environ):
        if name.upper().startswith("TONGKUAN_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TONGKUAN_MODEL", MODEL)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def assert_one_line_error(result: Result) -> str:
    """The one line of a refusal: exit status 1, handled, no traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    (line,) = result.output.splitlines()
    assert line.startswith("Error: ")
    return line


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory, model_cache: Path, data_root: Path) -> Path:
    """A data directory holding a catalog of two products."""
    base = tmp_path_factory.mktemp("answers")
    data_dir = new_data_dir(base / "shop", model_cache)
    iconic = data_root / "grocery_store" / "iconic"
    records = [
        {"itemId": name, "title": name, "images": [str(iconic / f"{name}_Iconic.jpg")]} for name in ("Kiwi", "Lemon")
    ]
    (base / "items.jsonl").write_text("\n".join(json.dumps(r) for r in records), encoding="utf-8")
    args = ["ingest", str(base / "items.jsonl"), "--no-whiten", "--data-dir", str(data_dir)]
    result = CliRunner().invoke(main, args, env={"TONGKUAN_MODEL": MODEL})
    assert result.exit_code == 0, result.output
    return data_dir


def test_searching_with_a_file_that_is_not_a_picture_is_one_line_naming_it(catalog: Path, tmp_path: Path) -> None:
    not_a_picture = tmp_path / "notimage.jpg"
    not_a_picture.write_text("plain text, not a picture\n")
    line = assert_one_line_error(invoke("search", str(not_a_picture), "--data-dir", str(catalog)))
    assert str(not_a_picture) in line and "not a picture" in line
    assert "UnidentifiedImageError" not in line  # the decoder's internals stay out of it


def test_an_empty_file_is_one_line_naming_it(catalog: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    line = assert_one_line_error(invoke("search", str(empty), "--data-dir", str(catalog)))
    assert str(empty) in line and "empty" in line


def test_delete_exits_1_naming_the_items_not_found_after_deleting_the_others(
    catalog: Path, tmp_path: Path, model_cache: Path
) -> None:
    data_dir = new_data_dir(tmp_path / "copy", model_cache)
    (data_dir / "catalog.db").write_bytes((catalog / "catalog.db").read_bytes())
    result = CliRunner().invoke(main, ["delete", "Kiwi", "nonexist", "--data-dir", str(data_dir)])
    assert result.exit_code == 1, result.output
    assert "deleted Kiwi" in result.stdout
    assert result.stderr.splitlines()[-1] == "Error: 1 of 2 products not found: nonexist"
    again = CliRunner().invoke(main, ["delete", "Kiwi", "--data-dir", str(data_dir)])
    assert again.exit_code == 1 and "Error: 1 of 1 products not found: Kiwi" in again.stderr


def test_delete_exits_0_when_every_item_was_deleted(catalog: Path, tmp_path: Path, model_cache: Path) -> None:
    data_dir = new_data_dir(tmp_path / "copy", model_cache)
    (data_dir / "catalog.db").write_bytes((catalog / "catalog.db").read_bytes())
    result = invoke("delete", "Kiwi", "Lemon", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["deleted Kiwi", "deleted Lemon"]


def test_restoring_a_file_that_is_not_a_backup_is_one_line_naming_it(tmp_path: Path) -> None:
    records = tmp_path / "products.jsonl"
    records.write_text('{"itemId": "1001", "images": ["a.jpg"]}\n')
    target = tmp_path / "restored"
    line = assert_one_line_error(invoke("restore", str(records), "--data-dir", str(target)))
    assert line == (
        f"Error: {records} cannot be restored: it is not a backup archive "
        "(tongkuan backup writes a .tar or .tar.gz file)"
    )
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["products.jsonl"]  # no staging folder left behind


@pytest.mark.parametrize("how", [["IMAGE"], ["--words", "red"]], ids=["picture", "words"])
def test_searching_a_data_directory_without_a_catalog_says_so_and_creates_nothing(
    how: list[str], tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    picture = str(data_root / "grocery_store" / "iconic" / "Kiwi_Iconic.jpg")
    args = [picture if part == "IMAGE" else part for part in how]
    monkeypatch.chdir(tmp_path)
    line = assert_one_line_error(invoke("search", *args))  # the default data directory, ./data
    assert line == (
        f"Error: {tmp_path / 'data'} holds no catalog: pass --data-dir of one (scripts/demo keeps its sample "
        "in demo-data), or make one with `tongkuan ingest FILES --data-dir DIR` or `tongkuan demo DATA_ROOT`"
    )
    assert list(tmp_path.iterdir()) == []


def test_searching_a_catalog_without_products_says_so(tmp_path: Path, model_cache: Path, data_root: Path) -> None:
    data_dir = new_data_dir(tmp_path / "shop", model_cache)
    assert invoke("delete", "nothing", "--data-dir", str(data_dir)).exit_code == 1  # makes an empty catalog
    picture = str(data_root / "grocery_store" / "iconic" / "Kiwi_Iconic.jpg")
    line = assert_one_line_error(invoke("search", picture, "--data-dir", str(data_dir)))
    assert line == (
        f"Error: the catalog in {data_dir} holds no products: add some with `tongkuan ingest FILES --data-dir DIR`"
    )


def test_a_command_prints_no_lines_from_faiss_s_loader_and_warns_once_of_an_unknown_variable(
    tmp_path: Path, model_cache: Path
) -> None:
    """The real command in its own process, where faiss is imported for the first time."""
    data_dir = new_data_dir(tmp_path / "shop", model_cache)
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("TONGKUAN_")}
    env.update({"TONGKUAN_MODEL": MODEL, "TONGKUAN_THRADS": "1", "TONGKUAN_TEST_DATA": "/nowhere"})
    done = subprocess.run(
        [sys.executable, "-m", "tongkuan.cli", "delete", "nothing", "--data-dir", str(data_dir)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert (data_dir / "catalog.db").exists()  # faiss was imported: the index was opened
    assert "faiss" not in done.stderr, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1, done.stderr
    assert "TONGKUAN_THRADS is not a tongkuan setting" in warnings[0]
    assert "did you mean TONGKUAN_THREADS?" in warnings[0]


def test_the_service_s_modules_import_faiss_without_its_loader_s_lines() -> None:
    code = (
        "import logging; logging.basicConfig(level=logging.DEBUG); "
        "import tongkuan.api.app, tongkuan.index.faiss, faiss; print(faiss.__version__)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "faiss.loader" not in done.stderr, done.stderr
