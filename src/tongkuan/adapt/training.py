"""Fine-tuning the backbone on one catalog's own groups of pictures (`tongkuan tune`'s core).

Frozen ImageNet features are the ceiling of every frozen-feature trick; metric learning on
the catalog's own groups is what moves same-product recall (DESIGN.md, "Adapting the model to
a catalog"). The recipe, from measurements (docs/benchmarks.md) and the literature, with
every default and the variants a catalog's shape chooses in `tongkuan.adapt.recipe`:
- the shipped EfficientNet-Lite with its front half frozen and all BatchNorm frozen
  (`tongkuan.adapt.network`), trained from the pooled feature (or a linear head);
- a normalized-softmax proxy loss with a CosFace margin (scale 20, margin 0.1): one proxy
  per group, initialised at the group's mean embedding so training starts from the frozen
  model's own geometry;
- AdamW, the backbone at 2e-4 and the proxies at 1e-2, a linear warm-up then cosine decay
  (grocery retailer catalog, Lite0, 8 epochs: 0.537 -> 0.703 R@1 against 0.655 for 1e-4
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
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image
from tqdm import tqdm

from tongkuan.adapt.examples import Example, Plan, plan, taught_categories, training_device
from tongkuan.adapt.groups import combine, pseudo_groups, relabel, split_groups
from tongkuan.adapt.losses import cosface_loss, likely_twins, recall_at_1
from tongkuan.adapt.network import TunedNet, load_tunable
from tongkuan.adapt.progress import EpochStats, Progress, TuneResult, fingerprint
from tongkuan.adapt.recipe import Recipe, rate_factor
from tongkuan.adapt.sampling import balanced_batches, hold_back, hold_back_twins
from tongkuan.adapt.views import ViewCache
from tongkuan.domain.categories import CATEGORIES, VOTERS
from tongkuan.vision.classify import fuse, imagenet_projection, neighbour_vote

logger = logging.getLogger(__name__)

CHECKPOINT_VERSION = 2
MAX_DISTRACTORS = 1000
HELD_BACK_SALT = 999_983  # the held-back pictures' query views: never a training draw
# Held-back listings find their near-duplicates 99.75 % of the time before tuning (grocery
# listings, Lite2): the check is a guard against harm, not a measure of gain, so the tuned
# model may miss this much more of them (one point: a few listings of a few hundred) and
# still count as finding them as well. The listings recipe, on all 2,640 grocery listings,
# found them 97.2-98.7 % of the time after each epoch, so that catalog kept its model: the
# check is biased towards the model whose neighbours defined the pairs, and widening it to
# fit the one catalog measured would be no check at all.
TWIN_TOLERANCE = 0.01


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


class _Trainer:
    """The state one run carries between epochs (and into its checkpoint)."""

    def __init__(
        self,
        examples: Sequence[Example],
        planned: Plan,
        backgrounds: Sequence[Image.Image],
        checkpoint: Path | None,
        progress: bool,
    ) -> None:
        recipe = self.recipe = planned.recipe
        self.checkpoint, self.progress = checkpoint, progress
        self.device = training_device(recipe)
        self.known, sizes, twins = planned.known, planned.sizes, planned.twins
        # the clean pictures' embeddings with the shipped model, where computed to look for
        # near-duplicates (also the first pseudo-groups' input)
        self.frozen = planned.frozen
        # what the held-back check counts as one product: the products, or where listings are
        # listed again, groups of near-duplicates (98 % one product on grocery listings)
        self.checked = self.known if twins is None else twins
        self.held = hold_back(self.known, recipe) if twins is None else hold_back_twins(twins, recipe)
        self.train_idx = np.flatnonzero(~self.held)
        self.held_idx = np.flatnonzero(self.held)
        self.joinable = sizes[self.known[self.train_idx]] == 1  # single-picture products may merge
        categories = np.array([-1 if e.category is None else e.category for e in examples], dtype=np.int64)
        weights = taught_categories(categories[self.train_idx], recipe) if recipe.category_weight else None
        if weights is not None:
            categories[(categories >= 0) & (weights[np.maximum(categories, 0)] == 0)] = -1  # too few to learn
        self.categories = categories
        self.category_weights = None if weights is None else torch.from_numpy(weights).to(self.device)
        torch.manual_seed(recipe.seed)
        classes = None if weights is None else len(CATEGORIES)
        self.model = load_tunable(recipe.model, recipe.frozen_blocks, recipe.head_dim, classes).to(self.device)
        started = time.perf_counter()
        self.views = ViewCache(
            self.model, [e.load for e in examples], recipe.cached_views, recipe.seed, backgrounds,
            self.device, recipe.batch_infer, progress, recipe.p_background,
        )  # fmt: skip
        self.cache_seconds = time.perf_counter() - started
        if self.model.head is not None:
            _init_head(self.model, self.views, list(self.train_idx))
        self.fingerprint = fingerprint(examples, recipe)
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
            [{"params": self.model.trainable(), "lr": recipe.lr_backbone}], weight_decay=recipe.weight_decay
        )
        self.labels = relabel(self.known[self.train_idx])
        self.proxies = torch.nn.Parameter(torch.zeros(1, self.model.dim, device=self.device))
        self.proxy_optimizer = torch.optim.AdamW([self.proxies], lr=recipe.lr_proxies, weight_decay=0.0)
        self.classifier_optimizer = (
            None
            if self.model.classifier is None
            else torch.optim.AdamW(self.model.classifier.parameters(), lr=recipe.lr_classifier, weight_decay=1e-4)
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
        rng = np.random.default_rng([self.recipe.seed, 11])
        views = self.recipe.cached_views or 2
        heard = np.flatnonzero(~self.silent[self.labels]) if self.silent is not None else np.arange(len(self.labels))
        pairs = rng.choice(len(heard) * views, min(256, len(heard) * views), replace=False)
        pictures, chosen = [int(heard[p // views]) for p in pairs], [int(p % views) for p in pairs]
        losses = []
        with torch.no_grad():
            for at in range(0, len(pictures), self.recipe.batch_infer):
                part = slice(at, at + self.recipe.batch_infer)
                indices = [int(self.train_idx[p]) for p in pictures[part]]
                embedding, _ = self.model.embed_features(self.model.back(self.views.features(indices, chosen[part])))
                targets = torch.from_numpy(self.labels[pictures[part]]).to(self.device)
                loss = cosface_loss(
                    embedding, self.proxies, targets, self.recipe.scale, self.recipe.margin, self.twins,
                    self.silent_proxies(),
                )  # fmt: skip
                losses.append(float(loss) * len(indices))
        return sum(losses) / len(pictures)

    def epoch(self, epoch: int, bar: tqdm[Any], best: float) -> EpochStats:
        """Train one epoch (re-clustering first when it is due) and measure the result."""
        started = time.perf_counter()
        if self.recipe.refresh_views_every:
            self.views.refresh((epoch - 1) // self.recipe.refresh_views_every, self.progress)
        every = self.recipe.recluster_every
        if every and epoch > 1 and (epoch - 1) % every == 0:
            self.regroupings = (epoch - 1) // every
            self.regroup(self.views.embed(list(self.train_idx)))
        losses = self.last_losses = []
        for step, (pictures, views) in enumerate(
            balanced_batches(self.labels, self.recipe.cached_views or 1, self.recipe, epoch, self.silent)
        ):
            # uncached, each pair gets its own fresh view (a product's K views must differ)
            fresh = list(range(1, len(views) + 1))
            losses.append(self.step(pictures, views if self.recipe.cached_views else fresh, epoch * 100_003 + step))
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
        view = min(1, (self.recipe.cached_views or 2) - 1)
        embeddings, priors = [], []
        with torch.no_grad():
            for at in range(0, len(asking), self.recipe.batch_infer):
                chunk = asking[at : at + self.recipe.batch_infer]
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
            fused = fuse(prior.astype(np.float32), vote, self.recipe.category_prior_weight)
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
        s = self.recipe
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
        self.proxy_optimizer = torch.optim.AdamW([self.proxies], lr=self.recipe.lr_proxies, weight_decay=0.0)

    def outlier_groups(self) -> NDArray[np.bool_] | None:
        """One bool per group: True for a single-picture listing no pseudo-group joined (with
        `outliers` "drop"); None where no group is left out."""
        if self.recipe.outliers != "drop" or self.recipe.pseudo is None:
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
            embedding, self.proxies, targets, self.recipe.scale, self.recipe.margin, self.twins,
            self.silent_proxies(),
        )  # fmt: skip
        categories = self.categories[indices]
        if self.model.classifier is not None and (categories >= 0).any():
            wanted = torch.from_numpy(categories).to(self.device)
            crossed = torch.nn.functional.cross_entropy(
                self.model.classifier(pooled), wanted, weight=self.category_weights, ignore_index=-1
            )
            loss = loss + self.recipe.category_weight * crossed
        factor = rate_factor(self.recipe, self.steps_done, self.total_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = self.recipe.lr_backbone * factor
        for group in self.proxy_optimizer.param_groups:
            group["lr"] = self.recipe.lr_proxies * factor
        optimizers = [self.optimizer, self.proxy_optimizer]
        if self.classifier_optimizer is not None:
            for group in self.classifier_optimizer.param_groups:
                group["lr"] = self.recipe.lr_classifier * factor
            optimizers.append(self.classifier_optimizer)
        self.steps_done += 1
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        for optimizer in optimizers:
            optimizer.step()
        return float(loss.detach())

    def save(self, progress: Progress) -> None:
        if self.checkpoint is None:
            return
        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        payload = progress.to_checkpoint() | {
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

    def load(self) -> Progress | None:
        if self.checkpoint is None or not self.checkpoint.exists():
            return None
        saved: dict[str, Any] = torch.load(self.checkpoint, map_location=self.device, weights_only=True)
        if saved.get("version") != CHECKPOINT_VERSION or saved.get("fingerprint") != self.fingerprint:
            logger.warning("checkpoint %s is from another catalog or recipe; starting afresh", self.checkpoint)
            return None
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.labels = saved["labels"].cpu().numpy().astype(np.int64)
        self.twins = saved["twins"].to(self.device) if saved["twins"].numel() else None
        self.silent = self.outlier_groups()
        self.proxies = torch.nn.Parameter(saved["proxies"].to(self.device))
        self.proxy_optimizer = torch.optim.AdamW([self.proxies], lr=self.recipe.lr_proxies, weight_decay=0.0)
        self.proxy_optimizer.load_state_dict(saved["proxy_optimizer"])
        if self.classifier_optimizer is not None:
            self.classifier_optimizer.load_state_dict(saved["classifier_optimizer"])
        return Progress.from_checkpoint(saved)


def _score(run: _Trainer, recall: float, category: float) -> float:
    """What picks the best epoch: held-back recall, except where it can only ask whether a
    picture's augmented view finds it (one picture per product) and the records carry
    categories; there the held-back pictures' category top-1 is the better check."""
    return category if run.metric == "views" and run.model.classifier is not None and category >= 0 else recall


