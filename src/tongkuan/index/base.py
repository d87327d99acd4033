"""What the searcher needs from a vector index, whichever engine holds the vectors.

Two implementations: `EmbeddedIndex` (faiss in this process, a cache of the catalog's vectors
kept in files) and `MilvusIndex` (a Milvus collection shared by every replica). Both are
derived from the catalog's change log, which `sync` replays.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from tongkuan.domain.categories import Category
from tongkuan.domain.spaces import SearchSpace


class VectorIndex(Protocol):
    """Nearest pictures by inner product on unit vectors. Callers lock around use."""

    max_k: int  # the deepest search the engine answers
    filters: bool  # whether `search` honours `category` itself
    space: SearchSpace  # the map from the catalog's vectors to the index's (queries go through it too)

    def sync(self) -> int:
        """Apply the catalog changes not applied yet; return how many."""
        ...

    def search(
        self, queries: NDArray[np.float32], k: int, category: Category | None = None
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """Scores and ids of the `k` nearest pictures per query, best first; an empty slot
        (fewer found) holds id -1, after the hits. Asked for more than it holds, an index may
        answer with fewer than `k` columns. With `category`, an index that stores categories
        answers only from it; one that does not may return others, which the caller filters."""
        ...

    def ping(self) -> None:
        """Return when the index can search now; raise `StoreUnavailable` within about a
        second when it cannot (a server that does not answer): what a readiness probe asks.
        Safe without the callers' lock."""
        ...

    def count(self) -> int: ...
    def finish_rebuild(self) -> None: ...
    def save(self) -> None: ...
    def close(self) -> None: ...
