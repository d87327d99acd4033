"""The PostgreSQL catalog: migrations, exact round trips, atomic batches, snapshots, and a
change log that concurrent writers from several processes' pools never leave gaps in."""

from __future__ import annotations

import threading
from decimal import Decimal
from pathlib import Path

import numpy as np
import psycopg
import pytest

from tests.conftest import new_database
from tests.utils.postgres_server import PostgresServer
from tongkuan.catalog.postgres import MIGRATIONS, PostgresCatalog
from tongkuan.catalog.sqlite import SqliteCatalog
from tongkuan.catalog.store import Catalog
from tongkuan.domain.categories import Category
from tongkuan.domain.changes import ChangeKind
from tongkuan.domain.products import NewImage, Product
from tongkuan.errors import DimensionMismatch, InvalidValue, ProductNotFound, RecordError
from tongkuan.ingest.records import to_product

DIM = 8


def vector(seed: int) -> np.ndarray:  # type: ignore[type-arg]
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)  # type: ignore[no-any-return]


def picture(seed: int, name: str = "") -> NewImage:
    return NewImage(f"hash{seed}", f"{seed}.jpg", vector(seed), name)


@pytest.fixture
def catalog(postgres: PostgresServer) -> PostgresCatalog:
    return PostgresCatalog(new_database(postgres), "m", DIM)


def test_migrations_run_once_and_are_recorded(postgres: PostgresServer) -> None:
    url = new_database(postgres)
    first = PostgresCatalog(url, "m", DIM)
    second = PostgresCatalog(url, "m", DIM)  # a second replica opening the same database
    with psycopg.connect(url) as db:
        versions = [r[0] for r in db.execute("SELECT version FROM tongkuan.schema_migrations ORDER BY version")]
    assert versions == list(range(1, len(MIGRATIONS) + 1))
    first.close()
    second.close()
    with pytest.raises(DimensionMismatch, match="use another database"):
        PostgresCatalog(url, "other-model", DIM)
    assert PostgresCatalog.stored_model(url) == "m"
    assert PostgresCatalog.stored_model(new_database(postgres)) is None


def test_records_round_trip_exactly(catalog: PostgresCatalog) -> None:
    product = Product(
        item_id="p-1",
        title="韩国AHC黄金水 It's \\ 'quoted'",
        reserve_price=Decimal("12.50"),
        final_price=Decimal("9.90"),
        shop_title="小店",
        volume=2**62,
        coupon_amount=5,
        coupon_start_fee="50",
        category=Category(3),
        category_predicted=True,
        extra={"颜色": "红", "size": "XL"},
    )
    catalog.upsert(product, [picture(1), picture(2, "back")])
    assert catalog.get("p-1") == product
    assert str(catalog.get("p-1").reserve_price) == "12.50"  # the scale a price was given with
    assert [(i.name, i.content_hash) for i in catalog.images_of("p-1")] == [("0", "hash1"), ("back", "hash2")]
    ids, vectors = catalog.vectors([i.vector_id for i in catalog.images_of("p-1")])
    assert np.array_equal(vectors[np.argsort(ids)], np.stack([vector(1), vector(2)]))
    assert [p.item_id for p in catalog.keyword_search("黄金水")[0]] == ["p-1"]
    assert [p.item_id for p in catalog.keyword_search("quoted")[0]] == ["p-1"]


def test_a_batch_commits_whole_or_not_at_all(catalog: PostgresCatalog) -> None:
    catalog.upsert(Product(item_id="kept", title="kept"), [picture(1)])
    before = catalog.last_change()
    with pytest.raises(InvalidValue, match="NUL"):  # PostgreSQL text cannot hold it: the caller's error
        catalog.upsert_many([(Product(item_id="new", title="fine"), [picture(2)]), (Product("bad", "a\x00b"), None)])
    with pytest.raises(ProductNotFound):
        catalog.get("new")
    assert catalog.last_change() == before and catalog.count() == (1, 1)


def test_a_snapshot_does_not_see_later_writes(catalog: PostgresCatalog) -> None:
    catalog.upsert(Product(item_id="a", title="a"), [picture(1)])
    seen: list[int] = []
    with catalog.snapshot():
        worker = threading.Thread(target=catalog.upsert, args=(Product(item_id="b", title="b"), [picture(2)]))
        worker.start()
        worker.join()
        seen.append(catalog.count()[0])
        assert catalog.hydrate([1, 2]).keys() == {1}
    assert seen == [1] and catalog.count()[0] == 2


