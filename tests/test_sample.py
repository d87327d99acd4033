"""The sample catalog `tongkuan demo` serves: Chinese titles made up from the data sets' own
class names, so a newcomer's first Chinese keyword finds something."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from tests.utils.data import read_rows
from tongkuan.catalog.sqlite import SqliteCatalog
from tongkuan.cli import main
from tongkuan.ingest.records import to_product
from tongkuan.sample import FASHION_NAMES, GROCERY_NAMES, fashion_records, grocery_records


def demo_records(data_root: Path, folder: Path) -> list[dict[str, object]]:
    """The records `tongkuan demo` ingests (40 fashion shots a category, 10 photos a product)."""
    out = folder / "sample.jsonl"
    result = CliRunner().invoke(main, ["sample", str(data_root), str(out), "--fashion", "40", "--photos", "10"])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def test_the_demo_catalog_finds_milk_by_its_chinese_name(data_root: Path, tmp_path: Path) -> None:
    records = demo_records(data_root, tmp_path)
    catalog = SqliteCatalog(tmp_path / "catalog.db", "none", 4)
    try:
        for record in records:
            catalog.upsert(to_product({k: v for k, v in record.items() if k != "images"})[0], None)
        found, total = catalog.keyword_search("牛奶", limit=20)
    finally:
        catalog.close()
    milk = {str(r["itemId"]) for r in records if r["categoryName"] == "Milk"}
    assert len(milk) == 6
    assert milk <= {p.item_id for p in found} and total == len(found)
    assert all("牛奶" in p.title for p in found)


def test_every_class_of_the_data_sets_has_a_chinese_name(data_root: Path) -> None:
    coarse = {row["coarse_name"] for row in read_rows(data_root / "grocery_store" / "classes.csv")}
    assert coarse <= set(GROCERY_NAMES)
    kinds = {row["articleType"] for row in read_rows(data_root / "fashion_product_images_small" / "labels.csv")}
    assert kinds <= set(FASHION_NAMES)
    names = [*GROCERY_NAMES.values(), *FASHION_NAMES.values()]
    assert all(name and not name.isascii() for name in names)


def test_titles_keep_the_english_names_and_add_the_chinese_ones(data_root: Path) -> None:
    milk = next(r for r in grocery_records(data_root, 0) if r["itemId"] == "grocery-041")
    assert milk["title"] == "Arla Standard Milk · Milk 牛奶"
    shirt = next(r for r in fashion_records(data_root, 1) if r["categoryName"] == "Tshirts")
    assert str(shirt["title"]).endswith(" · T恤")
