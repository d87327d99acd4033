"""Trying a model on the catalog without switching it: the model's vectors are staged in
the catalog (as `tongkuan models use` and `tune` stage them, so a later switch reuses them),
then a scratch copy of the catalog switches to it, whitening and index included, and
serves the check set's searches while the catalog itself keeps its model."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from tongkuan.config import Settings
from tongkuan.engine import Engine
from tongkuan.engine.build import Builder
from tongkuan.errors import ConfigError
from tongkuan.models.parts import Parts
from tongkuan.models.switch import open_current, stage_all, switch_catalog


@contextmanager
def trial_engine(settings: Settings, model: str, prepare: Callable[[Parts], object] | None = None) -> Iterator[Engine]:
    """An engine searching the catalog as it would after a switch to `model` (and after
    `prepare`, run on the copy: a whitening learned or removed)."""
    if settings.backends.catalog_url:
        raise ConfigError(
            "models are compared on an embedded catalog: evaluate the running catalog's model here, "
            "or try others on a copy (tongkuan backup, then restore into another data directory)"
        )
    parts = Builder(settings)
    current, _, catalog = open_current(parts)
    with closing(catalog), parts.images(Path(settings.data_dir) / "tune" / "pictures") as source:
        if model != current:
            stage_all(catalog, model, parts.vision(parts.model(model)), source)
    scratch = Path(settings.data_dir) / "eval" / f"trial-{model}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        with closing(sqlite3.connect(Path(settings.data_dir) / "catalog.db")) as live:
            with closing(sqlite3.connect(scratch / "catalog.db")) as copy:
                live.backup(copy)  # consistent, while a service writes
        (scratch / "models").symlink_to((Path(settings.data_dir) / "models").resolve(), target_is_directory=True)
        models = settings.models.model_copy(update={"model": None})
        trial = settings.model_copy(update={"data_dir": scratch, "image_dir": settings.images_root, "models": models})
        if model != current:
            switch_catalog(Builder(trial), model)
        if prepare is not None:
            prepare(Builder(trial))
        engine = Engine(trial)
        try:
            yield engine
        finally:
            engine.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
