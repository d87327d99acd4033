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
import threading
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from tongkuan.domain.categories import Category
from tongkuan.domain.changes import ChangeKind, IndexSource
from tongkuan.domain.indexes import IndexKind
from tongkuan.domain.spaces import ModelSpace, SearchSpace
from tongkuan.index.faiss import FaissIndex

logger = logging.getLogger(__name__)

_FILE = re.compile(r"index-(\d+)\.(faiss|deleted\.npy)")
_REBUILD_CHUNK = 20_000
# A trained index (hnsw-sq8) waits for this many vectors to learn from; until then the
# catalog is small enough for an exact scan.
TRAIN_AT = 10_000
_TRAIN_SAMPLE = 100_000


class EmbeddedIndex:
    """A `FaissIndex` plus the change-log position it reflects. Not thread-safe: callers lock."""

    max_k = 1 << 62  # faiss searches as deep as asked
    filters = False  # faiss holds no categories

    def __init__(
        self,
        catalog: IndexSource,
        folder: Path,
        kind: IndexKind = IndexKind.HNSW_SQ8,
        ef_search: int = 128,
        hnsw_m: int = 32,
        space: SearchSpace | None = None,
    ) -> None:
        self.catalog = catalog
        self.space: SearchSpace = space or ModelSpace(catalog.dim)
        self.folder = folder
        self.kind = kind
        self.ef_search = ef_search
        self.hnsw_m = hnsw_m
        self._rebuilding: threading.Thread | None = None
        self._rebuilt: tuple[int, FaissIndex] | None = None
        folder.mkdir(parents=True, exist_ok=True)
        self.applied, self.faiss = self._load()
        self.sync()

    def _new(self, path: Path | None = None, training: NDArray[np.float32] | None = None) -> FaissIndex:
        kind = self.kind
        if kind.needs_training and training is None and path is None:
            kind = IndexKind.FLAT  # until there is enough to train on
        return FaissIndex(self.space.dim, kind, path, hnsw_m=self.hnsw_m, ef_search=self.ef_search, training=training)

    def _acceptable(self, index: FaissIndex) -> bool:
        return index.kind is self.kind or (self.kind.needs_training and index.kind is IndexKind.FLAT)

    def _load(self) -> tuple[int, FaissIndex]:
        files = sorted(
            (
                (int(m.group(1)), p)
                for p in self.folder.iterdir()
                if (m := _FILE.fullmatch(p.name)) and m.group(2) == "faiss"
            ),
            reverse=True,
        )
        for seq, path in files:
            try:
                index = self._new(path)
            except Exception:  # a damaged cache file: fall back to an older one or a rebuild
                logger.warning("ignoring unreadable index file %s", path)
                continue
            if self._acceptable(index):
                return seq, index
        return 0, self._new()

    def sync(self) -> int:
        """Apply every change after the last one applied; return how many were applied.

        A rebuild (too many tombstones, or enough vectors to train on) runs in a background
        thread while this index keeps serving; the next `sync` after it ends swaps it in
        and replays what changed meanwhile.
        """
        if self._rebuilt is not None:
            self.applied, self.faiss = self._rebuilt
            self._rebuilt = None
        changes = self.catalog.changes_since(self.applied)
        if not changes:
            return 0
        final: dict[int, bool] = {}
        for change in changes:
            if change.kind is not ChangeKind.RETAGGED:  # faiss holds no categories
                final[change.vector_id] = change.added
        self.faiss.remove(np.fromiter((v for v, added in final.items() if not added), dtype=np.int64))
        added = [v for v, was_added in final.items() if was_added]
        for start in range(0, len(added), _REBUILD_CHUNK):
            ids, vectors = self.catalog.vectors(added[start : start + _REBUILD_CHUNK])
            self.faiss.add(ids, self.space(vectors))
        self.applied = changes[-1].seq
        untrained = self.kind.needs_training and self.faiss.kind is IndexKind.FLAT
        if self.faiss.needs_rebuild() or (untrained and self.faiss.count() >= TRAIN_AT):
            self._start_rebuild()
        return len(changes)

    def _start_rebuild(self) -> None:
        if self._rebuilding is not None and self._rebuilding.is_alive():
            return
        self._rebuilding = threading.Thread(target=self._rebuild, name="index-rebuild", daemon=True)
        self._rebuilding.start()

    def _rebuild(self) -> None:
        """Build a fresh index from one snapshot of the catalog (drops HNSW tombstones)."""
        logger.info("rebuilding the %s index from the catalog", self.kind)
        try:
            with self.catalog.snapshot():
                seq = self.catalog.last_change()
                all_ids = self.catalog.image_ids()
                training = None
                if self.kind.needs_training and len(all_ids) >= TRAIN_AT:
                    step = max(1, len(all_ids) // _TRAIN_SAMPLE)
                    training = self.space(self.catalog.vectors(all_ids[::step])[1])
                fresh = self._new(training=training)
                for start in range(0, len(all_ids), _REBUILD_CHUNK):
                    ids, vectors = self.catalog.vectors(all_ids[start : start + _REBUILD_CHUNK])
                    fresh.add(ids, self.space(vectors))
            self._rebuilt = (seq, fresh)
            logger.info("rebuilt the %s index: %d vectors", self.kind, fresh.count())
        except Exception:  # the old index keeps serving; the next sync tries again
            logger.exception("index rebuild failed")
        finally:
            self.catalog.close()  # this thread's connection

    def finish_rebuild(self) -> None:
        """Wait for a running rebuild and swap it in (before saving, or in tests)."""
        if self._rebuilding is not None:
            self._rebuilding.join()
            self._rebuilding = None
        self.sync()

    def search(
        self, queries: NDArray[np.float32], k: int, category: Category | None = None
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """The nearest pictures; `category` is ignored (faiss holds none: the caller filters)."""
        return self.faiss.search(queries, k)

    def ping(self) -> None:
        """Always ready: the index lives in this process."""

    def close(self) -> None:
        """Nothing held open: the index lives in memory and `save` writes it."""

    def count(self) -> int:
        return self.faiss.count()

    def save(self) -> None:
        """Persist the index as of `applied` and drop older files."""
        self.faiss.path = self.folder / f"index-{self.applied}.faiss"
        if not self.faiss.path.exists():
            self.faiss.save()
        for path in self.folder.iterdir():
            if (m := _FILE.fullmatch(path.name)) and int(m.group(1)) != self.applied:
                path.unlink(missing_ok=True)
