"""Removing stored pictures that nothing uses any more, without racing the writers."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

from click.testing import CliRunner
from PIL import Image

from tests.conftest import new_data_dir, settings_for
from tongkuan.cli import main
from tongkuan.domain.products import NewImage, Product
from tongkuan.engine import Engine
from tongkuan.images.store import ImageStore

DAY = 86400.0


def picture(seed: int) -> bytes:
    out = io.BytesIO()
    Image.effect_noise((32, 32), 20 + seed).convert("RGB").save(out, "PNG")
    return out.getvalue()


def age(path: Path, days: float) -> None:
    then = time.time() - days * DAY
    os.utime(path, (then, then))


def test_only_old_unused_pictures_go(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    blobs = [picture(i) for i in range(4)]  # effect_noise is random: keep the bytes
    used, unused, fresh, reused = (store.put(blob) for blob in blobs)
    for name in (used, unused, reused):
        age(store.root / name, 30)
    assert store.put(blobs[3]) == reused  # stored again (a new product uses it): recent once more
    files, size = store.remove_unused(keep={used}, older_than=7 * DAY)
    assert (files, size > 0) == (1, True)
    assert sorted(p.name for p in store.root.iterdir()) == sorted([used, fresh, reused])


def test_the_clean_images_command_keeps_every_catalog_picture(tmp_path: Path, model_cache: Path) -> None:
    data_dir = new_data_dir(tmp_path / "data", model_cache)
    engine = Engine(settings_for(data_dir, model="efficientnet-lite0"))
    shot, query = picture(1), picture(2)
    catalog_picture = engine.images.put(shot)
    upload = engine.images.put(query)
    vector = engine.vision.describe([Image.open(io.BytesIO(shot))])[0].embedding
    engine.catalog.upsert(Product(item_id="p", title="t"), [NewImage("h", catalog_picture, vector)])
    engine.close()
    for name in (catalog_picture, upload):
        age(data_dir / "images" / name, 10)
    result = CliRunner().invoke(main, ["clean-images", "--data-dir", str(data_dir), "--days", "7"])
    assert result.exit_code == 0 and "removed 1 pictures" in result.output, result.output
    assert (data_dir / "images" / catalog_picture).exists() and not (data_dir / "images" / upload).exists()
