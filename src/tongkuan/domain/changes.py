"""The catalog's change log, as a vector index reads it to stay in step with the catalog.

The catalog is the source of truth: a product's record, its pictures' vectors and the
change-log entries commit together. A vector index (faiss in process, Milvus on a cluster)
is derived from it by replaying the log; these protocols are what it asks of the catalog.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

import numpy as np
from numpy.typing import NDArray


class ChangeKind(IntEnum):
    """What happened to a vector. A retag keeps the vector but moves its product to another
    category: an index that filters by category (Milvus) must rewrite it, faiss ignores it."""

    REMOVED = 0
    ADDED = 1
    RETAGGED = 2


@dataclass(frozen=True)
class Change:
    """One entry of the change log."""

    seq: int
    vector_id: int
    kind: ChangeKind

    @property
    def added(self) -> bool:
        return self.kind is ChangeKind.ADDED


NO_CATEGORY = -1  # how an index that filters by category stores a product without one


class ChangeLog(Protocol):
    """What happened to which vector, in order, and where each index has got to."""

    def last_change(self) -> int: ...
    def changes_since(self, seq: int, limit: int | None = None) -> list[Change]: ...
    def index_position(self, name: str) -> int: ...
    def set_index_position(self, name: str, seq: int) -> None: ...
    def exclusive(self, name: str, wait_s: float | None = None) -> AbstractContextManager[bool]:
        """Hold a lock named `name` across every process that shares this catalog; with
        `wait_s`, give up after that long (the block then gets False)."""
        ...


class StoredVectors(Protocol):
    """The model's vectors as the catalog stores them, read for (re)building an index."""

    model: str
    dim: int

    def snapshot(self) -> AbstractContextManager[None]:
        """Pin one consistent read view for every read this thread makes inside the block."""
        ...

    def vectors(self, vector_ids: Sequence[int] | None = None) -> tuple[NDArray[np.int64], NDArray[np.float32]]: ...
    def image_ids(self) -> list[int]: ...
    def vector_categories(self, vector_ids: Sequence[int]) -> dict[int, int]: ...
    def count(self) -> tuple[int, int]:
        """Products and pictures."""
        ...

    def close(self) -> None:
        """Release what this thread holds (its connection)."""
        ...


class IndexSource(ChangeLog, StoredVectors, Protocol):
    """Everything a vector index reads from the catalog."""
