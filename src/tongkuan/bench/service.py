"""Steps of the service reached alone, or varied, by the component benchmarks: what they
touch (a private step, a module's import, where the index keeps its files) can change
behind them while their names and behaviour stay put."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

from tongkuan.adapt.whitening import META_KEY, search_space
from tongkuan.catalog.store import LearnedMetadata
from tongkuan.domain.models import DEFAULT_MODEL
from tongkuan.engine.build import index_folder
from tongkuan.index.base import VectorIndex
from tongkuan.ingest import ingester
from tongkuan.models.library import library_spec
from tongkuan.search.query import SearchQuery, SearchResults
from tongkuan.search.searcher import Searcher
from tongkuan.search.timing import StageClock
from tongkuan.vision.encoder import ModelSpec, OnnxEncoder
from tongkuan.vision.pipeline import Description
from tongkuan.vision.registry import resolve_model
from tongkuan.vision.whitening import Whitening


def model_spec(model: str, data_dir: Path) -> ModelSpec:
    """A model as the service opens it by name: shipped (exported into `data_dir` on first
    use), imported or pulled into `data_dir`'s library, or the path of a model.json."""
    return library_spec(data_dir, model) or resolve_model(model, data_dir)


def subject_finder(spec: ModelSpec, data_dir: Path) -> OnnxEncoder | None:
    """The shipped model that finds a model's subjects where it has no feature map of its own,
    as the service does (None: the model finds its own)."""
    if spec.feature_map_output is not None:
        return None
    return OnnxEncoder(resolve_model(DEFAULT_MODEL, data_dir))


@contextmanager
def unmarked_ingestion() -> Iterator[None]:
    """While inside, ingestion's inference is not marked as background work, as no inference
    was before searches went first: a search then waits for a whole batch."""
    with mock.patch.object(ingester, "background_inference", contextlib.nullcontext):
        yield


def search_after_vision(
    searcher: Searcher, index: VectorIndex, described: Description, limit: int = 20
) -> SearchResults:
    """The search step after vision (index search, hydration, product scores) for a picture
    already described, as a replica runs it: under its searcher's lock, the index brought up
    to the catalog's change log first."""
    with searcher.lock:
        index.sync()
        with searcher.catalog.snapshot():
            return searcher._search(described, SearchQuery(limit=limit), StageClock())


def store_whitening(catalog: LearnedMetadata, whitening: Whitening | None) -> None:
    """Keep `whitening` as the catalog's learned search space, as `tongkuan whiten` does once
    it has learned one (None: search in the model's own space)."""
    catalog.set_learned(META_KEY, None if whitening is None else whitening.to_text())


def index_files(data_dir: Path, catalog: LearnedMetadata) -> list[Path]:
    """The files of the embedded index the service keeps in `data_dir` for the catalog's
    model and search space."""
    return sorted(index_folder(data_dir, catalog.model, search_space(catalog)).rglob("index-*.faiss"))
