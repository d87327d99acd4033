"""Every catalog backend gives the same answers to the same calls.

Each test makes one sequence of role calls (`catalog.store`) on a fresh catalog of every
backend and compares each answer with the embedded store's, the reference: records, pictures
and their vectors, the change-log entries each write leaves, the reads a search makes,
filters and counts, keyword and shop search, what is learned and where each index has got
to. A refusal is an answer too (the error's type is compared). Where the stores differ by
design, the suite compares what both promise: relevance order is BM25 in SQLite and
`ts_rank` in PostgreSQL, so by relevance only the groups (titles with every word first, then
the rest) are compared, not the order inside them.

Import jobs and model switches already run the same expectations on both stores
(test_jobs.py, test_model_versions.py), and keyword quality per store is in
test_keywords.py; they are not repeated here.

To add a backend, add it to the BACKENDS fixture (its opener to `OPENERS`, which the fixture
opens): every test here then makes its calls there too and compares its answers with the
embedded store's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from decimal import Decimal
from enum import Enum
from functools import partial
from operator import methodcaller
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from tests.conftest import new_database
from tests.utils.keywords import cocktail_listings
from tongkuan.catalog.sqlite import SqliteCatalog
from tongkuan.catalog.store import Catalog
from tongkuan.domain.categories import Category
from tongkuan.domain.changes import ChangeKind
from tongkuan.domain.products import NewImage, Product, ProductFilter, SortOrder

MODEL, DIM = "m", 8
GONE = 1_000_000  # a vector id no catalog here holds

Opener = Callable[[pytest.FixtureRequest, Path], Catalog]


def _sqlite(request: pytest.FixtureRequest, folder: Path) -> Catalog:
    return SqliteCatalog(folder / "catalog.db", MODEL, DIM)


def _postgres(request: pytest.FixtureRequest, folder: Path) -> Catalog:
    from tongkuan.catalog.postgres import PostgresCatalog

    return PostgresCatalog(new_database(request.getfixturevalue("postgres")), MODEL, DIM)


# Every backend, the reference (the embedded store) first.
OPENERS: dict[str, Opener] = {"sqlite": _sqlite, "postgres": _postgres}


def open_all(request: pytest.FixtureRequest, folder: Path) -> dict[str, Catalog]:
    opened: dict[str, Catalog] = {}
    for name, opener in OPENERS.items():
        (folder / name).mkdir(parents=True)
        opened[name] = opener(request, folder / name)
    return opened


@pytest.fixture(name="BACKENDS")
def backends(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Catalog]]:
    """A fresh, empty catalog of every backend (`OPENERS`), the reference first."""
    opened = open_all(request, tmp_path)
    yield opened
    for catalog in opened.values():
        catalog.close()


def plain(value: object) -> object:
    """`value` as plain data that compares exactly: dataclasses field by field, decimals as
    text (a price given as 12.50 reads back as 12.50, not 12.5), arrays as lists."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Enum):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (type(value).__name__, {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)})
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def answer(call: Callable[[Catalog], Any], catalog: Catalog) -> tuple[object, Any]:
    """What `catalog` answers to `call` as plain data (the error's type if it refused), and
    the result itself."""
    try:
        result = call(catalog)
    except Exception as exc:  # a refusal is an answer to compare
        return ("raised", type(exc).__name__), None
    return plain(result), result


def same(catalogs: dict[str, Catalog], call: Callable[[Catalog], Any], what: str = "") -> Any:
    """Make `call` on every backend, assert each answers as the reference does, and return
    the reference's result."""
    what = what or (repr(call) if isinstance(call, methodcaller) else "")
    answers = {name: answer(call, catalog) for name, catalog in catalogs.items()}
    reference, (expected, result) = next(iter(answers.items()))
    for name, (got, _) in answers.items():
        assert got == expected, f"{name} and {reference} answer differently" + (f" ({what})" if what else "")
    return result


