"""`tongkuan tune`: fine-tune the catalog's model on the catalog itself, then switch to it.

1. Every picture of the catalog becomes a training example, grouped by product; a group key
   in a product's `customContent` (`productGroup` or `sameAs`) ties listings of one SKU
   together; single-picture products are grouped by the catalog itself (pseudo-groups), and
   augmented views imitate shoppers' photos (`tongkuan.adapt.training`). Pictures held at
   URLs are fetched once into `DATA_DIR/tune/pictures`.
2. The tuned model (same architecture, so the same query latency) is exported to ONNX and
   stored in the catalog, where every replica finds it (`tongkuan.adapt.models`).
3. The catalog is re-embedded with it into staged vectors while the old model keeps
   serving; pictures added meanwhile are embedded before the switch, which is one catalog
   transaction (`ModelVersions.switch_model`), so a restart or `kill -9` at any point
   leaves the old model or the new one, never a mix. A rerun resumes: training from its
   checkpoint, re-embedding from the pictures not staged yet.
4. The whitening is learned again in the new space and the vector index built for it, so a
   (re)started service searches with the tuned model at once. `--undo` switches back the
   same way.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image
from tqdm import tqdm

from tongkuan.adapt.models import is_tuned, store_model, tuned_from
from tongkuan.catalog.store import Catalog
from tongkuan.config import Settings
from tongkuan.domain.categories import CATEGORY_POSITION
from tongkuan.domain.products import StagedPicture
from tongkuan.engine.build import open_catalog, open_fetcher, open_images, open_model, open_vision
from tongkuan.engine.services import build_index, whiten_catalog
from tongkuan.errors import CannotLearn, ConfigError, ImageError, TongkuanError
from tongkuan.images.decode import content_hash, decode_image
from tongkuan.images.fetch import Fetcher
from tongkuan.images.store import ImageStore
from tongkuan.vision.encoder import ModelSpec, background_inference
from tongkuan.vision.pipeline import Vision

if TYPE_CHECKING:
    from tongkuan.adapt.training import Example, TuneResult

logger = logging.getLogger(__name__)

GROUP_KEYS = ("productGroup", "sameAs")  # customContent fields that tie listings of one SKU together
_PAGE = 500
_EMBED_BATCH = 32


@dataclass(frozen=True)
class TuneOptions:
    """How long and how to train (see `tongkuan.adapt.training.TuneSettings`)."""

    epochs: int = 6
    seed: int = 0
    threads: int | None = None
    min_products: int = 20
    # switch only to a model that finds the held-back products at least as well as the one in use
    require_improvement: bool = True


@dataclass(frozen=True)
class TuneReport:
    """What `tune_catalog` did."""

    model: str | None  # the tuned model the catalog now searches with (None: not switched)
    base: str
    pictures: int
    groups: int
    held_back_before: float
    held_back_after: float
    best_epoch: int
    train_seconds: float
    embed_seconds: float
    index_pictures: int
    whitened: bool
    verified: bool = True  # whether the held-back products had several pictures to check on
    # what retrieval was checked on: "photos" (held-back products' pictures), "twins" (held-back
    # listings' near-duplicates) or "views" (a picture's augmented view: not a check)
    held_back_metric: str = "photos"
    # the held-back pictures' category top-1: the shipped classifier's, the tuned head's (-1: no head)
    category_before: float = -1.0
    category_after: float = -1.0


class PictureSource:
    """The pixels of catalog pictures: from the picture store, or fetched once from their URLs
    into a cache (training reads each picture several times, re-embedding once more)."""

    def __init__(self, images: ImageStore, fetcher: Fetcher, cache: Path, max_pixels: int) -> None:
        self.images = images
        self.fetcher = fetcher
        self.cache = cache
        self.max_pixels = max_pixels
        cache.mkdir(parents=True, exist_ok=True)

    def data(self, location: str, digest: str) -> bytes:
        """The picture's bytes; a URL whose picture changed since ingestion is used as it is now."""
        if not location.startswith(("http://", "https://")):
            return self.images.path(location).read_bytes()
        cached = self.cache / digest
        if cached.exists():
            return cached.read_bytes()
        data = self.fetcher.fetch(location)
        if content_hash(data) != digest:
            logger.warning("the picture at %s changed since it was ingested", location)
        tmp = cached.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(cached)
        return data

    def image(self, location: str, digest: str) -> Image.Image:
        return decode_image(self.data(location, digest), self.max_pixels)


def base_model(spec: ModelSpec, model: str) -> str:
    """The shipped model a model was tuned from (itself, for a shipped model)."""
    return (tuned_from(spec.path.with_name("model.json")) or model) if is_tuned(model) else model


