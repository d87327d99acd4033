"""The composition root: one data directory opened into catalog, index, models and searcher.

The CLI and the HTTP app are two front doors onto the same `Engine`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tongkuan.catalog.sqlite import SqliteCatalog
from tongkuan.catalog.store import Catalog
from tongkuan.config import DEFAULT_MODEL, Settings
from tongkuan.images.fetch import Fetcher, FetchPolicy
from tongkuan.images.store import ImageStore
from tongkuan.index.faiss import limit_threads
from tongkuan.index.store import VectorIndex
from tongkuan.index.sync import IndexSync
from tongkuan.ingest.ingester import Ingester
from tongkuan.ingest.jobs import ImportJobs
from tongkuan.search.searcher import Searcher, SearchOptions
from tongkuan.vision.encoder import OnnxEncoder
from tongkuan.vision.pipeline import Vision
from tongkuan.vision.registry import resolve_model
from tongkuan.vision.whitening import SearchSpace, search_space

logger = logging.getLogger(__name__)


class Engine:
    """Everything a data directory holds, opened for use. Close it to persist the index."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        data_dir = Path(settings.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        model = settings.model or stored_model(settings) or DEFAULT_MODEL
        if model.endswith(".json"):
            model = str(Path(model).resolve())
        spec = resolve_model(model, data_dir)
        self.vision = Vision(OnnxEncoder(spec, threads=settings.threads, slots=settings.inference_slots))
        self.catalog = open_catalog(settings, model, spec.dim)
        self.images = ImageStore(settings.images_root)
        self.fetcher = fetcher_for(settings)
        limit_threads(1)  # ONNX Runtime owns the cores; one faiss query needs no OpenMP team
        space = search_space(self.catalog)
        self.index = open_index(settings, self.catalog, index_folder(data_dir, spec.name, space), space)
        # uploaded imports read pictures from URLs (or this store), never from the server's disk
        self.imports = ImportJobs(data_dir / "imports", lambda: self.ingester(file_root=self.images.root))
        self.searcher = Searcher(
            self.vision,
            self.catalog,
            self.index,
            SearchOptions(
                prior_weight=settings.category_prior_weight,
                neighbours=settings.category_neighbours,
                filter_predicted_category=settings.filter_predicted_category,
                images_per_product=settings.images_per_product,
                find_insets=settings.find_insets,
            ),
        )

    def ingester(self, batch_size: int = 16, file_root: Path | None = None) -> Ingester:
        """An ingester into this catalog; with `file_root`, local pictures must lie inside it."""
        return Ingester(
            self.vision,
            self.catalog,
            self.images,
            self.fetcher,
            self.settings.max_pixels,
            batch_size,
            file_root=file_root,
        )

    def warm_up(self) -> None:
        """Load the model now rather than on the first request."""
        self.vision.encoder.load()

    def close(self) -> None:
        """Stop import jobs, bring the index up to date and persist it, so the next start is fast."""
        self.imports.close()
        with self.searcher.lock:
            self.index.finish_rebuild()
            self.index.save()
        self.index.close()
        self.catalog.close()
        self.fetcher.close()


def fetcher_for(settings: Settings) -> Fetcher:
    """A picture fetcher with the configured limits and address rules."""
    return Fetcher(
        FetchPolicy(
            connect_timeout=settings.fetch_connect_timeout,
            total_timeout=settings.fetch_read_timeout,
            max_bytes=settings.fetch_max_bytes,
            max_redirects=settings.fetch_max_redirects,
            allow_loopback=settings.allow_loopback_fetch,
            allowed_hosts=settings.allowed_hosts,
        )
    )


def stored_model(settings: Settings) -> str | None:
    """The model the configured catalog was built with (None for a new catalog)."""
    if settings.catalog_url:
        from tongkuan.catalog.postgres import PostgresCatalog  # psycopg: only for the server catalog

        return PostgresCatalog.stored_model(settings.catalog_url)
    return SqliteCatalog.stored_model(Path(settings.data_dir) / "catalog.db")


def open_catalog(settings: Settings, model: str, dim: int) -> Catalog:
    """PostgreSQL when `catalog_url` is set, else the embedded SQLite file."""
    if settings.catalog_url:
        from tongkuan.catalog.postgres import PostgresCatalog

        return PostgresCatalog(settings.catalog_url, model, dim, pool_size=settings.catalog_pool_size)
    return SqliteCatalog(Path(settings.data_dir) / "catalog.db", model, dim)


def index_folder(data_dir: Path, model_name: str, space: SearchSpace) -> Path:
    """Where the embedded index of one model and search space keeps its files."""
    return data_dir / "index" / (f"{model_name}-{space.key}" if space.key else model_name)


def open_index(settings: Settings, catalog: Catalog, folder: Path, space: SearchSpace | None = None) -> VectorIndex:
    """Milvus when `vectors_url` is set, else faiss with its cache files in `folder`; either
    holds the catalog's vectors mapped into `space` (default: the model's own)."""
    if settings.vectors_url:
        from tongkuan.index.milvus import MilvusIndex  # pymilvus: only for the server index

        return MilvusIndex(
            catalog,
            settings.vectors_url,
            ef_search=settings.hnsw_ef_search,
            hnsw_m=settings.hnsw_m,
            consistency=settings.milvus_consistency,
            token=settings.milvus_token,
            space=space,
        )
    return IndexSync(catalog, folder, settings.index, settings.hnsw_ef_search, settings.hnsw_m, space)
