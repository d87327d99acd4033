"""Moving a catalog between stores (an embedded data directory to PostgreSQL, say) without
re-embedding a single picture: records, picture names and stored vectors are copied as they
are, with the words read on the pictures (reading costs far more than copying), and picture
files are copied into the target image store when it is another folder.

Products already in the target with the same record and the same pictures are skipped, so
an interrupted migration is simply run again.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tongkuan.catalog.store import LearnedMetadata, PictureWords, ProductReader, ProductStore
from tongkuan.domain.products import NewImage, is_web_url
from tongkuan.errors import DimensionMismatch, ProductNotFound

BATCH = 200  # products per target transaction


class MigrationSource(ProductReader, LearnedMetadata, PictureWords, Protocol):
    """What a migration reads: every product with its pictures' vectors and words, and what
    was learned."""


class MigrationTarget(ProductStore, LearnedMetadata, PictureWords, Protocol):
    """What a migration writes: the products not there yet, their pictures' words, and what
    was learned."""


@dataclass(frozen=True)
class MigrationReport:
    products: int
    skipped: int
    pictures: int
    files_copied: int
    seconds: float


def migrate_catalog(
    source: MigrationSource,
    target: MigrationTarget,
    source_images: Path | None = None,
    target_images: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> MigrationReport:
    """Copy every product of `source` with its pictures and vectors into `target`."""
    if (source.model, source.dim) != (target.model, target.dim):
        raise DimensionMismatch(
            f"source catalog holds {source.model} ({source.dim}-d) vectors, the target {target.model} ({target.dim}-d)"
        )
    copy_files = source_images is not None and target_images is not None and source_images != target_images
    started = time.monotonic()
    products = skipped = pictures = files = 0
    cursor: str | None = None
    while True:
        with source.snapshot():
            page = source.products(cursor, BATCH)
            stored = source.pictures_with_vectors([p.item_id for p in page])
            read = source.picture_words([p.item_id for p in page])
        if not page:
            break
        cursor = page[-1].item_id
        writes = []
        for product in page:
            images, vectors = stored.get(product.item_id, ([], None))
            if _already_there(target, product.item_id, product, [(i.name, i.content_hash) for i in images]):
                skipped += 1
                continue
            if copy_files:
                assert source_images is not None and target_images is not None
                files += sum(_copy_file(image.location, source_images, target_images) for image in images)
            writes.append(
                (
                    product,
                    [
                        NewImage(image.content_hash, image.location, vectors[i], image.name)
                        for i, image in enumerate(images)
                    ]
                    if vectors is not None
                    else [],
                )
            )
            pictures += len(images)
        if writes:
            target.upsert_many(writes)
        _copy_words(target, read)  # skipped products too: a run stopped after their records left them unread
        products += len(page)
        if progress is not None:
            progress(len(page))
    for key in source.learned_keys():  # the same search space (a whitening): results match the source's
        target.set_learned(key, source.learned(key))
    return MigrationReport(products, skipped, pictures, files, time.monotonic() - started)


def _copy_words(target: MigrationTarget, read: dict[str, dict[str, str]]) -> None:
    """Keep on the target's pictures (matched by product and picture name) what was read on
    the source's, where the target has not read them yet."""
    words = []
    known = target.picture_words(list(read)) if read else {}
    pictures = target.pictures_of(list(read)) if read else {}
    for item_id, by_name in read.items():
        kept = known.get(item_id, {})
        words += [
            (image.vector_id, by_name[image.name])
            for image in pictures.get(item_id, [])
            if image.name in by_name and image.name not in kept
        ]
    if words:
        target.set_picture_words(words)


def _already_there(target: ProductReader, item_id: str, product: object, pictures: list[tuple[str, str]]) -> bool:
    try:
        if target.get(item_id) != product:
            return False
    except ProductNotFound:
        return False
    return [(i.name, i.content_hash) for i in target.images_of(item_id)] == pictures


def _copy_file(location: str, source: Path, target: Path) -> int:
    """Copy a stored picture (a file name in the image store; URLs stay as they are)."""
    if is_web_url(location) or (target / location).exists():
        return 0
    origin = source / location
    if not origin.is_file():
        return 0
    (target / location).parent.mkdir(parents=True, exist_ok=True)
    partial = target / f"{location}.migrating"
    shutil.copyfile(origin, partial)
    partial.replace(target / location)
    return 1
