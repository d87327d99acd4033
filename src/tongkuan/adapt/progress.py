"""How a tuning run went: each epoch's figures, the state early stopping keeps between
epochs (and in the checkpoint), and the result."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from tongkuan.adapt.examples import Example
from tongkuan.adapt.network import TunedNet
from tongkuan.adapt.recipe import Recipe


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
    recipe: Recipe | None = None  # as trained: with what the catalog's shape chose
    variant: str = ""  # the recipe's variant the catalog's shape chose (`tongkuan.adapt.recipe`)

    @property
    def improved(self) -> bool:
        return self.best_epoch > 0


# Settings a resumed run may change: how long it runs and where, not what it learns.


@dataclass
class Progress:
    """Where a run stands after each epoch and what early stopping keeps; written to the
    checkpoint after every epoch, so a rerun resumes from it."""

    before: float  # held-back recall with the shipped model
    probe_before: float
    category_before: float
    best_score: float  # what picks the best epoch (`_score`), less what the check may lose
    best_r1: float
    best_state: dict[str, torch.Tensor]  # the best epoch's weights
    epoch: int = 0
    best_epoch: int = 0  # 0: no epoch beat the shipped model
    bad_epochs: int = 0  # epochs since the best one
    history: list[EpochStats] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)

    def to_checkpoint(self) -> dict[str, Any]:
        """Plain values only: a checkpoint is loaded with `weights_only`."""
        return {**vars(self), "history": [asdict(stats) for stats in self.history]}

    @classmethod
    def from_checkpoint(cls, saved: dict[str, Any]) -> Progress:
        values = {f.name: saved[f.name] for f in fields(cls)}
        return cls(**{**values, "history": [EpochStats(**stats) for stats in values["history"]]})

    def record(self, stats: EpochStats, score: float, model: TunedNet) -> None:
        """Count an epoch; keep its weights where it scores at least as well as the best so
        far (a tie goes to the more adapted model)."""
        self.history = [*self.history, stats]
        if score >= self.best_score:
            self.best_score, self.best_r1, self.best_epoch = score, stats.held_back_r1, stats.epoch
            self.best_state, self.bad_epochs = copy.deepcopy(model.state_dict()), 0
        else:
            self.bad_epochs += 1
        self.epoch = stats.epoch


# What a resumed run may change: how long it runs and where, not what it learns.
_RESUMABLE_CHANGES = {"epochs", "patience", "threads", "device", "batch_infer"}


def fingerprint(examples: Sequence[Example], recipe: Recipe) -> str:
    """What a checkpoint must match to resume: the examples and the recipe, less what a
    resumed run may change."""
    learned = sorted((k, v) for k, v in asdict(recipe).items() if k not in _RESUMABLE_CHANGES)
    digest = hashlib.sha256(repr(learned).encode())
    for example in examples:
        digest.update(f"{example.name}\0{example.product}\0{example.group}\0{example.category}\n".encode())
    return digest.hexdigest()
