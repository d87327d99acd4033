"""What the model workflows work on, opened on demand.

The workflows never read settings: they ask a `Parts` for the catalog, the model, its
pipeline, the vector index and the catalog's pictures, and `tongkuan.engine.build.Builder`
opens each from the settings, as it does for the engine. A test can hand them any other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from tongkuan.catalog.store import Catalog
from tongkuan.domain.spaces import SearchSpace
from tongkuan.index.base import VectorIndex
from tongkuan.models.images import ImageSource
from tongkuan.vision.encoder import ModelSpec
from tongkuan.vision.pipeline import Vision


class Parts(Protocol):
    """Opens the parts of one configured catalog; the caller closes what it opens."""

    @property
    def data_dir(self) -> Path:
        """The data directory: model cache, work folders of tuning and quantizing."""

    @property
    def threads(self) -> int:
        """Threads of one inference."""

    def stored_spec(self) -> tuple[str, int] | None:
        """The model the catalog searches with and its dimension; None for a new catalog."""

    def model(self, name: str) -> ModelSpec:
        """A model's description, unpacked from the catalog where it is stored there."""

    def vision(self, spec: ModelSpec) -> Vision:
        """Detection, classification and embedding with the model."""

    def catalog(self, model: str, dim: int) -> Catalog:
        """The catalog, opened for the model's vectors."""

    def index(self, catalog: Catalog, model_name: str, space: SearchSpace | None = None) -> VectorIndex:
        """The vector index of `space` (default: the catalog's own) over the catalog."""

    def images(self, cache: Path) -> ImageSource:
        """The catalog pictures' pixels; pictures held at URLs are fetched once into `cache`."""
