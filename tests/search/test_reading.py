"""Reading the text on the product: the reader (Chinese and English rendered onto pictures,
no text, a bad picture), its tokens, the text score, and a catalog of cartons that look
alike but say different things, searched by a shopper's photo of one and by keyword, on
both backends; `tongkuan read-text` reads a catalog ingested without reading, resumably."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from tests.conftest import new_data_dir, new_database, settings_for
from tongkuan.cli import main
from tongkuan.engine import Engine
from tongkuan.search.query import SearchQuery
from tongkuan.search.text_match import text_scores, tokens
from tongkuan.vision.reading import ReadText, TextReader

FONT = Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc")
if not FONT.exists():
    if os.environ.get("TONGKUAN_REQUIRE_SERVERS"):  # CI installs it
        raise RuntimeError(f"{FONT} is missing (Debian: apt-get install fonts-wqy-zenhei)")
    pytest.skip("a CJK font is needed (Debian: apt-get install fonts-wqy-zenhei)", allow_module_level=True)
MODEL = "efficientnet-lite0"
# cartons of one colour and shape: only their words tell them apart
CARTONS = {
    "yili-milk": ["伊利", "纯牛奶 250ml"],
    "mengniu-yoghurt": ["蒙牛", "酸酸乳 200ml"],
    "oatly": ["Oatly", "Oat Drink 1L"],
    "alpro": ["Alpro", "Soya Drink 1L"],
    "tropicana": ["Tropicana", "Mandarin Morning"],
    "bravo": ["Bravo", "Apple Juice"],
}


def carton(
    lines: list[str], size: int = 360, background: tuple[int, int, int] = (230, 232, 236), shot: bool = False
) -> Image.Image:
    """A white carton with a blue band on a plain background, its lines of text printed big;
    `shot`: as a shopper's photo of it (off centre on a wider, darker scene, a little blurred)."""
    font = ImageFont.truetype(str(FONT), size // 9)
    picture = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(picture)
    draw.rectangle(
        (size // 6, size // 10, size * 5 // 6, size * 9 // 10), fill=(250, 250, 250), outline=(40, 60, 150), width=4
    )
    draw.rectangle((size // 6, size * 7 // 10, size * 5 // 6, size * 9 // 10), fill=(40, 90, 200))
    for n, line in enumerate(lines):
        draw.text((size // 5, size // 6 + n * size // 6), line, font=font, fill=(20, 20, 20))
    if not shot:
        return picture
    scene = Image.new("RGB", (size * 3 // 2, size * 5 // 4), tuple(c - 40 for c in background))  # type: ignore[arg-type]
    scene.paste(picture.resize((size * 9 // 10, size * 9 // 10)), (size // 3, size // 8))
    return scene.filter(ImageFilter.GaussianBlur(0.8))


def fruit(colour: tuple[int, int, int], size: int = 360, words: str = "") -> Image.Image:
    """A round fruit of one colour on a plain background, with `words` on a small sticker."""
    picture = Image.new("RGB", (size, size), (236, 234, 228))
    draw = ImageDraw.Draw(picture)
    draw.ellipse((size // 6, size // 6, size * 5 // 6, size * 5 // 6), fill=colour)
    if words:
        draw.text((size // 3, size // 2), words, font=ImageFont.truetype(str(FONT), size // 10), fill=(250, 250, 250))
    return picture


@pytest.fixture(scope="module")
def reader() -> TextReader:
    return TextReader(threads=2)


def test_the_reader_reads_chinese_and_english_and_nothing_where_there_is_no_text(reader: TextReader) -> None:
    read = reader.read(carton(["伊利 纯牛奶", "Oatly 250ml"]))
    words = set().union(*(tokens(line.text) for line in read))
    assert {"纯牛奶", "oatly", "250ml"} <= words, read
    assert all(line.confidence >= 0.6 and line.box.x2 > line.box.x1 for line in read)
    assert reader.read(Image.new("RGB", (300, 200), (128, 128, 128))) == []
    assert reader.read(fruit((200, 30, 40))) == []  # the detector boxes a disc, read as "•": no word
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8))
    assert isinstance(reader.read(noise), list)  # noise may read as fragments; it never fails
    assert reader.read(Image.new("RGB", (3, 2))) == []  # too small to hold text


def test_a_picture_is_read_at_the_readers_side_and_answered_in_its_own_pixels(reader: TextReader) -> None:
    # a small picture is enlarged to the side, a large one shrunk to it: the same lines, in
    # each picture's own pixels
    small = carton(["Oatly", "Oat Drink 1L"], size=240)
    large = small.resize((960, 960), Image.Resampling.BICUBIC)
    boxes = [{line.text: line.box for line in reader.read(picture)} for picture in (small, large)]
    assert "Oatly" in boxes[0] and "Oatly" in boxes[1], boxes
    seen, seen_large = boxes[0]["Oatly"], boxes[1]["Oatly"]
    for side, side_large in zip(seen.to_param().split(","), seen_large.to_param().split(","), strict=True):
        assert abs(4 * int(side) - int(side_large)) <= 16, boxes


def test_a_line_without_a_letter_or_digit_is_not_text(reader: TextReader, monkeypatch: pytest.MonkeyPatch) -> None:
    box = np.array([[10, 10], [90, 10], [90, 40], [10, 40]], dtype=np.float32)
    monkeypatch.setattr(reader, "_find", lambda bgr: [box, box + 40, box + 80])
    monkeypatch.setattr(reader, "_recognise_all", lambda crops: [("•", 0.9), ("¥12", 0.9), ("- · -", 0.95)])
    assert [line.text for line in reader.read(Image.new("RGB", (200, 200), (128, 128, 128)))] == ["¥12"]


def test_tokens_keep_what_tells_products_apart() -> None:
    assert tokens("Tropicana 1.5L Mandarin, 250 ml") == {"tropicana", "1.5l", "mandarin", "250ml"}
    assert (
        tokens("ARLA Ekologisk mellanmjölk 1,5%")
        == tokens("arla ekologisk MELLANMJOLK")
        == {"arla", "ekologisk", "mellanmjolk"}
    )
    assert {"伊利", "纯牛奶", "牛奶"} <= tokens("伊利纯牛奶") and "a" not in tokens("a b 5")
    # a rare word counts more than a common one
    scores = text_scores(["oatly", "drink"], {"a": "Oatly oat drink", "b": "soya drink"}, {"oatly": 1, "drink": 9}, 10)
    assert scores["a"] == pytest.approx(1.0) and 0 < scores["b"] < 0.3


def ingest_cartons(data_dir: Path, folder: Path, read_text: str, **servers: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for n, (item_id, words) in enumerate(CARTONS.items()):
        carton(words).save(folder / f"{item_id}.png")
        lines.append({"itemId": item_id, "title": f"product {n}", "images": [str(folder / f"{item_id}.png")]})
    engine = Engine(settings_for(data_dir, model=MODEL, read_text=read_text, **servers))
    try:
        from tests.conftest import as_records

        assert not engine.ingester().ingest(as_records(lines)).failures
    finally:
        engine.close()


def backend_settings(backend: str, request: pytest.FixtureRequest, collection: str) -> dict[str, str]:
    """The settings naming the server backend (PostgreSQL + Milvus), or none for the embedded one."""
    if backend != "server":
        return {}
    postgres, milvus = request.getfixturevalue("postgres"), request.getfixturevalue("milvus")
    return {"catalog_url": new_database(postgres), "vectors_url": f"milvus://127.0.0.1:{milvus.port}/{collection}"}


@pytest.mark.parametrize("backend", ["embedded", "server"])
def test_cartons_that_look_alike_are_told_apart_by_their_words_on_each_backend(
    backend: str, model_cache: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    servers = backend_settings(backend, request, "cartons")
    data_dir = new_data_dir(tmp_path / "data", model_cache)
    ingest_cartons(data_dir, tmp_path / "cartons", "on", **servers)
    engine = Engine(settings_for(data_dir, read_text="on", **servers))
    try:
        assert engine.catalog.reading_counts() == (len(CARTONS), len(CARTONS))
        ids, _ = engine.catalog.vectors()
        assert engine.catalog.showed_words([*ids.tolist(), 10**9]) == dict.fromkeys(ids.tolist(), True)
        for item_id, words in CARTONS.items():
            photo = carton(words, size=420, background=(200, 190, 170), shot=True)
            found = engine.search(engine.decode(_png(photo)), SearchQuery(limit=3))
            assert found.hits[0].product.item_id == item_id, (
                item_id,
                found.words,
                [h.product.item_id for h in found.hits],
            )
            assert found.words  # what was read, for the page
            blind = engine.search(engine.decode(_png(photo)), SearchQuery(limit=3, read_text=False))
            assert blind.words == ()
        # keyword search finds the words on the pictures, though no title says them
        assert [p.item_id for p in engine.catalog.keyword_search("oatly")[0]] == ["oatly"]
        assert [p.item_id for p in engine.catalog.keyword_search("纯牛奶")[0]] == ["yili-milk"]
        # a title change keeps them searchable
        engine.catalog.update("bravo", lambda p: replace(p, title="renamed"))
        assert [p.item_id for p in engine.catalog.keyword_search("bravo")[0]] == ["bravo"]
    finally:
        engine.close()


@pytest.mark.parametrize("backend", ["embedded", "server"])
def test_a_photo_like_the_catalogs_wordless_pictures_is_not_read(
    backend: str, model_cache: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    servers = backend_settings(backend, request, "fruit")
    data_dir = new_data_dir(tmp_path / "data", model_cache)
    folder = tmp_path / "fruit"
    ingest_cartons(data_dir, tmp_path / "cartons", "on", **servers)
    colours = [(200, 30, 40), (240, 160, 20), (90, 170, 40), (120, 40, 120)]
    for n, colour in enumerate(colours):
        folder.mkdir(exist_ok=True)
        fruit(colour).save(folder / f"{n}.png")
    engine = Engine(settings_for(data_dir, model=MODEL, read_text="on", **servers))
    try:
        from tests.conftest import as_records

        lines = [
            {"itemId": f"fruit-{n}", "title": f"fruit {n}", "images": [str(folder / f"{n}.png")]} for n in range(4)
        ]
        assert not engine.ingester().ingest(as_records(lines)).failures
        assert engine.catalog.reading_counts() == (len(CARTONS) + 4, len(CARTONS))
        reader = engine.searcher.reader
        assert reader is not None
        counted = CountingReader(reader)
        engine.searcher.reader = counted  # type: ignore[assignment]
        # an apple with a sticker saying "Oatly": its nearest catalog pictures are wordless fruit,
        # so it is not read, and the Oatly carton is not pulled up by the sticker
        found = engine.search(engine.decode(_png(fruit((205, 35, 45), words="Oatly"))), SearchQuery(limit=3))
        assert found.words == () and counted.reads == 0 and found.hits[0].product.item_id == "fruit-0"
        carton_photo = carton(CARTONS["oatly"], size=420, background=(200, 190, 170), shot=True)
        found = engine.search(engine.decode(_png(carton_photo)), SearchQuery(limit=3))
        assert "oatly" in found.words and counted.reads == 1
    finally:
        engine.close()


class CountingReader:
    """A reader that counts the pictures it reads."""

    def __init__(self, reader: TextReader) -> None:
        self.reader, self.reads = reader, 0

    def read(self, image: Image.Image) -> list[ReadText]:
        self.reads += 1
        return self.reader.read(image)


def test_read_text_reads_a_catalog_ingested_without_reading_and_resumes(model_cache: Path, tmp_path: Path) -> None:
    data_dir = new_data_dir(tmp_path / "data", model_cache)
    ingest_cartons(data_dir, tmp_path / "cartons", "off")
    engine = Engine(settings_for(data_dir))
    assert engine.catalog.reading_counts() == (0, 0) and not engine.catalog.keyword_search("oatly")[0]
    first = engine.catalog.unread_pictures(limit=2)
    engine.catalog.set_picture_words([(p.vector_id, "") for p in first])  # as a run cut after two pictures leaves it
    engine.close()
    result = CliRunner().invoke(main, ["read-text", "--data-dir", str(data_dir)])
    assert result.exit_code == 0 and f"read {len(CARTONS) - 2} pictures" in result.output, result.output
    engine = Engine(settings_for(data_dir))
    try:
        assert engine.catalog.reading_counts()[0] == len(CARTONS) and not engine.catalog.unread_pictures()
        assert [p.item_id for p in engine.catalog.keyword_search("tropicana")[0]] == ["tropicana"]
    finally:
        engine.close()
    again = CliRunner().invoke(main, ["read-text", "--data-dir", str(data_dir)])
    assert again.exit_code == 0 and "read 0 pictures" in again.output


def _png(picture: Image.Image) -> bytes:
    from io import BytesIO

    out = BytesIO()
    picture.save(out, "PNG")
    return out.getvalue()
