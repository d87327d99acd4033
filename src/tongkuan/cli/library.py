"""`tongkuan models`: the models a data directory can search with, bringing one in, and
switching the catalog to one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from tongkuan.models.library import ModelRecord

from tongkuan.cli.common import CHECK_MARGIN, CHECKS, DATA_DIR, main, settings_from
from tongkuan.errors import TongkuanError


@main.group()
def models() -> None:
    """List, import, pull, use and remove the models a catalog can search with."""


def _current(data_dir: Path) -> tuple[str | None, str | None]:
    """The catalog's model and the one it would switch back to (None: no catalog yet)."""
    from tongkuan.engine.build import open_catalog, stored_spec

    settings = settings_from(data_dir)
    stored = stored_spec(settings)
    if stored is None:
        return None, None
    catalog = open_catalog(settings, *stored)
    try:
        previous = catalog.previous_model()
    finally:
        catalog.close()
    return stored[0], None if previous is None else previous[0]


def _described(record: ModelRecord) -> str:
    """A model brought into the library, and how to search with it."""
    return (
        f"{record.name} ({record.layout} layout, {record.dim} dimensions, {record.size_bytes / 1e6:.1f} MB, "
        f"licence {record.licence or 'unknown'}); search with it: tongkuan models use {record.name}"
    )


@models.command("list")
@DATA_DIR
@click.option("--json", "as_json", is_flag=True, help="Print JSON, one object per model.")
def list_(data_dir: Path, as_json: bool) -> None:
    """Shipped, tuned, imported and pulled models, the catalog's own marked with *."""
    from tongkuan.models.library import list_models

    try:
        current, _ = _current(data_dir)
        records = list_models(settings_from(data_dir).data_dir)
    except TongkuanError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        for record in records:
            click.echo(json.dumps({**record.__dict__, "current": record.name == current}, ensure_ascii=False))
        return
    click.echo(f"  {'name':<28} {'kind':<9} {'dim':>5} {'size':>9}  {'licence':<14} source")
    for record in records:
        mark = "*" if record.name == current else " "
        dim = "" if record.dim is None else str(record.dim)
        size = f"{record.size_bytes / 1e6:.1f} MB" if record.size_bytes else "-"
        licence = record.licence or "unknown"
        click.echo(f"{mark} {record.name:<28} {record.kind:<9} {dim:>5} {size:>9}  {licence:<14} {record.source}")


@models.command("import")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--name", required=True, help="What to call it (lower-case letters, digits, '.', '_', '-').")
@DATA_DIR
def import_(folder: Path, name: str, data_dir: Path) -> None:
    """Bring in a model folder carried in by hand: the Hugging Face ONNX layout (onnx/model.onnx
    or onnx/vision_model.onnx, config.json, preprocessor_config.json), Immich's (visual/,
    textual/, config.json) or tongkuan's own (model.json, model.onnx)."""
    from tongkuan.models.library import import_model

    settings = settings_from(data_dir)
    try:
        record = import_model(settings.data_dir, folder, name)
    except TongkuanError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"imported {_described(record)}")


@models.command("pull")
@click.argument("reference", metavar="REPO[@REVISION]")
@click.option("--name", default=None, help="What to call it [default: the repository's name].")
@click.option("--token", default=None, help="A hub token, for gated models [default: HF_TOKEN].")
@DATA_DIR
def pull(reference: str, name: str | None, token: str | None, data_dir: Path) -> None:
    """Download a model from the Hugging Face Hub (HF_ENDPOINT: a mirror; HF_HUB_OFFLINE=1: only
    what was downloaded before), check every file against the hub's hashes and import it.
    Only the files its layout needs are fetched; an interrupted pull keeps what it finished."""
    from tongkuan.models.hub import pull_model

    settings = settings_from(data_dir)
    try:
        record = pull_model(settings.data_dir, reference, name, token)
    except TongkuanError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"pulled {reference} as {_described(record)}")


@models.command("use")
@click.argument("name", required=False)
@click.option("--undo", is_flag=True, help="Switch back to the model used before the last switch.")
@CHECKS
@CHECK_MARGIN
@DATA_DIR
def use(name: str | None, undo: bool, checks: Path | None, check_margin: float | None, data_dir: Path) -> None:
    """Switch the catalog to model NAME: every picture is embedded with it while the current
    model keeps serving, then the catalog switches in one step (a running service follows
    within seconds). Returns once the new model serves."""
    if undo == (name is not None):
        raise click.UsageError("give a model's NAME, or --undo")
    if undo and checks is not None:
        raise click.UsageError("--check decides a switch to a NAME: --undo switches back unasked")
    settings = settings_from(data_dir)
    from tongkuan.engine.build import Builder
    from tongkuan.models.switch import switch_catalog, undo_switch

    try:
        if checks is not None and name is not None:
            from tongkuan.evaluation.decision import CHECK_MARGIN, decide

            current, _ = _current(data_dir)
            chosen, reason = decide(settings, checks, CHECK_MARGIN if check_margin is None else check_margin)(
                current or "", name
            )
            click.echo(reason)
            if not chosen:
                click.echo(f"the catalog keeps {current}")
                return
        switched = undo_switch(Builder(settings)) if undo else switch_catalog(Builder(settings), name or "")
    except TongkuanError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"switched to {switched.model}: {switched.index_pictures} pictures indexed, embedded in "
        f"{switched.embed_seconds:.0f} s" + (", whitening learned in its space" if switched.whitened else "")
    )


@models.command("remove")
@click.argument("name")
@DATA_DIR
def remove(name: str, data_dir: Path) -> None:
    """Delete an imported or pulled model the catalog does not use."""
    from tongkuan.models.library import remove_model

    try:
        current, _ = _current(data_dir)
        remove_model(settings_from(data_dir).data_dir, name, {current} if current else set())
    except TongkuanError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"removed {name}")
