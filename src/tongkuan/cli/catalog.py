"""Commands over a catalog: bringing products in and out, searching it, backing it up."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from tongkuan.cli.common import DATA_DIR, main, serve, settings_from
from tongkuan.cli.models import echo_whitening
from tongkuan.errors import CannotLearn, ImageError, InvalidImage, ProductNotFound, TongkuanError

if TYPE_CHECKING:  # the commands import the engine when they run, so `--help` stays quick
    from tongkuan.engine import Engine
    from tongkuan.images.decode import Decoded


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
    settings = settings_from(data_dir, model=model)
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
            echo_whitening(whiten_catalog(Builder(settings), only_if_new=True))
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
    """Remove products by itemId; exits with status 1, naming them, when some were not there."""
    settings = settings_from(data_dir)
    from tongkuan.engine import Engine

    engine = Engine(settings)
    missing = []
    try:
        for item_id in item_ids:
            try:
                engine.catalog.delete(item_id)
                click.echo(f"deleted {item_id}")
            except ProductNotFound:
                missing.append(item_id)
            except TongkuanError as exc:
                raise click.ClickException(str(exc)) from exc
    finally:
        engine.close()
    if missing:  # the others are deleted; the exit status tells a script that some were not there
        raise click.ClickException(f"{len(missing)} of {len(item_ids)} products not found: {', '.join(missing)}")


@main.command()
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@DATA_DIR
def export(out: Path, data_dir: Path) -> None:
    """Write every product as a JSONL record that `tongkuan ingest` reads back."""
    settings = settings_from(data_dir)
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
    settings = settings_from(source, catalog_url=catalog_url, vectors_url=vectors_url or "")
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


@main.command("read-text")
@DATA_DIR
def read_text(data_dir: Path) -> None:
    """Read the text on every catalog picture not read yet (PP-OCRv5, Chinese and English), so
    keyword search finds the words on the pictures and picture search ranks by them. An
    interrupted run resumes where it stopped. Keyword search finds them at once, and a service
    that reads query pictures (TONGKUAN_READ_TEXT) ranks by them."""
    settings = settings_from(data_dir)
    from tongkuan.engine.commands import read_catalog_text

    try:
        read, worded = read_catalog_text(settings)
    except TongkuanError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"read {read} pictures: {worded} show words")


@main.command("clean-images")
@DATA_DIR
@click.option("--days", default=7.0, show_default=True, help="Keep pictures changed within this many days.")
def clean_images(data_dir: Path, days: float) -> None:
    """Delete stored pictures no product uses (query uploads, deleted products' pictures)."""
    settings = settings_from(data_dir)
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
@click.option(
    "--with-settings",
    is_flag=True,
    help="Also restore the archive's tongkuan.toml (apps and their secrets, admin token, trusted hosts and proxies).",
)
def restore(archive: Path, data_dir: Path, force: bool, with_settings: bool) -> None:
    """Unpack a backup into the data directory; its settings only when asked."""
    from tongkuan.backup import restore as unpack

    try:
        report = unpack(archive, data_dir, force, with_settings)
    except TongkuanError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"restored {report.files} files into {data_dir} in {report.seconds:.1f} s")
    named = ", ".join(report.settings)
    if report.settings_restored:
        click.echo(f"settings restored: {named} (check them before starting the service)")
    elif report.settings:
        click.echo(f"settings not restored ({named}): restore them with --with-settings, or set them yourself")


@main.command()
@click.argument("image", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@DATA_DIR
@click.option("--limit", default=10, show_default=True)
@click.option("--no-crop", is_flag=True, help="Search the whole image, not the main subject.")
@click.option("--words", default=None, help="Search by what the pictures show (a model with a text tower).")
def search(image: Path | None, data_dir: Path, limit: int, no_crop: bool, words: str | None) -> None:
    """Search the catalog with a local image (or, with --words, by words) and print JSON."""
    if (image is None) == (words is None):
        raise click.UsageError("give an IMAGE, or --words")
    settings = settings_from(data_dir)
    if not settings.backends.catalog_url and not (settings.data_dir / "catalog.db").is_file():
        # before the engine, which would make an empty one (and export the model) to search
        raise click.ClickException(
            f"{settings.data_dir} holds no catalog: pass --data-dir of one (scripts/demo keeps its sample in "
            "demo-data), or make one with `tongkuan ingest FILES --data-dir DIR` or `tongkuan demo DATA_ROOT`"
        )
    from tongkuan.api.wire import search_summary
    from tongkuan.engine import Engine
    from tongkuan.search.searcher import SearchQuery

    engine = Engine(settings)
    try:
        if engine.catalog.count()[0] == 0:
            raise click.ClickException(
                f"the catalog in {settings.data_dir} holds no products: "
                "add some with `tongkuan ingest FILES --data-dir DIR`"
            )
        if words is not None:
            results = engine.search_words(words, SearchQuery(limit=limit))
        else:
            assert image is not None
            results = engine.search(_query_picture(engine, image), SearchQuery(crop=not no_crop, limit=limit))
    except TongkuanError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        engine.close()
    click.echo(json.dumps(search_summary(results), ensure_ascii=False, indent=2))


def _query_picture(engine: Engine, image: Path) -> Decoded:
    """The picture in `image`, or the one line that names the file and what is wrong with it."""
    try:
        return engine.decode(image.read_bytes())
    except InvalidImage as exc:
        if exc.__cause__ is not None:  # the decoder could not read it at all: its reason means nothing here
            raise click.ClickException(
                f"{image} is not a picture tongkuan can read (it reads JPEG, PNG, WEBP, BMP, GIF, TIFF and PPM)"
            ) from exc
        raise click.ClickException(f"{image}: {exc}") from exc
    except ImageError as exc:
        raise click.ClickException(f"{image}: {exc}") from exc
    except OSError as exc:
        raise click.ClickException(f"{image} cannot be read: {exc.strerror or exc}") from exc


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
    settings = settings_from(data_dir)
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
