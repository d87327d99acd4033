"""The distributed vector index: a Milvus collection kept in step with the catalog's change log.

The catalog stays the source of truth (records and float32 vectors commit together there);
Milvus is a derived index, like the embedded faiss files. Any replica that finds the
collection behind the change log takes a catalog-wide lock, replays the missing changes
(upserts and deletes by vector id, in sequence order, so a replay is idempotent) and
records the new position in the catalog. A crash between the Milvus write and the
position update only makes the next replica replay a few changes again.

One collection per model and search space (`<prefix>_<model>_<dim>`, plus the key of a
learned whitening when the catalog has one): the vector id as primary key, the
product's category as an indexed scalar field that searches filter on, and the vector under
an HNSW index with inner product (vectors are unit length, so IP is cosine). The category
is not a partition key: Milvus 2.3 routes upserted rows and equality filters on a
partition key differently, and `category == N` then finds nothing (seen here).

Consistency: by default ("Session") each replay records Milvus's timestamp of its last write
in the catalog beside the position, and every search asks Milvus for a view at least that
recent (a customised guarantee timestamp). A product written through one replica is
therefore found through any other as soon as the write is acknowledged, yet a search waits
only while Milvus is still applying a write, not for a fresh timestamp as "Strong" does
(about 200 ms a search, Milvus's time-tick interval, measured here). "Bounded" and
"Eventually" never wait and may miss recent writes.

Deadlines: every request to Milvus gets `timeout_s` (opening a collection, which loads it,
gets `LOAD_TIMEOUT_S`). pymilvus is told the deadline, so its retries stop, and the caller
waits no longer than that whatever pymilvus does (its retry loop may sleep past its own
deadline): the request runs on a small thread pool and is abandoned at the deadline; it
ends by itself soon after. A request past its deadline is `StoreUnavailable`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
from numpy.typing import NDArray

from tongkuan.domain.categories import Category
from tongkuan.domain.changes import ChangeKind, IndexSource
from tongkuan.domain.spaces import ModelSpace, SearchSpace
from tongkuan.errors import Backend, StoreUnavailable

logger = logging.getLogger(__name__)

MAX_K = 16_384  # Milvus's largest topk
_BATCH = 5_000  # changes replayed (and rows upserted) per round trip
# Before a search: replay at most this much (~7 s here), and wait at most this long for a
# replica that is replaying; a bulk backlog is then caught up over several searches
# instead of stalling them all.
SEARCH_REPLAY = 20_000
SEARCH_LOCK_WAIT_S = 2.0
CONSISTENCY_LEVELS = ("Session", "Strong", "Bounded", "Eventually")
DEFAULT_TIMEOUT_S = 5.0
LOAD_TIMEOUT_S = 600.0  # creating and loading a collection when a replica opens it
PROBE_TIMEOUT_S = 0.5  # a readiness probe's wait (Kubernetes' default probe timeout is 1 s)
_REQUEST_THREADS = 32  # requests in flight at once, abandoned ones included


@contextmanager
def _reachable() -> Iterator[None]:
    """A Milvus that cannot be reached is a temporary outage (503), not a bug (500)."""
    from pymilvus.exceptions import MilvusException

    try:
        yield
    except MilvusException as exc:
        raise StoreUnavailable(f"the vector index cannot be reached: {exc}", Backend.VECTOR_INDEX) from exc


def collection_name(prefix: str, model: str, dim: int, space: str = "") -> str:
    """A collection name Milvus accepts (letters, digits, underscores) for one model and
    search space (a learned whitening gets a collection of its own)."""
    return re.sub(r"[^0-9A-Za-z_]", "_", f"{prefix}_{model}_{dim}" + (f"_{space}" if space else ""))


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
    filters = True

    def __init__(
        self,
        catalog: IndexSource,
        url: str,
        ef_search: int = 128,
        hnsw_m: int = 32,
        consistency: str = "Session",
        token: str = "",
        space: SearchSpace | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        from pymilvus import MilvusClient  # an optional dependency: only the server backends need it

        if consistency not in CONSISTENCY_LEVELS:
            raise ValueError(f"Milvus consistency level {consistency!r}: expected one of {CONSISTENCY_LEVELS}")
        uri, prefix = client_uri(url)
        # pymilvus logs every failed request with its traceback (several a search during an
        # outage); the service logs each refusal once, with its traceId
        logging.getLogger("pymilvus").setLevel(logging.CRITICAL)
        self.catalog = catalog
        self.space: SearchSpace = space or ModelSpace(catalog.dim)
        self.ef_search = ef_search
        self.hnsw_m = hnsw_m
        self.consistency = consistency
        self.name = collection_name(prefix, catalog.model, self.space.dim, self.space.key)
        self.timeout_s = timeout_s
        self._requests = ThreadPoolExecutor(_REQUEST_THREADS, thread_name_prefix="milvus")
        with _reachable():
            # connecting, and reconnecting after an outage, waits at most the deadline too
            self.client = MilvusClient(uri=uri, token=token, timeout=timeout_s)
        self._stamp_key = f"{self.name}:timestamp"
        self._guarantee = 0
        try:
            self._ensure_collection()
            self.sync(limit=None, wait_s=None)  # a new replica starts caught up
        except BaseException:
            self.close()
            raise

    def _call(self, method: Callable[..., Any], *args: Any, timeout_s: float | None = None, **kwargs: Any) -> Any:
        """`method(*args, **kwargs)`, a pymilvus request, given `timeout_s` (default: the
        index's deadline) and waited for no longer; raises `StoreUnavailable` past it or when
        Milvus cannot be reached."""
        deadline = self.timeout_s if timeout_s is None else timeout_s
        with _reachable():
            future = self._requests.submit(method, *args, timeout=deadline, **kwargs)
            try:
                return future.result(timeout=deadline)
            except TimeoutError:
                future.cancel()  # still queued behind abandoned requests: never sent
                name = getattr(method, "__name__", "a request")
                message = f"the vector index did not answer {name} within {deadline:g} s"
                raise StoreUnavailable(message, Backend.VECTOR_INDEX) from None

    def _ensure_collection(self) -> None:
        with self.catalog.exclusive(f"milvus:{self.name}"):
            if not self._call(self.client.has_collection, self.name):
                self._create_collection()
                # a new (or lost and recreated) collection holds nothing: replay the whole log
                self.catalog.set_index_position(self._stamp_key, 0)
                self.catalog.set_index_position(self.name, 0)
        self._call(self.client.load_collection, self.name, timeout_s=LOAD_TIMEOUT_S)

    def ping(self) -> None:
        """Raise `StoreUnavailable` unless Milvus answers within `PROBE_TIMEOUT_S` with this
        collection loaded (searchable): what a readiness probe asks."""
        from pymilvus.client.types import LoadState

        found = self._call(self.client.get_load_state, self.name, timeout_s=min(self.timeout_s, PROBE_TIMEOUT_S))
        if found["state"] != LoadState.Loaded:
            raise StoreUnavailable(f"collection {self.name} is {found['state']}", Backend.VECTOR_INDEX)

    def _create_collection(self) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("vector_id", DataType.INT64, is_primary=True)
        schema.add_field("category", DataType.INT64)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.space.dim)
        index = MilvusClient.prepare_index_params()
        index.add_index(
            field_name="vector",
            index_type="HNSW",
            metric_type="IP",
            params={"M": self.hnsw_m, "efConstruction": 200},
        )
        index.add_index(field_name="category", index_type="STL_SORT")
        self._call(
            self.client.create_collection,
            self.name,
            schema=schema,
            index_params=index,
            consistency_level=self.consistency,
            timeout_s=LOAD_TIMEOUT_S,
        )
        logger.info("created Milvus collection %s", self.name)

    def sync(self, limit: int | None = SEARCH_REPLAY, wait_s: float | None = SEARCH_LOCK_WAIT_S) -> int:
        """Replay changes this collection lacks (at most `limit`, up to the last change as of
        the call); return how many were replayed. If another replica holds the replay lock
        for longer than `wait_s`, replay nothing: it is doing the work.

        Reads go to the catalog outside any snapshot, so a replica never replays from a
        stale position it pinned earlier."""
        with _reachable():
            return self._sync(limit, wait_s)

    def _sync(self, limit: int | None, wait_s: float | None) -> int:
        target = self.catalog.last_change()
        if self.catalog.index_position(self.name) >= target:
            self._guarantee = self.catalog.index_position(self._stamp_key)
            return 0
        replayed = 0
        with self.catalog.exclusive(f"milvus:{self.name}", wait_s) as held:
            applied = self.catalog.index_position(self.name)  # another replica may have done it
            while held and applied < target and (limit is None or replayed < limit):
                changes = self.catalog.changes_since(applied, limit=_BATCH)
                if not changes:
                    break
                final: dict[int, ChangeKind] = {}
                for change in changes:  # ids are never reused: a removal is final
                    if final.get(change.vector_id) is not ChangeKind.REMOVED:  # a retag is an upsert too
                        gone = change.kind is ChangeKind.REMOVED
                        final[change.vector_id] = ChangeKind.REMOVED if gone else ChangeKind.ADDED
                removed = [v for v, kind in final.items() if kind is ChangeKind.REMOVED]
                stamps = [self.catalog.index_position(self._stamp_key)]
                if removed:
                    stamps.append(self._mutate("delete", f"vector_id in {removed}"))
                ids, vectors = self.catalog.vectors([v for v, kind in final.items() if kind is ChangeKind.ADDED])
                if len(ids):
                    categories = self.catalog.vector_categories(ids.tolist())
                    rows = [
                        {"vector_id": int(v), "category": categories.get(int(v), -1), "vector": vector.tolist()}
                        for v, vector in zip(ids, self.space(vectors), strict=True)
                    ]
                    stamps.append(self._mutate("upsert_rows", rows))
                applied = changes[-1].seq
                # the timestamp first: a crash between the two only replays these changes again
                self.catalog.set_index_position(self._stamp_key, max(stamps))
                self.catalog.set_index_position(self.name, applied)
                replayed += len(changes)
            self._guarantee = self.catalog.index_position(self._stamp_key)
        return replayed

    def search(
        self, queries: NDArray[np.float32], k: int, category: Category | None = None
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """The `k` nearest pictures per query (at most `MAX_K`), padded with id -1."""
        k = max(1, min(k, MAX_K))
        found: list[list[dict[str, Any]]] = self._call(
            self.client.search,
            self.name,
            data=queries.astype(np.float32).tolist(),
            limit=k,
            filter="" if category is None else f"category == {int(category)}",
            search_params={"metric_type": "IP", "params": {"ef": max(self.ef_search, k)}},
            **self._consistency(),
        )
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        for row, hits in enumerate(found):
            for col, hit in enumerate(hits[:k]):
                ids[row, col] = int(hit["id"])
                scores[row, col] = float(hit["distance"])
        return scores, ids

    def _mutate(self, operation: str, argument: object) -> int:
        """Run a write and return Milvus's timestamp of it. `MilvusClient.upsert`/`delete` drop
        the timestamp and the ORM that kept it is deprecated, so this calls the client's
        connection handler, as those methods do (pymilvus is pinned to the version checked)."""
        handler = self.client._get_connection()  # noqa: SLF001
        return int(self._call(getattr(handler, operation), self.name, argument).timestamp)

    def _consistency(self) -> dict[str, Any]:
        if self.consistency == "Session":  # at least as recent as the last replayed write
            return {"consistency_level": "Customized", "guarantee_timestamp": max(1, self._guarantee)}
        return {"consistency_level": self.consistency}

    def count(self) -> int:
        """Pictures in the catalog (Milvus's own count is only exact after a flush)."""
        return self.catalog.count()[1]

    def finish_rebuild(self) -> None:
        """Milvus builds and compacts its segments itself; only catch up with the log."""
        self.sync()

    def save(self) -> None:
        """Nothing to persist here: Milvus persists, and the position lives in the catalog."""

    def close(self) -> None:
        self._requests.shutdown(wait=False, cancel_futures=True)  # abandoned requests end by themselves
        if hasattr(self, "client"):
            self.client.close()
