"""`tongkuan eval`: how well the catalog finds the operator's own labelled query pictures."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from tongkuan.cli.common import DATA_DIR, main, settings_from
from tongkuan.errors import TongkuanError

if TYPE_CHECKING:
    from tongkuan.config import Settings
    from tongkuan.engine import Engine
    from tongkuan.evaluation.runner import Evaluation


@main.command(name="eval")
@click.argument("checks", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@DATA_DIR
@click.option(
    "--model",
    "models",
    multiple=True,
    help="Try this model (repeat to compare several) without switching the catalog [default: the catalog's own].",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per model, the figures only.")
@click.option(
    "--report",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write a page of the misses (query picture, what came first, where the right product ranked) here.",
)
def evaluate(checks: Path, data_dir: Path, models: tuple[str, ...], as_json: bool, report: Path | None) -> None:
    """Search each picture of the CHECKS file (JSONL: {"picture": ..., "itemIds": [...]}) the
    way the API does and print R@1, R@5, R@20, MRR and n (and category top-1 where checks
    name categories). An interrupted run resumes where it stopped."""
    settings = settings_from(data_dir)
    from tongkuan.evaluation.checks import read_checks
    from tongkuan.evaluation.report import write_report
    from tongkuan.evaluation.runner import catalog_products, evaluate, progress_file

    try:
        current = _current_model(settings)
        for model in models or (current,):
            with _engine(settings, model, current) as engine:
                labelled = read_checks(checks, catalog_products(engine))
                resume = progress_file(Path(settings.data_dir) / "eval" / "progress", checks, model)
                run = evaluate(engine, labelled, resume, progress=not as_json)
                if report is not None:
                    page = write_report(report / model if len(models) > 1 else report, engine, labelled, run)
                    if not as_json:
                        click.echo(f"misses of {model}: {page}")
            click.echo(json.dumps({"model": model, **run.scores.to_json()}) if as_json else _line(run))
    except TongkuanError as exc:
        raise click.ClickException(str(exc)) from exc


def _current_model(settings: Settings) -> str:
    from tongkuan.engine.build import stored_spec
    from tongkuan.errors import ConfigError

    stored = stored_spec(settings)
    if stored is None:
        raise ConfigError(f"{settings.data_dir} holds no catalog yet: ingest products first")
    return stored[0]


@contextmanager
def _engine(settings: Settings, model: str, current: str) -> Iterator[Engine]:
    """The catalog's engine for its own model, a trial copy for another."""
    from tongkuan.engine import Engine
    from tongkuan.evaluation.candidates import trial_engine

    if model != current:
        with trial_engine(settings, model) as engine:
            yield engine
        return
    engine = Engine(settings)
    try:
        yield engine
    finally:
        engine.close()


def _line(run: Evaluation) -> str:
    s = run.scores
    line = f"{run.model}: R@1 {s.recall_1:.3f}  R@5 {s.recall_5:.3f}  R@20 {s.recall_20:.3f}  MRR {s.mrr:.3f}  n {s.n}"
    if s.category_top1 is not None:
        line += f"  category top-1 {s.category_top1:.3f} (n {s.category_n})"
    if s.failed:
        line += f"  ({s.failed} checks could not be searched: see --report)"
    return line
