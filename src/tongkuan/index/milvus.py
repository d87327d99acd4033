"""The distributed vector index: a Milvus collection kept in step with the catalog's change log.

The catalog stays the source of truth (records and float32 vectors commit together there);
Milvus is a derived index, like the embedded faiss files. Any replica that finds the
collection behind the change log takes a catalog-wide lock, replays the missing changes
(upserts and deletes by vector id, in sequence order, so a replay is idempotent) and
records the new position in the catalog. A crash between the Milvus write and the
position update only makes the next replica replay a few changes again.

One collection per model (`<prefix>_<model>_<dim>`): the vector id as primary key, the
product's category as an indexed scalar field that searches filter on, and the vector under
an HNSW index with inner product (vectors are unit length, so IP is cosine). The category
is not a partition key: Milvus 2.3 routes upserted rows and equality filters on a
partition key differently, and `category == N` then finds nothing (seen here).

Searches run at consistency level Strong by default, so a product written through one
replica is found through any other the moment the write is acknowledged; Bounded trades
that for lower latency (reads may miss the last few seconds of writes).
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
from numpy.typing import NDArray

from tongkuan.catalog.store import Catalog, ChangeKind
from tongkuan.vision.categories import Category

logger = logging.getLogger(__name__)

MAX_K = 16_384  # Milvus's largest topk
_BATCH = 5_000  # changes replayed (and rows upserted) per round trip
CONSISTENCY_LEVELS = ("Strong", "Bounded", "Session", "Eventually")


def collection_name(prefix: str, model: str, dim: int) -> str:
    """A collection name Milvus accepts (letters, digits, underscores) for one model."""
    return re.sub(r"[^0-9A-Za-z_]", "_", f"{prefix}_{model}_{dim}")


def client_uri(url: str) -> tuple[str, str]:
    """`milvus://host:port/prefix` (or http[s]://...) as a pymilvus URI and a collection prefix."""
    parts = urlsplit(url)
    scheme = {"milvus": "http", "milvus+https": "https"}.get(parts.scheme, parts.scheme)
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"vector store URL {url!r}: expected milvus://HOST:PORT[/PREFIX]")
    prefix = parts.path.strip("/") or parse_qs(parts.query).get("prefix", ["tongkuan"])[0]
    return f"{scheme}://{parts.netloc}", prefix


class MilvusIndex:
    """A `VectorIndex` over a Milvus collection. Callers lock around `sync`/`search`."""

    max_k = MAX_K

    def __init__(
        self,
        catalog: Catalog,
        url: str,
        ef_search: int = 128,
        hnsw_m: int = 32,
        consistency: str = "Strong",
        token: str = "",
    ) -> None:
        from pymilvus import MilvusClient  # an optional dependency: only the server backends need it

        if consistency not in CONSISTENCY_LEVELS:
            raise ValueError(f"Milvus consistency level {consistency!r}: expected one of {CONSISTENCY_LEVELS}")
        uri, prefix = client_uri(url)
        self.catalog = catalog
        self.ef_search = ef_search
        self.hnsw_m = hnsw_m
        self.consistency = consistency
        self.name = collection_name(prefix, catalog.model, catalog.dim)
        self.client = MilvusClient(uri=uri, token=token)
        self._ensure_collection()
        self.sync()

    def _ensure_collection(self) -> None:
        from pymilvus import DataType, MilvusClient

        if not self.client.has_collection(self.name):
            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("vector_id", DataType.INT64, is_primary=True)
            schema.add_field("category", DataType.INT64)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.catalog.dim)
            index = MilvusClient.prepare_index_params()
            index.add_index(
                field_name="vector",
                index_type="HNSW",
                metric_type="IP",
                params={"M": self.hnsw_m, "efConstruction": 200},
            )
            index.add_index(field_name="category", index_type="STL_SORT")
            self.client.create_collection(
                self.name, schema=schema, index_params=index, consistency_level=self.consistency
            )
            logger.info("created Milvus collection %s", self.name)
        self.client.load_collection(self.name)

    def sync(self) -> int:
        """Replay the changes this collection lacks; return how many were replayed.

        Reads go to the catalog outside any snapshot, so a replica never replays from a
        stale position it pinned earlier."""
        if self.catalog.index_position(self.name) >= self.catalog.last_change():
            return 0
        replayed = 0
        with self.catalog.exclusive(f"milvus:{self.name}"):
            applied = self.catalog.index_position(self.name)  # another replica may have done it
            while changes := self.catalog.changes_since(applied, limit=_BATCH):
                final: dict[int, ChangeKind] = {}
                for change in changes:  # ids are never reused: a removal is final
                    if final.get(change.vector_id) is not ChangeKind.REMOVED:  # a retag is an upsert too
                        gone = change.kind is ChangeKind.REMOVED
                        final[change.vector_id] = ChangeKind.REMOVED if gone else ChangeKind.ADDED
                removed = [v for v, kind in final.items() if kind is ChangeKind.REMOVED]
                if removed:
                    self.client.delete(self.name, ids=removed)
                ids, vectors = self.catalog.vectors([v for v, kind in final.items() if kind is ChangeKind.ADDED])
                if len(ids):
                    categories = self.catalog.vector_categories(ids.tolist())
                    rows = [
                        {"vector_id": int(v), "category": categories.get(int(v), -1), "vector": vector.tolist()}
                        for v, vector in zip(ids, vectors, strict=True)
                    ]
                    self.client.upsert(self.name, data=rows)
                applied = changes[-1].seq
                self.catalog.set_index_position(self.name, applied)
                replayed += len(changes)
        return replayed

    def search(
        self, queries: NDArray[np.float32], k: int, category: Category | None = None
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """The `k` nearest pictures per query (at most `MAX_K`), padded with id -1."""
        k = max(1, min(k, MAX_K))
        found: list[list[dict[str, Any]]] = self.client.search(
            self.name,
            data=queries.astype(np.float32).tolist(),
            limit=k,
            filter="" if category is None else f"category == {int(category)}",
            search_params={"metric_type": "IP", "params": {"ef": max(self.ef_search, k)}},
            consistency_level=self.consistency,
        )
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        for row, hits in enumerate(found):
            for col, hit in enumerate(hits[:k]):
                ids[row, col] = int(hit["id"])
                scores[row, col] = float(hit["distance"])
        return scores, ids

    def count(self) -> int:
        """Pictures in the catalog (Milvus's own count is only exact after a flush)."""
        return self.catalog.count()[1]

    def finish_rebuild(self) -> None:
        """Milvus builds and compacts its segments itself; only catch up with the log."""
        self.sync()

    def save(self) -> None:
        """Nothing to persist here: Milvus persists, and the position lives in the catalog."""

    def close(self) -> None:
        self.client.close()
