"""Builders: the one place that turns settings into the parts (model, catalog, pictures,
fetcher, vector index, ingester). The engine, Ray workers, the command line and the model
workflows (`tongkuan.models`, through `Builder`) all build their parts here, so a setting
means the same wherever it is read.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from tongkuan.adapt.whitening import search_space
from tongkuan.catalog.sqlite import SqliteCatalog
from tongkuan.catalog.store import Catalog
from tongkuan.config import Settings
from tongkuan.domain.models import DEFAULT_MODEL, is_tuned
from tongkuan.domain.spaces import SearchSpace
from tongkuan.errors import ModelNotFound
from tongkuan.images.decode import DecodeBudget
from tongkuan.images.fetch import Fetcher
from tongkuan.images.store import ImageStore
from tongkuan.index.base import VectorIndex
from tongkuan.index.embedded import EmbeddedIndex
from tongkuan.index.faiss import limit_threads
from tongkuan.ingest.ingester import DEFAULT_BATCH_SIZE, Ingester
from tongkuan.ingest.reading import CatalogReading, reads
from tongkuan.models.images import ImageSource
from tongkuan.models.library import library_spec
from tongkuan.models.stored import tuned_from, unpack_model
from tongkuan.vision.encoder import ModelSpec, OnnxEncoder
from tongkuan.vision.pipeline import Vision
from tongkuan.vision.reading import TextReader
from tongkuan.vision.registry import resolve_model
from tongkuan.vision.text import TextEncoder, text_spec


def stored_model(settings: Settings) -> str | None:
    """The model the configured catalog searches with (None for a new catalog)."""
    stored = stored_spec(settings)
    return None if stored is None else stored[0]


def choose_model(settings: Settings) -> str:
    """The model to open: the configured one, else the one the catalog searches with, else
    the default. A catalog tuned from the configured model searches with its tuned version.
    A model.json path is made absolute, so every process reads the same file."""
    stored = stored_model(settings)
    model = settings.models.model or stored or DEFAULT_MODEL
    if stored and is_tuned(stored) and model != stored and not is_tuned(model):
        if tuned_from(open_model(settings, stored).description_file) == model:
            return stored
    return str(Path(model).resolve()) if model.endswith(".json") else model


def with_model(settings: Settings) -> Settings:
    """`settings` with the model chosen once (for workers that must all open the same one)."""
    return settings.changed(model=choose_model(settings))


def stored_spec(settings: Settings) -> tuple[str, int] | None:
    """The model the configured catalog searches with and its vectors' dimension (None: a new catalog)."""
    if settings.backends.catalog_url:
        from tongkuan.catalog.postgres import PostgresCatalog

        return PostgresCatalog.stored_spec(settings.backends.catalog_url, settings.backends.timeout_s)
    return SqliteCatalog.stored_spec(Path(settings.data_dir) / "catalog.db")


def open_model(settings: Settings, model: str) -> ModelSpec:
    """The model's description: a shipped model is exported into the data directory on first
    use, a model tuned on the catalog unpacked from the catalog, where it is stored; an
    imported or pulled one is in the data directory's library."""
    data_dir = Path(settings.data_dir)
    if not is_tuned(model):
        return library_spec(data_dir, model) or resolve_model(model, data_dir)
    folder = data_dir / "models" / model
    if not (folder / "model.json").exists():
        stored = stored_spec(settings)
        if stored is None:
            raise ModelNotFound(f"model {model!r} is stored in a catalog, and {data_dir} holds none")
        catalog = open_catalog(settings, *stored)
        try:
            unpack_model(catalog, model, folder)
        finally:
            catalog.close()
    return ModelSpec.from_json(folder / "model.json")


def open_vision(settings: Settings, spec: ModelSpec) -> Vision:
    """Detection, classification and embedding with the configured threads and inference slots.
    A model with no feature map of its own (any CLIP, SigLIP or DINOv2-class embedder) gets the
    default shipped model to find its subjects and predict the category prior."""
    threads, slots, joined = settings.models.threads, settings.models.inference_slots, settings.models.search_batch
    finder = None
    if spec.feature_map_output is None:
        finder = OnnxEncoder(
            resolve_model(DEFAULT_MODEL, Path(settings.data_dir)), threads=threads, slots=slots, joined=joined
        )
    tower = text_spec(spec.described) if spec.described is not None else None
    text = None if tower is None else TextEncoder(tower, threads=threads)
    return Vision(OnnxEncoder(spec, threads=threads, slots=slots, joined=joined), finder=finder, text=text)


def open_catalog(settings: Settings, model: str, dim: int) -> Catalog:
    """PostgreSQL when `catalog_url` is set, else the embedded SQLite file."""
    if settings.backends.catalog_url:
        from tongkuan.catalog.postgres import PostgresCatalog

        return PostgresCatalog(
            settings.backends.catalog_url,
            model,
            dim,
            pool_size=settings.backends.catalog_pool_size,
            timeout_s=settings.backends.timeout_s,
        )
    return SqliteCatalog(Path(settings.data_dir) / "catalog.db", model, dim)


