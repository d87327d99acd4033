"""The `tongkuan` command: thin wrappers over the engine."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click

if TYPE_CHECKING:
    from tongkuan.models.spaces import WhiteningReport
    from tongkuan.models.tuning import TuningPlan

from tongkuan.adapt.recipe import Recipe
from tongkuan.adapt.whitening import PAIR_DIMS, PAIR_SHRINKAGE, Neighbours
from tongkuan.config import Settings
from tongkuan.errors import CannotLearn, ConfigError, TongkuanError
from tongkuan.vision.whitening import DEFAULT_DIMS, DEFAULT_SHRINKAGE

DATA_DIR = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="TONGKUAN_DATA_DIR",
    default="data",
    show_default=True,
    help="Data directory: catalog, index, images, model cache, tongkuan.toml.",
)


def _settings(data_dir: Path, **overrides: Any) -> Settings:
    """The settings, or the one line that says which one is wrong (exit status 1)."""
    try:
        return Settings(data_dir=data_dir, **{k: v for k, v in overrides.items() if v is not None})
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log at debug level.")
@click.version_option(package_name="tongkuan")
def main(verbose: bool) -> None:
    """tongkuan: self-hosted product image search (Taobao Image Search V2.0 compatible)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@main.command()
@DATA_DIR
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--model", default=None, help="Shipped model name or model.json path.")
def serve(data_dir: Path, host: str, port: int, model: str | None) -> None:
    """Run the HTTP API."""
    settings = _settings(data_dir, model=model)  # a bad setting is one line, before any import logs
    import uvicorn

    from tongkuan.api.app import create_app

    app = create_app(settings)
    if (
        host not in ("127.0.0.1", "::1", "localhost")
        and not settings.http.public_url
        and not settings.http.allowed_hosts
    ):
        logging.getLogger(__name__).warning(
            "listening on %s, but only requests to 127.0.0.1, ::1 or localhost are answered: "
            "set TONGKUAN_PUBLIC_URL or TONGKUAN_ALLOWED_HOSTS to the names clients use",
            host,
        )
    # uvicorn's access log would print appSecret and sign; the app logs requests without them.
    # Forwarded headers are believed only from the configured proxies (TONGKUAN_FORWARDED_ALLOW_IPS).
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="info",
        access_log=False,
        proxy_headers=settings.http.proxy_addresses is not None,
        forwarded_allow_ips=settings.http.proxy_addresses,
    )


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@DATA_DIR
@click.option("--model", default=None, help="Shipped model name or model.json path.")
@click.option("--batch-size", default=16, show_default=True, help="Images per model batch.")
@click.option("--ack", is_flag=True, help="Print 'committed ITEM_ID' as each product is durably stored.")
@click.option(
    "--ray",
    "ray_address",
    default=None,
    help="Embed on a Ray cluster: its address (ray://HOST:10001, auto), or 'local' for one on this machine.",
)
@click.option("--actors", default=2, show_default=True, help="With --ray: embedding actors (one model each).")
@click.option(
    "--no-whiten",
    is_flag=True,
    help="Do not learn a whitening after this first ingestion (see `tongkuan whiten`).",
)
def ingest(
    paths: tuple[Path, ...],
    data_dir: Path,
    model: str | None,
    batch_size: int,
    ack: bool,
    ray_address: str | None,
    actors: int,
    no_whiten: bool,
) -> None:
    """Add or update products from JSONL or CSV files and image folders. A catalog with no
    whitening yet gets one learned from its products with several pictures, when it has
    enough of them (`tongkuan whiten`). Records that fail are reported and skipped; the
    command then exits with status 1, its last line saying how many failed."""
    settings = _settings(data_dir, model=model)
    from tongkuan.engine import Engine
    from tongkuan.engine.build import Builder
    from tongkuan.engine.commands import ingest_on_ray
    from tongkuan.ingest.readers import read_sources
    from tongkuan.models.spaces import whiten_catalog

    try:
        if ray_address:
            report = ingest_on_ray(settings, read_sources(list(paths)), ray_address, actors)
        else:
            engine = Engine(settings)
            try:
                report = engine.ingester(batch_size).ingest(
                    read_sources(list(paths)), progress=not ack, on_commit=_acknowledge if ack else None
                )
            finally:
                engine.close()
    except TongkuanError as exc:
        raise click.ClickException(str(exc)) from exc
    for failure in report.failures:
        click.echo(f"failed {failure.origin} itemId={failure.item_id}: {failure.reason}", err=True)
    click.echo(
        f"{report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
        f"{len(report.failures)} failed; {report.images_embedded} images embedded in {report.seconds:.1f} s"
    )
    if not no_whiten:
        try:
            _echo_whitening(whiten_catalog(Builder(settings), only_if_new=True))
        except CannotLearn as exc:
            click.echo(f"no whitening learned yet: {exc}")
        except TongkuanError as exc:
            raise click.ClickException(str(exc)) from exc
    if report.failures:
        # after the whitening: the last line says how the run went, and the exit status too
        raise click.ClickException(f"{len(report.failures)} of {report.ok + len(report.failures)} records failed")


