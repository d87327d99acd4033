"""Switching a catalog's model: the one workflow that `tongkuan tune`, `tongkuan quantize`,
a switch to another model and `--undo` all go through.

1. Every picture of the catalog is embedded with the new model into staged vectors while
   the old model keeps serving (a rerun resumes from the pictures not staged yet).
2. The switch is one catalog transaction (`ModelVersions.switch_model`); pictures added
   meanwhile are embedded first, so a restart or `kill -9` at any point leaves the old
   model or the new one, never a mix. A running service follows within seconds.
3. The categories the old model predicted (products whose records name none) are predicted
   again by the new one, from the pictures it has just embedded; the old model's are kept so
   that switching back restores them without another pass.
4. The whitening is learned again in the new space and the vector index built for it, so a
   (re)started service searches with the new model at once.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from tqdm import tqdm

from tongkuan.catalog.store import Catalog
from tongkuan.domain.categories import CATEGORIES, Category
from tongkuan.domain.models import is_tuned
from tongkuan.domain.products import StagedImage
from tongkuan.errors import CannotLearn, ConfigError, ImageError, TongkuanError
from tongkuan.models.images import ImageSource
from tongkuan.models.parts import Parts
from tongkuan.models.spaces import build_index, whiten_catalog
from tongkuan.models.stored import store_model, tuned_from
from tongkuan.vision.encoder import ModelSpec, background_inference
from tongkuan.vision.pipeline import Vision

logger = logging.getLogger(__name__)

_EMBED_BATCH = 32


@dataclass(frozen=True)
class SwitchReport:
    """What a switch did: the model the catalog now searches with, the shipped model it comes
    from, how long re-embedding took, how many pictures the new index holds and whether a
    whitening was learned in the new space."""

    model: str
    base: str
    embed_seconds: float
    index_pictures: int
    whitened: bool


def base_model(spec: ModelSpec, model: str) -> str:
    """The shipped model a model was tuned from (itself, for a shipped model)."""
    return (tuned_from(spec.description_file) or model) if is_tuned(model) else model


def open_current(parts: Parts) -> tuple[str, ModelSpec, Catalog]:
    """The catalog's model, its description and the catalog; raises `ConfigError` for a data
    directory that holds no catalog yet."""
    stored = parts.stored_spec()
    if stored is None:
        raise ConfigError(f"{parts.data_dir} holds no catalog yet: ingest products first")
    model = stored[0]
    spec = parts.model(model)
    return model, spec, parts.catalog(model, spec.dim)


Priors = dict[int, NDArray[np.float32]]
"""Category priors of pictures, by vector id, as the model being switched to sees them."""


def stage_all(
    catalog: Catalog,
    model: str,
    vision: Vision,
    source: ImageSource,
    progress: Callable[[int], object] | None = None,
    priors: Priors | None = None,
) -> None:
    """Embed every picture that has no staged vector of `model` yet (keeping each one's
    category prior in `priors` when given). A picture that cannot be read any more stops the
    run with the reason."""
    size = vision.batch(_EMBED_BATCH)
    while batch := catalog.unstaged(model, size * 8):
        for start in range(0, len(batch), size):
            chunk = batch[start : start + size]
            images = [_pixels(source, picture) for picture in chunk]
            with background_inference():  # a service in the same process searches first
                described = vision.describe(images, crop=True)  # as ingestion embeds
            catalog.stage(
                model, vision.dim, [(p.vector_id, d.embedding) for p, d in zip(chunk, described, strict=True)]
            )
            if priors is not None:
                priors.update((p.vector_id, d.prior) for p, d in zip(chunk, described, strict=True))
            if progress is not None:
                progress(len(chunk))


def _pixels(source: ImageSource, picture: StagedImage) -> Image.Image:
    try:
        return source.image(picture.location, picture.content_hash)
    except ImageError as exc:
        raise TongkuanError(f"picture {picture.location} cannot be read to embed it again: {exc}") from exc


def stage_and_switch(parts: Parts, catalog: Catalog, model: str, spec: ModelSpec, source: ImageSource) -> float:
    """Stage every picture's vector of `model`, then switch the catalog to it in one
    transaction (pictures added meanwhile are embedded first). Returns the seconds taken."""
    started = time.perf_counter()
    vision = parts.vision(spec)
    before, _ = catalog.current_model()
    _, pictures = catalog.count()
    priors: Priors = {}
    with tqdm(total=pictures, desc="embedding", unit="picture") as bar:
        while True:
            stage_all(catalog, model, vision, source, bar.update, priors)
            if catalog.switch_model(model, spec.dim):
                break
    if before != model:
        predict_categories_again(catalog, before, model, priors)
    return time.perf_counter() - started


def _categories_key(model: str) -> str:
    return f"predicted-categories/{model}"


def predict_categories_again(catalog: Catalog, before: str, model: str, priors: Priors) -> int:
    """Give each product whose category was predicted (its record names none) the category
    `model` predicts: the mean prior of its pictures embedded in this switch, or, for a product
    none of whose pictures needed embedding (a switch back), what `model` predicted when the
    catalog last used it. The categories `before` predicted are kept for a switch back.
    Returns how many products changed category."""
    kept: dict[str, int] = {}
    earlier: dict[str, int] = json.loads(catalog.learned(_categories_key(model)) or "{}")
    changed: list[tuple[str, Category]] = []
    after: str | None = None
    while page := catalog.products(after=after, limit=500):
        after = page[-1].item_id
        for product in page:
            if not product.category_predicted or product.category is None:
                continue
            kept[product.item_id] = int(product.category)
            images = catalog.images_of(product.item_id)
            mine = [priors[image.vector_id] for image in images if image.vector_id in priors]
            if mine:
                category = CATEGORIES[int(np.argmax(np.mean(mine, axis=0)))]
            elif product.item_id in earlier:
                category = Category(earlier[product.item_id])
            else:
                continue
            if category != product.category:
                changed.append((product.item_id, category))
    catalog.set_learned(_categories_key(before), json.dumps(kept, separators=(",", ":")))
    for item_id, category in changed:
        catalog.update(item_id, lambda product, c=category: replace(product, category=c))  # type: ignore[misc]
    if changed:
        logger.info("%d products' predicted categories changed with the model", len(changed))
    return len(changed)


def keep_model(parts: Parts, catalog: Catalog, candidate: Path) -> tuple[str, ModelSpec]:
    """Store the model in the `candidate` folder in the catalog and move it into this data
    directory's model cache under its name; returns the name and the model."""
    name = store_model(catalog, candidate)
    folder = parts.data_dir / "models" / name
    if not (folder / "model.json").exists():
        shutil.rmtree(folder, ignore_errors=True)
        shutil.move(str(candidate), folder)
    return name, ModelSpec.from_json(folder / "model.json")