def test_changes_are_logged_for_every_kind_of_write(catalog: PostgresCatalog) -> None:
    catalog.upsert(Product(item_id="a", title="a", category=Category(1)), [picture(1), picture(2)])
    catalog.add_image("a", picture(3, "side"))
    catalog.delete_image("a", "0")
    catalog.update("a", lambda p: Product(item_id="a", title="a", category=Category(2)))
    assert catalog.count() == (1, 2)
    catalog.delete("a")
    assert catalog.count() == (0, 0)
    kinds = [(c.vector_id, c.kind) for c in catalog.changes_since(0)]
    assert kinds == [
        (1, ChangeKind.ADDED),
        (2, ChangeKind.ADDED),
        (3, ChangeKind.ADDED),
        (1, ChangeKind.REMOVED),
        (2, ChangeKind.RETAGGED),
        (3, ChangeKind.RETAGGED),
        (2, ChangeKind.REMOVED),
        (3, ChangeKind.REMOVED),
    ]


def test_concurrent_writers_never_leave_a_gap_a_reader_could_skip(postgres: PostgresServer) -> None:
    """Several replicas (one pool each) write at once while a reader follows the change log
    the way an index does. Replaying what it read must give exactly the pictures stored."""
    url = new_database(postgres)
    writers = [PostgresCatalog(url, "m", DIM, pool_size=2) for _ in range(4)]
    reader = PostgresCatalog(url, "m", DIM)
    live: set[int] = set()
    done = threading.Event()

    def follow() -> None:
        applied = 0
        while True:
            finished = done.is_set()
            for change in reader.changes_since(applied):
                assert change.seq > applied
                applied = change.seq
                (live.add if change.kind is ChangeKind.ADDED else live.discard)(change.vector_id)
            if finished:
                return

    def write(index: int) -> None:
        for n in range(40):
            item = f"w{index}-{n % 10}"  # rewrites replace pictures: removals and additions
            writers[index].upsert(Product(item_id=item, title=item), [picture(n), picture(n + 1000)])

    follower = threading.Thread(target=follow)
    follower.start()
    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    follower.join()
    assert live == set(reader.image_ids()) and len(live) == 4 * 10 * 2
    assert reader.count() == (4 * 10, 4 * 10 * 2)  # the kept counters agree with the tables
    for c in [*writers, reader]:
        c.close()


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_a_product_twice_in_one_batch_is_written_as_if_in_order(
    store: str, postgres: PostgresServer, tmp_path: Path
) -> None:
    catalog: Catalog = (
        SqliteCatalog(tmp_path / "c.db", "m", DIM)
        if store == "sqlite"
        else PostgresCatalog(new_database(postgres), "m", DIM)
    )
    catalog.upsert_many([(Product("a", "one"), [picture(1), picture(2)]), (Product("a", "two"), [picture(3)])])
    assert catalog.get("a").title == "two" and catalog.image_hashes("a") == ["hash3"]
    catalog.upsert_many([(Product("b", "one"), [picture(4)]), (Product("b", "two"), None)])
    assert catalog.get("b").title == "two" and catalog.image_hashes("b") == ["hash4"]


def test_values_postgres_cannot_hold_are_refused_early_or_as_the_callers_error(catalog: PostgresCatalog) -> None:
    long_word = "x" * 3000  # PostgreSQL refuses lexemes of 2 KB
    catalog.upsert(Product("long", f"{long_word} 手机"), [picture(1)])
    assert [p.item_id for p in catalog.keyword_search("手机")[0]] == ["long"]
    assert catalog.keyword_search(long_word) == ([], 0)
    with pytest.raises(RecordError, match="reservePrice must be below"):
        to_product({"itemId": "a", "reservePrice": "1E+200000"})
    with pytest.raises(InvalidValue):
        catalog.get("a\x00")


def test_tables_live_in_their_own_schema_and_locks_can_time_out(catalog: PostgresCatalog) -> None:
    with psycopg.connect(catalog.url) as db:
        tables = {r[0] for r in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert not tables & {"items", "images", "changes", "meta", "schema_migrations"}
    with catalog.exclusive("replay") as held:
        assert held
        outcome: list[bool] = []

        def other() -> None:
            with catalog.exclusive("replay", wait_s=0.2) as got:
                outcome.append(got)

        waiter = threading.Thread(target=other)
        waiter.start()
        waiter.join()
    assert outcome == [False]


def test_what_is_learned_from_the_catalog_is_shared_by_every_process(postgres: PostgresServer, tmp_path: Path) -> None:
    url = new_database(postgres)
    stores: list[tuple[Catalog, Catalog]] = [
        (PostgresCatalog(url, "m", DIM), PostgresCatalog(url, "m", DIM)),
        (SqliteCatalog(tmp_path / "c.db", "m", DIM), SqliteCatalog(tmp_path / "c.db", "m", DIM)),
    ]
    for writer, reader in stores:
        assert reader.learned("whitening") is None
        writer.set_learned("whitening", "x" * 3_000_000)  # a 1280 x 256 whitening is ~1.8 MB of text
        assert reader.learned("whitening") == "x" * 3_000_000
        writer.set_learned("whitening", "y")
        assert reader.learned("whitening") == "y" and reader.index_position("whitening") == 0  # its own keys
        writer.set_learned("whitening", None)
        assert reader.learned("whitening") is None