def _examples(catalog: Catalog, source: PictureSource) -> list[Example]:
    """Every picture of the catalog as a training example: its product, its group key, the
    category its record gives."""
    from tongkuan.adapt.training import Example

    def loader(location: str, digest: str) -> Callable[[], Image.Image]:
        return lambda: source.image(location, digest)

    examples: list[Example] = []
    after: str | None = None
    while page := catalog.products(after, _PAGE):
        after = page[-1].item_id
        for product in page:
            group = next((product.extra[k] for k in GROUP_KEYS if product.extra.get(k)), None)
            # the record's own category teaches the category head; a predicted one would
            # only teach the model its own guesses
            given = product.category is not None and not product.category_predicted
            category = CATEGORY_POSITION[product.category] if given and product.category is not None else None
            for picture in catalog.images_of(product.item_id):
                name = f"{picture.vector_id}:{picture.content_hash}"
                load = loader(picture.location, picture.content_hash)
                examples.append(Example(product.item_id, load, group, name, category))
    return examples


def stage_all(
    catalog: Catalog, model: str, vision: Vision, source: PictureSource, progress: Callable[[int], object] | None = None
) -> None:
    """Embed every picture that has no staged vector of `model` yet. A picture that cannot be
    read any more stops the run with the reason."""
    while batch := catalog.unstaged(model, _EMBED_BATCH * 8):
        for start in range(0, len(batch), _EMBED_BATCH):
            chunk = batch[start : start + _EMBED_BATCH]
            images = [_pixels(source, picture) for picture in chunk]
            with background_inference():  # a service in the same process searches first
                described = vision.describe(images, crop=True)  # as ingestion embeds
            catalog.stage(
                model, vision.dim, [(p.vector_id, d.embedding) for p, d in zip(chunk, described, strict=True)]
            )
            if progress is not None:
                progress(len(chunk))


def _pixels(source: PictureSource, picture: StagedPicture) -> Image.Image:
    try:
        return source.image(picture.location, picture.content_hash)
    except ImageError as exc:
        raise TongkuanError(f"picture {picture.location} cannot be read to embed it again: {exc}") from exc


def switch_to(settings: Settings, catalog: Catalog, model: str, spec: ModelSpec, source: PictureSource) -> float:
    """Stage every picture's vector of `model`, then switch the catalog to it in one
    transaction (pictures added meanwhile are embedded first). Returns the seconds taken."""
    started = time.perf_counter()
    vision = open_vision(settings, spec)
    _, pictures = catalog.count()
    with tqdm(total=pictures, desc="embedding", unit="picture") as bar:
        while True:
            stage_all(catalog, model, vision, source, bar.update)
            if catalog.switch_model(model, spec.dim):
                break
    return time.perf_counter() - started


def keep_model(settings: Settings, catalog: Catalog, candidate: Path) -> tuple[str, ModelSpec]:
    """Store the model in the `candidate` folder in the catalog and move it into this data
    directory's model cache under its name; returns the name and the model."""
    name = store_model(catalog, candidate)
    folder = Path(settings.data_dir) / "models" / name
    if not (folder / "model.json").exists():
        shutil.rmtree(folder, ignore_errors=True)
        shutil.move(str(candidate), folder)
    return name, ModelSpec.from_json(folder / "model.json")


def after_switch(settings: Settings, model: str) -> tuple[bool, int]:
    """Learn the whitening in the new model's space (where the catalog has enough products
    with several pictures, or near-duplicate listings) and build the vector index, so a
    restart is quick."""
    try:
        return True, whiten_catalog(settings).pictures
    except CannotLearn as exc:
        logger.info("no whitening in the new space: %s", exc)
    spec = open_model(settings, model)
    catalog = open_catalog(settings, model, spec.dim)
    try:
        return False, build_index(settings, catalog, spec.name)
    finally:
        catalog.close()


def open_current(settings: Settings) -> tuple[str, ModelSpec, Catalog]:
    from tongkuan.engine.build import stored_spec

    stored = stored_spec(settings)
    if stored is None:
        raise ConfigError(f"{settings.data_dir} holds no catalog yet: ingest products first")
    model = stored[0]
    spec = open_model(settings, model)
    return model, spec, open_catalog(settings, model, spec.dim)


# category top-1 the tuned model must gain on held-back pictures to switch on it alone (a
# few hundred held-back pictures: smaller gains are within their noise)
CATEGORY_GAIN = 0.02


