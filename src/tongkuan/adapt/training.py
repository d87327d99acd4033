"""Fine-tuning the backbone on one catalog's own groups of pictures (`tongkuan tune`'s core).

Frozen ImageNet features are the ceiling of every frozen-feature trick; metric learning on
the catalog's own groups is what moves same-product recall (DESIGN.md, "Adapting the model to
a catalog"). The recipe, from measurements (docs/benchmarks.md) and the literature:
- the shipped EfficientNet-Lite with its front half frozen and all BatchNorm frozen
  (`tongkuan.adapt.network`), trained from the pooled feature (or a linear head);
- a normalized-softmax proxy loss with a CosFace margin (scale 20, margin 0.1): one proxy
  per group, initialised at the group's mean embedding so training starts from the frozen
  model's own geometry;
- AdamW, the backbone at 2e-4 and the proxies at 1e-2, a linear warm-up then cosine decay
  over 8 epochs (grocery retailer catalog, Lite0: 0.537 -> 0.703 R@1 against 0.655 for 1e-4
  with the last epoch kept; bench/tune.py);
- every picture of every product (12 per product instead of all: 0.632);
- batches of P groups × K views (class-balanced), views being augmented shopper photos
  (`tongkuan.adapt.augment`) so a product with one picture still has positives;
- the frozen front computed once per cached view (it is more than half the forward cost):
  2 views (clean + 1 shopper view) where products hold several pictures, as many as
  `view_budget` affords (at most 16) where they hold one; `refresh_views_every` draws new
  views every few epochs at the cost of a front pass each (not worth it on the retailer
  catalog: photos already vary);
- whole groups held back, and early stopping on their recall@1 (on their category top-1
  where products have one picture each and records carry categories); the best state is
  kept (a tie goes to the later epoch), so training never returns a model worse than the frozen
  one on the held-back products. Where a product's photos are near-duplicates of each other
  (grocery: held-back recall 0.96 before tuning) this signal is flat and mostly guards
  against harm;
- pseudo-groups (`tongkuan.adapt.groups`) for single-picture listings, re-clustered with the
  improving model, the threshold lowered a little each round, never joining listings whose
  records give different categories;
- where the records carry categories (at least two with `min_category_pictures` each), a
  category head on the pooled feature trained with class-balanced cross-entropy on the same
  shopper views, whose logits replace ImageNet's mapped ones (`tongkuan.vision.classify`);
- a fixed seed, a checkpoint after every epoch from which an interrupted run resumes.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image
from tqdm import tqdm

from tongkuan.adapt.groups import (
    Labels,
    combine,
    joined,
    labels_from_products,
    mutual_pairs,
    pseudo_groups,
    relabel,
    split_groups,
)
from tongkuan.adapt.network import TunedNet, load_tunable
from tongkuan.adapt.views import ViewCache
from tongkuan.adapt.whitening import PAIR_COSINE, PAIR_NEIGHBOURS, listed_again
from tongkuan.domain.categories import CATEGORIES
from tongkuan.errors import CannotLearn
from tongkuan.vision.classify import fuse, imagenet_projection, neighbour_vote

logger = logging.getLogger(__name__)

CHECKPOINT_VERSION = 2
MAX_DISTRACTORS = 1000
MAX_VIEWS = 16
MIN_VIEWS_SINGLE = 3  # one picture per product: at least this many cached views
VOTERS = 30  # nearest catalog pictures in the category vote, as the service asks
HELD_BACK_SALT = 999_983  # the held-back pictures' query views: never a training draw
# Single-picture listings mostly listed again: a fresh shopper view at every step (as cheap
# as caching 3 views over 6 epochs), one round of mutual 5-NN pseudo-groups at 0.75, and the
# listings no group joined left out of the loss (likely twins of listings it missed). Grocery
# listings, Lite2, half the classes: R@1 0.564 -> 0.625, and with the whitening learned again
# from near-duplicate pairs 0.645 -> 0.676 (docs/benchmarks.md); cached views with linked
# pseudo-groups re-clustered gave +1.7 (Lite0).
LISTINGS_RECIPE: dict[str, Any] = {
    "cached_views": None, "pseudo": "mutual-knn", "pseudo_k": 5, "pseudo_threshold": 0.75, "recluster_every": 0,
    "outliers": "drop", "keep": "last",
}  # fmt: skip
# Held-back listings find their near-duplicates 99.75 % of the time before tuning (grocery
# listings, Lite2): the check is a guard against harm, not a measure of gain, so the tuned
# model may miss this much more of them (one point: a few listings of a few hundred) and
# still count as finding them as well. The recipe above, on all 2,640 grocery listings,
# found them 97.2-98.7 % of the time after each epoch, so that catalog kept its model: the
# check is biased towards the model whose neighbours defined the pairs, and widening it to
# fit the one catalog measured would be no check at all.
TWIN_TOLERANCE = 0.01


@dataclass(frozen=True)
class Example:
    """One catalog picture: its product, an optional group key tying listings of one SKU
    together, how to load its pixels (called once per cached view build), and the position
    in `CATEGORIES` of the category its record gives (None: not given)."""

    product: str
    load: Callable[[], Image.Image]
    group: str | None = None
    name: str = ""  # identifies the picture in the checkpoint's fingerprint
    category: int | None = None


def examples_from_files(
    paths: Sequence[Path],
    products: Sequence[str],
    groups: Sequence[str | None] | None = None,
    categories: Sequence[int | None] | None = None,
) -> list[Example]:
    """Examples for pictures stored as files."""

    def loader(path: Path) -> Callable[[], Image.Image]:
        def load() -> Image.Image:
            with Image.open(path) as image:
                return image.convert("RGB")

        return load

    keys = groups if groups is not None else [None] * len(paths)
    cats = categories if categories is not None else [None] * len(paths)
    return [
        Example(p, loader(path), g, str(path), c) for path, p, g, c in zip(paths, products, keys, cats, strict=True)
    ]


@dataclass(frozen=True)
class TuneSettings:
    """What `tune` does; the defaults are the measured starting point (docs/benchmarks.md)."""

    model: str = "efficientnet-lite0"
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
    category_prior_weight: float = 0.35  # the service's fusion of prior and vote (TONGKUAN_CATEGORY_PRIOR_WEIGHT)
    weight_decay: float = 1e-4
    warmup_steps: int = 20  # the backbone's learning rate rises linearly over these first steps
    schedule: str = "cosine"  # "cosine": learning rates decay to 0 over `epochs`; "constant"
    groups_per_batch: int = 8  # P
    views_per_group: int = 4  # K
    epochs: int = 8
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
    # others (a SKU listed many times, as the whitening's own rule decides), train with
    # `LISTINGS_RECIPE` and hold back and check on whole groups of near-duplicates; "off":
    # train every single-picture catalog with the settings as given
    listings: str = "auto"
    pseudo_k2: int = 6  # k-reciprocal only
    pseudo_eps: float = 0.6  # k-reciprocal only
    recluster_every: int = 2  # epochs; 0: cluster once, with the frozen model
    seed: int = 0
    threads: int | None = None  # torch CPU threads; None leaves torch's choice
    device: str | None = None  # None: CUDA when available, else CPU
    batch_infer: int = 32

    def check(self) -> None:
        """Raise `CannotLearn` for settings out of range."""
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


@dataclass
class EpochStats:
    """One epoch: mean training loss, the loss on a fixed probe of training views after it,
    held-back recall@1 after it, groups trained on, seconds taken, and the category top-1
    (the head's prior fused with the neighbour vote) on the held-back pictures' shopper views
    (-1: no head)."""

    epoch: int
    loss: float
    probe_loss: float
    held_back_r1: float
    groups: int
    seconds: float
    held_back_category: float = -1.0


@dataclass
class TuneResult:
    """A tuned model (its best epoch's weights, eval mode, on the CPU) and how it got there."""

    model: TunedNet
    history: list[EpochStats]
    held_back_before: float
    held_back_after: float
    held_back_metric: str  # "photos": held-back photos among themselves; "views": augmented views
    best_epoch: int  # 0: no epoch beat the frozen model, which is what `model` then holds
    probe_loss_before: float
    pictures: int
    groups: int
    cache_seconds: float
    seconds: float
    resumed_from: int = 0
    # the held-back pictures' category top-1 (prior fused with the neighbour vote) with the
    # shipped model and with the tuned one (-1.0: no head)
    held_back_category_before: float = -1.0
    held_back_category_after: float = -1.0
    step_losses: list[float] = field(default_factory=list)
    labels: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))  # last groups; -1 held back
    settings: TuneSettings | None = None  # as trained: with what the catalog's shape chose

    @property
    def improved(self) -> bool:
        return self.best_epoch > 0


