"""The embedded vector index: exact inner-product search with faiss, persisted to one file."""

from __future__ import annotations

import os
from pathlib import Path

import faiss
import numpy as np
from numpy.typing import NDArray

from tongkuan.errors import DimensionMismatch

# faiss >= 1.15 switches to BLAS only for large query batches unless told otherwise, and its
# OpenMP pool fights the BLAS pool on small machines: cap OpenMP, batch through BLAS early.
faiss.cvar.distance_compute_blas_threshold = 20


class FaissIndex:
    """`IndexIDMap2(IndexFlatIP)`: exact cosine search with stable catalog ids."""

    def __init__(self, dim: int, path: Path | None = None, threads: int = 1) -> None:
        self.dim = dim
        self.path = path
        faiss.omp_set_num_threads(threads)
        if path is not None and path.exists():
            index = faiss.read_index(str(path))
            if index.d != dim:
                raise DimensionMismatch(f"index {path} has dim {index.d}, expected {dim}")
            self._index = index
        else:
            self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    def add(self, ids: NDArray[np.int64], vectors: NDArray[np.float32]) -> None:
        if len(ids) == 0:
            return
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise DimensionMismatch(f"vectors of shape {vectors.shape}, index dim {self.dim}")
        self._index.add_with_ids(
            np.ascontiguousarray(vectors, dtype=np.float32), np.ascontiguousarray(ids, dtype=np.int64)
        )

    def remove(self, ids: NDArray[np.int64]) -> None:
        if len(ids):
            self._index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64))  # type: ignore[arg-type]

    def search(self, queries: NDArray[np.float32], k: int) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        k = max(1, min(k, max(1, self.count())))
        scores, ids = self._index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return scores, ids

    def count(self) -> int:
        return int(self._index.ntotal)

    def save(self) -> None:
        """Write the index atomically (temp file, then rename)."""
        if self.path is None:
            return
        tmp = self.path.with_suffix(".tmp")
        faiss.write_index(self._index, str(tmp))
        os.replace(tmp, self.path)