def worth_switching(result: TuneResult, verified: bool) -> bool:
    """Whether the tuned model is measurably better on the held-back products.

    Where products hold several pictures, retrieval decides: the tuned model must find the
    held-back products' other pictures at least as well. Where single-picture listings are
    mostly listed again, their groups of near-duplicates stand in for products: the tuned
    model must find each held-back listing's near-duplicates at least as well (a model that
    pushes listings of one product apart fails this). With one picture per product and no
    near-duplicates there is nothing to check retrieval on (a picture's augmented view
    finding it again is passed by a model that pushes listings of one product apart:
    listings R@1 0.537 -> 0.439 with such a check), so only categories can decide: the
    tuned model (its category head's prior fused with the vote of its nearest catalog
    pictures, as search answers) must predict the held-back pictures' categories better
    than the model in use.
    """
    if verified:
        return result.improved
    has_head = result.held_back_category_after >= 0  # best epoch chosen on categories: `improved` says one beat it
    gain = result.held_back_category_after - result.held_back_category_before
    return has_head and result.improved and gain >= CATEGORY_GAIN


def tune_catalog(settings: Settings, options: TuneOptions = TuneOptions(), progress: bool = True) -> TuneReport:
    """Tune the catalog's model on the catalog and switch to it when it finds the held-back
    products better than the model in use; raises `CannotLearn` where the catalog is too small."""
    from tongkuan.adapt.export import export_tuned_model
    from tongkuan.adapt.training import TuneSettings, tune

    current, spec, catalog = open_current(settings)
    work = Path(settings.data_dir) / "tune"
    fetcher = open_fetcher(settings)
    try:
        source = PictureSource(open_images(settings), fetcher, work / "pictures", settings.max_pixels)
        base = base_model(spec, current)
        examples = _examples(catalog, source)
        tune_settings = TuneSettings(
            model=base, epochs=options.epochs, seed=options.seed, threads=options.threads,
            min_products=options.min_products,
        )  # fmt: skip
        started = time.perf_counter()
        result = tune(examples, tune_settings, checkpoint=work / "checkpoint.pt", progress=progress)
        train_seconds = time.perf_counter() - started
        report = TuneReport(
            model=None, base=base, pictures=result.pictures, groups=result.groups,
            held_back_before=result.held_back_before, held_back_after=result.held_back_after,
            best_epoch=result.best_epoch, train_seconds=train_seconds, embed_seconds=0.0, index_pictures=0,
            whitened=False, category_before=result.held_back_category_before,
            category_after=result.held_back_category_after,
        )  # fmt: skip
        report = replace(report, verified=result.held_back_metric != "views", held_back_metric=result.held_back_metric)
        if options.require_improvement and not worth_switching(result, report.verified):
            return report
        candidate = work / "candidate"
        shutil.rmtree(candidate, ignore_errors=True)
        export_tuned_model(result.model, candidate, "candidate")
        described = json.loads((candidate / "model.json").read_text())
        described.pop("name", None)  # named by the folder it is unpacked into: its digest
        (candidate / "model.json").write_text(json.dumps(described, indent=2))
        name, new_spec = keep_model(settings, catalog, candidate)
        embed_seconds = switch_to(settings, catalog, name, new_spec, source)
    finally:
        catalog.close()
        fetcher.close()
    whitened, indexed = after_switch(settings, name)
    shutil.rmtree(work, ignore_errors=True)  # done: the next tune starts afresh
    return replace(report, model=name, embed_seconds=embed_seconds, index_pictures=indexed, whitened=whitened)


def switch_catalog(settings: Settings, model: str) -> TuneReport:
    """Switch the catalog to `model` (shipped, a model.json, or tuned and stored in it): embed
    the pictures with no staged vector of it, swap in one transaction, whiten again and build
    the index. `--undo` is this with the model used before the last switch."""
    _, _, catalog = open_current(settings)
    fetcher = open_fetcher(settings)
    try:
        spec = open_model(settings, model)
        source = PictureSource(
            open_images(settings), fetcher, Path(settings.data_dir) / "tune" / "pictures", settings.max_pixels
        )
        embed_seconds = switch_to(settings, catalog, model, spec, source)
    finally:
        catalog.close()
        fetcher.close()
    whitened, indexed = after_switch(settings, model)
    return TuneReport(
        model=model, base=base_model(spec, model), pictures=0, groups=0, held_back_before=0.0, held_back_after=0.0,
        best_epoch=0, train_seconds=0.0, embed_seconds=embed_seconds, index_pictures=indexed, whitened=whitened,
    )  # fmt: skip


def undo_tuning(settings: Settings) -> TuneReport:
    """Switch the catalog back to the model it used before its last switch (re-embedding only
    the pictures added since)."""
    current, _, catalog = open_current(settings)
    try:
        previous = catalog.previous_model()
    finally:
        catalog.close()
    if previous is None or previous[0] == current:
        raise ConfigError("the catalog has not switched models: nothing to undo")
    return switch_catalog(settings, previous[0])
