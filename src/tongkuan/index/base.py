"""The vector index protocol.

Ids are int64 image ids from the catalog; vectors are float32 rows, L2-normalised, so
inner product is cosine similarity. `search` returns (scores, ids) of shape (n, k) with
id -1 where fewer than k vectors exist. Removing an id that is not there does nothing.
Callers serialise writes against searches (the searcher holds one lock).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from numpy.typing import NDArray


class VectorIndex(Protocol):
    """A mutable nearest-neighbour index over normalised float32 vectors."""

    dim: int

    def add(self, ids: NDArray[np.int64], vectors: NDArray[np.float32]) -> None: ...

    def remove(self, ids: NDArray[np.int64]) -> None: ...

    def search(self, queries: NDArray[np.float32], k: int) -> tuple[NDArray[np.float32], NDArray[np.int64]]: ...

    def count(self) -> int: ...

    def save(self) -> None: ...
