"""The sample catalog `tongkuan demo` serves: Chinese titles made up from the data sets' own
class names, so a newcomer's first Chinese keyword finds something, and made-up shops and
prices that look like a real shop's."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from decimal import Decimal
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
    groceries = {r["itemId"]: r["title"] for r in grocery_records(data_root, 0)}
    assert groceries["grocery-041"] == "Arla Standard Milk 牛奶"
    assert groceries["grocery-000"] == "Golden Delicious · Apple 苹果"  # the class where the name lacks it
    assert groceries["grocery-006"] == "Banana 香蕉"
    shirt = next(r for r in fashion_records(data_root, 1) if r["categoryName"] == "Tshirts")
    assert str(shirt["title"]).endswith(" · T恤")


def test_no_grocery_title_says_its_class_twice(data_root: Path) -> None:
    for record in grocery_records(data_root, 0):
        english = str(record["title"]).split(" · ")
        words = [w.lower() for w in re.findall(r"[A-Za-z]+", " ".join(english))]
        assert len(english) == 1 or english[1].lower() not in english[0].lower(), record["title"]
        assert len(words) == len(set(words)), record["title"]


def sample_records(data_root: Path) -> list[dict[str, object]]:
    return [*grocery_records(data_root, 0), *fashion_records(data_root, 40)]


def test_every_shop_has_one_seller_one_city_and_one_kind_of_goods(data_root: Path) -> None:
    top_level = {row["coarse_name"]: row["top_level"] for row in read_rows(data_root / "grocery_store" / "labels.csv")}
    shops: dict[str, set[tuple[object, ...]]] = defaultdict(set)
    kinds: dict[str, set[object]] = defaultdict(set)
    for record in sample_records(data_root):
        shop = str(record["shopTitle"])
        shops[shop].add((record["sellerId"], record["provcity"], record["userType"]))
        if str(record["itemId"]).startswith("grocery-"):
            kinds[shop].add(top_level[str(record["categoryName"])])  # fruit, vegetables or packaged goods
        elif record["categoryId"] in (3, 4, 7, 21):  # bags, shoes, beauty, underwear: shops of their own
            kinds[shop].add(record["categoryId"])
        else:
            kinds[shop].add("clothes and accessories")
    assert len(shops) >= 10
    assert all(len(sellers) == 1 for sellers in shops.values()), shops
    assert all(len(kind) == 1 for kind in kinds.values()), kinds
    assert len({next(iter(s))[0] for s in shops.values()}) == len(shops)  # a seller runs one shop


def test_prices_are_usual_for_what_is_sold(data_root: Path) -> None:
    records = sample_records(data_root)
    for record in records:
        reserve, final = Decimal(str(record["reservePrice"])), Decimal(str(record["zkFinalPrice"]))
        assert 0 < final <= reserve and reserve == reserve.quantize(Decimal("0.1")), record
    prices = defaultdict(list)
    for record in records:
        prices[str(record["categoryName"])].append(Decimal(str(record["reservePrice"])))
    assert all(3 <= p <= 40 for p in prices["Milk"] + prices["Banana"] + prices["Carrots"] + prices["Juice"])
    assert all(99 <= p <= 900 for p in prices["Casual Shoes"] + prices["Heels"])
    assert all(19 <= p <= 600 for p in prices["Tshirts"] + prices["Dresses"] + prices["Lipstick"])


def test_the_sample_is_the_same_on_every_build(data_root: Path) -> None:
    assert sample_records(data_root) == sample_records(data_root)
