"""Commands over a catalog's model: whiten its search space, tune the model, quantize it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

import click

from tongkuan.adapt.recipe import Recipe
from tongkuan.adapt.whitening import PAIR_DIMS, PAIR_SHRINKAGE, Neighbours
from tongkuan.cli.common import CHECK_MARGIN, CHECKS, DATA_DIR, main, settings_from
from tongkuan.errors import TongkuanError
from tongkuan.vision.whitening import DEFAULT_DIMS, DEFAULT_SHRINKAGE

if TYPE_CHECKING:
    from collections.abc import Callable

    from tongkuan.config import Settings
    from tongkuan.models.parts import Parts
    from tongkuan.models.spaces import WhiteningReport
    from tongkuan.models.tuning import TuningPlan


@main.command()
@DATA_DIR
@click.option(
    "--dims",
    type=int,
    default=None,
    help=f"Dimensions kept (the index shrinks with them) [default: {DEFAULT_DIMS}, {PAIR_DIMS} where pairs are"
    " learned from, or the model's if fewer]",
)
@click.option(
    "--shrinkage",
    type=float,
    default=None,
    help=f"0..1: pull towards plain PCA [default: {DEFAULT_SHRINKAGE}; {PAIR_SHRINKAGE} where pairs are learned from]",
)
@click.option("--remove", is_flag=True, help="Forget the whitening: search in the model's own space again.")
@CHECKS
@CHECK_MARGIN
@click.option(
    "--neighbours",
    type=click.Choice(["auto", "on", "off"]),
    default="auto",
    show_default=True,
    help="Learn also from pairs of near-duplicate single-picture products (auto: where most have one).",
)
def whiten(
    data_dir: Path,
    dims: int | None,
    shrinkage: float | None,
    remove: bool,
    neighbours: str,
    checks: Path | None,
    check_margin: float | None,
) -> None:
    """Learn how this catalog's products vary from their products with several pictures (and,
    where a SKU is listed many times, from near-duplicate listings), store it in the catalog
    and build the index for it. Restart the service to use it."""
    if remove:
        context = click.get_current_context()
        for name in ("dims", "shrinkage", "neighbours"):
            if context.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT:
                raise click.UsageError(f"--remove forgets the whitening: --{name} only applies when learning one")
    settings = settings_from(data_dir)
    from tongkuan.engine.build import Builder
    from tongkuan.models.spaces import whiten_catalog

    chosen = cast(Neighbours, neighbours)

    def learn(parts: Parts) -> WhiteningReport:
        return whiten_catalog(parts, dims, shrinkage, remove, neighbours=chosen)

    try:
        if checks is not None and not _checked_better(settings, checks, check_margin, learn):
            return
        echo_whitening(learn(Builder(settings)))
    except TongkuanError as exc:
        raise click.ClickException(str(exc)) from exc


def _checked_better(settings: Settings, checks: Path, margin: float | None, prepare: Callable[[Parts], object]) -> bool:
    """Whether the check set finds the catalog better once `prepare`d (tried on a copy)."""
    from tongkuan.engine.build import stored_spec
    from tongkuan.evaluation.decision import CHECK_MARGIN, better, compare

    stored = stored_spec(settings)
    model = stored[0] if stored else ""
    before, after = compare(settings, checks, model, model, prepare)
    chosen, reason = better(before.scores, after.scores, CHECK_MARGIN if margin is None else margin)
    click.echo(reason + ("" if chosen else ": the catalog stays as it is"))
    return chosen


def echo_whitening(report: WhiteningReport) -> None:
    from tongkuan.vision.whitening import Whitening

    if report.space is None:
        return  # the catalog already had one
    if isinstance(report.space, Whitening):
        learned = report.space
        paired = f" and {learned.pairs} pairs of near-duplicate listings" if learned.pairs else ""
        click.echo(
            f"learned {learned.key}: {report.model_dim} -> {learned.dim} dimensions from"
            f" {learned.products - learned.pairs} products with several pictures{paired}"
            f" ({learned.pictures} pictures in all)"
        )
    click.echo(f"index ready ({report.pictures} pictures); restart a running service to search with it")


def _echo_plan(plan: TuningPlan) -> None:
    from dataclasses import fields

    shape = "one picture each" if plan.single else "several pictures"
    click.echo(f"catalog: {plan.pictures} pictures in {plan.groups} products ({shape}); tuning {plan.base}")
    click.echo("recipe as declared:")
    for line in plan.declared.lines():
        click.echo(f"  {line}")
    if len(plan.variants) > 1:
        click.echo(
            "products with one picture each: one pass of the model decides whether they are listings listed again"
        )
    for name, recipe in plan.variants:
        changed = [
            f"{f.name} = {getattr(recipe, f.name)!r}"
            for f in fields(recipe)
            if getattr(recipe, f.name) != getattr(plan.declared, f.name)
        ]
        click.echo(f"variant {name!r}: " + (", ".join(changed) if changed else "the recipe as declared"))


@main.command()
@DATA_DIR
@click.option(
    "--epochs",
    default=Recipe.epochs,
    show_default=True,
    help="Passes over the catalog at most (early stopping may end sooner).",
)
@click.option("--seed", default=Recipe.seed, show_default=True, help="Seed of sampling and augmentation.")
@click.option("--threads", type=int, default=None, help="CPU threads for training [default: all].")
@click.option("--undo", is_flag=True, help="Switch back to the model used before the last switch.")
@click.option("--dry-run", is_flag=True, help="Print the recipe this catalog would be tuned with, and stop.")
@CHECKS
@CHECK_MARGIN
def tune(
    data_dir: Path,
    epochs: int,
    seed: int,
    threads: int | None,
    undo: bool,
    dry_run: bool,
    checks: Path | None,
    check_margin: float | None,
) -> None:
    """Fine-tune the catalog's model on the catalog itself (its products' pictures, group keys
    and pseudo-groups, augmented views), store it in the catalog, embed the catalog with it
    and switch to it in one step. Returns once a (re)started service searches with it; an
    interrupted run resumes where it stopped."""
    if undo and dry_run:
        raise click.UsageError("--dry-run prints the tuning recipe: it does not apply to --undo")
    settings = settings_from(data_dir)
    from tongkuan.engine.build import Builder
    from tongkuan.models.switch import undo_switch
    from tongkuan.models.tuning import plan_tuning, tune_catalog

    recipe = Recipe(epochs=epochs, seed=seed, threads=threads)
    try:
        if dry_run:
            _echo_plan(plan_tuning(Builder(settings), recipe))
            return
        if undo:
            switched = undo_switch(Builder(settings))
            click.echo(f"switched back to {switched.model}: {switched.index_pictures} pictures indexed")
            return
        decider = None
        if checks is not None:
            from tongkuan.evaluation.decision import CHECK_MARGIN, decide

            decider = decide(settings, checks, CHECK_MARGIN if check_margin is None else check_margin)
        report = tune_catalog(Builder(settings), recipe, decide=decider)
    except TongkuanError as exc:
        raise click.ClickException(str(exc)) from exc
    held_back = "listings' near-duplicates" if report.held_back_metric == "twins" else "products"
    click.echo(
        f"tuned {report.base} on {report.pictures} pictures in {report.groups} groups in {report.train_seconds:.0f} s;"
        f" held-back {held_back} R@1 {report.held_back_before:.3f} -> {report.held_back_after:.3f}"
        + (
            f"; category top-1 {report.category_before:.3f} (shipped classifier) -> {report.category_after:.3f}"
            " (category head)"
            if report.category_after >= 0
            else ""
        )
    )
    if report.decided_by:
        click.echo(report.decided_by + ("" if report.model else ": the catalog keeps its model"))
    elif report.model is None and not report.verified:
        click.echo(
            "the catalog keeps its model: its products have one picture each, and too few have a near-duplicate"
            " among the others, so the tuned model cannot be checked on held-back products (give listings of one"
            " SKU a productGroup in customContent)"
            + ("" if report.category_after >= 0 else "; categories in the records would train a category head")
        )
        return
    else:
        click.echo(f"the label-free check decided: held-back {held_back} R@1, as above")
    if report.model is None:
        if not report.decided_by:
            click.echo(f"the tuned model finds the held-back {held_back} less well: the catalog keeps its model")
        return
    click.echo(
        f"switched to {report.model}: {report.index_pictures} pictures embedded in {report.embed_seconds:.0f} s"
        + (", whitening learned in its space" if report.whitened else "")
        + "; a running service follows within seconds"
    )


@main.command()
@DATA_DIR
@click.option(
    "--pictures",
    default=256,
    show_default=True,
    help="Catalog pictures to calibrate the 8-bit model's activation ranges on.",
)
@click.option("--seed", default=0, show_default=True, help="Seed of the calibration pictures' draw.")
def quantize(data_dir: Path, pictures: int, seed: int) -> None:
    """Switch the catalog to an 8-bit copy of its model (shipped or tuned), calibrated on the
    catalog's own pictures: a forward pass in about a third of the time on CPUs with AVX-512
    VNNI. Stored in the catalog, the catalog embedded again and switched in one step, like
    `tongkuan tune`; `tongkuan tune --undo` switches back to the float model."""
    settings = settings_from(data_dir)
    from tongkuan.engine.build import Builder
    from tongkuan.models.quantizing import quantize_catalog

    try:
        report = quantize_catalog(Builder(settings), pictures, seed)
    except TongkuanError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"quantized {report.quantized_from} to 8 bits, calibrated on {report.calibration_pictures} catalog pictures;"
        f" one forward pass {report.float_forward_ms:.1f} ms -> {report.int8_forward_ms:.1f} ms"
    )
    click.echo(
        f"switched to {report.model}: {report.index_pictures} pictures embedded in {report.embed_seconds:.0f} s"
        + (", whitening learned in its space" if report.whitened else "")
        + "; a running service follows within seconds"
    )