def _acknowledge(item_ids: list[str]) -> None:
    for item_id in item_ids:
        click.echo(f"committed {item_id}")
    sys.stdout.flush()


@main.command()
@click.argument("item_ids", nargs=-1, required=True)
@DATA_DIR
def delete(item_ids: tuple[str, ...], data_dir: Path) -> None:
    """Remove products by itemId."""
    settings = _settings(data_dir)
    from tongkuan.engine import Engine

    engine = Engine(settings)
    try:
        for item_id in item_ids:
            try:
                engine.catalog.delete(item_id)
                click.echo(f"deleted {item_id}")
            except TongkuanError as exc:
                click.echo(f"not found: {exc}", err=True)
    finally:
        engine.close()


@main.command()
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@DATA_DIR
def export(out: Path, data_dir: Path) -> None:
    """Write every product as a JSONL record that `tongkuan ingest` reads back."""
    settings = _settings(data_dir)
    from tongkuan.engine import Engine
    from tongkuan.ingest.export import export_records

    engine = Engine(settings)
    count = 0
    try:
        with out.open("w", encoding="utf-8") as handle:
            for record in export_records(engine.catalog, lambda name: str(engine.images.root.resolve() / name)):
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                count += 1
    finally:
        engine.close()
    click.echo(f"exported {count} products to {out}")


@main.command()
@click.option(
    "--from",
    "source",
    required=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The embedded data directory to move.",
)
@click.option("--to", "catalog_url", required=True, help="PostgreSQL URL of the target catalog.")
@click.option("--vectors", "vectors_url", default=None, help="Milvus URL to fill from the moved vectors.")
@click.option(
    "--images",
    "image_dir",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="Shared picture folder to copy the stored pictures into (unset: they stay in --from).",
)
def migrate(source: Path, catalog_url: str, vectors_url: str | None, image_dir: Path | None) -> None:
    """Move an embedded catalog to PostgreSQL (and Milvus) without re-embedding; rerun to resume."""
    # no --vectors: no Milvus, whatever TONGKUAN_VECTORS_URL says ("" is unset)
    settings = _settings(source, catalog_url=catalog_url, vectors_url=vectors_url or "")
    from tongkuan.engine.commands import migrate_to_servers

    try:
        report, collection = migrate_to_servers(settings, image_dir)
    except TongkuanError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"moved {report.products - report.skipped} products ({report.skipped} already there), "
        f"{report.pictures} pictures, {report.files_copied} files in {report.seconds:.1f} s"
    )
    if collection:
        click.echo(f"vectors in Milvus collection {collection} are up to date")


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
@click.option(
    "--neighbours",
    type=click.Choice(["auto", "on", "off"]),
    default="auto",
    show_default=True,
    help="Learn also from pairs of near-duplicate single-picture products (auto: where most have one).",
)
def whiten(data_dir: Path, dims: int | None, shrinkage: float | None, remove: bool, neighbours: str) -> None:
    """Learn how this catalog's products vary from their products with several pictures (and,
    where a SKU is listed many times, from near-duplicate listings), store it in the catalog
    and build the index for it. Restart the service to use it."""
    if remove:
        context = click.get_current_context()
        for name in ("dims", "shrinkage", "neighbours"):
            if context.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT:
                raise click.UsageError(f"--remove forgets the whitening: --{name} only applies when learning one")
    settings = _settings(data_dir)
    from tongkuan.engine.build import Builder
    from tongkuan.models.spaces import whiten_catalog

    try:
        chosen = cast(Neighbours, neighbours)
        _echo_whitening(whiten_catalog(Builder(settings), dims, shrinkage, remove, neighbours=chosen))
    except TongkuanError as exc:
        raise click.ClickException(str(exc)) from exc


