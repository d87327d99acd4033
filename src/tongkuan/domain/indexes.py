"""The embedded vector index's structures, as settings name them."""

from __future__ import annotations

from enum import StrEnum


class IndexKind(StrEnum):
    """Which faiss structure holds the vectors."""

    FLAT = "flat"
    HNSW = "hnsw"
    HNSW_SQ8 = "hnsw-sq8"

    @property
    def needs_training(self) -> bool:
        return self is IndexKind.HNSW_SQ8