def cosface_loss(
    embeddings: torch.Tensor,
    proxies: torch.Tensor,
    labels: torch.Tensor,
    scale: float,
    margin: float,
    ignored: torch.Tensor | None = None,
    silent: torch.Tensor | None = None,
) -> torch.Tensor:
    """Normalized softmax over cosine similarities to the proxies, `margin` taken off the true
    proxy's cosine (CosFace, Wang et al. 2018). `ignored` (groups × k, -1 padded) lists, per
    group, proxies left out of its softmax: likely the same product, never pushed away.
    `silent` (one bool per proxy) marks proxies left out of every softmax."""
    cosine = torch.nn.functional.normalize(embeddings, dim=1) @ torch.nn.functional.normalize(proxies, dim=1).T
    logits = scale * (cosine - margin * torch.nn.functional.one_hot(labels, proxies.shape[0]))
    if silent is not None:
        logits = logits.masked_fill(silent[None, :], float("-inf"))
    if ignored is not None and ignored.shape[1]:
        rows = ignored[labels]
        mask = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, rows.clamp(min=0), rows >= 0)
        logits = logits.masked_fill(mask, float("-inf"))
    return torch.nn.functional.cross_entropy(logits, labels)


def likely_twins(means: NDArray[np.float32], open_groups: NDArray[np.bool_], k: int, threshold: float) -> torch.Tensor:
    """Per group, up to `k` other groups whose mean embedding is at cosine `threshold` or more,
    where both groups are open (made of single-picture listings the catalog does not tie to
    anything): pseudo-groups miss most twins, and a softmax over every group would push a
    listing away from its unrecognised twins (instance discrimination). (groups × k), -1 padded."""
    unit = means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    out = np.full((len(means), k), -1, dtype=np.int64)
    candidates = np.flatnonzero(open_groups)
    if k == 0 or len(candidates) < 2:
        return torch.from_numpy(out)
    pool = unit[candidates]
    for start in range(0, len(candidates), 1024):
        sims = pool[start : start + 1024] @ pool.T
        rows = np.arange(len(sims))
        sims[rows, rows + start] = -np.inf  # not itself
        top = np.argsort(-sims, axis=1)[:, : min(k, len(candidates) - 1)]
        keep = np.take_along_axis(sims, top, axis=1) >= threshold
        out[candidates[start : start + len(sims)], : top.shape[1]] = np.where(keep, candidates[top], -1)
    return torch.from_numpy(out)