def after_switch(parts: Parts, model: str) -> tuple[bool, int]:
    """Learn the whitening in the new model's space (where the catalog has enough products
    with several pictures, or near-duplicate listings) and build the vector index, so a
    restart is quick. Returns whether a whitening was learned and the pictures indexed."""
    try:
        return True, whiten_catalog(parts).pictures
    except CannotLearn as exc:
        logger.info("no whitening in the new space: %s", exc)
    spec = parts.model(model)
    catalog = parts.catalog(model, spec.dim)
    try:
        return False, build_index(parts, catalog, spec.name)
    finally:
        catalog.close()


def switch(parts: Parts, catalog: Catalog, model: str, spec: ModelSpec, source: ImageSource) -> SwitchReport:
    """The whole switch of an open catalog to `model`: stage, switch, whiten again, index.
    Takes the catalog over and closes it (the whitening and the index open their own)."""
    try:
        embed_seconds = stage_and_switch(parts, catalog, model, spec, source)
    finally:
        catalog.close()
    whitened, indexed = after_switch(parts, model)
    return SwitchReport(model, base_model(spec, model), embed_seconds, indexed, whitened)


def switch_catalog(parts: Parts, model: str) -> SwitchReport:
    """Switch the catalog to `model` (shipped, a model.json, or tuned and stored in it): embed
    the pictures with no staged vector of it, swap in one transaction, whiten again and build
    the index."""
    _, _, catalog = open_current(parts)
    owned = True  # until the switch takes the catalog over
    try:
        spec = parts.model(model)
        with parts.images(parts.data_dir / "tune" / "pictures") as source:
            owned = False
            return switch(parts, catalog, model, spec, source)
    finally:
        if owned:
            catalog.close()


def undo_switch(parts: Parts) -> SwitchReport:
    """Switch the catalog back to the model it used before its last switch (re-embedding only
    the pictures added since)."""
    current, _, catalog = open_current(parts)
    try:
        previous = catalog.previous_model()
    finally:
        catalog.close()
    if previous is None or previous[0] == current:
        raise ConfigError("the catalog has not switched models: nothing to undo")
    return switch_catalog(parts, previous[0])
