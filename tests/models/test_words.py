"""Search by words with a model's text tower: a CLIP-style model whose towers agree on colours
(built here, random weights) is imported with its tokenizer, the catalog switches to it, and
"red" finds the red product first; a model without a text tower answers in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from tests.conftest import new_database, serve, settings_for
from tests.utils.fake_hub import FakeHub
from tests.utils.fileserver import FileServer
from tests.utils.tiny_models import COLOURS, tiny_clip, tiny_hf_onnx
from tongkuan.api.app import create_app
from tongkuan.cli import main
from tongkuan.domain.categories import Category
from tongkuan.engine import Engine
from tongkuan.search.searcher import SearchQuery


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def colour_catalog(folder: Path) -> Path:
    """Two products of each colour, one solid picture each, as a JSONL file to ingest."""
    folder.mkdir(parents=True)
    lines = []
    for colour, rgb in COLOURS.items():
        for n in range(2):
            path = folder / f"{colour}-{n}.png"
            Image.new("RGB", (96, 64 + 16 * n), rgb).save(path)
            lines.append({"itemId": f"{colour}-{n}", "title": f"item {n}", "images": [str(path)]})
    source = folder / "catalog.jsonl"
    source.write_text("\n".join(json.dumps(line) for line in lines))
    return source


def test_words_find_the_products_whose_pictures_show_them(data_dir: Path, tmp_path: Path) -> None:
    source = colour_catalog(tmp_path / "pictures")
    code, out = run("ingest", str(source), "--model", "efficientnet-lite0", "--no-whiten", "--data-dir", str(data_dir))
    assert code == 0, out
    code, out = run("search", "--words", "red", "--data-dir", str(data_dir))
    assert code == 1 and "has no text tower" in out and len(out.splitlines()) == 1

    code, out = run(
        "models", "import", str(tiny_clip(tmp_path / "clip")), "--name", "clip-tiny", "--data-dir", str(data_dir)
    )
    assert code == 0, out
    described = json.loads((data_dir / "models" / "clip-tiny" / "model.json").read_text())
    assert described["embedding_output"] == "image_embeds" and described["text"]["ids_input"] == "input_ids"
    assert described["text"]["context_length"] == 8 and described["text"]["pad_token"] == "<pad>"
    assert run("models", "use", "clip-tiny", "--data-dir", str(data_dir))[0] == 0

    for colour in COLOURS:
        code, out = run(
            "search", "--words", f"a photo of {colour.upper()}", "--limit", "2", "--data-dir", str(data_dir)
        )
        assert code == 0, out
        found = [hit["itemId"] for hit in json.loads(out)["hits"]]
        assert sorted(found) == [f"{colour}-0", f"{colour}-1"], (colour, out)


def test_a_text_tower_that_cannot_be_read_is_refused_in_one_line(data_dir: Path, tmp_path: Path) -> None:
    clip = tiny_clip(tmp_path / "clip")
    (clip / "tokenizer.json").unlink()
    code, out = run("models", "import", str(clip), "--name", "no-tokenizer", "--data-dir", str(data_dir))
    assert code == 1 and "has a text tower but no tokenizer.json" in out
    plain = tiny_hf_onnx(tmp_path / "plain")
    assert run("models", "import", str(plain), "--name", "plain", "--data-dir", str(data_dir))[0] == 0
    code, out = run("models", "list", "--json", "--data-dir", str(data_dir))
    rows = {row["name"]: row for row in map(json.loads, out.splitlines())}
    assert rows["plain"]["text"] is False


def test_the_keyword_route_finds_by_pictures_only_when_asked_and_the_page_by_default(
    data_dir: Path, tmp_path: Path
) -> None:
    source = colour_catalog(tmp_path / "pictures")
    assert (
        run("ingest", str(source), "--model", "efficientnet-lite0", "--no-whiten", "--data-dir", str(data_dir))[0] == 0
    )
    engine = Engine(settings_for(data_dir))
    with serve(create_app(engine.settings, engine=engine)) as service:
        answer = service.get("/taobao/traffic/item/search", {"keyword": "red", "pictures": "true"})
        body = answer.json()
        assert body["code"] == 400 and "pictures=true needs a model with a text tower" in body["message"]
    engine.close()

    assert (
        run("models", "import", str(tiny_clip(tmp_path / "clip")), "--name", "clip", "--data-dir", str(data_dir))[0]
        == 0
    )
    assert run("models", "use", "clip", "--data-dir", str(data_dir))[0] == 0
    engine = Engine(settings_for(data_dir))
    try:
        with serve(create_app(engine.settings, engine=engine)) as service:
            titles = service.get("/taobao/traffic/item/search", {"keyword": "green"}).json()["data"]
            assert titles["total"] == 0  # DAJI's route keeps its title semantics: no title says green
            asked = {"keyword": "green", "pictures": "true", "page_size": "2"}
            shown = service.get("/taobao/traffic/item/search", asked).json()["data"]
            assert sorted(item["itemId"] for item in shown["data"]) == ["green-0", "green-1"]
            both = service.get("/taobao/traffic/item/search", {"keyword": "item 1", "pictures": "true"}).json()["data"]
            assert {item["itemId"] for item in both["data"]} >= {f"{c}-1" for c in COLOURS}  # titles kept
            page = service.client.get("/web/api/keyword", params={"keyword": "blue", "page_size": "2"}).json()
            assert sorted(item["itemId"] for item in page["data"]["data"]) == ["blue-0", "blue-1"]  # by default
    finally:
        engine.close()


def test_a_text_tower_names_the_categories_instead_of_imagenets_labels(data_dir: Path, tmp_path: Path) -> None:
    from tongkuan.domain.categories import CATEGORIES, Category

    clip = tiny_clip(tmp_path / "clip", meanings={"shoes": "red", "handbag": "blue"})
    assert run("models", "import", str(clip), "--name", "clip", "--data-dir", str(data_dir))[0] == 0
    source = colour_catalog(tmp_path / "pictures")
    assert run("ingest", str(source), "--model", "clip", "--no-whiten", "--data-dir", str(data_dir))[0] == 0
    engine = Engine(settings_for(data_dir))
    try:
        red, blue = (Image.open(tmp_path / "pictures" / f"{c}-0.png").convert("RGB") for c in ("red", "blue"))
        priors = [d.prior for d in engine.vision.describe([red, blue])]
        assert CATEGORIES[int(priors[0].argmax())] == Category.SHOES and priors[0].max() > 0.9
        assert CATEGORIES[int(priors[1].argmax())] == Category.BAGS
        found = engine.search(engine.decode((tmp_path / "pictures" / "red-1.png").read_bytes()), SearchQuery(limit=1))
        assert found.categories[0].category == Category.SHOES  # multiCategoryId, as the wire answers it
    finally:
        engine.close()


@pytest.mark.parametrize("backend", ["embedded", "server"])
def test_a_pulled_clip_model_serves_pictures_words_and_categories_on_each_backend_until_undone(
    backend: str,
    data_dir: Path,
    tmp_path: Path,
    file_server: FileServer,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pull → use → image search, words, categories over HTTP → use --undo, on SQLite+faiss and
    on PostgreSQL+Milvus: what an operator does with a CLIP-class model from a hub."""
    servers: dict[str, str] = {}
    if backend == "server":
        postgres, milvus = request.getfixturevalue("postgres"), request.getfixturevalue("milvus")
        servers = {"catalog_url": new_database(postgres), "vectors_url": f"milvus://127.0.0.1:{milvus.port}/words"}
        for name, value in servers.items():
            monkeypatch.setenv(f"TONGKUAN_{name.upper()}", value)
    source = colour_catalog(tmp_path / "pictures")
    code, out = run("ingest", str(source), "--model", "efficientnet-lite0", "--no-whiten", "--data-dir", str(data_dir))
    assert code == 0, out
    engine = Engine(settings_for(data_dir, **servers))
    first = {item_id: engine.catalog.get(item_id).category for item_id in ("red-0", "blue-0", "green-0")}
    engine.close()
    with FakeHub() as hub:
        hub.add("tiny/clip-tiny", tiny_clip(tmp_path / "clip", meanings={"shoes": "red", "handbag": "blue"}))
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        code, out = run("models", "pull", "tiny/clip-tiny", "--data-dir", str(data_dir))
        assert code == 0 and "8 dimensions" in out, out
    assert run("models", "use", "clip-tiny", "--data-dir", str(data_dir))[0] == 0

    red = file_server.put(f"red-{backend}.png", (tmp_path / "pictures" / "red-1.png").read_bytes())
    engine = Engine(settings_for(data_dir, **servers))
    try:
        assert engine.vision.spec.name == "clip-tiny"
        with serve(create_app(engine.settings, engine=engine)) as service:
            found = service.get("/taobao/image-search/url", {"picUrl": red, "pageSize": "2"}).json()
            assert found["code"] == 200, found
            assert sorted(item["itemId"] for item in found["data"]["data"]) == ["red-0", "red-1"]
            main = found["data"]["picInfo"]["mainRegion"]
            assert main["region"] and found["data"]["picInfo"]["multiRegion"]  # the shipped model finds subjects
            assert main["multiCategoryId"][0]["categoryId"] == Category.SHOES  # named by the text tower
            assert engine.catalog.get("red-0").category == Category.SHOES  # the catalog's too
            assert engine.catalog.get("blue-0").category == Category.BAGS
            words = {"keyword": "green", "pictures": "true", "page_size": "2"}
            shown = service.get("/taobao/traffic/item/search", words).json()["data"]
            assert sorted(item["itemId"] for item in shown["data"]) == ["green-0", "green-1"]
    finally:
        engine.close()

    code, out = run("models", "use", "--undo", "--data-dir", str(data_dir))
    assert code == 0, out
    engine = Engine(settings_for(data_dir, **servers))
    try:
        assert engine.vision.spec.name == "efficientnet-lite0" and not engine.searches_words
        assert {item_id: engine.catalog.get(item_id).category for item_id in first} == first  # as they were
        with serve(create_app(engine.settings, engine=engine)) as service:
            found = service.get("/taobao/image-search/url", {"picUrl": red, "pageSize": "1"}).json()
            assert found["data"]["data"][0]["itemId"].startswith("red-")
            refused = service.get("/taobao/traffic/item/search", {"keyword": "green", "pictures": "true"}).json()
            assert refused["code"] == 400 and "text tower" in refused["message"]
    finally:
        engine.close()