def open_images(settings: Settings) -> ImageStore:
    """The picture store (catalog pictures and uploads)."""
    return ImageStore(settings.images_root)


def open_fetcher(settings: Settings) -> Fetcher:
    """A picture fetcher with the configured limits and address rules."""
    return Fetcher(settings.fetch.policy())


def index_folder(data_dir: Path, model_name: str, space: SearchSpace) -> Path:
    """Where the embedded index of one model and search space keeps its files."""
    return data_dir / "index" / (f"{model_name}-{space.key}" if space.key else model_name)


def open_index(settings: Settings, catalog: Catalog, model_name: str, space: SearchSpace | None = None) -> VectorIndex:
    """Milvus when `vectors_url` is set, else faiss with its cache files in the data directory;
    either holds the catalog's vectors mapped into `space` (default: the catalog's own, a
    learned whitening where it has one)."""
    space = space or search_space(catalog)
    if settings.backends.vectors_url:
        from tongkuan.index.milvus import MilvusIndex  # pymilvus: only for the server index

        return MilvusIndex(
            catalog,
            settings.backends.vectors_url,
            ef_search=settings.index.hnsw_ef_search,
            hnsw_m=settings.index.hnsw_m,
            consistency=settings.backends.milvus_consistency,
            token=settings.backends.milvus_token,
            space=space,
            timeout_s=settings.backends.timeout_s,
        )
    limit_threads(1)  # ONNX Runtime owns the cores; one faiss query needs no OpenMP team
    folder = index_folder(Path(settings.data_dir), model_name, space)
    index = settings.index
    return EmbeddedIndex(catalog, folder, index.kind, index.hnsw_ef_search, index.hnsw_m, space)


_readers: dict[int, TextReader] = {}
_readers_lock = threading.Lock()


def open_reader(settings: Settings) -> TextReader | None:
    """The text reader (one per process and thread count: its models load once), or None
    where reading is off."""
    if settings.models.read_text == "off":
        return None
    threads = settings.models.threads
    with _readers_lock:
        if threads not in _readers:
            _readers[threads] = TextReader(threads)
        return _readers[threads]


def catalog_reading(settings: Settings, catalog: Catalog) -> CatalogReading | None:
    """What reads the text on the pictures an ingester embeds (None: reading is off)."""
    reader = open_reader(settings)
    return None if reader is None else CatalogReading(reader, settings.models.read_text, catalog.reading_counts())


def query_reader(settings: Settings, catalog: Catalog) -> TextReader | None:
    """The reader of query pictures, where the catalog's pictures are read (`reads`)."""
    mode = settings.models.read_text
    if mode == "off" or (mode == "auto" and not reads(mode, *catalog.reading_counts())):
        return None  # (the counts scan every picture: asked only where they decide)
    return open_reader(settings)


def ingester_over(
    settings: Settings,
    vision: Vision,
    catalog: Catalog,
    images: ImageStore,
    fetcher: Fetcher,
    batch_size: int = DEFAULT_BATCH_SIZE,
    file_root: Path | None = None,
    decode_budget: DecodeBudget | None = None,
    urls_only: bool = False,
) -> Ingester:
    """An ingester over parts already open; with `file_root`, local pictures must lie inside
    it; with `urls_only`, pictures must be http(s) URLs."""
    return Ingester(
        vision,
        catalog,
        images,
        fetcher,
        settings.decode.max_pixels,
        batch_size,
        file_root=file_root,
        decode_budget=decode_budget,
        urls_only=urls_only,
        reading=catalog_reading(settings, catalog),
    )


def build_ingester(settings: Settings, batch_size: int = DEFAULT_BATCH_SIZE) -> Ingester:
    """An ingester over the configured stores, built from settings alone (a Ray worker calls
    this with the driver's settings, the model already chosen by `with_model`)."""
    model = choose_model(settings)
    spec = open_model(settings, model)
    catalog = open_catalog(settings, model, spec.dim)
    return ingester_over(
        settings, open_vision(settings, spec), catalog, open_images(settings), open_fetcher(settings), batch_size
    )


@dataclass(frozen=True)
class Builder:
    """The parts of one configuration, opened on demand: what the model workflows
    (`tongkuan.models.parts.Parts`) work on."""

    settings: Settings

    @property
    def data_dir(self) -> Path:
        return Path(self.settings.data_dir)

    @property
    def threads(self) -> int:
        return self.settings.models.threads

    def stored_spec(self) -> tuple[str, int] | None:
        return stored_spec(self.settings)

    def model(self, name: str) -> ModelSpec:
        return open_model(self.settings, name)

    def vision(self, spec: ModelSpec) -> Vision:
        return open_vision(self.settings, spec)

    def catalog(self, model: str, dim: int) -> Catalog:
        return open_catalog(self.settings, model, dim)

    def index(self, catalog: Catalog, model_name: str, space: SearchSpace | None = None) -> VectorIndex:
        return open_index(self.settings, catalog, model_name, space)

    def images(self, cache: Path) -> ImageSource:
        images, fetcher = open_images(self.settings), open_fetcher(self.settings)
        return ImageSource(images, fetcher, cache, self.settings.decode.max_pixels)
