"""Keeping a vector index in step with the catalog's change log, and persisting it.

The index files are a cache: `index-<seq>.faiss` (plus `index-<seq>.deleted.npy` for HNSW
tombstones) hold every vector up to change `seq`. On open the newest file of the
configured kind is loaded and the changes after it replayed; without a usable file the
index is rebuilt from the vectors in the catalog. Files are written to temporary names and
renamed, so a crash leaves the old files or the new ones, never a torn one.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from tongkuan.catalog.sqlite import SqliteCatalog
from tongkuan.index.faiss import FaissIndex, IndexKind

logger = logging.getLogger(__name__)

_FILE = re.compile(r"^index-(\d+)\.(faiss|deleted\.npy)$")
_REBUILD_CHUNK = 20_000


class IndexSync:
    """A `FaissIndex` plus the change-log position it reflects. Not thread-safe: callers lock."""

    def __init__(
        self, catalog: SqliteCatalog, folder: Path, kind: IndexKind = IndexKind.HNSW, ef_search: int = 128
    ) -> None:
        self.catalog = catalog
        self.folder = folder
        self.kind = kind
        self.ef_search = ef_search
        folder.mkdir(parents=True, exist_ok=True)
        self.applied, self.index = self._load()
        self.sync()

    def _new(self, path: Path | None = None) -> FaissIndex:
        return FaissIndex(self.catalog.dim, self.kind, path, ef_search=self.ef_search)

    def _load(self) -> tuple[int, FaissIndex]:
        files = sorted(
            (
                (int(m.group(1)), p)
                for p in self.folder.iterdir()
                if (m := _FILE.match(p.name)) and m.group(2) == "faiss"
            ),
            reverse=True,
        )
        for seq, path in files:
            try:
                index = self._new(path)
            except Exception:  # a damaged cache file: fall back to an older one or a rebuild
                logger.warning("ignoring unreadable index file %s", path)
                continue
            if index.kind is self.kind:
                return seq, index
        return 0, self._new()

    def sync(self) -> int:
        """Apply every change after the last one applied; return how many were applied."""
        changes = self.catalog.changes_since(self.applied)
        if not changes:
            return 0
        final: dict[int, bool] = {}
        for change in changes:
            final[change.vector_id] = change.added
        self.index.remove(np.fromiter((v for v, added in final.items() if not added), dtype=np.int64))
        added = [v for v, was_added in final.items() if was_added]
        for start in range(0, len(added), _REBUILD_CHUNK):
            ids, vectors = self.catalog.vectors(added[start : start + _REBUILD_CHUNK])
            self.index.add(ids, vectors)
        self.applied = changes[-1].seq
        if self.index.needs_rebuild():
            self.rebuild()
        return len(changes)

    def rebuild(self) -> None:
        """A fresh index from every vector in the catalog (drops HNSW tombstones)."""
        logger.info("rebuilding the %s index from the catalog", self.kind)
        fresh = self._new()
        all_ids = self.catalog.image_ids()
        for start in range(0, len(all_ids), _REBUILD_CHUNK):
            ids, vectors = self.catalog.vectors(all_ids[start : start + _REBUILD_CHUNK])
            fresh.add(ids, vectors)
        self.index = fresh

    def search(self, queries: NDArray[np.float32], k: int) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        return self.index.search(queries, k)

    def count(self) -> int:
        return self.index.count()

    def save(self) -> None:
        """Persist the index as of `applied` and drop older files."""
        self.index.path = self.folder / f"index-{self.applied}.faiss"
        if not self.index.path.exists():
            self.index.save()
        for path in self.folder.iterdir():
            if (m := _FILE.match(path.name)) and int(m.group(1)) != self.applied:
                path.unlink(missing_ok=True)
