"""The tuning recipe: every default stated once, the variants a catalog's shape chooses, and
the learning-rate schedule.

What runs is what is declared: `Recipe` holds the measured starting point
(docs/benchmarks.md), `choose` names the variant a catalog gets and returns the recipe that
then runs, and `tongkuan tune --dry-run` prints both. The variants:
- "several pictures" (a retailer's catalog: products hold several photos): the recipe as
  declared;
- "single pictures" (studio shots, listings that are all different): more cached shopper
  views, since they are all it learns from, and the gentler backbone rate;
- "listings" (single-picture listings mostly listed again, as the whitening's own rule
  decides): `LISTINGS`, a fresh view at every step and mutual-neighbour pseudo-groups.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import TypedDict

from tongkuan.domain.categories import PRIOR_WEIGHT
from tongkuan.errors import CannotLearn

MAX_VIEWS = 16
MIN_VIEWS_SINGLE = 3  # one picture per product: at least this many cached views


@dataclass(frozen=True)
class Recipe:
    """How `tune` trains; the defaults are the measured starting point (docs/benchmarks.md)."""

    model: str = "efficientnet-lite0"  # the shipped model tuned (`tongkuan tune`: the catalog's)
    frozen_blocks: int | None = None  # None: the first half
    head_dim: int | None = None  # None: the pooled feature is the embedding
    scale: float = 20.0
    margin: float = 0.1
    lr_backbone: float = 2e-4
    # where products hold one picture (listings, studio shots): grocery listings went 0.537 ->
    # 0.439 R@1 at 2e-4 with 2 views, 0.537 -> 0.554 at 1e-4 with 3 views
    lr_backbone_single: float = 1e-4
    lr_proxies: float = 1e-2
    lr_classifier: float = 1e-2  # the category head (a linear layer: the proxies' rate)
    category_weight: float = 1.0  # the category head's cross-entropy, added to the metric loss
    min_category_pictures: int = 10  # training pictures a category needs to count towards a head
    category_prior_weight: float = PRIOR_WEIGHT  # the service's fusion of prior and vote
    weight_decay: float = 1e-4
    warmup_steps: int = 20  # the backbone's learning rate rises linearly over these first steps
    schedule: str = "cosine"  # "cosine": learning rates decay to 0 over `epochs`; "constant"
    groups_per_batch: int = 8  # P
    views_per_group: int = 4  # K
    epochs: int = 6
    cached_views: int | None = 2  # views per picture (the first one clean); None: fresh every step
    view_budget: int = 8000  # one picture per product: up to this many views cached in all (<= 16 each)
    refresh_views_every: int = 0  # epochs; new shopper views drawn into the cache; 0: never
    p_background: float = 0.3  # share of shopper views pasted onto a background (when given)
    patience: int = 3  # with keep "best": epochs without a better held-back recall before stopping
    keep: str = "best"  # "last": the last epoch unless its held-back recall fell below the frozen
    # model's (then the best); "best": the epoch with the best held-back recall
    holdback: float = 0.15  # share of groups held back for early stopping
    min_products: int = 20  # fewer groups than this: refuse
    pseudo: str | None = "linked"  # pseudo-groups for single-picture products; None: off
    pseudo_k: int = 20  # neighbours (linked, mutual-knn), k-reciprocal's k1
    pseudo_threshold: float = 0.7  # linked's mean cosine between groups, mutual-knn's cosine
    pseudo_threshold_step: float = 0.025  # lowered by this at each re-clustering (the model improves)
    pseudo_threshold_min: float = 0.5
    # open groups this close are left out of each other's softmax; None: off (grocery listings, Lite0:
    # 0.544 R@1 at 0.55 against 0.554 without, within the noise of 296 queries)
    twin_threshold: float | None = None
    # single-picture listings no pseudo-group joined: "drop" leaves them out of the loss (as
    # unsupervised re-identification leaves out the outliers its clustering finds); "keep"
    # makes each a class of its own, which pushes it away from its unrecognised twins but is
    # all a catalog of different single-picture products (studio shots) learns from, and what
    # its category head trains on. Grocery listings (Lite0): 0.554 R@1 keep, 0.568 drop, within
    # the noise of 296 queries
    outliers: str = "keep"
    # "auto": where products have one picture each and most have a near-duplicate among the
    # others, train with `LISTINGS` and hold back and check on whole groups of near-duplicates;
    # "off": train every single-picture catalog with the recipe as given
    listings: str = "auto"
    pseudo_k2: int = 6  # k-reciprocal only
    pseudo_eps: float = 0.6  # k-reciprocal only
    recluster_every: int = 2  # epochs; 0: cluster once, with the frozen model
    seed: int = 0
    threads: int | None = None  # torch CPU threads; None leaves torch's choice
    device: str | None = None  # None: CUDA when available, else CPU
    batch_infer: int = 32

    def check(self) -> None:
        """Raise `CannotLearn` for a recipe out of range."""
        problems = [
            (self.epochs < 1, "epochs must be at least 1"),
            (self.groups_per_batch < 2, "groups_per_batch must be at least 2"),
            (self.views_per_group < 1, "views_per_group must be at least 1"),
            (self.cached_views is not None and self.cached_views < 2, "cached_views must be None or at least 2"),
            (not 0 < self.holdback < 1, "holdback must be between 0 and 1"),
            (self.min_products < 3, "min_products must be at least 3"),
            (self.scale <= 0 or self.margin < 0, "scale must be positive and margin not negative"),
            (self.schedule not in {"cosine", "constant"}, "schedule must be cosine or constant"),
            (self.keep not in {"last", "best"}, "keep must be last or best"),
            (self.refresh_views_every < 0, "refresh_views_every must not be negative"),
            (self.category_weight < 0, "category_weight must not be negative"),
            (self.outliers not in {"drop", "keep"}, "outliers must be drop or keep"),
            (self.listings not in {"auto", "off"}, "listings must be auto or off"),
        ]
        for wrong, reason in problems:
            if wrong:
                raise CannotLearn(reason)

    def looks_for_listings(self, single: bool) -> bool:
        """Whether a catalog of single-picture products (`single`) is checked for listings
        listed again, which takes one pass of the shipped model over every picture."""
        return single and self.listings == "auto" and self.pseudo is not None

    def lines(self) -> list[str]:
        """The recipe as `name = value` lines, in declaration order."""
        return [f"{field.name} = {getattr(self, field.name)!r}" for field in fields(self)]


class RecipeChanges(TypedDict, total=False):
    """What a variant changes of the recipe."""

    cached_views: int | None
    pseudo: str | None
    pseudo_k: int
    pseudo_threshold: float
    recluster_every: int
    outliers: str
    keep: str
    lr_backbone: float


# Single-picture listings mostly listed again: a fresh shopper view at every step (as cheap
# as caching 3 views over 6 epochs), one round of mutual 5-NN pseudo-groups at 0.75, and the
# listings no group joined left out of the loss (likely twins of listings it missed). Grocery
# listings, Lite2, half the classes: R@1 0.564 -> 0.625, and with the whitening learned again
# from near-duplicate pairs 0.645 -> 0.676 (docs/benchmarks.md); cached views with linked
# pseudo-groups re-clustered gave +1.7 (Lite0).
LISTINGS: RecipeChanges = {
    "cached_views": None, "pseudo": "mutual-knn", "pseudo_k": 5, "pseudo_threshold": 0.75, "recluster_every": 0,
    "outliers": "drop", "keep": "last",
}  # fmt: skip


@dataclass(frozen=True)
class CatalogShape:
    """What of a catalog chooses its variant: how many pictures, whether its products hold
    one picture each (by the median), and whether those are mostly listed again (near-
    duplicates of each other, as the whitening's own rule decides; False where not looked at)."""

    pictures: int
    single: bool
    listed_again: bool = False


def choose(recipe: Recipe, shape: CatalogShape) -> tuple[str, Recipe]:
    """The variant a catalog of this shape gets, and the recipe that then runs."""
    gentle = min(recipe.lr_backbone, recipe.lr_backbone_single)
    if shape.listed_again and recipe.looks_for_listings(shape.single):
        return "listings", replace(recipe, **(LISTINGS | {"lr_backbone": gentle}))
    if shape.single and recipe.cached_views is not None:
        # the views are all it learns from
        budget = min(MAX_VIEWS, recipe.view_budget // max(1, shape.pictures))
        views = max(recipe.cached_views, MIN_VIEWS_SINGLE, budget)
        return "single pictures", replace(recipe, cached_views=views, lr_backbone=gentle)
    return "several pictures", recipe


def rate_factor(recipe: Recipe, step: int, total_steps: int) -> float:
    """The share of each learning rate used at `step` (of `total_steps`): a linear warm-up,
    then a cosine decay to 0 (or constant). Adam's first steps move every weight by about the
    full learning rate (sign descent): without a warm-up the first step alone raised the loss
    of a small catalog 1.7-fold."""
    factor = min(1.0, (step + 1) / max(1, recipe.warmup_steps))
    if recipe.schedule == "cosine":
        factor *= 0.5 * (1 + math.cos(math.pi * min(1.0, step / total_steps)))
    return factor