def _echo_whitening(report: WhiteningReport) -> None:
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
def tune(data_dir: Path, epochs: int, seed: int, threads: int | None, undo: bool, dry_run: bool) -> None:
    """Fine-tune the catalog's model on the catalog itself (its products' pictures, group keys
    and pseudo-groups, augmented views), store it in the catalog, embed the catalog with it
    and switch to it in one step. Returns once a (re)started service searches with it; an
    interrupted run resumes where it stopped."""
    if undo and dry_run:
        raise click.UsageError("--dry-run prints the tuning recipe: it does not apply to --undo")
    settings = _settings(data_dir)
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
        report = tune_catalog(Builder(settings), recipe)
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
    if report.model is None and not report.verified:
        click.echo(
            "the catalog keeps its model: its products have one picture each, and too few have a near-duplicate"
            " among the others, so the tuned model cannot be checked on held-back products (give listings of one"
            " SKU a productGroup in customContent)"
            + ("" if report.category_after >= 0 else "; categories in the records would train a category head")
        )
        return
    if report.model is None:
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
    settings = _settings(data_dir)
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


@main.command("clean-images")
@DATA_DIR
@click.option("--days", default=7.0, show_default=True, help="Keep pictures changed within this many days.")
def clean_images(data_dir: Path, days: float) -> None:
    """Delete stored pictures no product uses (query uploads, deleted products' pictures)."""
    settings = _settings(data_dir)
    from tongkuan.engine import Engine

    engine = Engine(settings)
    try:
        files, size = engine.images.remove_unused(engine.catalog.stored_locations(), days * 86400)
    finally:
        engine.close()
    click.echo(f"removed {files} pictures ({size / 1e6:.1f} MB) unused for {days:g} days")


@main.command()
@click.argument("archive", type=click.Path(dir_okay=False, path_type=Path))
@DATA_DIR
def backup(archive: Path, data_dir: Path) -> None:
    """Copy the data directory into a tar file (.tar or .tar.gz), safely while the service runs."""
    from tongkuan.backup import backup as make_backup

    try:
        report = make_backup(data_dir, archive)
    except TongkuanError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"backed up {report.files} files ({report.bytes / 1e6:.1f} MB) to {archive} in {report.seconds:.1f} s")


@main.command()
@click.argument("archive", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@DATA_DIR
@click.option("--force", is_flag=True, help="Replace a data directory that is not empty (stop its service first).")
def restore(archive: Path, data_dir: Path, force: bool) -> None:
    """Unpack a backup into the data directory."""
    from tongkuan.backup import restore as unpack

    try:
        report = unpack(archive, data_dir, force)
    except TongkuanError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"restored {report.files} files into {data_dir} in {report.seconds:.1f} s")


@main.command()
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@DATA_DIR
@click.option("--limit", default=10, show_default=True)
@click.option("--no-crop", is_flag=True, help="Search the whole image, not the main subject.")
def search(image: Path, data_dir: Path, limit: int, no_crop: bool) -> None:
    """Search the catalog with a local image and print JSON."""
    settings = _settings(data_dir)
    from tongkuan.api.wire import search_summary
    from tongkuan.engine import Engine
    from tongkuan.search.searcher import SearchQuery

    engine = Engine(settings)
    try:
        results = engine.search(engine.decode(image.read_bytes()), SearchQuery(crop=not no_crop, limit=limit))
    finally:
        engine.close()
    click.echo(json.dumps(search_summary(results), ensure_ascii=False, indent=2))


@main.command()
@click.argument("root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--fashion", default=0, show_default=True, help="Fashion shots per category to add.")
@click.option("--photos", default=None, type=int, help="Shopper photos per grocery product (default all).")
def sample(root: Path, out: Path, fashion: int, photos: int | None) -> None:
    """Write a sample catalog (JSONL) from data sets laid out like shared/data."""

    count = _write_sample(root, out, fashion, photos)
    click.echo(f"wrote {count} products to {out}")


def _write_sample(root: Path, out: Path, fashion: int, photos: int | None) -> int:
    from tongkuan.sample import fashion_records, grocery_records

    out.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with out.open("w", encoding="utf-8") as handle:
        for record in [*grocery_records(root, photos), *fashion_records(root, fashion)]:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


@main.command()
@click.argument("root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@DATA_DIR
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.pass_context
def demo(ctx: click.Context, root: Path, data_dir: Path, host: str, port: int) -> None:
    """Build a sample catalog from ROOT (laid out like shared/data) if empty, then serve it."""
    settings = _settings(data_dir)
    from tongkuan.engine import Engine
    from tongkuan.ingest.readers import read_sources

    engine = Engine(settings)
    try:
        if engine.catalog.count()[0] == 0:
            jsonl = data_dir / "sample.jsonl"
            _write_sample(root, jsonl, fashion=40, photos=10)
            report = engine.ingester().ingest(read_sources([jsonl]), progress=True)
            click.echo(f"sample catalog: {report.ok} products, {report.images_embedded} images")
    finally:
        engine.close()
    ctx.invoke(serve, data_dir=data_dir, host=host, port=port, model=None)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