def logged(call: Callable[[Catalog], object]) -> Callable[[Catalog], object]:
    """`call`, answering also with the change-log entries it left. Entries of one write are
    compared as a set: their order within the write is the store's (no index depends on it,
    since a vector id appears once per write and is never reused)."""

    def run(catalog: Catalog) -> object:
        before = catalog.last_change()
        result = call(catalog)
        changes = catalog.changes_since(before)
        return result, sorted((c.vector_id, c.kind) for c in changes), [c.seq for c in changes]

    return run


def id_vectors(found: tuple[NDArray[np.int64], NDArray[np.float32]]) -> list[tuple[int, list[float]]]:
    """`vectors()`'s answer in id order (the protocol promises no order)."""
    ids, vectors = found
    return sorted((int(i), v.tolist()) for i, v in zip(ids, vectors, strict=True))


def everything(catalog: Catalog) -> dict[str, object]:
    """Every read of every role over the whole (small) catalog, inside one snapshot."""
    with catalog.snapshot():
        products = catalog.products(limit=1000)
        items = [p.item_id for p in products] + ["missing"]
        ids = catalog.image_ids()
        asked = [*ids, GONE]
        pages, after = [], None
        while page := catalog.products(after=after, limit=2):
            pages.append([p.item_id for p in page])
            after = page[-1].item_id
        return {
            "count": catalog.count(),
            "products": products,
            "pages": pages,
            "get": {i: catalog.get(i) for i in items[:-1]},
            "images_of": {i: catalog.images_of(i) for i in items},
            "pictures_of": catalog.pictures_of(items),
            "pictures_of none": catalog.pictures_of([]),
            "image_hashes": {i: catalog.image_hashes(i) for i in items},
            "first_images": catalog.first_images(items),
            "pictures_with_vectors": catalog.pictures_with_vectors(items),
            "stored_locations": catalog.stored_locations(),
            "vectors": id_vectors(catalog.vectors()),
            "some_vectors": id_vectors(catalog.vectors(asked[::2])),
            "image_ids": ids,
            "vector_categories": catalog.vector_categories(asked),
            "hydrate": catalog.hydrate(asked),
            "hits": catalog.hits(asked),
            "picture_counts": catalog.picture_counts(items),
            "showed_words": catalog.showed_words(asked),
            "showed_words none": catalog.showed_words([]),
            "count_products": {
                str(category): catalog.count_products(category)
                for category in [None, Category.TOPS, Category.SHOES, Category.SNACKS]
            },
            "last_change": catalog.last_change(),
            "changes": catalog.changes_since(0),
        }


def vector(seed: int) -> NDArray[np.float32]:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def picture(seed: int, name: str = "") -> NewImage:
    return NewImage(f"hash{seed}", f"{seed}.jpg" if seed % 2 else f"https://img.example/{seed}.jpg", vector(seed), name)


PRODUCTS = [
    Product(
        item_id="a-1",
        title="韩国AHC黄金水 It's 'quoted'",
        reserve_price=Decimal("12.50"),
        final_price=Decimal("9.90"),
        shop_title="Golden Shop",
        seller_id="s1",
        provcity="上海",
        user_type=1,
        volume=2**40,
        category_name="美容护肤",
        level_one_category_name="美妆",
        coupon_amount=5,
        coupon_start_fee="50",
        url="https://item.example/a-1",
        category=Category.TOPS,
        category_predicted=True,
        extra={"颜色": "红", "size": "XL"},
    ),
    Product(item_id="b-2", title="运动鞋 透气跑步", reserve_price=Decimal("199"), category=Category.SHOES),
    Product(item_id="Z-3", title="燕麦奶", reserve_price=Decimal("0.01"), provcity="四川 成都", volume=7),
    Product(item_id="c-4", title="保温杯", shop_title="golden shop", category=Category.SNACKS, volume=3),
    Product(item_id="é-5", title="手机壳", reserve_price=Decimal("1E+3"), category=Category.SHOES),
]