def tune(
    examples: Sequence[Example],
    recipe: Recipe | None = None,
    checkpoint: Path | None = None,
    backgrounds: Sequence[Image.Image] = (),
    progress: bool = True,
) -> TuneResult:
    """Fine-tune the shipped backbone on `examples` and return the best model found.

    `checkpoint` is a file written after every epoch; calling again with the same examples
    and recipe (`epochs` and `patience` may differ) resumes from it, and a finished run
    returns at once. `backgrounds` are real scene photos the product may be pasted onto.
    Raises `CannotLearn` where the catalog has fewer than `recipe.min_products` groups or a
    setting is out of range.

    Example::

        result = tune(examples_from_files(paths, products), Recipe(epochs=6))
        export_tuned_model(result.model, out_dir, "shop-tuned-1")
    """
    recipe = recipe or Recipe()
    recipe.check()
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    started = time.perf_counter()
    planned = plan(examples, recipe, training_device(recipe))
    run = _Trainer(examples, planned, backgrounds, checkpoint, progress)
    recipe = run.recipe  # as the catalog's shape chose (listings listed again train their own way)
    state = run.load()
    if state is None:
        before = run.held_back_recall()
        category_before = run.held_back_category(shipped=True)
        frozen = run.frozen if recipe.head_dim is None else None  # the same embeddings, computed already
        run.regroup(frozen[run.train_idx] if frozen is not None else run.views.embed(list(run.train_idx)))
        state = Progress(
            before=before, probe_before=run.probe_loss(), category_before=category_before,
            best_score=_score(run, before, category_before) - run.tolerance, best_r1=before,
            best_state=copy.deepcopy(run.model.state_dict()),
        )  # fmt: skip
    else:
        logger.info("resuming tuning after epoch %d from %s", state.epoch, checkpoint)
        run.steps_done = len(state.step_losses)
    resumed_from = state.epoch
    per_epoch = len(balanced_batches(run.labels, recipe.cached_views or 1, recipe, 0, run.silent))
    total, done = recipe.epochs * per_epoch, resumed_from * per_epoch
    run.total_steps = total
    with tqdm(total=total, initial=done, desc="tuning", unit="batch", disable=not progress) as bar:
        # early stopping serves "best"; "last" runs the whole schedule (the learning rate decays to 0)
        while (recipe.keep == "last" or state.bad_epochs < recipe.patience) and state.epoch < recipe.epochs:
            stats = run.epoch(state.epoch + 1, bar, state.best_r1)
            state.step_losses = [*state.step_losses, *run.last_losses]
            state.record(stats, _score(run, stats.held_back_r1, stats.held_back_category), run.model)
            run.save(state)
    last_r1 = state.history[-1].held_back_r1 if state.history else -1.0
    if recipe.keep == "last" and last_r1 >= state.before - run.tolerance:
        state.best_r1, state.best_epoch = last_r1, state.epoch
    else:
        run.model.load_state_dict(state.best_state)
    category_after = run.held_back_category()
    return TuneResult(
        model=run.model.cpu().eval(),
        history=state.history,
        held_back_before=float(state.before),
        held_back_after=float(state.best_r1),
        held_back_metric=run.metric,
        best_epoch=state.best_epoch,
        probe_loss_before=float(state.probe_before),
        pictures=len(examples),
        groups=int(run.labels.max()) + 1,
        cache_seconds=run.cache_seconds,
        seconds=time.perf_counter() - started,
        resumed_from=resumed_from,
        held_back_category_before=float(state.category_before),
        held_back_category_after=category_after,
        step_losses=[float(x) for x in state.step_losses],
        labels=run.example_labels(),
        recipe=run.recipe,
        variant=planned.variant,
    )
