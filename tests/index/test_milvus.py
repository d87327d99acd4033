"""The Milvus index over the PostgreSQL catalog: replaying the change log, deletes, retags,
category filters, replicas sharing one collection, and agreement with faiss."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from tests.conftest import new_database
from tests.utils.milvus_server import MilvusServer
from tests.utils.postgres_server import PostgresServer
from tongkuan.adapt.whitening import learn_from_catalog
from tongkuan.catalog.postgres import PostgresCatalog
from tongkuan.domain.categories import CATEGORIES
from tongkuan.domain.indexes import IndexKind
from tongkuan.domain.products import NewImage, Product
from tongkuan.errors import StoreUnavailable
from tongkuan.index.embedded import EmbeddedIndex
from tongkuan.index.milvus import MilvusIndex, client_uri

DIM = 16
_prefixes = itertools.count()


def vectors(count: int, seed: int = 0) -> np.ndarray:  # type: ignore[type-arg]
    v = np.random.default_rng(seed).standard_normal((count, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)  # type: ignore[no-any-return]


@pytest.fixture
def catalog(postgres: PostgresServer) -> PostgresCatalog:
    return PostgresCatalog(new_database(postgres), "m", DIM)


def milvus_url(milvus: MilvusServer) -> str:
    return f"milvus://127.0.0.1:{milvus.port}/t{next(_prefixes)}"


def fill(catalog: PostgresCatalog, count: int, seed: int = 0) -> np.ndarray:  # type: ignore[type-arg]
    found = vectors(count, seed)
    catalog.upsert_many(
        [
            (Product(item_id=f"p{i}", title=f"p{i}", category=CATEGORIES[i % 3]), [NewImage(f"h{i}", f"{i}.jpg", v)])
            for i, v in enumerate(found)
        ]
    )
    return found


def item_ids(catalog: PostgresCatalog, ids: np.ndarray) -> list[str]:  # type: ignore[type-arg]
    found = catalog.hydrate([int(i) for i in ids if i >= 0])
    return [found[int(i)][0].item_id for i in ids if int(i) in found]


def test_urls_name_the_server_and_the_collection_prefix() -> None:
    assert client_uri("milvus://127.0.0.1:19530/shop_a") == ("http://127.0.0.1:19530", "shop_a")
    assert client_uri("milvus://127.0.0.1:19530") == ("http://127.0.0.1:19530", "tongkuan")
    with pytest.raises(ValueError, match="milvus://HOST:PORT"):
        client_uri("redis://127.0.0.1:6379")


def test_the_index_replays_the_log_and_follows_deletes_and_retags(
    catalog: PostgresCatalog, milvus: MilvusServer
) -> None:
    stored = fill(catalog, 300)
    index = MilvusIndex(catalog, milvus_url(milvus))  # opening replays what is there
    assert catalog.index_position(index.name) == catalog.last_change()
    scores, ids = index.search(stored[:5], 3)
    assert [item_ids(catalog, row)[0] for row in ids] == ["p0", "p1", "p2", "p3", "p4"]
    assert scores[0, 0] == pytest.approx(1.0, abs=1e-5)

    catalog.delete("p0")
    catalog.update("p1", lambda p: Product(item_id="p1", title="p1", category=CATEGORIES[2]))
    assert index.sync() == 2
    assert "p0" not in item_ids(catalog, index.search(stored[:1], 10)[1][0])
    _, in_two = index.search(stored[1:2], 5, CATEGORIES[2])
    assert item_ids(catalog, in_two[0])[0] == "p1"  # found in its new category
    _, in_one = index.search(stored[1:2], 5, CATEGORIES[1])
    found = item_ids(catalog, in_one[0])
    assert len(found) == 5 and "p1" not in found and all(int(x[1:]) % 3 == 1 for x in found)
    index.close()


def test_replicas_share_one_collection_and_its_position(catalog: PostgresCatalog, milvus: MilvusServer) -> None:
    url = milvus_url(milvus)
    first = MilvusIndex(catalog, url)
    second = MilvusIndex(catalog, url)
    stored = fill(catalog, 50, seed=1)
    assert first.sync() == 50 and second.sync() == 0  # the other replica already replayed it
    _, ids = second.search(stored[7:8], 1)
    assert item_ids(catalog, ids[0]) == ["p7"]
    # a crash after the Milvus write but before the position was saved: replayed again, harmlessly
    catalog.set_index_position(first.name, 0)
    assert second.sync() == 50
    assert item_ids(catalog, first.search(stored[7:8], 1)[1][0]) == ["p7"]
    first.close()
    second.close()


def test_milvus_agrees_with_exact_search(catalog: PostgresCatalog, milvus: MilvusServer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    fill(catalog, 2000, seed=2)
    milvus_index = MilvusIndex(catalog, milvus_url(milvus))
    exact = EmbeddedIndex(catalog, tmp_path, IndexKind.FLAT)
    queries = vectors(50, seed=3)
    _, expected = exact.search(queries, 10)
    _, got = milvus_index.search(queries, 10)
    recall = np.mean([len(set(e) & set(g)) / 10 for e, g in zip(expected, got, strict=True)])
    assert recall >= 0.95
    milvus_index.close()


def test_a_learned_whitening_gets_a_collection_of_its_own(
    catalog: PostgresCatalog, milvus: MilvusServer, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    found = vectors(80, seed=5)
    catalog.upsert_many(
        [
            (
                Product(item_id=f"p{i}", title="t"),
                [NewImage(f"h{i}a", "a.jpg", found[2 * i]), NewImage(f"h{i}b", "b.jpg", found[2 * i + 1])],
            )
            for i in range(40)
        ]
    )
    whitening = learn_from_catalog(catalog, dims=8)
    url = milvus_url(milvus)
    plain = MilvusIndex(catalog, url)
    whitened = MilvusIndex(catalog, url, space=whitening)
    assert plain.name.endswith(f"_m_{DIM}") and whitened.name.endswith(f"_m_8_{whitening.key}")
    assert whitened.count() == plain.count() == 80
    exact = EmbeddedIndex(catalog, tmp_path, IndexKind.FLAT, space=whitening)
    queries = whitening(vectors(20, seed=6))
    _, expected = exact.search(queries, 5)
    _, got = whitened.search(queries, 5)
    assert np.mean([len(set(e) & set(g)) / 5 for e, g in zip(expected, got, strict=True)]) >= 0.95
    plain.close()
    whitened.close()


def test_a_lost_collection_is_refilled_from_the_catalog(catalog: PostgresCatalog, milvus: MilvusServer) -> None:
    url = milvus_url(milvus)
    stored = fill(catalog, 40, seed=4)
    index = MilvusIndex(catalog, url)
    index.client.drop_collection(index.name)  # a Milvus reset, a volume that was not kept
    index.close()
    again = MilvusIndex(catalog, url)
    assert item_ids(catalog, again.search(stored[9:10], 1)[1][0]) == ["p9"]
    again.close()


def test_a_lost_milvus_is_a_store_outage_not_a_crash(catalog: PostgresCatalog, tmp_path) -> None:  # type: ignore[no-untyped-def]
    stored = fill(catalog, 20, seed=5)
    with MilvusServer(tmp_path / "milvus") as server:  # one of its own: this test kills it
        index = MilvusIndex(catalog, f"milvus://127.0.0.1:{server.port}/outage")
        server.kill()
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="vector index"):
            index.search(stored[:1], 5)
        print(f"outage reported after {time.monotonic() - started:.1f} s")
        index.close()
