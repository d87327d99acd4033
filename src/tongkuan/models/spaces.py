"""`tongkuan whiten`: the space a catalog searches in (the model's own, or a whitening
learned from the catalog), and the vector index built for it, so a (re)started service
opens it at once."""

from __future__ import annotations

from dataclasses import dataclass

from tongkuan.adapt.whitening import META_KEY, Neighbours, learn_from_catalog
from tongkuan.catalog.store import Catalog
from tongkuan.domain.spaces import ModelSpace, SearchSpace
from tongkuan.errors import ConfigError
from tongkuan.models.parts import Parts
from tongkuan.vision.whitening import Whitening


def build_index(parts: Parts, catalog: Catalog, model_name: str, space: SearchSpace | None = None) -> int:
    """Bring the vector index of `space` (default: the catalog's own) fully up to date and
    save it, so a (re)started service opens it at once; return how many pictures it holds."""
    index = parts.index(catalog, model_name, space)
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
    parts: Parts,
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
    stored = parts.stored_spec()
    if stored is None:
        raise ConfigError(f"{parts.data_dir} holds no catalog yet: ingest products first")
    spec = parts.model(stored[0])
    catalog = parts.catalog(stored[0], spec.dim)
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
        return WhiteningReport(space, spec.dim, build_index(parts, catalog, spec.name, space))
    finally:
        catalog.close()
