"""`tongkuan tune`: fine-tune the catalog's model on the catalog itself, then switch to it.

1. Every picture of the catalog becomes a training example, grouped by product; a group key
   in a product's `customContent` (`productGroup` or `sameAs`) ties listings of one SKU
   together; single-picture products are grouped by the catalog itself (pseudo-groups), and
   augmented views imitate shoppers' photos (`tongkuan.adapt.training`, with the recipe of
   `tongkuan.adapt.recipe`). Pictures held at URLs are fetched once into `DATA_DIR/tune/pictures`.
2. The tuned model (same architecture, so the same query latency) is exported to ONNX and
   stored in the catalog, where every replica finds it (`tongkuan.models.stored`).
3. The catalog switches to it (`tongkuan.models.switch`). A rerun resumes: training from
   its checkpoint, re-embedding from the pictures not staged yet. `--undo` switches back.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from tongkuan.adapt.recipe import CatalogShape, Recipe, choose
from tongkuan.catalog.store import Catalog
from tongkuan.domain.categories import CATEGORY_POSITION
from tongkuan.domain.models import is_shipped
from tongkuan.errors import CannotLearn
from tongkuan.models.images import ImageSource
from tongkuan.models.parts import Parts
from tongkuan.models.switch import base_model, keep_model, open_current, switch

if TYPE_CHECKING:
    from tongkuan.adapt.examples import Example
    from tongkuan.adapt.progress import TuneResult

GROUP_KEYS = ("productGroup", "sameAs")  # customContent fields that tie listings of one SKU together
_PAGE = 500
# category top-1 the tuned model must gain on held-back pictures to switch on it alone (a
# few hundred held-back pictures: smaller gains are within their noise)
CATEGORY_GAIN = 0.02
DECLARED = Recipe()  # the recipe as `tongkuan.adapt.recipe` declares it

Decider = Callable[[str, str], tuple[bool, str]]
"""Given the catalog's model and a candidate, whether to switch and why (a check set's rule)."""


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
    variant: str = ""  # the recipe's variant the catalog's shape chose
    decided_by: str = ""  # a check set's verdict, where one decided the switch


@dataclass(frozen=True)
class TuningPlan:
    """What `tongkuan tune` would run, without running it: the catalog's shape, the recipe as
    declared and, for each variant the shape may still get, the recipe that would run. Where
    products hold one picture each, whether they are listings listed again is decided when
    tuning starts, by one pass of the shipped model over every picture."""

    base: str
    pictures: int
    groups: int
    single: bool
    declared: Recipe
    variants: tuple[tuple[str, Recipe], ...]


def _examples(catalog: Catalog, source: ImageSource) -> list[Example]:
    """Every picture of the catalog as a training example: its product, its group key, the
    category its record gives."""
    from tongkuan.adapt.examples import Example

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


def _tunable(base: str) -> None:
    """Raise `CannotLearn` for a catalog whose model is not one tuning can train."""
    if not is_shipped(base):
        raise CannotLearn(
            f"tuning trains the shipped EfficientNet-Lite models, and the catalog searches with {base}: "
            "switch to one (tongkuan models use efficientnet-lite2) to tune it, or keep the imported model "
            "and learn its whitening (tongkuan whiten)"
        )


def plan_tuning(parts: Parts, recipe: Recipe = DECLARED) -> TuningPlan:
    """The recipe `tune_catalog` would run on this catalog (`tongkuan tune --dry-run`)."""
    from tongkuan.adapt.groups import labels_from_products

    current, spec, catalog = open_current(parts)
    try:
        _tunable(base_model(spec, current))
    except CannotLearn:
        catalog.close()
        raise
    try:
        with parts.images(parts.data_dir / "tune" / "pictures") as source:
            examples = _examples(catalog, source)
    finally:
        catalog.close()
    declared = replace(recipe, model=base_model(spec, current))
    known = labels_from_products([e.product for e in examples], [e.group for e in examples])
    sizes = np.bincount(known) if len(known) else np.zeros(1, np.int64)
    single = bool(np.median(sizes) <= 1)
    shapes = [CatalogShape(len(examples), single, listed) for listed in (True, False)]
    shapes = shapes if declared.looks_for_listings(single) else shapes[1:]
    variants = tuple(choose(declared, shape) for shape in shapes)
    groups = int(known.max()) + 1 if len(known) else 0
    return TuningPlan(declared.model, len(examples), groups, single, declared, variants)


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


def tune_catalog(
    parts: Parts,
    recipe: Recipe = DECLARED,
    require_improvement: bool = True,
    progress: bool = True,
    decide: Decider | None = None,
) -> TuneReport:
    """Tune the catalog's model on the catalog with `recipe` (its `model` is the catalog's
    own shipped base) and switch to it when it finds the held-back products better than the
    model in use (always, without `require_improvement`), or, given `decide` (a check set),
    when that says so; raises `CannotLearn` where the catalog is too small."""
    from tongkuan.adapt.export import export_tuned_model
    from tongkuan.adapt.training import tune

    current, spec, catalog = open_current(parts)
    work = parts.data_dir / "tune"
    owned = True  # until the switch takes the catalog over
    try:
        with parts.images(work / "pictures") as source:
            base = base_model(spec, current)
            _tunable(base)
            examples = _examples(catalog, source)
            started = time.perf_counter()
            result = tune(examples, replace(recipe, model=base), checkpoint=work / "checkpoint.pt", progress=progress)
            report = TuneReport(
                model=None, base=base, pictures=result.pictures, groups=result.groups,
                held_back_before=result.held_back_before, held_back_after=result.held_back_after,
                best_epoch=result.best_epoch, train_seconds=time.perf_counter() - started, embed_seconds=0.0,
                index_pictures=0, whitened=False, verified=result.held_back_metric != "views",
                held_back_metric=result.held_back_metric, category_before=result.held_back_category_before,
                category_after=result.held_back_category_after, variant=result.variant,
            )  # fmt: skip
            if decide is None and require_improvement and not worth_switching(result, report.verified):
                return report
            candidate = work / "candidate"
            shutil.rmtree(candidate, ignore_errors=True)
            export_tuned_model(result.model, candidate, "candidate")
            described = json.loads((candidate / "model.json").read_text())
            described.pop("name", None)  # named by the folder it is unpacked into: its digest
            (candidate / "model.json").write_text(json.dumps(described, indent=2))
            name, new_spec = keep_model(parts, catalog, candidate)
            if decide is not None:
                chosen, reason = decide(current, name)
                report = replace(report, decided_by=reason)
                if not chosen:
                    return report  # kept in the catalog: `tongkuan models use` can still switch to it
            owned = False
            switched = switch(parts, catalog, name, new_spec, source)
    finally:
        if owned:
            catalog.close()
    shutil.rmtree(work, ignore_errors=True)  # done: the next tune starts afresh
    return replace(
        report, model=name, embed_seconds=switched.embed_seconds, index_pictures=switched.index_pictures,
        whitened=switched.whitened,
    )  # fmt: skip
