"""The embedded stores (SQLite + faiss) against the server stores (PostgreSQL + Milvus) on the
same catalog, measured in one run.

    python bench/backends.py [--data ../shared/data] [--size 100000] [--queries 200]
                             [--clients 8,32] [--seconds 10]

Catalog: real pictures embedded with the default model (grocery iconic shots and train
photos, fashion shots) plus SYNTHETIC products up to --size pictures, their vectors mixed
from the real ones (as in bench/perf.py), one picture per product, categories spread over
the 14. Queries: real shopper photos (grocery val split), embedded once; the model's own
time is the same for both backends and is left out.

Figures, per backend:
- writes: products/s through `upsert_many` in batches of 500 (record, vector and change log
  in one transaction), then the index catching up with the log (faiss hnsw-sq8 built in
  process; Milvus upserts plus its own HNSW build, waited for);
- the search step (`Searcher` after vision: index search for 200 candidates, hydration,
  exact product scores), p50/p95, queries alternating between the backends so load
  drift hits both alike; and the index search alone (Milvus also at consistency levels
  Strong and Bounded besides the default Session);
- bytes per picture on disk (catalog and index), and the server processes' memory;
- throughput under concurrency: search steps a second that 8 and 32 client threads sustain
  together (through the `Searcher`, as a replica serves them), and index searches a second
  (200 candidates, the index alone, no replica lock), for both backends in the same run,
  each reported with its ratio to the embedded backend.
PostgreSQL runs with fsync on here, as in production. Milvus and PostgreSQL share this
machine's cores with the benchmark itself.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psycopg
from numpy.typing import NDArray
from perf import percentiles, synthetic_vectors  # bench/perf.py
from PIL import Image

from tongkuan.bench import (
    CATEGORIES,
    Catalog,
    Description,
    EmbeddedIndex,
    IndexKind,
    MilvusIndex,
    MilvusServer,
    NewImage,
    OnnxEncoder,
    PostgresCatalog,
    PostgresServer,
    Product,
    Searcher,
    SearchOptions,
    SqliteCatalog,
    VectorIndex,
    Vision,
    limit_threads,
    read_rows,
    resolve_model,
    search_after_vision,
)

REPO = Path(__file__).resolve().parent.parent
MODEL = "efficientnet-lite2"
BATCH = 500


def embed(vision: Vision, paths: list[Path]) -> list[Description]:
    found: list[Description] = []
    for start in range(0, len(paths), 16):
        found += vision.describe([Image.open(p).convert("RGB") for p in paths[start : start + 16]])
    return found


def products(real: NDArray[np.float32], size: int) -> list[tuple[Product, list[NewImage]]]:
    vectors = np.concatenate([real, synthetic_vectors(real, max(0, size - len(real)), seed=7)])[:size]
    rng = np.random.default_rng(1)
    categories = rng.integers(0, len(CATEGORIES), size)
    return [
        (
            Product(f"p{i}", f"商品 product {i}", shop_title=f"shop {i % 997}", category=CATEGORIES[categories[i]]),
            [NewImage(f"{i:064x}", f"https://img.example/{i}.jpg", vectors[i])],
        )
        for i in range(size)
    ]


def load(catalog: Catalog, items: list[tuple[Product, list[NewImage]]]) -> float:
    started = time.perf_counter()
    for start in range(0, len(items), BATCH):
        catalog.upsert_many(items[start : start + BATCH])
    return time.perf_counter() - started


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def wait_for_milvus_index(index: MilvusIndex, rows: int, limit_s: float = 1800) -> None:
    """Flush, then wait until Milvus has indexed every row (it builds HNSW per sealed segment)."""
    index.client.flush(index.name)
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        described = index.client.describe_index(index.name, "vector")
        if "indexed_rows" not in described:
            print(f"cannot tell Milvus's index progress: {described}")
            return
        if int(described["indexed_rows"]) >= rows and int(described.get("pending_index_rows", 0)) == 0:
            return
        time.sleep(1)
    raise TimeoutError("Milvus did not finish indexing")


def throughput(
    work: Callable[[Description], object], queries: list[Description], clients: int, seconds: float
) -> float:
    """Calls a second that `clients` threads sustain together, each calling `work` on the
    queries in turn for about `seconds`."""
    calls = [0] * clients
    until = time.monotonic() + seconds

    def client(number: int) -> None:
        while time.monotonic() < until:
            work(queries[(number + calls[number] * clients) % len(queries)])
            calls[number] += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return sum(calls) / (time.perf_counter() - started)


def search_step(searcher: Searcher, index: VectorIndex) -> Callable[[Description], object]:
    """The search step after vision, as a replica runs it (under its searcher's lock)."""

    return lambda query: search_after_vision(searcher, index, query)


def index_search(index: VectorIndex) -> Callable[[Description], object]:
    """The index search alone, without the replica's lock (no rebuild runs meanwhile here)."""
    return lambda query: index.search(query.embedding[None, :], 200)


def concurrency(
    searchers: dict[str, tuple[Searcher, VectorIndex]],
    queries: list[Description],
    clients: list[int],
    seconds: float,
) -> dict[str, object]:
    """Throughput of both backends at each number of clients, and the server's ratio to the
    embedded backend; the backends take turns, so load drift hits both alike."""
    found: dict[str, object] = {}
    for count in clients:
        figures: dict[str, dict[str, float]] = {}
        builders: dict[str, Callable[[Searcher, VectorIndex], Callable[[Description], object]]] = {
            "search steps/s": search_step,
            "index searches/s (200)": lambda _, index: index_search(index),
        }
        for figure, build in builders.items():
            rates = {
                name: round(throughput(build(searcher, index), queries, count, seconds), 1)
                for name, (searcher, index) in searchers.items()
            }
            rates["server/embedded"] = round(rates["server"] / rates["embedded"], 2)
            figures[figure] = rates
        found[f"{count} clients"] = figures
        print(json.dumps({f"{count} clients": figures}))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--real", type=int, default=600, help="real pictures embedded for the catalog")
    parser.add_argument("--clients", default="8,32", help="concurrent clients for the throughput figures")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each throughput figure")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tongkuan-bench-backends-"))
    results: dict[str, object] = {"size": args.size, "synthetic": max(0, args.size - args.real)}
    try:
        spec = resolve_model(MODEL, work / "data")
        vision = Vision(OnnxEncoder(spec, threads=2))
        rows = read_rows(args.data / "grocery_store" / "labels.csv")
        train = [args.data / "grocery_store" / r["path"] for r in rows if r["split"] == "train"]
        val = [args.data / "grocery_store" / r["path"] for r in rows if r["split"] == "val"]
        step = max(1, len(train) // args.real)
        started = time.perf_counter()
        real = np.stack([d.embedding for d in embed(vision, train[::step][: args.real])])
        queries = embed(vision, val[:: max(1, len(val) // args.queries)][: args.queries])
        print(
            f"embedded {len(real)} catalog and {len(queries)} query pictures in {time.perf_counter() - started:.0f} s"
        )
        items = products(real, args.size)

        # embedded
        sqlite = SqliteCatalog(work / "data" / "catalog.db", MODEL, spec.dim)
        write_s = load(sqlite, items)
        started = time.perf_counter()
        faiss_index = EmbeddedIndex(sqlite, work / "data" / "index", IndexKind.HNSW_SQ8)
        faiss_index.finish_rebuild()
        faiss_index.save()
        index_s = time.perf_counter() - started
        results["embedded"] = {
            "write products/s": round(args.size / write_s),
            "index build s": round(index_s, 1),
            "catalog bytes/picture": round(folder_bytes(work / "data") / args.size - 0, 0),
            "index bytes/picture": round(folder_bytes(work / "data" / "index") / args.size),
        }
        print(json.dumps(results["embedded"]))

        # server
        with PostgresServer(durable=True) as postgres, MilvusServer(work / "milvus") as milvus:
            pg = PostgresCatalog(postgres.url, MODEL, spec.dim)
            write_s = load(pg, items)
            started = time.perf_counter()
            milvus_index = MilvusIndex(pg, f"milvus://127.0.0.1:{milvus.port}/bench")
            sync_s = time.perf_counter() - started
            wait_for_milvus_index(milvus_index, args.size)
            index_s = time.perf_counter() - started
            with psycopg.connect(postgres.url) as db:
                pg_bytes = int(db.execute("SELECT pg_database_size(current_database())").fetchone()[0])  # type: ignore[index]
            results["server"] = {
                "write products/s": round(args.size / write_s),
                "milvus upsert (change log replay) s": round(sync_s, 1),
                "index ready s": round(index_s, 1),
                "catalog bytes/picture": round(pg_bytes / args.size),
                "index bytes/picture": round(folder_bytes(work / "milvus") / args.size),
                "milvus rss MB": round(milvus.rss_bytes() / 2**20),
            }
            print(json.dumps(results["server"]))

            options = SearchOptions()
            searchers: dict[str, tuple[Searcher, VectorIndex]] = {
                "embedded": (Searcher(vision, sqlite, faiss_index, options), faiss_index),
                "server": (Searcher(vision, pg, milvus_index, options), milvus_index),
            }
            step_times: dict[str, list[float]] = {name: [] for name in searchers}
            index_times: dict[str, list[float]] = {name: [] for name in searchers}
            agree = 0
            for round_ in range(2):  # the first round warms caches and is not counted
                for query in queries:
                    tops = {}
                    for name, (searcher, index) in searchers.items():
                        started = time.perf_counter()
                        found = search_after_vision(searcher, index, query)
                        elapsed = time.perf_counter() - started
                        started = time.perf_counter()
                        index.search(query.embedding[None, :], 200)
                        index_elapsed = time.perf_counter() - started
                        if round_:
                            step_times[name].append(elapsed)
                            index_times[name].append(index_elapsed)
                        tops[name] = [hit.product.item_id for hit in found.hits[:10]]
                    if round_:
                        agree += len(set(tops["embedded"]) & set(tops["server"]))
            for name in searchers:
                results[name] |= {  # type: ignore[operator]
                    "search step": percentiles(step_times[name]),
                    "index search (200)": percentiles(index_times[name]),
                    "search steps/s on one client thread": round(1 / float(np.mean(step_times[name])), 1),
                }
            results["top-10 overlap between backends"] = round(agree / (10 * len(queries)), 3)
            for level in ("Strong", "Bounded"):  # the shipped default is Session
                milvus_index.consistency = level
                timed = []
                for query in queries[:50]:
                    started = time.perf_counter()
                    milvus_index.search(query.embedding[None, :], 200)
                    timed.append(time.perf_counter() - started)
                results["server"][f"index search (200), {level}"] = percentiles(timed)  # type: ignore[index]
            milvus_index.consistency = "Session"
            clients = [int(c) for c in args.clients.split(",") if c.strip()]
            limit_threads(1)  # as a replica runs faiss: one thread a query, concurrency from the clients
            results["concurrency"] = concurrency(searchers, queries, clients, args.seconds)
            milvus_index.close()
            pg.close()
        sqlite.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, ensure_ascii=False))


if __name__ == "__main__":
    main()