def test_every_write_and_read_answers_alike(BACKENDS: dict[str, Catalog]) -> None:
    catalogs = BACKENDS
    steps: list[tuple[str, Callable[[Catalog], object]]] = [
        ("new products", lambda c: c.upsert_many([(p, [picture(3 * n), picture(3 * n + 1)]) for n, p in enumerate(PRODUCTS)])),
        ("a record only", lambda c: c.upsert(Product("no-pictures", "只有记录", reserve_price=Decimal("-0.00")), None)),
        ("new pictures", lambda c: c.upsert(PRODUCTS[1], [picture(40, "front"), picture(41, "back")])),
        ("the record, pictures kept", lambda c: c.upsert(dataclasses.replace(PRODUCTS[2], title="燕麦奶 新"), None)),
        ("words read", lambda c: c.set_picture_words(list(zip(c.image_ids()[:2], ["Oatly 1L", ""], strict=True)))),
        ("a picture added", lambda c: c.add_image("Z-3", picture(50, "side"))),
        ("a picture replaced", lambda c: c.add_image("b-2", picture(51, "front"))),
        ("a picture removed", lambda c: c.delete_image("a-1", "0")),
        ("a retag", lambda c: c.update("c-4", lambda p: dataclasses.replace(p, category=Category.TOPS))),
        ("a retag to none", lambda c: c.update("é-5", lambda p: dataclasses.replace(p, category=None))),
        ("fields only", lambda c: c.update("a-1", lambda p: dataclasses.replace(p, volume=1, title="新标题"))),
        ("a product deleted", lambda c: c.delete("Z-3")),
        ("a picture of a missing product", lambda c: c.add_image("missing", picture(60))),
        ("a missing picture", lambda c: c.delete_image("b-2", "nope")),
        ("the last picture", lambda c: c.delete_image("a-1", "1")),
        ("a missing product deleted", lambda c: c.delete("missing")),
        ("a missing product updated", lambda c: c.update("missing", lambda p: p)),
        ("a vector of the wrong width", lambda c: c.upsert(Product("w", "w"), [NewImage("h", "x", np.ones(3, np.float32))])),
        ("a batch with one bad vector", lambda c: c.upsert_many([(Product("v", "v"), [picture(70)]), (Product("w", "w"), [NewImage("h", "x", np.ones(3, np.float32))])])),
    ]  # fmt: skip
    same(catalogs, everything, "an empty catalog")
    for what, step in steps:
        same(catalogs, logged(step), what)
        same(catalogs, everything, f"after {what}")
    assert same(catalogs, lambda c: c.count()) == (5, 7)


def test_a_search_reads_each_product_as_it_is_now_however_often_it_was_read(BACKENDS: dict[str, Catalog]) -> None:
    for catalog in BACKENDS.values():
        catalog.upsert_many([(PRODUCTS[0], [picture(1), picture(2)]), (PRODUCTS[1], [picture(3)])])
        ids = catalog.image_ids()
        found, counts = catalog.hits(ids)
        assert counts == {"a-1": 2, "b-2": 1}
        assert found[ids[0]][0] is found[ids[1]][0]  # one product for its two pictures
        assert catalog.hits(ids)[0][ids[0]][0] is found[ids[0]][0]  # read again, not built again
        catalog.update("a-1", lambda p: dataclasses.replace(p, title="新标题", volume=1))
        catalog.add_image("b-2", picture(4, "side"))
        again, counts = catalog.hits(catalog.image_ids())
        assert again[ids[0]][0] == dataclasses.replace(PRODUCTS[0], title="新标题", volume=1)
        assert counts == {"a-1": 2, "b-2": 2}
        assert catalog.hydrate(ids) == {i: again[i] for i in ids}


