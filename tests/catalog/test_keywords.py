"""Keyword search in both catalog stores (embedded SQLite and PostgreSQL), on real Taobao titles (Product1M, cocktail listings)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import new_database
from tests.utils.data import read_rows
from tests.utils.keywords import cocktail_listings, compare, load_titles
from tongkuan.catalog import keywords
from tongkuan.catalog.sqlite import SqliteCatalog
from tongkuan.catalog.store import Catalog
from tongkuan.domain.products import NewImage, Product, ProductFilter, SortOrder

# The bar on Product1M (392 instance labels as queries), just under what the embedded store
# reaches (nDCG@10 0.660, Recall@20 0.688; docs/benchmarks.md), so a change that makes the
# ranking worse fails here. Many relevant listings are gift sets whose titles never name the
# product, which caps any lexical method well below 1.
MIN_NDCG, MIN_RECALL, MIN_GAIN_OVER_SUBSTRING = 0.65, 0.68, 3.0


def open_catalog(kind: str, request: pytest.FixtureRequest, folder: Path) -> Catalog:
    """An empty catalog of either store: the embedded file or a fresh PostgreSQL database."""
    if kind == "sqlite":
        return SqliteCatalog(folder / "catalog.db", "none", 4)
    from tongkuan.catalog.postgres import PostgresCatalog

    return PostgresCatalog(new_database(request.getfixturevalue("postgres")), "none", 4)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def cocktails(
    data_root: Path, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Catalog]:
    """The 752 cocktail listings: real titles, prices, sales, shops and cities, in each store."""
    catalog = open_catalog(request.param, request, tmp_path_factory.mktemp("kw"))
    catalog.upsert_many(
        [(product, [NewImage("h", "x.jpg", np.ones(4, np.float32))]) for product, _ in cocktail_listings(data_root)]
    )
    yield catalog
    catalog.close()


def test_titles_are_cut_into_words_and_character_pairs() -> None:
    words = keywords.words("韩国AHC黄金套盒")
    assert {"韩国", "ahc", "黄金", "套盒"} <= set(words)
    assert {"国a"}.isdisjoint(words)  # pairs never cross a Latin word
    assert keywords.words("ＡＨＣ　黄金水") == keywords.words("ahc 黄金水")  # full-width folded


def test_query_syntax_never_leaks_into_the_index(cocktails: Catalog) -> None:
    for hostile in ['"', "a OR b", "*", "NEAR(", "title:x", "a AND NOT", "(", "^x", "   ", "🍸"]:
        cocktails.keyword_search(hostile)  # no sqlite3.OperationalError
    assert cocktails.keyword_search("***") == ([], 0)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_part_of_a_word_finds_the_whole(
    data_root: Path, tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    catalog = open_catalog(kind, request, tmp_path)
    relevant = load_titles(data_root, catalog)
    found, total = catalog.keyword_search("黄金水", limit=20)
    ahc = relevant["AHC 黄金水"]
    assert total > 0 and sum(p.item_id in ahc for p in found) >= 15
    # a Latin prefix matches longer words, case-insensitively
    assert catalog.keyword_search("LANC")[1] >= catalog.keyword_search("lancome")[1] > 0


SHORT = [
    Product(item_id="shoe-1", title="运动鞋 透气跑步", shop_title="阿里鞋店"),
    Product(item_id="shoe-2", title="男士休闲鞋", shop_title="休闲鞋业旗舰店"),
    Product(item_id="shoe-3", title="女款高跟鞋", shop_title="同款测试店"),
    Product(item_id="milk-1", title="燕麦奶 植物蛋白饮料", shop_title="同款测试店"),
    Product(item_id="milk-2", title="纯牛奶 250ml×12盒", volume=50, shop_title="同款测试店"),
    Product(item_id="milk-3", title="原味豆奶", volume=80, shop_title="同款测试店"),
    Product(item_id="cup", title="保温杯 大容量", shop_title="同款测试店"),
]


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_one_or_two_characters_find_every_title_holding_them(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    catalog = open_catalog(kind, request, tmp_path)
    catalog.upsert_many([(p, None) for p in SHORT])
    expected = {
        "鞋": {"shoe-1", "shoe-2", "shoe-3"},
        "奶": {"milk-1", "milk-2", "milk-3"},
        "牛奶": {"milk-2"},
        "跟鞋": {"shoe-3"},
        "男": {"shoe-2"},
    }
    for query, ids in expected.items():
        found, total = catalog.keyword_search(query, limit=20)
        assert ({p.item_id for p in found}, total) == (ids, len(ids)), query
        by_sales, _ = catalog.keyword_search(query, SortOrder.SALES_DESC, limit=20)
        assert {p.item_id for p in by_sales} == ids, query
    assert [p.item_id for p in catalog.keyword_search("奶", SortOrder.SALES_DESC)[0]][:2] == ["milk-3", "milk-2"]
    # a single character beside a word: titles holding both come first
    assert catalog.keyword_search("鞋 男士", limit=20)[0][0].item_id == "shoe-2"
    shops, total = catalog.shop_search("鞋")
    assert {s.shop_title for s in shops} == {"阿里鞋店", "休闲鞋业旗舰店"} and total == 2
    catalog.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_short_queries_find_every_product1m_title_that_contains_them(
    data_root: Path, tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    catalog = open_catalog(kind, request, tmp_path)
    load_titles(data_root, catalog)
    titles = [keywords.normalise(r["title"]) for r in read_rows(data_root / "product1m_text" / "items.csv")]
    for query in ["奶", "水", "霜", "膜", "乳", "唇", "香", "面膜", "精华", "套装"]:
        holding = sum(query in title for title in titles)
        assert holding > 0 and catalog.keyword_search(query, limit=1)[1] == holding, query
        assert catalog.keyword_search(query, SortOrder.SALES_DESC, limit=1)[1] == holding, query
    catalog.close()


def test_relevance_puts_titles_with_every_word_first(cocktails: Catalog) -> None:
    found, total = cocktails.keyword_search("锐澳 微醺", limit=20)
    with_both = [p for p in found if "锐澳" in p.title and "微醺" in p.title]
    assert len(with_both) == 20 and total > 20
    # the rest follow: titles with only one of the words
    rest, _ = cocktails.keyword_search("锐澳 微醺", offset=total - 5, limit=5)
    assert rest and all(("锐澳" in p.title) != ("微醺" in p.title) for p in rest)


def test_paging_walks_one_stable_order(cocktails: Catalog) -> None:
    whole, total = cocktails.keyword_search("鸡尾酒 预调", limit=60)
    pages = [cocktails.keyword_search("鸡尾酒 预调", offset=o, limit=20)[0] for o in (0, 20, 40)]
    assert [p.item_id for page in pages for p in page] == [p.item_id for p in whole]
    assert total >= 60


def test_pages_fill_across_the_all_words_boundary(cocktails: Catalog) -> None:
    query = "锐澳 桃花 米酿"
    every = [p for p in cocktails.keyword_search(query, limit=200)[0] if all(w in p.title for w in ("锐澳", "桃花"))]
    whole, total = cocktails.keyword_search(query, limit=60)
    assert 0 < len(every) < 20 < total  # the all-words group ends inside the first page
    assert len(cocktails.keyword_search(query, limit=20)[0]) == 20
    for offset, size in ((0, 7), (len(every) - 1, 3), (5, 20), (37, 23)):
        page = cocktails.keyword_search(query, offset=offset, limit=size)[0]
        assert [p.item_id for p in page] == [p.item_id for p in whole[offset : offset + size]], offset


@pytest.mark.parametrize(
    ("sort", "key", "descending"),
    [
        (SortOrder.PRICE_ASC, lambda p: p.price, False),
        (SortOrder.PRICE_DESC, lambda p: p.price, True),
        (SortOrder.SALES_DESC, lambda p: p.volume, True),
    ],
)
def test_sorted_results_hold_every_word_in_order(cocktails: Catalog, sort: SortOrder, key, descending) -> None:  # type: ignore[no-untyped-def]
    found, total = cocktails.keyword_search("rio 微醺", sort, limit=20)
    assert total > 20 and len(found) == 20
    assert all("rio" in p.title.lower() and "微醺" in p.title for p in found)
    values = [key(p) for p in found]
    assert values == sorted(values, reverse=descending)


def test_filters_narrow_keyword_results(cocktails: Catalog) -> None:
    where = ProductFilter(min_price=Decimal("50"), max_price=Decimal("100"), location="上海", user_type=1)
    found, total = cocktails.keyword_search("鸡尾酒", SortOrder.PRICE_ASC, where, limit=20)
    assert 0 < total < cocktails.keyword_search("鸡尾酒", SortOrder.PRICE_ASC)[1]
    assert all(50 <= p.price <= 100 and "上海" in p.provcity and p.user_type == 1 for p in found)
    shop = found[0].shop_title
    in_shop, _ = cocktails.keyword_search("鸡尾酒", where=ProductFilter(shop_title=shop.upper()), limit=20)
    assert in_shop and all(p.shop_title == shop for p in in_shop)


def test_shops_are_found_by_a_part_of_their_name(cocktails: Catalog) -> None:
    shops, total = cocktails.shop_search("锐澳")
    assert total == len(shops) >= 2
    assert all("锐澳" in s.shop_title for s in shops)
    assert [s.volume for s in shops] == sorted((s.volume for s in shops), reverse=True)
    top = cocktails.shop_items(shops[0].shop_title, 3)
    assert len(top) == 3 and all(p.shop_title == shops[0].shop_title for p in top)
    assert shops[0].items == sum(1 for p in cocktails.products(limit=1000) if p.shop_title == shops[0].shop_title)


def test_changes_reach_keyword_search_in_the_same_transaction(cocktails: Catalog) -> None:
    product = Product(item_id="kw-new", title="独一无二的测试商品 Zyzzyva", shop_title="测试小店")
    cocktails.upsert(product, [NewImage("h", "x.jpg", np.ones(4, np.float32))])
    assert [p.item_id for p in cocktails.keyword_search("zyzzyva")[0]] == ["kw-new"]
    cocktails.update("kw-new", lambda p: Product(item_id=p.item_id, title="改名以后 Quokka"))
    assert cocktails.keyword_search("zyzzyva")[1] == 0
    assert [p.item_id for p in cocktails.keyword_search("quokka")[0]] == ["kw-new"]
    cocktails.delete("kw-new")
    assert cocktails.keyword_search("quokka")[1] == 0


def test_an_older_catalog_gets_its_keyword_index_on_open(tmp_path: Path) -> None:
    catalog = SqliteCatalog(tmp_path / "catalog.db", "none", 4)
    catalog.upsert(Product(item_id="a", title="蜗牛玻尿酸精华"), [NewImage("h", "x", np.ones(4, np.float32))])
    catalog.close()
    import sqlite3

    db = sqlite3.connect(tmp_path / "catalog.db")  # as an older version left it
    db.execute("DELETE FROM item_words")
    db.execute("DELETE FROM meta WHERE key = 'keywords'")
    db.commit()
    db.close()
    reopened = SqliteCatalog(tmp_path / "catalog.db", "none", 4)
    assert [p.item_id for p in reopened.keyword_search("玻尿酸")[0]] == ["a"]


def test_a_catalog_from_before_single_characters_were_indexed_gets_them_on_open(tmp_path: Path) -> None:
    catalog = SqliteCatalog(tmp_path / "catalog.db", "none", 4)
    catalog.upsert_many([(p, None) for p in SHORT])
    catalog.close()
    import sqlite3

    db = sqlite3.connect(tmp_path / "catalog.db")  # as the previous version left it: words only
    db.execute("DROP TABLE item_chars")
    db.execute("INSERT OR REPLACE INTO meta VALUES ('keywords', '1')")
    db.commit()
    db.close()
    reopened = SqliteCatalog(tmp_path / "catalog.db", "none", 4)
    assert {p.item_id for p in reopened.keyword_search("鞋")[0]} == {"shoe-1", "shoe-2", "shoe-3"}
    assert {s.shop_title for s in reopened.shop_search("鞋")[0]} == {"阿里鞋店", "休闲鞋业旗舰店"}
    assert [p.item_id for p in reopened.keyword_search("燕麦奶")[0]] == ["milk-1"]
    reopened.upsert(Product(item_id="shoe-4", title="帆布鞋"), None)  # written into the new table
    assert reopened.keyword_search("鞋")[1] == 4
    reopened.delete("shoe-4")
    assert reopened.keyword_search("鞋")[1] == 3
    reopened.close()


def test_a_postgres_catalog_from_before_single_characters_were_indexed_gets_them_on_open(
    request: pytest.FixtureRequest,
) -> None:
    import psycopg

    from tongkuan.catalog.postgres import PostgresCatalog

    url = new_database(request.getfixturevalue("postgres"))
    catalog = PostgresCatalog(url, "none", 4)
    catalog.upsert_many([(p, None) for p in SHORT])
    catalog.close()

    def old_vector(text: str) -> str:  # the previous version's terms: words and pairs only
        return " ".join("'" + w.replace("'", "''") + "'" for w in keywords.words(text))

    with psycopg.connect(url, autocommit=True) as db:
        rows = db.execute("SELECT item_id, title, shop_title FROM tongkuan.items").fetchall()
        for item_id, title, shop in rows:
            db.execute(
                "UPDATE tongkuan.items SET title_words = %s::tsvector, shop_words = %s::tsvector WHERE item_id = %s",
                (old_vector(title), old_vector(shop), item_id),
            )
        db.execute("DELETE FROM tongkuan.meta WHERE key = 'keywords'")
    reopened = PostgresCatalog(url, "none", 4)
    assert {p.item_id for p in reopened.keyword_search("鞋")[0]} == {"shoe-1", "shoe-2", "shoe-3"}
    assert {s.shop_title for s in reopened.shop_search("鞋")[0]} == {"阿里鞋店", "休闲鞋业旗舰店"}
    assert [p.item_id for p in reopened.keyword_search("燕麦奶")[0]] == ["milk-1"]
    reopened.close()


def test_keyword_quality_beats_substring_matching_on_product1m(data_root: Path, tmp_path: Path) -> None:
    result = compare(data_root, tmp_path)
    ours, like = result["tongkuan"], result["like"]
    print(f"\nProduct1M keyword search: {result}")
    assert ours["ndcg@10"] >= MIN_NDCG and ours["recall@20"] >= MIN_RECALL
    assert ours["ndcg@10"] >= MIN_GAIN_OVER_SUBSTRING * like["ndcg@10"]
    assert ours["recall@20"] >= MIN_GAIN_OVER_SUBSTRING * like["recall@20"]


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_words_gone_from_a_products_pictures_no_longer_find_it(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    catalog = open_catalog(kind, request, tmp_path)
    vector = np.ones(4, np.float32)
    catalog.upsert(
        Product("p", "plain carton"),
        [NewImage("h1", "1.jpg", vector, "front"), NewImage("h2", "2.jpg", vector, "back")],
    )
    front, back = (picture.vector_id for picture in catalog.images_of("p"))
    catalog.set_picture_words([(front, "Oatly"), (back, "Havre")])
    assert [p.item_id for p in catalog.keyword_search("oatly")[0]] == ["p"]
    catalog.set_picture_words([(front, "")])  # read again: no word on it after all
    assert catalog.keyword_search("oatly")[0] == []
    assert [p.item_id for p in catalog.keyword_search("havre")[0]] == ["p"]
    catalog.set_picture_words([(back, "")])  # no picture of it says a word now
    assert catalog.keyword_search("havre")[0] == []
    catalog.set_picture_words([(back, "Havre")])
    catalog.delete_image("p", "back")
    assert catalog.keyword_search("havre")[0] == []
    assert [p.item_id for p in catalog.keyword_search("carton")[0]] == ["p"]
    catalog.close()