def recall_at_1(
    gallery: NDArray[np.float32],
    labels: Labels,
    queries: NDArray[np.float32],
    query_labels: Labels,
    left_out: NDArray[np.int64] | None = None,
) -> float:
    """Recall@1 of `queries` against `gallery`; query i never matches gallery row
    `left_out[i]` (itself, when the queries are gallery rows)."""
    if not len(queries):
        return 0.0
    sims = queries @ gallery.T
    if left_out is not None:
        sims[np.arange(len(queries)), left_out] = -np.inf
    return float(np.mean(labels[np.argmax(sims, axis=1)] == query_labels))


def _balanced_batches(
    labels: Labels, views: int, settings: TuneSettings, epoch: int, silent: NDArray[np.bool_] | None = None
) -> list[tuple[list[int], list[int]]]:
    """One epoch of P groups × K (picture, view) pairs, as many batches as the pictures fill;
    `silent` groups (one bool per group) are never drawn, and the others fill the epoch (its
    length, and so the learning-rate schedule, does not change as groups fall silent)."""
    rng = np.random.default_rng([settings.seed, epoch])
    members = [np.flatnonzero(labels == g) for g in range(int(labels.max()) + 1)]
    drawn = np.flatnonzero(~silent) if silent is not None and not silent.all() else np.arange(len(members))
    per_batch = settings.groups_per_batch * settings.views_per_group
    steps = max(1, math.ceil(len(labels) / per_batch))
    order = np.concatenate([rng.permutation(drawn) for _ in range(steps * settings.groups_per_batch // len(drawn) + 1)])
    batches = []
    for step in range(steps):
        pictures, chosen_views = [], []
        for group in order[step * settings.groups_per_batch : (step + 1) * settings.groups_per_batch]:
            pairs = len(members[group]) * views
            picks = rng.choice(pairs, settings.views_per_group, replace=pairs < settings.views_per_group)
            pictures += [int(members[group][p // views]) for p in picks]
            chosen_views += [int(p % views) for p in picks]
        batches.append((pictures, chosen_views))
    return batches


def _hold_back(labels: Labels, settings: TuneSettings) -> NDArray[np.bool_]:
    """Whole groups held back for early stopping, preferring groups with several pictures
    (their photos can be searched among themselves); True marks a held-back picture."""
    rng = np.random.default_rng([settings.seed, 7])
    groups = rng.permutation(int(labels.max()) + 1)
    sizes = np.bincount(labels)
    groups = np.concatenate([groups[sizes[groups] >= 2], groups[sizes[groups] < 2]])
    count = max(2, round(settings.holdback * len(groups)))
    return np.isin(labels, groups[:count])


def _hold_back_twins(twins: Labels, settings: TuneSettings) -> NDArray[np.bool_]:
    """Whole groups of near-duplicate listings held back, about `holdback` of the pictures, so
    that each held-back listing's twins are held back with it and the check can ask whether
    the tuned model still finds them; True marks a held-back picture."""
    rng = np.random.default_rng([settings.seed, 7])
    sizes = np.bincount(twins)
    groups = rng.permutation(np.flatnonzero(sizes >= 2))
    taken = np.cumsum(sizes[groups]) <= settings.holdback * len(twins)
    taken[:2] = True
    return np.isin(twins, groups[taken])


def twin_groups(embeddings: NDArray[np.float32]) -> Labels | None:
    """Listings joined where they are near-duplicate pairs (each among the other's
    `PAIR_NEIGHBOURS` nearest at `PAIR_COSINE` or more), or None where too few listings have
    one for the catalog to be listings of SKUs listed again (the whitening's "auto" rule)."""
    pairs, cosine = mutual_pairs(embeddings, PAIR_NEIGHBOURS, PAIR_COSINE)
    return joined(pairs, len(embeddings)) if listed_again(pairs, cosine, len(embeddings)) else None


# Settings a resumed run may change: how long it runs and where, not what it learns.
_RESUMABLE_CHANGES = {"epochs", "patience", "threads", "device", "batch_infer"}


def _fingerprint(examples: Sequence[Example], settings: TuneSettings) -> str:
    learned = sorted((k, v) for k, v in asdict(settings).items() if k not in _RESUMABLE_CHANGES)
    digest = hashlib.sha256(repr(learned).encode())
    for example in examples:
        digest.update(f"{example.name}\0{example.product}\0{example.group}\0{example.category}\n".encode())
    return digest.hexdigest()


def _init_head(model: TunedNet, views: ViewCache, indices: Sequence[int]) -> None:
    """Start the head at the training pictures' principal components (centred by its bias),
    so the first epoch starts from the frozen model's geometry instead of a random one."""
    assert model.head is not None
    with torch.no_grad():
        pooled = torch.cat(
            [
                model.embed_features(model.back(views.features(indices[s : s + 64], [0] * len(indices[s : s + 64]))))[1]
                for s in range(0, len(indices), 64)
            ]
        )
        mean = pooled.mean(dim=0)
        _, _, components = torch.linalg.svd(pooled - mean, full_matrices=False)
        weight = torch.nn.init.orthogonal_(torch.empty_like(model.head.weight))
        rows = min(len(components), model.dim)
        weight[:rows] = components[:rows]
        model.head.weight.copy_(weight)
        model.head.bias.copy_(-(weight @ mean))


_TRAINER_KEYS = {
    "version", "fingerprint", "model", "optimizer", "proxies", "proxy_optimizer", "labels", "classifier_optimizer",
    "twins",
}  # fmt: skip


def _taught_categories(categories: NDArray[np.int64], settings: TuneSettings) -> NDArray[np.float32] | None:
    """Class weights for the category head's cross-entropy (balanced: each category counts
    as much as any other), or None where fewer than two categories have enough pictures to
    learn from. `categories` holds the training pictures' categories, -1 where none is given."""
    counts = np.bincount(categories[categories >= 0], minlength=len(CATEGORIES))
    taught = counts >= settings.min_category_pictures
    if taught.sum() < 2:
        return None
    weights = np.zeros(len(CATEGORIES), dtype=np.float32)
    weights[taught] = counts[taught].sum() / (taught.sum() * counts[taught])
    return weights


class _Trainer:
    """The state one run carries between epochs (and into its checkpoint)."""

    def __init__(
        self,
        examples: Sequence[Example],
        settings: TuneSettings,
        backgrounds: Sequence[Image.Image],
        checkpoint: Path | None,
        progress: bool,
    ) -> None:
        self.settings, self.checkpoint, self.progress = settings, checkpoint, progress
        self.device = torch.device(settings.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.known = labels_from_products([e.product for e in examples], [e.group for e in examples])
        groups = int(self.known.max()) + 1 if len(examples) else 0
        if groups < settings.min_products:
            raise CannotLearn(
                f"the catalog has {groups} products (counting listings tied by a group key as one); "
                f"tuning needs at least {settings.min_products} to learn anything it can check"
            )
        sizes = np.bincount(self.known)
        single = bool(np.median(sizes) <= 1)
        # the clean pictures' embeddings with the shipped model, where computed to look for
        # near-duplicates (also the first pseudo-groups' input)
        self.frozen: NDArray[np.float32] | None = None
        twins = None
        if single and settings.listings == "auto" and settings.pseudo is not None:
            probe = load_tunable(settings.model).to(self.device)
            loaders = [e.load for e in examples]
            self.frozen = ViewCache(probe, loaders, None, settings.seed, device=self.device).embed(range(len(examples)))
            twins = twin_groups(self.frozen)
            if twins is not None:
                lr = min(settings.lr_backbone, settings.lr_backbone_single)
                settings = replace(settings, lr_backbone=lr, **LISTINGS_RECIPE)
        if settings.cached_views is not None and single:
            # one picture per product (studio shots, listings): the views are all it learns from
            views = max(settings.cached_views, MIN_VIEWS_SINGLE, min(MAX_VIEWS, settings.view_budget // len(examples)))
            lr = min(settings.lr_backbone, settings.lr_backbone_single)
            settings = replace(settings, cached_views=views, lr_backbone=lr)
        self.settings = settings
        # what the held-back check counts as one product: the products, or where listings are
        # listed again, groups of near-duplicates (98 % one product on grocery listings)
        self.checked = self.known if twins is None else twins
        self.held = _hold_back(self.known, settings) if twins is None else _hold_back_twins(twins, settings)
        self.train_idx = np.flatnonzero(~self.held)
        self.held_idx = np.flatnonzero(self.held)
        self.joinable = sizes[self.known[self.train_idx]] == 1  # single-picture products may merge
        categories = np.array([-1 if e.category is None else e.category for e in examples], dtype=np.int64)
        weights = _taught_categories(categories[self.train_idx], settings) if settings.category_weight else None
        if weights is not None:
            categories[(categories >= 0) & (weights[np.maximum(categories, 0)] == 0)] = -1  # too few to learn
        self.categories = categories
        self.category_weights = None if weights is None else torch.from_numpy(weights).to(self.device)
        torch.manual_seed(settings.seed)
        classes = None if weights is None else len(CATEGORIES)
        self.model = load_tunable(settings.model, settings.frozen_blocks, settings.head_dim, classes).to(self.device)
        started = time.perf_counter()
        self.views = ViewCache(
            self.model, [e.load for e in examples], settings.cached_views, settings.seed, backgrounds,
            self.device, settings.batch_infer, progress, settings.p_background,
        )  # fmt: skip
        self.cache_seconds = time.perf_counter() - started
        if self.model.head is not None:
            _init_head(self.model, self.views, list(self.train_idx))
        self.fingerprint = _fingerprint(examples, settings)
        held_labels = relabel(self.checked[self.held_idx])
        # lookalikes for the held-back pictures to avoid: the training pictures, at most
        # MAX_DISTRACTORS of them (an even sample) so each epoch's check stays cheap
        step = max(1, math.ceil(len(self.train_idx) / MAX_DISTRACTORS))
        self.distractors = self.train_idx[::step]
        several = (np.bincount(held_labels) >= 2).sum() >= 2
        self.metric = "views" if not several else "photos" if twins is None else "twins"
        self.tolerance = TWIN_TOLERANCE if self.metric == "twins" else 0.0  # what the check may lose
        self.held_labels = held_labels
        self.held_queries: torch.Tensor | None = None
        self.held_clean: torch.Tensor | None = None
        self.optimizer = torch.optim.AdamW(
            [{"params": self.model.trainable(), "lr": settings.lr_backbone}], weight_decay=settings.weight_decay
        )
        self.labels = relabel(self.known[self.train_idx])
        self.proxies = torch.nn.Parameter(torch.zeros(1, self.model.dim, device=self.device))
        self.proxy_optimizer = torch.optim.AdamW([self.proxies], lr=settings.lr_proxies, weight_decay=0.0)
        self.classifier_optimizer = (
            None
            if self.model.classifier is None
            else torch.optim.AdamW(self.model.classifier.parameters(), lr=settings.lr_classifier, weight_decay=1e-4)
        )
        self.last_losses: list[float] = []
        self.steps_done = 0
        self.total_steps = 1  # set by `tune` once the epoch's batches are known
        self.regroupings = 0
        self.twins: torch.Tensor | None = None
        self.silent: NDArray[np.bool_] | None = None

    def probe_loss(self) -> float:
        """The loss on a fixed sample of training (picture, view) pairs, with the current
        labels and proxies: it falls as the model fits the catalog, unlike the noisy batch loss."""
        rng = np.random.default_rng([self.settings.seed, 11])
        views = self.settings.cached_views or 2
        heard = np.flatnonzero(~self.silent[self.labels]) if self.silent is not None else np.arange(len(self.labels))
        pairs = rng.choice(len(heard) * views, min(256, len(heard) * views), replace=False)
        pictures, chosen = [int(heard[p // views]) for p in pairs], [int(p % views) for p in pairs]
        losses = []
        with torch.no_grad():
            for at in range(0, len(pictures), self.settings.batch_infer):
                part = slice(at, at + self.settings.batch_infer)
                indices = [int(self.train_idx[p]) for p in pictures[part]]
                embedding, _ = self.model.embed_features(self.model.back(self.views.features(indices, chosen[part])))
                targets = torch.from_numpy(self.labels[pictures[part]]).to(self.device)
                loss = cosface_loss(
                    embedding, self.proxies, targets, self.settings.scale, self.settings.margin, self.twins,
                    self.silent_proxies(),
                )  # fmt: skip
                losses.append(float(loss) * len(indices))
        return sum(losses) / len(pictures)

    def epoch(self, epoch: int, bar: tqdm[Any], best: float) -> EpochStats:
        """Train one epoch (re-clustering first when it is due) and measure the result."""
        started = time.perf_counter()
        if self.settings.refresh_views_every:
            self.views.refresh((epoch - 1) // self.settings.refresh_views_every, self.progress)
        every = self.settings.recluster_every
        if every and epoch > 1 and (epoch - 1) % every == 0:
            self.regroupings = (epoch - 1) // every
            self.regroup(self.views.embed(list(self.train_idx)))
        losses = self.last_losses = []
        for step, (pictures, views) in enumerate(
            _balanced_batches(self.labels, self.settings.cached_views or 1, self.settings, epoch, self.silent)
        ):
            # uncached, each pair gets its own fresh view (a product's K views must differ)
            fresh = list(range(1, len(views) + 1))
            losses.append(self.step(pictures, views if self.settings.cached_views else fresh, epoch * 100_003 + step))
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses):.3f}", held_back_r1=f"{best:.3f}")
        r1, category = self.held_back_recall(), self.held_back_category()
        bar.set_postfix(loss=f"{np.mean(losses):.3f}", held_back_r1=f"{r1:.3f}")
        groups = int(self.labels.max()) + 1
        seconds = time.perf_counter() - started
        return EpochStats(epoch, float(np.mean(losses)), self.probe_loss(), r1, groups, seconds, category)

    def held_back_category(self, shipped: bool = False) -> float:
        """The category top-1, as the service answers it, on one shopper view of each held-back
        picture whose record gives a category: the classifier's prior fused with the vote of
        the 30 nearest training pictures (-1.0 without a head or such pictures). `shipped`:
        with the shipped classifier (ImageNet's classes mapped onto the categories) instead
        of the head, as the model in use answers before tuning."""
        if self.model.classifier is None:
            return -1.0
        asking = [int(i) for i in self.held_idx if self.categories[i] >= 0]
        voters = [int(i) for i in self.distractors if self.categories[i] >= 0]
        if not asking or not voters:
            return -1.0
        gallery = self.views.embed(voters, 0)
        view = min(1, (self.settings.cached_views or 2) - 1)
        embeddings, priors = [], []
        with torch.no_grad():
            for at in range(0, len(asking), self.settings.batch_infer):
                chunk = asking[at : at + self.settings.batch_infer]
                features = self.views.features(chunk, [view] * len(chunk))
                embedding, pooled = self.model.embed_features(self.model.back(features))
                embeddings.append(torch.nn.functional.normalize(embedding, dim=1).cpu().numpy())
                if shipped:
                    imagenet = torch.softmax(self.model.backbone._fc(pooled), dim=1).cpu().numpy()
                    priors.append(imagenet @ imagenet_projection())
                else:
                    priors.append(torch.softmax(self.model.logits(pooled), dim=1).cpu().numpy())
        sims = np.concatenate(embeddings) @ gallery.T
        nearest = np.argsort(-sims, axis=1)[:, :VOTERS]
        hits = 0
        for row, (prior, picture) in enumerate(zip(np.concatenate(priors), asking, strict=True)):
            vote = neighbour_vote((CATEGORIES[self.categories[voters[i]]], float(sims[row, i])) for i in nearest[row])
            fused = fuse(prior.astype(np.float32), vote, self.settings.category_prior_weight)
            hits += int(np.argmax(fused) == self.categories[picture])
        return hits / len(asking)

    def example_labels(self) -> NDArray[np.int64]:
        """The groups last trained on, one per example; -1 for held-back pictures."""
        out = np.full(len(self.known), -1, dtype=np.int64)
        out[self.train_idx] = self.labels
        return out

    def held_back_recall(self) -> float:
        """Recall@1 on the held-back pictures with the model as it is now. "photos": each
        held-back photo whose group has another one searches every held-back picture and the
        training pictures (lookalikes to avoid). "views" (groups of one picture): an augmented
        view of each held-back picture searches the held-back pictures' clean views for its
        own; training pictures stay out, since a listing's unmarked twin among them would
        count as a miss."""
        if self.metric == "views":
            gallery = self.views.embed(list(self.held_idx), 0)
            if self.held_queries is None:  # one fixed draw, so epochs compare on the same queries
                self.held_queries = self.views.fixed_views(list(self.held_idx), HELD_BACK_SALT)
            queries = self.views.embed_features(self.held_queries)
            return recall_at_1(gallery, self.held_labels, queries, self.held_labels)
        # twins: among the held-back listings only; a training listing of the same product
        # that is no near-duplicate would count as a miss, and more so the better the model
        everything = self.held_idx if self.metric == "twins" else np.concatenate([self.held_idx, self.distractors])
        if self.views.count is not None:
            gallery = self.views.embed(list(everything), 0)
        else:  # fresh views: the clean pictures' front kept, not run again every epoch
            if self.held_clean is None:
                self.held_clean = self.views.fixed_views(list(everything), 0, view=0)
            gallery = self.views.embed_features(self.held_clean)
        labels = relabel(self.checked[everything])
        rows = np.arange(len(self.held_idx))
        asking = rows[np.bincount(labels)[labels[rows]] >= 2]
        return recall_at_1(gallery, labels, gallery[asking], labels[asking], asking)

    def regroup(self, embeddings: NDArray[np.float32]) -> None:
        """Training labels from the known groups joined by pseudo-groups found in `embeddings`
        (the training pictures' clean views), and proxies at each group's mean."""
        s = self.settings
        known = relabel(self.known[self.train_idx])
        if s.pseudo is not None and self.joinable.sum() >= 2:
            pseudo = np.full(len(known), -1, dtype=np.int64)
            threshold = max(s.pseudo_threshold_min, s.pseudo_threshold - s.pseudo_threshold_step * self.regroupings)
            eps = s.pseudo_eps + s.pseudo_threshold_step * self.regroupings  # k-reciprocal: a looser eps
            found = pseudo_groups(
                embeddings[self.joinable], s.pseudo, s.pseudo_k, min(s.pseudo_threshold, threshold), s.pseudo_k2, eps
            )
            pseudo[self.joinable] = split_groups(found, self.categories[self.train_idx][self.joinable])
            self.labels = combine(known, pseudo, self.joinable)
        else:
            self.labels = known
        means = np.stack([embeddings[self.labels == g].mean(axis=0) for g in range(int(self.labels.max()) + 1)])
        self.silent = self.outlier_groups()
        self.twins = None
        if s.twin_threshold is not None and s.pseudo is not None:
            # a group is open when every picture in it is a single-picture listing
            closed = np.bincount(self.labels, weights=~self.joinable, minlength=len(means)) > 0
            self.twins = likely_twins(means, ~closed, s.pseudo_k, s.twin_threshold).to(self.device)
        # Adam moves every coordinate by about the learning rate whatever the gradient, so the
        # proxies get the norm a randomly initialised proxy has (sqrt(dim)): at unit norm the
        # recipe's 1e-2 would scramble them within a few steps.
        means *= np.sqrt(means.shape[1]) / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
        self.proxies = torch.nn.Parameter(torch.from_numpy(means.astype(np.float32)).to(self.device))
        self.proxy_optimizer = torch.optim.AdamW([self.proxies], lr=self.settings.lr_proxies, weight_decay=0.0)

    def outlier_groups(self) -> NDArray[np.bool_] | None:
        """One bool per group: True for a single-picture listing no pseudo-group joined (with
        `outliers` "drop"); None where no group is left out."""
        if self.settings.outliers != "drop" or self.settings.pseudo is None:
            return None
        sizes = np.bincount(self.labels)
        alone = np.zeros(len(sizes), dtype=bool)
        alone[self.labels[(sizes[self.labels] == 1) & self.joinable]] = True
        return alone if alone.any() and not alone.all() else None

    def silent_proxies(self) -> torch.Tensor | None:
        return None if self.silent is None else torch.from_numpy(self.silent).to(self.device)

    def step(self, pictures: list[int], views: list[int], salt: int) -> float:
        indices = [int(self.train_idx[p]) for p in pictures]
        features = self.views.features(indices, views, salt)
        embedding, pooled = self.model.embed_features(self.model.back(features))
        targets = torch.from_numpy(self.labels[pictures]).to(self.device)
        loss = cosface_loss(
            embedding, self.proxies, targets, self.settings.scale, self.settings.margin, self.twins,
            self.silent_proxies(),
        )  # fmt: skip
        categories = self.categories[indices]
        if self.model.classifier is not None and (categories >= 0).any():
            wanted = torch.from_numpy(categories).to(self.device)
            crossed = torch.nn.functional.cross_entropy(
                self.model.classifier(pooled), wanted, weight=self.category_weights, ignore_index=-1
            )
            loss = loss + self.settings.category_weight * crossed
        # Adam's first steps move every weight by about the full learning rate (sign descent):
        # without a warm-up the first step alone raised the loss of a small catalog 1.7-fold.
        factor = min(1.0, (self.steps_done + 1) / max(1, self.settings.warmup_steps))
        if self.settings.schedule == "cosine":
            factor *= 0.5 * (1 + math.cos(math.pi * min(1.0, self.steps_done / self.total_steps)))
        for group in self.optimizer.param_groups:
            group["lr"] = self.settings.lr_backbone * factor
        for group in self.proxy_optimizer.param_groups:
            group["lr"] = self.settings.lr_proxies * factor
        optimizers = [self.optimizer, self.proxy_optimizer]
        if self.classifier_optimizer is not None:
            for group in self.classifier_optimizer.param_groups:
                group["lr"] = self.settings.lr_classifier * factor
            optimizers.append(self.classifier_optimizer)
        self.steps_done += 1
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        for optimizer in optimizers:
            optimizer.step()
        return float(loss.detach())

    def save(self, state: dict[str, Any]) -> None:
        if self.checkpoint is None:
            return
        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        payload = state | {
            "version": CHECKPOINT_VERSION,
            "fingerprint": self.fingerprint,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "proxies": self.proxies.detach().cpu(),
            "proxy_optimizer": self.proxy_optimizer.state_dict(),
            "labels": torch.from_numpy(self.labels),
            "twins": (self.twins if self.twins is not None else torch.zeros(0, 0, dtype=torch.int64)).cpu(),
        }
        if self.classifier_optimizer is not None:
            payload["classifier_optimizer"] = self.classifier_optimizer.state_dict()
        tmp = self.checkpoint.with_name(self.checkpoint.name + ".tmp")
        torch.save(payload, tmp)
        tmp.replace(self.checkpoint)  # atomic: a kill leaves the previous epoch's checkpoint

    def load(self) -> dict[str, Any] | None:
        if self.checkpoint is None or not self.checkpoint.exists():
            return None
        saved: dict[str, Any] = torch.load(self.checkpoint, map_location=self.device, weights_only=True)
        if saved.get("version") != CHECKPOINT_VERSION or saved.get("fingerprint") != self.fingerprint:
            logger.warning("checkpoint %s is from another catalog or settings; starting afresh", self.checkpoint)
            return None
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.labels = saved["labels"].cpu().numpy().astype(np.int64)
        self.twins = saved["twins"].to(self.device) if saved["twins"].numel() else None
        self.silent = self.outlier_groups()
        self.proxies = torch.nn.Parameter(saved["proxies"].to(self.device))
        self.proxy_optimizer = torch.optim.AdamW([self.proxies], lr=self.settings.lr_proxies, weight_decay=0.0)
        self.proxy_optimizer.load_state_dict(saved["proxy_optimizer"])
        if self.classifier_optimizer is not None:
            self.classifier_optimizer.load_state_dict(saved["classifier_optimizer"])
        return {k: v for k, v in saved.items() if k not in _TRAINER_KEYS}


def _score(run: _Trainer, recall: float, category: float) -> float:
    """What picks the best epoch: held-back recall, except where it can only ask whether a
    picture's augmented view finds it (one picture per product) and the records carry
    categories; there the held-back pictures' category top-1 is the better check."""
    return category if run.metric == "views" and run.model.classifier is not None and category >= 0 else recall


def tune(
    examples: Sequence[Example],
    settings: TuneSettings | None = None,
    checkpoint: Path | None = None,
    backgrounds: Sequence[Image.Image] = (),
    progress: bool = True,
) -> TuneResult:
    """Fine-tune the shipped backbone on `examples` and return the best model found.

    `checkpoint` is a file written after every epoch; calling again with the same examples
    and settings (`epochs` and `patience` may differ) resumes from it, and a finished run
    returns at once. `backgrounds` are real scene photos the product may be pasted onto.
    Raises `CannotLearn` where the catalog has fewer than `settings.min_products` groups or a
    setting is out of range.

    Example::

        result = tune(examples_from_files(paths, products), TuneSettings(epochs=6))
        export_tuned_model(result.model, out_dir, "shop-tuned-1")
    """
    settings = settings or TuneSettings()
    settings.check()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    started = time.perf_counter()
    run = _Trainer(examples, settings, backgrounds, checkpoint, progress)
    settings = run.settings  # as the catalog's shape chose (listings listed again train their own way)
    state = run.load()
    if state is None:
        before = run.held_back_recall()
        category_before = run.held_back_category(shipped=True)
        frozen = run.frozen if settings.head_dim is None else None  # the same embeddings, computed already
        run.regroup(frozen[run.train_idx] if frozen is not None else run.views.embed(list(run.train_idx)))
        state = {
            "epoch": 0, "history": [], "before": before, "probe_before": run.probe_loss(), "best_r1": before,
            "best_epoch": 0, "best_state": copy.deepcopy(run.model.state_dict()), "bad_epochs": 0, "step_losses": [],
            "category_before": category_before, "best_score": _score(run, before, category_before) - run.tolerance,
        }  # fmt: skip
    else:
        logger.info("resuming tuning after epoch %d from %s", state["epoch"], checkpoint)
        run.steps_done = len(state["step_losses"])
    resumed_from = int(state["epoch"])
    per_epoch = len(_balanced_batches(run.labels, run.settings.cached_views or 1, run.settings, 0, run.silent))
    total, done = settings.epochs * per_epoch, resumed_from * per_epoch
    run.total_steps = total
    with tqdm(total=total, initial=done, desc="tuning", unit="batch", disable=not progress) as bar:
        # early stopping serves "best"; "last" runs the whole schedule (the learning rate decays to 0)
        while (settings.keep == "last" or state["bad_epochs"] < settings.patience) and state["epoch"] < settings.epochs:
            stats = run.epoch(int(state["epoch"]) + 1, bar, float(state["best_r1"]))
            state["history"] = [*state["history"], asdict(stats)]
            state["step_losses"] = [*state["step_losses"], *run.last_losses]
            score = _score(run, stats.held_back_r1, stats.held_back_category)
            if score >= state["best_score"]:  # a tie goes to the more adapted model
                best = copy.deepcopy(run.model.state_dict())
                state.update(
                    best_score=score, best_r1=stats.held_back_r1, best_epoch=stats.epoch, best_state=best, bad_epochs=0
                )
            else:
                state["bad_epochs"] = int(state["bad_epochs"]) + 1
            state["epoch"] = stats.epoch
            run.save(state)
    last_r1 = float(state["history"][-1]["held_back_r1"]) if state["history"] else -1.0
    if settings.keep == "last" and last_r1 >= float(state["before"]) - run.tolerance:
        state.update(best_r1=last_r1, best_epoch=int(state["epoch"]))
    else:
        run.model.load_state_dict(state["best_state"])
    category_after = run.held_back_category()
    return TuneResult(
        model=run.model.cpu().eval(),
        history=[EpochStats(**h) for h in state["history"]],
        held_back_before=float(state["before"]),
        held_back_after=float(state["best_r1"]),
        held_back_metric=run.metric,
        best_epoch=int(state["best_epoch"]),
        probe_loss_before=float(state["probe_before"]),
        pictures=len(examples),
        groups=int(run.labels.max()) + 1,
        cache_seconds=run.cache_seconds,
        seconds=time.perf_counter() - started,
        resumed_from=resumed_from,
        held_back_category_before=float(state["category_before"]),
        held_back_category_after=category_after,
        step_losses=[float(x) for x in state["step_losses"]],
        labels=run.example_labels(),
        settings=run.settings,
    )
