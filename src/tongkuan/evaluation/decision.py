"""Whether a check set says a candidate model searches the catalog better than its own:
the rule `tune --check` and `models use --check` switch by."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tongkuan.config import Settings
from tongkuan.engine import Engine
from tongkuan.evaluation.candidates import trial_engine
from tongkuan.evaluation.checks import read_checks
from tongkuan.evaluation.runner import Evaluation, catalog_products, evaluate
from tongkuan.evaluation.scoring import Scores
from tongkuan.models.parts import Parts
from tongkuan.models.tuning import Decider

# R@1 a candidate must gain to be switched on: a few dozen labelled photos move R@1 in steps
# of 1/n, so a gain below one step is noise
CHECK_MARGIN = 0.02


def better(before: Scores, after: Scores, margin: float = CHECK_MARGIN) -> tuple[bool, str]:
    """Switch when R@1 rises by at least `margin` and R@5 does not fall; the reason says which."""
    shown = (
        f"R@1 {before.recall_1:.3f} -> {after.recall_1:.3f}, R@5 {before.recall_5:.3f} -> {after.recall_5:.3f}"
        f" on {after.n} checks"
    )
    if after.recall_5 < before.recall_5:
        return False, f"the check set decided: R@5 fell ({shown})"
    if after.recall_1 - before.recall_1 < margin:
        return False, f"the check set decided: R@1 rose by less than {margin:.3f} ({shown})"
    return True, f"the check set decided: R@1 rose by {margin:.3f} or more and R@5 did not fall ({shown})"


def compare(
    settings: Settings, checks: Path, current: str, candidate: str, prepare: Callable[[Parts], object] | None = None
) -> tuple[Evaluation, Evaluation]:
    """The check set's run on the catalog as it is, and on a copy switched to `candidate`
    (staged, not switched) and `prepare`d."""
    engine = Engine(settings)
    try:
        labelled = read_checks(checks, catalog_products(engine))
        before = evaluate(engine, labelled, progress=False)
    finally:
        engine.close()
    with trial_engine(settings, candidate, prepare) as trial:
        after = evaluate(trial, labelled, progress=False)
    return before, after


def decide(settings: Settings, checks: Path, margin: float = CHECK_MARGIN) -> Decider:
    """A decider for the model workflows: given the current model and a candidate, whether to
    switch and why."""

    def decider(current: str, candidate: str) -> tuple[bool, str]:
        before, after = compare(settings, checks, current, candidate)
        return better(before.scores, after.scores, margin)

    return decider
