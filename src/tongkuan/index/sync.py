"""Keeping a vector index in step with the catalog's change log, and persisting it.

The index file is a cache: `index-<seq>.faiss` holds every vector up to change `seq`.
On open the newest file is loaded and the changes after it replayed; without a usable
file the index is rebuilt from the vectors in the catalog. Files are written to a temp
name and renamed, so a crash leaves either the old file or the new one.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from tongkuan.catalog.sqlite import SqliteCatalog
from tongkuan.index.faiss import FaissIndex

logger = logging.getLogger(__name__)

_FILE = re.compile(r"^index-(\d+)\.faiss$")


class IndexSync:
    """A `FaissIndex` plus the change-log position it reflects. Not thread-safe: callers lock."""

    def __init__(self, catalog: SqliteCatalog, folder: Path) -> None:
        self.catalog = catalog
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.applied, self.index = self._load()
        self.sync()

    def _load(self) -> tuple[int, FaissIndex]:
        files = sorted(
            ((int(m.group(1)), p) for p in self.folder.iterdir() if (m := _FILE.match(p.name))),
            reverse=True,
        )
        for seq, path in files:
            try:
                return seq, FaissIndex(self.catalog.dim, path)
            except Exception:  # a damaged cache file: fall back to a rebuild
                logger.warning("ignoring unreadable index file %s", path)
        return 0, FaissIndex(self.catalog.dim)

    def sync(self) -> int:
        """Apply every change after the last one applied; return how many were applied."""
        changes = self.catalog.changes_since(self.applied)
        if not changes:
            return 0
        final: dict[int, bool] = {}
        for change in changes:
            final[change.vector_id] = change.added
        removed = np.fromiter((v for v, added in final.items() if not added), dtype=np.int64)
        added = [v for v, was_added in final.items() if was_added]
        # Re-adding an id that the loaded file already holds must not duplicate it.
        self.index.remove(np.concatenate([removed, np.asarray(added, dtype=np.int64)]))
        ids, vectors = self.catalog.vectors(added)
        self.index.add(ids, vectors)
        self.applied = changes[-1].seq
        return len(changes)

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
