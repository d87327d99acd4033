"""Catalog-wide operations the command line (and scripts) run: distributed ingestion and
learning the catalog's whitening. Each builds its parts with `tongkuan.engine.build`."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from tongkuan.adapt.whitening import META_KEY, Neighbours, learn_from_catalog
from tongkuan.catalog.sqlite import SqliteCatalog
from tongkuan.catalog.store import Catalog
from tongkuan.config import Settings
from tongkuan.domain.spaces import ModelSpace, SearchSpace
from tongkuan.engine.build import build_ingester, open_catalog, open_index, open_model, stored_model, with_model
from tongkuan.engine.engine import Engine
from tongkuan.errors import ConfigError
from tongkuan.ingest.ingester import IngestReport
from tongkuan.ingest.readers import SourceRecord
from tongkuan.migrate import MigrationReport, migrate_catalog
from tongkuan.vision.whitening import Whitening


def ingest_on_ray(settings: Settings, records: Iterable[SourceRecord], address: str, actors: int = 2) -> IngestReport:
    """Ingest on the Ray cluster at `address` ("local": one on this machine, on loopback),
    then bring the vector index up to date with what the workers wrote."""
    from tongkuan.ingest.distributed import ingest_with_ray  # ray: only for distributed ingestion

    if not settings.catalog_url:
        raise ConfigError("distributed ingestion writes to a shared catalog: set TONGKUAN_CATALOG_URL")
    settings = with_model(settings)  # every worker opens the same model
    local: dict[str, Any] = {"num_cpus": os.cpu_count(), "_node_ip_address": "127.0.0.1", "include_dashboard": False}
    report = ingest_with_ray(
        partial(build_ingester, settings), records, address, actors, local if address == "local" else None
    )
    Engine(settings).close()  # replays what was written into the vector index
    return report


def build_index(settings: Settings, catalog: Catalog, model_name: str, space: SearchSpace | None = None) -> int:
    """Bring the vector index of `space` (default: the catalog's own) fully up to date and
    save it, so a (re)started service opens it at once; return how many pictures it holds."""
    index = open_index(settings, catalog, model_name, space)
    try:
        index.finish_rebuild()
        index.save()
        return index.count()
    finally:
        index.close()


@dataclass(frozen=True)
class WhiteningReport:
    """What `whiten_catalog` did: the space searches now run in (None: left as it was) and
    how many pictures its index holds."""

    space: SearchSpace | None
    model_dim: int
    pictures: int


def whiten_catalog(
    settings: Settings,
    dims: int | None = None,
    shrinkage: float | None = None,
    remove: bool = False,
    only_if_new: bool = False,
    neighbours: Neighbours = "auto",
) -> WhiteningReport:
    """Learn the catalog's whitening (with `remove`: forget it), store it in the catalog and
    build the vector index for its space (`neighbours`: see `learn_from_catalog`); with
    `only_if_new`, leave a catalog that already has one as it is. Raises `CannotLearn` when
    the catalog has too little to learn from."""
    model = stored_model(settings)
    if model is None:
        raise ConfigError(f"{settings.data_dir} holds no catalog yet: ingest products first")
    spec = open_model(settings, model)
    catalog = open_catalog(settings, model, spec.dim)
    try:
        if only_if_new and catalog.learned(META_KEY) is not None:
            return WhiteningReport(None, spec.dim, 0)
        space: SearchSpace = ModelSpace(spec.dim)
        if remove:
            catalog.set_learned(META_KEY, None)
        else:
            learned: Whitening = learn_from_catalog(catalog, dims, shrinkage, neighbours=neighbours)
            catalog.set_learned(META_KEY, learned.to_text())
            space = learned
        return WhiteningReport(space, spec.dim, build_index(settings, catalog, spec.name, space))
    finally:
        catalog.close()


def migrate_to_servers(settings: Settings, image_dir: Path | None) -> tuple[MigrationReport, str | None]:
    """Move the embedded catalog in `settings.data_dir` to the PostgreSQL catalog at
    `settings.catalog_url` without re-embedding (rerun to resume); with `settings.vectors_url`,
    fill the Milvus collection of its search space. Returns the report and the collection's name."""
    from tongkuan.catalog.postgres import PostgresCatalog  # psycopg: only for the server catalog

    source, catalog_url, vectors_url = settings.data_dir, settings.catalog_url, settings.vectors_url
    if not catalog_url:
        raise ConfigError("moving a catalog needs the PostgreSQL URL of its target")
    stored = SqliteCatalog.stored_spec(source / "catalog.db")
    if stored is None:
        raise ConfigError(f"{source} holds no catalog (catalog.db)")
    model, dim = stored
    origin = SqliteCatalog(source / "catalog.db", model, dim)
    try:
        target = PostgresCatalog(catalog_url, model, dim, timeout_s=settings.backend_timeout_s)
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