def test_a_product_twice_in_a_batch_ends_alike(BACKENDS: dict[str, Catalog]) -> None:
    """How a store writes a batch holding one product twice is its own (the embedded one writes
    each entry in turn, numbering pictures that the batch then replaces), so this compares the
    outcome, pictures by name, and that replaying each store's change log gives its pictures."""
    catalogs = BACKENDS
    batch = [
        (Product("a", "one"), [picture(1), picture(2)]),
        (Product("b", "one"), [picture(3)]),
        (Product("a", "two"), [picture(4)]),
        (Product("b", "two"), None),
    ]
    same(catalogs, lambda c: c.upsert_many(batch))

    def outcome(catalog: Catalog) -> object:
        pictures = {
            item: [(p.name, p.content_hash, p.location) for p in catalog.images_of(item)] for item in ("a", "b")
        }
        return catalog.products(), catalog.count(), pictures

    same(catalogs, outcome)
    for name, catalog in catalogs.items():
        live: set[int] = set()
        for change in catalog.changes_since(0):
            if change.kind is ChangeKind.ADDED:
                live.add(change.vector_id)
            elif change.kind is ChangeKind.REMOVED:
                live.discard(change.vector_id)
        assert sorted(live) == catalog.image_ids(), name


FILTERS = [
    ProductFilter(),
    ProductFilter(min_price=Decimal("9.90")),
    ProductFilter(max_price=Decimal("9.90")),
    ProductFilter(min_price=Decimal("0.01"), max_price=Decimal("199")),
    ProductFilter(user_type=1),
    ProductFilter(user_type=0),
    ProductFilter(shop_title="GOLDEN SHOP"),
    ProductFilter(shop_title="golden"),
    ProductFilter(location="成都"),
    ProductFilter(location="上海", user_type=1, max_price=Decimal("10")),
]


def test_filters_count_the_same_products(BACKENDS: dict[str, Catalog]) -> None:
    catalogs = BACKENDS
    same(catalogs, lambda c: c.upsert_many([(p, [picture(n)]) for n, p in enumerate(PRODUCTS)]))
    for where in FILTERS:
        for category in (None, Category.SHOES, Category.BAGS):
            counted = same(catalogs, methodcaller("count_products", category, where))
            expected = sum(where.matches(p) and category in (None, p.category) for p in PRODUCTS)
            assert counted == expected, (where, category)


@pytest.mark.xfail(
    strict=True,
    reason="the shop filter folds case in ASCII only in SQLite (COLLATE NOCASE), in all of Unicode in "
    "PostgreSQL (lower()) and in ProductFilter.matches (casefold)",
)
def test_the_shop_filter_ignores_case_beyond_ascii_alike(BACKENDS: dict[str, Catalog]) -> None:
    catalogs = BACKENDS
    shop = Product("ü", "咖啡", shop_title="Café Über")
    same(catalogs, lambda c: c.upsert(shop, [picture(1)]))
    where = ProductFilter(shop_title="CAFÉ ÜBER")
    assert where.matches(shop)
    assert same(catalogs, lambda c: c.count_products(None, where)) == 1


@pytest.mark.xfail(
    strict=True,
    reason="PostgreSQL refuses text holding NUL (InvalidValue) where SQLite stores it",
)
def test_values_one_store_cannot_hold_are_refused_by_every_store(BACKENDS: dict[str, Catalog]) -> None:
    catalogs = BACKENDS
    same(catalogs, lambda c: c.upsert(Product("nul", "a\x00b"), [picture(1)]))
    same(catalogs, lambda c: c.get("nul\x00"))


def test_what_is_learned_and_where_indexes_are_answer_alike(BACKENDS: dict[str, Catalog]) -> None:
    catalogs = BACKENDS
    same(catalogs, lambda c: (c.model, c.dim, c.current_model(), c.previous_model(), c.learned_keys()))
    for key, value in [("whitening:b", "x" * 100_000), ("whitening:a", "{}"), ("whitening:b", "y"), ("gone", None)]:
        same(catalogs, methodcaller("set_learned", key, value))
    same(catalogs, lambda c: (c.learned_keys(), c.learned("whitening:a"), c.learned("whitening:b"), c.learned("gone")))
    same(catalogs, lambda c: c.set_learned("whitening:a", None))
    same(catalogs, lambda c: (c.learned_keys(), c.learned("whitening:a")))
    same(catalogs, methodcaller("index_position", "milvus:x"))
    same(catalogs, methodcaller("set_index_position", "milvus:x", 42))
    same(catalogs, lambda c: (c.index_position("milvus:x"), c.index_position("whitening:b"), c.learned("milvus:x")))

    def locked(catalog: Catalog) -> object:
        with catalog.exclusive("replay", wait_s=0.5) as held:
            catalog.ping()
            return held

    same(catalogs, locked)


