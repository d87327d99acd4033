"""The throwaway Milvus launcher (`tongkuan.bench.MilvusServer`): CRUD and search against it, every
socket on loopback, and data surviving a SIGKILL and restart on the same folder."""

from __future__ import annotations

import importlib.util
import ipaddress
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tests.utils.milvus_server import MilvusServer, namespace_interfaces, process_alive

if importlib.util.find_spec("milvus") is None or importlib.util.find_spec("pymilvus") is None:
    _reason = "Milvus packages missing (pip install milvus==2.3.5 pymilvus)"
    if os.environ.get("TONGKUAN_REQUIRE_SERVERS") == "1":
        pytest.fail(_reason, pytrace=False)
    pytest.skip(_reason, allow_module_level=True)

from pymilvus import DataType, MilvusClient  # noqa: E402

DIM = 8
SEARCH = {"metric_type": "COSINE", "params": {"ef": 64}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusServer]:
    with MilvusServer(tmp_path_factory.mktemp("milvus-server")) as running:
        yield running


@pytest.fixture
def client(server: MilvusServer) -> Iterator[MilvusClient]:
    milvus = MilvusClient(uri=server.uri)
    yield milvus
    milvus.close()


def create(client: MilvusClient, name: str) -> None:
    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("vector_id", DataType.INT64, is_primary=True)
    schema.add_field("category", DataType.INT64)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
    index = client.prepare_index_params()
    index.add_index(field_name="vector", index_type="HNSW", metric_type="COSINE", params={"M": 8, "efConstruction": 64})
    client.create_collection(name, schema=schema, index_params=index, consistency_level="Strong")


def rows(count: int, seed: int) -> tuple[np.ndarray[Any, Any], list[dict[str, Any]]]:
    vectors = np.random.default_rng(seed).random((count, DIM), dtype=np.float32)
    return vectors, [{"vector_id": i, "category": i % 10, "vector": vectors[i].tolist()} for i in range(count)]


def fetch(client: MilvusClient, name: str, ids: list[int]) -> dict[int, int]:
    found = client.query(name, filter=f"vector_id in {ids}", output_fields=["category"], consistency_level="Strong")
    return {hit["vector_id"]: hit["category"] for hit in found}


def count(client: MilvusClient, name: str) -> int:
    return int(client.query(name, filter="", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"])


def test_insert_search_delete_upsert(client: MilvusClient) -> None:
    create(client, "crud")
    vectors, data = rows(1000, seed=1)
    assert client.insert("crud", data)["insert_count"] == 1000

    hits = client.search(
        "crud", data=[vectors[123].tolist()], limit=5, search_params=SEARCH, consistency_level="Strong"
    )[0]
    assert hits[0]["id"] == 123
    assert hits[0]["distance"] == pytest.approx(1.0, abs=1e-5)

    client.delete("crud", ids=[123])
    assert fetch(client, "crud", [123]) == {}
    hits = client.search(
        "crud", data=[vectors[123].tolist()], limit=5, search_params=SEARCH, consistency_level="Strong"
    )[0]
    assert 123 not in [hit["id"] for hit in hits]

    client.upsert("crud", [{"vector_id": 7, "category": 99, "vector": vectors[7].tolist()}])
    assert fetch(client, "crud", [7, 8]) == {7: 99, 8: 8}
    assert count(client, "crud") == 999


def loopback(address: str) -> bool:
    return ipaddress.ip_address(address).is_loopback


def test_every_socket_is_on_loopback(server: MilvusServer, client: MilvusClient) -> None:
    client.list_collections()  # an open client connection, so connected sockets are checked too
    sockets = server.sockets()
    assert any(s.state == "LISTEN" for s in sockets) and any(s.state == "ESTABLISHED" for s in sockets)
    wildcard = []
    for s in sockets:
        if s.state != "LISTEN":
            assert loopback(s.local) and loopback(s.remote), s
        elif not loopback(s.local):
            assert s.local in ("0.0.0.0", "::"), s
            wildcard.append(s)
    outside = {a for a in server.socket_addresses() if not loopback(a)}
    assert outside == {s.local for s in wildcard}
    if not wildcard:
        return
    # Milvus 2.3 binds its gRPC and health servers to the wildcard address whatever the config
    # says; isolated, those listeners live in a network namespace whose only interface is lo, and
    # the host side (the relay) listens on 127.0.0.1 only.
    if not server.isolated:
        pytest.xfail(f"wildcard listeners {outside}: Milvus 2.3 ignores <role>.ip for binding; run as root to isolate")
    host = os.readlink("/proc/self/ns/net")
    assert all(s.namespace != host for s in wildcard)
    assert namespace_interfaces(server.pid) == {"lo"}


def test_data_survives_kill_and_restart(server: MilvusServer) -> None:
    client = MilvusClient(uri=server.uri)
    create(client, "crash")
    _, data = rows(500, seed=2)
    client.insert("crash", data)
    client.delete("crash", ids=[5])
    assert count(client, "crash") == 499
    client.close()
    old_pid = server.pid

    server.kill()
    assert not server.running and not process_alive(old_pid)
    server.start()

    assert server.pid != old_pid
    client = MilvusClient(uri=server.uri)
    try:
        client.load_collection("crash")  # reloaded by itself after a restart; this waits for it
        assert count(client, "crash") == 499
        assert fetch(client, "crash", [4, 5, 6]) == {4: 4, 6: 6}
    finally:
        client.close()