@pytest.fixture(scope="module")
def cocktails(
    data_root: Path, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[dict[str, Catalog]]:
    """The 752 real cocktail listings (titles, prices, sales, shops, cities) in every backend."""
    catalogs = open_all(request, tmp_path_factory.mktemp("cocktails"))
    listings = [(product, [picture(n)]) for n, (product, _) in enumerate(cocktail_listings(data_root))]
    for catalog in catalogs.values():
        catalog.upsert_many(listings)
    yield catalogs
    for catalog in catalogs.values():
        catalog.close()


QUERIES = ["锐澳 微醺", "鸡尾酒 预调", "RIO", "rio 微醺", "锐澳 桃花 米酿", "酒", "微醺", "果酒 女士", "Lanc", "zzqx"]
SORTED = (SortOrder.PRICE_ASC, SortOrder.PRICE_DESC, SortOrder.SALES_DESC)


def every_match(
    catalog: Catalog, text: str, sort: SortOrder = SortOrder.RELEVANCE, where: ProductFilter | None = None
) -> tuple[list[str], int]:
    """Every product `keyword_search` finds for `text`, and the total it reports: in its order
    when sorted by price or sales, by itemId by relevance (whose order is each store's own)."""
    total = catalog.keyword_search(text, sort, where, limit=1)[1]
    found, again = catalog.keyword_search(text, sort, where, limit=total + 1)
    ids = [p.item_id for p in found]
    return (sorted(ids) if sort is SortOrder.RELEVANCE else ids), again


def test_keyword_search_finds_the_same_products(cocktails: dict[str, Catalog]) -> None:
    for text in QUERIES:
        # sorted by price or sales: every title holding every term, in one order
        for sort in SORTED:
            every, total = same(cocktails, partial(every_match, text=text, sort=sort), f"{text} {sort}")
            assert len(every) == total
        # by relevance: the same titles holding every term first, then the same others

        def groups(catalog: Catalog, text: str = text, first: int = len(every)) -> object:
            found, total = catalog.keyword_search(text, limit=1000)
            ids = [p.item_id for p in found]
            return total, sorted(ids[:first]), sorted(ids[first:])

        _, first, _ = same(cocktails, groups, text)
        assert first == sorted(every), text


def test_filters_and_pages_narrow_keyword_search_alike(cocktails: dict[str, Catalog]) -> None:
    wheres = [
        ProductFilter(min_price=Decimal("50"), max_price=Decimal("100"), location="上海", user_type=1),
        ProductFilter(max_price=Decimal("19.9")),
        ProductFilter(shop_title="RIO锐澳旗舰店"),  # stored as rio锐澳旗舰店
    ]
    for w in wheres:
        for s in SORTED:
            assert same(cocktails, methodcaller("keyword_search", "鸡尾酒", s, w, limit=50))[1]
            same(cocktails, methodcaller("keyword_search", "鸡尾酒", s, w, offset=7, limit=9))
        same(cocktails, partial(every_match, text="鸡尾酒", where=w), f"by relevance, {w}")
        same(cocktails, methodcaller("count_products", None, w))


def test_shop_search_finds_the_same_shops(cocktails: dict[str, Catalog]) -> None:
    for text in ["锐澳", "旗舰店", "rio", "酒", "nothing-here"]:
        shops, _ = same(cocktails, methodcaller("shop_search", text, limit=100))
        same(cocktails, methodcaller("shop_search", text, offset=1, limit=2))
        for shop in shops[:3]:
            same(cocktails, methodcaller("shop_items", shop.shop_title, 5))
